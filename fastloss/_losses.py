"""Public pointwise and margin losses: validate, allocate, flatten, dispatch.

Each loss ``f(input, target, ...)`` has ``f_with_grad(...) -> (loss, d loss / d input)``,
computed by one fused pass of a kernel (src/csrc/elementwise_impl.h) that writes the
gradient while it sums the losses.  The wrappers check every argument *before*
anything runs (the same checks, in the same order, as the twins in
``fastloss.fallback.losses``, so both backends raise alike), lay the arrays out flat
(``fastloss._flat``) and call the kernel, or -- with the numpy backend -- the twin.
No math here beyond the reduction's divisor.

Dtypes.  The computation runs in the input's dtype (float16 in float32), or in
float64 when the target is a float64 array and the input float32 (NumPy's promotion,
as in the fallback).  Integer and bool targets are converted to the input's dtype.
``weight`` and ``pos_weight`` are converted to the computation's dtype (PyTorch
requires them to have the input's dtype).  Results have the input's dtype.

Reductions.  ``"mean"`` divides the sum by the number of elements (rows for the
margin loss), ``"batchmean"`` (kl_div) by ``input.shape[0]``, and the gradient is
scaled alike; with ``"none"`` the gradient is that of the summed loss.  Sums are
accumulated in float64; 0-d results are NumPy scalars.  kl_div forms its terms
``q (log q - input)`` in float64 also for float32 data: they cancel in the sum.
"""
from __future__ import annotations

from typing import SupportsIndex

import numpy as np

from fastloss import _runtime
from fastloss import fallback as _fallback
from fastloss._dispatch import with_fallback
from fastloss._flat import as_flat, bcast_factor, flat_order
from fastloss._layout import aligned_array, kernel_ready
from fastloss._loss_validation import (
    check_bool,
    check_broadcastable,
    check_multi_margin_args,
    check_probabilities,
    check_real,
)
from fastloss._typing import ArrayLike, KLReduction, Loss, LossAndGrad, Reduction
from fastloss._validation import (
    REDUCTIONS,
    as_float_array,
    check_reduction,
    class_axis_view,
    finish_float,
    finish_scalar,
)

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

# The kernels' operation codes (src/csrc/fl_kernels.h, FL_LOSS_*).
MSE, SMOOTH_L1, HUBER, BCE, BCE_LOGITS, KL_DIV, KL_DIV_LOG = range(7)

KL_REDUCTIONS = ("mean", "sum", "none", "batchmean")


# -- plumbing ------------------------------------------------------------------------------

def _compute_dtype(x, t_raw, t):
    """The computation's dtype: the input's, or float64 for a float64 target."""
    if np.asarray(t_raw).dtype.kind == "f" and t.dtype == np.float64:
        return np.promote_types(x.dtype, np.float64)
    return x.dtype


def _pair(input: ArrayLike, target: ArrayLike, reduction: str,
          allowed: tuple[str, ...] = REDUCTIONS, name: str = "input"
          ) -> tuple[np.ndarray, np.ndarray, np.dtype, np.dtype, str]:
    """Validated input and target: ``(x, t, compute_dtype, result_dtype, reduction)``;
    ``name`` is the input's parameter name, for the error messages.

    Annotated so that ``_run(op, *_pair(...), want_grad=...)`` type-checks: the tuple
    fills exactly the five positions before ``want_grad``."""
    x, dtype = as_float_array(input, name)
    t, _ = as_float_array(target, "target")
    check_broadcastable(t, x.shape, "target")
    reduction = check_reduction(reduction, allowed)
    return x, t, _compute_dtype(x, target, t), dtype, reduction


def _optional(arr, shape, name):
    if arr is None:
        return None
    a, _ = as_float_array(arr, name)
    check_broadcastable(a, shape, name)
    return a


