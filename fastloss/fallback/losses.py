"""Elementwise and margin losses in plain NumPy, with PyTorch's semantics.

Each loss ``f(input, target, ...)`` has ``f_with_grad(...) -> (loss, d loss / d input)``.
The elementwise losses work in two steps: compute the per-element losses and the
gradient of their plain sum, then reduce (``"mean"`` divides by the number of
elements, ``"batchmean"`` by ``input.shape[0]``) and scale the gradient to match.
``target`` (and ``weight``, ``pos_weight``) must broadcast to ``input``'s shape; the
result has ``input``'s shape and dtype.  Terms, gradients and sums are computed in
float64 and rounded once to that dtype.
"""
from __future__ import annotations

import numpy as np

from fastloss._loss_validation import (
    check_bool,
    check_broadcastable,
    check_multi_margin_args,
    check_probabilities,
    check_real,
)
from fastloss._validation import (
    REDUCTIONS,
    as_float_array,
    check_reduction,
    finish_float,
)
from fastloss.fallback.activations import stable_sigmoid, stable_softplus

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "kl_div",
    "kl_div_with_grad",
    "mse_loss",
    "mse_loss_with_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_with_grad",
    "huber_loss",
    "huber_loss_with_grad",
    "multi_margin_loss",
    "multi_margin_loss_with_grad",
]


# -- plumbing ----------------------------------------------------------------------------

def _pair(input, target, reduction, allowed=REDUCTIONS, name="input"):
    """``name`` is the input's parameter name, for the error messages."""
    x, dtype = as_float_array(input, name)
    t, _ = as_float_array(target, "target")
    check_broadcastable(t, x.shape, "target")
    # The reference forms every term in float64 and rounds once, in _finish: float32
    # terms overflow where their mean does not (huber_loss at float32 max), cancel in
    # sums (kl_div), and with NumPy's weak scalars ``1 - t`` of a float32 target
    # would be rounded to float32 beside a float64 input.
    x = x.astype(np.float64, copy=False)
    t = t.astype(np.float64, copy=False)
    return x, t, dtype, check_reduction(reduction, allowed)


def _optional(arr, shape, name):
    """An optional weight array that must broadcast to the input's shape."""
    if arr is None:
        return None
    a, _ = as_float_array(arr, name)
    check_broadcastable(a, shape, name)
    return a


def _full(values, shape):
    """``values`` broadcast to ``shape`` as a new, writeable array."""
    return np.broadcast_to(values, shape).copy()


def _finish(elems, grad, x, dtype, reduction, want_grad):
    """Reduce per-element losses; scale the gradient of their sum the same way."""
    n = 1
    if reduction == "mean":
        n = x.size                            # 0 elements: 0 / 0 = NaN, as NumPy's mean
    elif reduction == "batchmean":
        n = x.shape[0] if x.ndim else 1       # PyTorch divides by input.size(0)
    with np.errstate(all="ignore"):
        if reduction == "none":
            loss = finish_float(elems, dtype)
        else:
            loss = finish_float(np.asarray(np.sum(elems, dtype=np.float64) / n), dtype)
        if not want_grad:
            return loss
        if n != 1:
            grad = grad / n
    return loss, finish_float(grad, dtype)


# -- binary cross-entropy ----------------------------------------------------------------

# PyTorch clamps both logarithms at -100, so that probabilities of exactly 0 or 1
# give a finite loss, and the gradient's denominator p (1 - p) at EPSILON = 1e-12,
# a float constant: its float32 value 9.99999996e-13 is used for float64 too.
_LOG_CLAMP = -100.0
_BCE_EPSILON = float(np.float32(1e-12))


def _bce(probs, target, weight, reduction, want_grad):
    x, t, dtype, reduction = _pair(probs, target, reduction, name="probs")
    w = _optional(weight, x.shape, "weight")
    check_probabilities(x, "probs")
    with np.errstate(all="ignore"):
        log_p = np.maximum(np.log(x), _LOG_CLAMP)
        log_1mp = np.maximum(np.log1p(-x), _LOG_CLAMP)
        elems = -(t * log_p + (1 - t) * log_1mp)
        # d/dp = (p - t) / (p (1 - p)), with PyTorch's floor on the denominator.
        grad = (x - t) / np.maximum((1 - x) * x, _BCE_EPSILON) if want_grad else None
        if w is not None:
            elems = elems * w
            grad = grad * w if want_grad else None
    return _finish(elems, grad, x, dtype, reduction, want_grad)