def _divisor(x, reduction):
    if reduction == "mean":
        return x.size
    if reduction == "batchmean":
        return x.shape[0] if x.ndim else 1     # PyTorch divides by input.size(0)
    return 1


def _run(op, x, t, compute, dtype, reduction, want_grad, param=0.0, weight=None,
         pos_weight=None, probabilities=False):
    """Flatten, call the fused kernel, reduce.  Returns the loss or (loss, grad).

    ``probabilities``: first check that every input is in [0, 1] (binary cross-entropy).
    """
    order = flat_order(x, t if t.shape == x.shape else None)
    xf = as_flat(x, order, compute)
    # The range check is one read-only pass of a kernel (NumPy's comparisons would
    # cost more than the loss); on failure the shared check builds the message,
    # naming the first bad value and its position.
    if probabilities and _runtime.kernels().first_outside(
            xf, 0.0, 1.0, _runtime.get_num_threads()) >= 0:
        check_probabilities(x, "probs")
    tf = as_flat(np.broadcast_to(t, x.shape), order, compute)
    factors = []
    for f in (weight, pos_weight):
        factors.extend(bcast_factor(f, x.shape, order, compute) if f is not None
                       else (None, 1, 1))
    n = _divisor(x, reduction)
    grad_scale = 1.0 / n if n else 1.0
    loss_out = np.empty(x.shape, dtype=compute, order=order) if reduction == "none" else None
    grad = np.empty(x.shape, dtype=compute, order=order) if want_grad else None
    total = _runtime.kernels().pointwise_loss(
        xf, tf,
        None if loss_out is None else loss_out.reshape(-1, order=order),
        None if grad is None else grad.reshape(-1, order=order),
        op, param, grad_scale, *factors, _runtime.get_num_threads())
    if reduction == "none":
        loss = finish_float(loss_out, dtype)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = finish_scalar(np.float64(total) / n, dtype)
    if not want_grad:
        return loss
    return loss, finish_float(grad, dtype)


# -- binary cross-entropy ------------------------------------------------------------------

def _bce(probs, target, weight, reduction, want_grad):
    x, t, compute, dtype, reduction = _pair(probs, target, reduction, name="probs")
    w = _optional(weight, x.shape, "weight")
    return _run(BCE, x, t, compute, dtype, reduction, want_grad, weight=w,
                probabilities=True)


@with_fallback(_fallback.binary_cross_entropy)
def binary_cross_entropy(probs: ArrayLike, target: ArrayLike, *,
                         weight: ArrayLike | None = None,
                         reduction: Reduction = "mean") -> Loss:
    """Binary cross-entropy of probabilities, as PyTorch's (logs clamped at -100).

    Parameters
    ----------
    probs : array_like
        Predicted probabilities in [0, 1] (NaN passes through; anything else outside
        the interval raises ``ValueError``).
    target : array_like
        Target probabilities, broadcastable to ``probs``.
    weight : array_like, optional
        Elementwise rescaling weight, broadcastable to ``probs``.
    reduction : {"mean", "sum", "none"}, optional
        How per-element losses are reduced. Default "mean".

    Returns
    -------
    scalar or ndarray
        The loss, in the dtype of ``probs``.

    Raises
    ------
    TypeError
        ``probs`` or ``target`` of complex, object or other non-real data.
    ValueError
        A ``probs`` value outside [0, 1] (the message names it and its position); a
        ``target`` or ``weight`` that does not broadcast to ``probs``' shape; an unknown
        reduction.
    """
    return _bce(probs, target, weight, reduction, want_grad=False)


@with_fallback(_fallback.binary_cross_entropy_with_grad)
def binary_cross_entropy_with_grad(probs: ArrayLike, target: ArrayLike, *,
                                   weight: ArrayLike | None = None,
                                   reduction: Reduction = "mean") -> LossAndGrad:
    """``binary_cross_entropy`` and its gradient with respect to ``probs``.

    Parameters
    ----------
    probs, target, weight, reduction
        As for :func:`binary_cross_entropy`.

    Returns
    -------
    loss : scalar or ndarray
        As ``binary_cross_entropy`` returns it.
    grad : ndarray
        The gradient d loss / d probs (of the summed loss for ``"none"``), PyTorch's formula
        ``(p - t) / max(p (1 - p), 1e-12)``.

    Raises
    ------
    TypeError, ValueError
        As for :func:`binary_cross_entropy`.
    """
    return _bce(probs, target, weight, reduction, want_grad=True)


def _bce_logits(logits, target, weight, pos_weight, reduction, want_grad):
    x, t, compute, dtype, reduction = _pair(logits, target, reduction, name="logits")
    w = _optional(weight, x.shape, "weight")
    pw = _optional(pos_weight, x.shape, "pos_weight")
    return _run(BCE_LOGITS, x, t, compute, dtype, reduction, want_grad, weight=w,
                pos_weight=pw)


@with_fallback(_fallback.binary_cross_entropy_with_logits)
def binary_cross_entropy_with_logits(logits: ArrayLike, target: ArrayLike, *,
                                     weight: ArrayLike | None = None,
                                     pos_weight: ArrayLike | None = None,
                                     reduction: Reduction = "mean") -> Loss:
    """Binary cross-entropy of ``sigmoid(logits)``, stable for any logit.

    Parameters
    ----------
    logits : array_like
        Unnormalized scores.
    target : array_like
        Target probabilities, broadcastable to ``logits``.
    weight : array_like, optional
        Elementwise rescaling weight, broadcastable to ``logits``.
    pos_weight : array_like, optional
        Weight of the positive term, broadcastable to ``logits`` (so a length-C vector
        applies along the last axis).
    reduction : {"mean", "sum", "none"}, optional
        How per-element losses are reduced. Default "mean".

    Returns
    -------
    scalar or ndarray
        The loss, in the dtype of ``logits``.

    Raises
    ------
    TypeError
        ``logits`` or ``target`` of complex, object or other non-real data.
    ValueError
        A ``target``, ``weight`` or ``pos_weight`` that does not broadcast to
        ``logits``' shape; an unknown reduction.
    """
    return _bce_logits(logits, target, weight, pos_weight, reduction, want_grad=False)


@with_fallback(_fallback.binary_cross_entropy_with_logits_with_grad)
def binary_cross_entropy_with_logits_with_grad(logits: ArrayLike, target: ArrayLike, *,
                                               weight: ArrayLike | None = None,
                                               pos_weight: ArrayLike | None = None,
                                               reduction: Reduction = "mean") -> LossAndGrad:
    """``binary_cross_entropy_with_logits`` and its gradient with respect to ``logits``.

    Parameters
    ----------
    logits, target, weight, pos_weight, reduction
        As for :func:`binary_cross_entropy_with_logits`.

    Returns
    -------
    loss : scalar or ndarray
        As ``binary_cross_entropy_with_logits`` returns it.
    grad : ndarray
        The gradient d loss / d logits (of the summed loss for ``"none"``).

    Raises
    ------
    TypeError, ValueError
        As for :func:`binary_cross_entropy_with_logits`.
    """
    return _bce_logits(logits, target, weight, pos_weight, reduction, want_grad=True)


# -- Kullback-Leibler divergence -----------------------------------------------------------

def _kl_div(input, target, reduction, log_target, want_grad):
    log_target = check_bool(log_target, "log_target")
    x, t, compute, dtype, reduction = _pair(input, target, reduction, KL_REDUCTIONS)
    return _run(KL_DIV_LOG if log_target else KL_DIV, x, t, compute, dtype, reduction,
                want_grad)