def binary_cross_entropy(probs, target, *, weight=None, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.binary_cross_entropy`."""
    return _bce(probs, target, weight, reduction, want_grad=False)


def binary_cross_entropy_with_grad(probs, target, *, weight=None, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.binary_cross_entropy_with_grad`."""
    return _bce(probs, target, weight, reduction, want_grad=True)


def _bce_logits(logits, target, weight, pos_weight, reduction, want_grad):
    x, t, dtype, reduction = _pair(logits, target, reduction, name="logits")
    w = _optional(weight, x.shape, "weight")
    pw = _optional(pos_weight, x.shape, "pos_weight")
    with np.errstate(all="ignore"):
        # -log sigmoid(x) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x); the
        # stable softplus makes both exact for any |x|, with no cancellation.
        pos = t if pw is None else pw * t
        elems = pos * stable_softplus(-x) + (1 - t) * stable_softplus(x)
        # d/dx = -pos sigmoid(-x) + (1 - t) sigmoid(x)
        grad = (1 - t) * stable_sigmoid(x) - pos * stable_sigmoid(-x) if want_grad else None
        if w is not None:
            elems = elems * w
            grad = grad * w if want_grad else None
    return _finish(elems, grad, x, dtype, reduction, want_grad)


def binary_cross_entropy_with_logits(logits, target, *, weight=None, pos_weight=None,
                                     reduction="mean"):
    """The NumPy implementation of :func:`fastloss.binary_cross_entropy_with_logits`."""
    return _bce_logits(logits, target, weight, pos_weight, reduction, want_grad=False)


def binary_cross_entropy_with_logits_with_grad(logits, target, *, weight=None,
                                               pos_weight=None, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.binary_cross_entropy_with_logits_with_grad`."""
    return _bce_logits(logits, target, weight, pos_weight, reduction, want_grad=True)


# -- Kullback-Leibler divergence -----------------------------------------------------------

def _kl_div(input, target, reduction, log_target, want_grad):
    log_target = check_bool(log_target, "log_target")
    x, t, dtype, reduction = _pair(input, target, reduction,
                                   allowed=("mean", "sum", "none", "batchmean"))
    # The terms have both signs and cancel in the sum, so float32 terms would put an
    # error of a float32 ulp per term into a sum that can be 1e-4 of their
    # magnitudes: _pair gives them in float64.
    with np.errstate(all="ignore"):
        if log_target:
            q = np.exp(t)
            elems = q * (t - x)             # q (log q - input)
            empty = t == -np.inf
        else:
            q = t
            elems = t * (np.log(t) - x)
            empty = t == 0
        # A class of target probability 0 contributes 0 (0 log 0 = 0), even against an
        # input of -inf; a NaN input still gives NaN.
        elems = np.where(empty & ~np.isnan(x), 0.0, elems)
        grad = _full(-q, x.shape) if want_grad else None  # d/d input of q (log q - input)
    return _finish(elems, grad, x, dtype, reduction, want_grad)


def kl_div(input, target, *, reduction="mean", log_target=False):
    """The NumPy implementation of :func:`fastloss.kl_div`."""
    return _kl_div(input, target, reduction, log_target, want_grad=False)


def kl_div_with_grad(input, target, *, reduction="mean", log_target=False):
    """The NumPy implementation of :func:`fastloss.kl_div_with_grad`."""
    return _kl_div(input, target, reduction, log_target, want_grad=True)


# -- regression losses ---------------------------------------------------------------------

def _mse(input, target, reduction, want_grad):
    x, t, dtype, reduction = _pair(input, target, reduction)
    with np.errstate(all="ignore"):
        diff = x - t
        elems = diff * diff
        grad = 2 * diff if want_grad else None
    return _finish(elems, grad, x, dtype, reduction, want_grad)


def mse_loss(input, target, *, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.mse_loss`."""
    return _mse(input, target, reduction, want_grad=False)


def mse_loss_with_grad(input, target, *, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.mse_loss_with_grad`."""
    return _mse(input, target, reduction, want_grad=True)


def _smooth_l1(input, target, beta, reduction, want_grad):
    beta = check_real(beta, "beta", low=0.0)
    x, t, dtype, reduction = _pair(input, target, reduction)
    with np.errstate(all="ignore"):
        diff = x - t
        abs_diff = np.abs(diff)
        if beta == 0:
            # beta = 0 is the L1 loss (PyTorch's special case).
            elems, grad = abs_diff, np.sign(diff)
        else:
            # Quadratic 0.5 d^2 / beta inside |d| < beta, linear |d| - beta / 2 outside;
            # the two pieces and their slopes meet at |d| = beta.
            inside = abs_diff < beta
            elems = np.where(inside, 0.5 * diff * diff / beta, abs_diff - 0.5 * beta)
            grad = np.where(inside, diff / beta, np.sign(diff))
    return _finish(elems, grad if want_grad else None, x, dtype, reduction, want_grad)


def smooth_l1_loss(input, target, *, beta=1.0, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.smooth_l1_loss`."""
    return _smooth_l1(input, target, beta, reduction, want_grad=False)


def smooth_l1_loss_with_grad(input, target, *, beta=1.0, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.smooth_l1_loss_with_grad`."""
    return _smooth_l1(input, target, beta, reduction, want_grad=True)


def _huber(input, target, delta, reduction, want_grad):
    delta = check_real(delta, "delta", low=0.0, low_open=True)
    x, t, dtype, reduction = _pair(input, target, reduction)
    with np.errstate(all="ignore"):
        diff = x - t
        abs_diff = np.abs(diff)
        # Quadratic 0.5 d^2 inside |d| < delta, linear delta (|d| - delta / 2) outside.
        inside = abs_diff < delta
        elems = np.where(inside, 0.5 * diff * diff, delta * (abs_diff - 0.5 * delta))
        grad = np.where(inside, diff, delta * np.sign(diff)) if want_grad else None
    return _finish(elems, grad, x, dtype, reduction, want_grad)


def huber_loss(input, target, *, delta=1.0, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.huber_loss`."""
    return _huber(input, target, delta, reduction, want_grad=False)


def huber_loss_with_grad(input, target, *, delta=1.0, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.huber_loss_with_grad`."""
    return _huber(input, target, delta, reduction, want_grad=True)


# -- multi-class hinge ---------------------------------------------------------------------

def _multi_margin(input, target, p, margin, weight, reduction, axis, want_grad):
    x, dtype, ax, t, w, p, margin, reduction = check_multi_margin_args(
        input, target, p, margin, weight, reduction, axis)
    n_classes = x.shape[ax]
    with np.errstate(all="ignore"):
        y = np.expand_dims(t, ax)
        # z_ij = margin - x_{i y_i} + x_ij: how far class j intrudes into the margin
        # of the target class; only positive values are violations.  np.maximum keeps
        # NaN, so a NaN in a row makes that row's loss NaN.
        z = margin - np.take_along_axis(x, y, axis=ax) + x
        hinge = np.maximum(z, 0)
        h = hinge if p == 1 else hinge * hinge
        np.put_along_axis(h, y, 0, axis=ax)     # the target is not its own rival
        # PyTorch multiplies each row by the weight of its target class, then / C.
        w_y = np.float64(1.0) if w is None else w[y]
        rows = w_y * np.sum(h, axis=ax, keepdims=True, dtype=np.float64) / n_classes
        n_rows = rows.size
        if reduction == "none":
            loss = finish_float(np.squeeze(rows, axis=ax), dtype)
        else:
            total = np.sum(rows, dtype=np.float64)
            loss = finish_float(np.asarray(total / n_rows if reduction == "mean" else total), dtype)
        if not want_grad:
            return loss
        # d h_ij / d x_ij = d h_ij / d z_ij: 1 where z > 0 for p = 1 (heaviside keeps
        # NaN), 2 z+ for p = 2.  x_{i y_i} enters every z_ij with the opposite sign.
        dh = np.heaviside(z, 0.0) if p == 1 else 2 * hinge
        np.put_along_axis(dh, y, 0, axis=ax)
        scale = 1.0 / n_rows if reduction == "mean" and n_rows else 1.0
        grad = (scale * w_y / n_classes) * dh
        np.put_along_axis(grad, y, -np.sum(grad, axis=ax, keepdims=True), axis=ax)
    return loss, finish_float(grad, dtype)


def multi_margin_loss(input, target, *, p=1, margin=1.0, weight=None, reduction="mean",
                      axis=-1):
    """The NumPy implementation of :func:`fastloss.multi_margin_loss`."""
    return _multi_margin(input, target, p, margin, weight, reduction, axis, want_grad=False)


def multi_margin_loss_with_grad(input, target, *, p=1, margin=1.0, weight=None,
                                reduction="mean", axis=-1):
    """The NumPy implementation of :func:`fastloss.multi_margin_loss_with_grad`."""
    return _multi_margin(input, target, p, margin, weight, reduction, axis, want_grad=True)