@with_fallback(_fallback.kl_div)
def kl_div(input: ArrayLike, target: ArrayLike, *, reduction: KLReduction = "mean",
           log_target: bool = False) -> Loss:
    """Kullback-Leibler divergence, as PyTorch's ``kl_div``.

    Parameters
    ----------
    input : array_like
        Log-probabilities.
    target : array_like
        Probabilities (log-probabilities if ``log_target``), broadcastable to ``input``.
    reduction : {"mean", "batchmean", "sum", "none"}, optional
        ``"mean"`` averages over all elements; ``"batchmean"`` divides the sum by
        ``input.shape[0]`` (the mathematically correct KL divergence). Default "mean".
    log_target : bool, optional
        Whether ``target`` holds log-probabilities. Default False.

    Returns
    -------
    scalar or ndarray
        The loss, in the dtype of ``input``.

    Raises
    ------
    TypeError
        ``input`` or ``target`` of complex, object or other non-real data; a
        ``log_target`` that is not a bool.
    ValueError
        A ``target`` that does not broadcast to ``input``'s shape; an unknown reduction.
    """
    return _kl_div(input, target, reduction, log_target, want_grad=False)


@with_fallback(_fallback.kl_div_with_grad)
def kl_div_with_grad(input: ArrayLike, target: ArrayLike, *,
                     reduction: KLReduction = "mean",
                     log_target: bool = False) -> LossAndGrad:
    """``kl_div`` and its gradient with respect to ``input``.

    Parameters
    ----------
    input, target, reduction, log_target
        As for :func:`kl_div`.

    Returns
    -------
    loss : scalar or ndarray
        As ``kl_div`` returns it.
    grad : ndarray
        The gradient d loss / d input: ``-target`` (``-exp(target)`` with
        ``log_target``), scaled by the reduction.

    Raises
    ------
    TypeError, ValueError
        As for :func:`kl_div`.
    """
    return _kl_div(input, target, reduction, log_target, want_grad=True)


# -- regression losses ---------------------------------------------------------------------

@with_fallback(_fallback.mse_loss)
def mse_loss(input: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean") -> Loss:
    """Mean squared error ``(input - target) ** 2``, as PyTorch's ``mse_loss``.

    Parameters
    ----------
    input : array_like
        Predictions.
    target : array_like
        Targets, broadcastable to ``input``.
    reduction : {"mean", "sum", "none"}, optional
        How per-element losses are reduced. Default "mean".

    Returns
    -------
    scalar or ndarray
        The loss, in the dtype of ``input``.

    Raises
    ------
    TypeError
        ``input`` or ``target`` of complex, object or other non-real data.
    ValueError
        A ``target`` that does not broadcast to ``input``'s shape; an unknown reduction.
    """
    return _run(MSE, *_pair(input, target, reduction), want_grad=False)


@with_fallback(_fallback.mse_loss_with_grad)
def mse_loss_with_grad(input: ArrayLike, target: ArrayLike, *,
                       reduction: Reduction = "mean") -> LossAndGrad:
    """``mse_loss`` and its gradient ``2 (input - target)`` (scaled by the reduction).

    Parameters
    ----------
    input, target, reduction
        As for :func:`mse_loss`.

    Returns
    -------
    loss : scalar or ndarray
        As ``mse_loss`` returns it.
    grad : ndarray
        The gradient d loss / d input.

    Raises
    ------
    TypeError, ValueError
        As for :func:`mse_loss`.
    """
    return _run(MSE, *_pair(input, target, reduction), want_grad=True)


def _smooth_l1(input, target, beta, reduction, want_grad):
    beta = check_real(beta, "beta", low=0.0)
    return _run(SMOOTH_L1, *_pair(input, target, reduction), want_grad, param=beta)


@with_fallback(_fallback.smooth_l1_loss)
def smooth_l1_loss(input: ArrayLike, target: ArrayLike, *, beta: float = 1.0,
                   reduction: Reduction = "mean") -> Loss:
    """Smooth L1 loss, as PyTorch's ``smooth_l1_loss``.

    Parameters
    ----------
    input : array_like
        Predictions.
    target : array_like
        Targets, broadcastable to ``input``.
    beta : float, optional
        Width of the quadratic zone (>= 0; 0 gives the L1 loss). Default 1.
    reduction : {"mean", "sum", "none"}, optional
        How per-element losses are reduced. Default "mean".

    Returns
    -------
    scalar or ndarray
        The loss, in the dtype of ``input``.

    Raises
    ------
    TypeError
        ``input`` or ``target`` of complex, object or other non-real data; a ``beta``
        that is not a real number.
    ValueError
        A ``target`` that does not broadcast to ``input``'s shape; an unknown reduction;
        a negative or NaN ``beta``.
    """
    return _smooth_l1(input, target, beta, reduction, want_grad=False)


@with_fallback(_fallback.smooth_l1_loss_with_grad)
def smooth_l1_loss_with_grad(input: ArrayLike, target: ArrayLike, *, beta: float = 1.0,
                             reduction: Reduction = "mean") -> LossAndGrad:
    """``smooth_l1_loss`` and its gradient with respect to ``input``.

    Parameters
    ----------
    input, target, beta, reduction
        As for :func:`smooth_l1_loss`.

    Returns
    -------
    loss : scalar or ndarray
        As ``smooth_l1_loss`` returns it.
    grad : ndarray
        The gradient d loss / d input: ``d / beta`` inside the quadratic zone,
        ``sign(d)`` outside.

    Raises
    ------
    TypeError, ValueError
        As for :func:`smooth_l1_loss`.
    """
    return _smooth_l1(input, target, beta, reduction, want_grad=True)


def _huber(input, target, delta, reduction, want_grad):
    delta = check_real(delta, "delta", low=0.0, low_open=True)
    return _run(HUBER, *_pair(input, target, reduction), want_grad, param=delta)


@with_fallback(_fallback.huber_loss)
def huber_loss(input: ArrayLike, target: ArrayLike, *, delta: float = 1.0,
               reduction: Reduction = "mean") -> Loss:
    """Huber loss, as PyTorch's ``huber_loss`` (``delta * smooth_l1_loss(beta=delta)``).

    Parameters
    ----------
    input : array_like
        Predictions.
    target : array_like
        Targets, broadcastable to ``input``.
    delta : float, optional
        Where the loss turns from quadratic to linear (> 0). Default 1.
    reduction : {"mean", "sum", "none"}, optional
        How per-element losses are reduced. Default "mean".

    Returns
    -------
    scalar or ndarray
        The loss, in the dtype of ``input``.

    Raises
    ------
    TypeError
        ``input`` or ``target`` of complex, object or other non-real data; a ``delta``
        that is not a real number.
    ValueError
        A ``target`` that does not broadcast to ``input``'s shape; an unknown reduction;
        a ``delta`` that is not positive.
    """
    return _huber(input, target, delta, reduction, want_grad=False)


@with_fallback(_fallback.huber_loss_with_grad)
def huber_loss_with_grad(input: ArrayLike, target: ArrayLike, *, delta: float = 1.0,
                         reduction: Reduction = "mean") -> LossAndGrad:
    """``huber_loss`` and its gradient with respect to ``input``.

    Parameters
    ----------
    input, target, delta, reduction
        As for :func:`huber_loss`.

    Returns
    -------
    loss : scalar or ndarray
        As ``huber_loss`` returns it.
    grad : ndarray
        The gradient d loss / d input: ``d`` inside ``|d| < delta``,
        ``delta * sign(d)`` outside.

    Raises
    ------
    TypeError, ValueError
        As for :func:`huber_loss`.
    """
    return _huber(input, target, delta, reduction, want_grad=True)


# -- multi-class hinge ---------------------------------------------------------------------

def _multi_margin(input, target, p, margin, weight, reduction, axis, want_grad):
    x, dtype, ax, t, w, p, margin, reduction = check_multi_margin_args(
        input, target, p, margin, weight, reduction, axis)
    row_shape = x.shape[:ax] + x.shape[ax + 1:]

    x3 = kernel_ready(class_axis_view(x, ax))
    n_rows = x3.shape[0] * x3.shape[2]
    lanes_target = aligned_array(t, np.intp).reshape(-1)
    loss_out = np.empty(n_rows, dtype=x.dtype) if reduction == "none" else None
    grad = grad3 = None
    if want_grad:
        # The gradient in the input's memory order when that order views as
        # (outer, C, inner) (e.g. Fortran (N, C)), so the kernel reads and writes alike.
        grad = np.empty_like(x)
        grad3 = class_axis_view(grad, ax)
        if not np.shares_memory(grad3, grad) and grad.size:
            grad = np.empty(x.shape, dtype=x.dtype)
            grad3 = class_axis_view(grad, ax)
    scale = 1.0 / n_rows if reduction == "mean" and n_rows else 1.0
    total = _runtime.kernels().multi_margin(
        x3, lanes_target, loss_out, grad3, int(p), margin,
        None if w is None else aligned_array(w), scale, _runtime.get_num_threads())
    if reduction == "none":
        loss = finish_float(loss_out.reshape(row_shape), dtype)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.float64(total) / n_rows if reduction == "mean" else np.float64(total)
        loss = finish_scalar(value, dtype)
    if not want_grad:
        return loss
    return loss, finish_float(grad, dtype)


@with_fallback(_fallback.multi_margin_loss)
def multi_margin_loss(input: ArrayLike, target: ArrayLike, *, p: int = 1,
                      margin: float = 1.0, weight: ArrayLike | None = None,
                      reduction: Reduction = "mean", axis: SupportsIndex = -1) -> Loss:
    """Multi-class hinge loss, as PyTorch's ``multi_margin_loss``.

    Per row: ``sum_{j != y} w_y * max(0, margin - x_y + x_j) ** p / C``.

    Parameters
    ----------
    input : array_like
        Scores, with the classes along ``axis``.
    target : array_like of int
        Class indices in ``[0, C)``, the shape of ``input`` without ``axis``.
    p : {1, 2}, optional
        Power of the hinge. Default 1.
    margin : float, optional
        Required margin. Default 1.
    weight : array_like, optional
        Per-class weight, length C (applied by the target's class).
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` averages over rows. Default "mean".
    axis : int, optional
        The class axis. Default -1.

    Returns
    -------
    scalar or ndarray
        The loss, in the dtype of ``input``.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)``; the message names the value and its position.
    TypeError
        ``input`` of complex, object or other non-real data; a ``target`` that is not an
        integer array; a ``margin`` that is not a real number.
    ValueError
        A ``p`` other than 1 or 2; a ``target`` or ``weight`` of the wrong shape; an
        unknown reduction.
    """
    return _multi_margin(input, target, p, margin, weight, reduction, axis, want_grad=False)


@with_fallback(_fallback.multi_margin_loss_with_grad)
def multi_margin_loss_with_grad(input: ArrayLike, target: ArrayLike, *, p: int = 1,
                                margin: float = 1.0, weight: ArrayLike | None = None,
                                reduction: Reduction = "mean",
                                axis: SupportsIndex = -1) -> LossAndGrad:
    """``multi_margin_loss`` and its gradient with respect to ``input``.

    Parameters
    ----------
    input, target, p, margin, weight, reduction, axis
        As for :func:`multi_margin_loss`.

    Returns
    -------
    loss : scalar or ndarray
        As ``multi_margin_loss`` returns it.
    grad : ndarray
        The gradient d loss / d input (of the summed loss for ``"none"``).

    Raises
    ------
    TypeError, ValueError, IndexError
        As for :func:`multi_margin_loss`.
    """
    return _multi_margin(input, target, p, margin, weight, reduction, axis, want_grad=True)
