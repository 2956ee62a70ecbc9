"""Cross-entropy and negative log-likelihood in plain NumPy (reference and fallback).

Notation, per row i (a position of the target) with the classes c along ``axis``:

    d_ic     = x_ic - max_c x_ic          shifted logits, <= 0: exp never overflows
    log s_i  = log sum_c exp(d_ic)        >= 0, accumulated in float64
    log p_ic = d_ic - log s_i             log-softmax
    p_ic     = exp(d_ic) / s_i            softmax

Class-index targets y_i, class weights w (all 1 by default, W = sum_c w_c), label
smoothing eps over C classes -- PyTorch's definition:

    l_i        = (1 - eps) w_{y_i} (-log p_{i y_i}) + eps / C * sum_c w_c (-log p_ic)
    dl_i/dx_ij = p_ij ((1 - eps) w_{y_i} + eps / C * W) - (1 - eps) w_{y_i} [j = y_i]
                 - eps / C * w_j

``"mean"`` divides sum_i s_i l_i by sum_i s_i w_{y_i} (s: sample weights, 1 by default)
over the rows whose target is not ``ignore_index``.

Class-probability targets q (smoothed to (1 - eps) q + eps / C):

    l_i        = -sum_c w_c q_ic log p_ic           with 0 log 0 = 0
    dl_i/dx_ij = p_ij sum_c w_c q_ic - w_j q_ij

``"mean"`` divides sum_i s_i l_i by sum_i s_i (the number of rows by default).

All arrays keep the layout of the logits: the class axis stays where it is and row
quantities keep it as an axis of length 1, so they broadcast against the logits and
``out`` can have any strides.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastloss._loss_validation import (
    check_cross_entropy_args,
    check_grad_output,
    check_nll_args,
    intp_ignore_index,
)
from fastloss._validation import check_out, finish_float, work_buffer

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
]


class _Problem(NamedTuple):
    """Validated arguments of one cross-entropy call."""

    x: np.ndarray               # logits in the computation dtype
    dtype: np.dtype             # result dtype
    axis: int                   # the class axis, non-negative
    kind: str                   # "index" or "probs"
    target: np.ndarray          # intp labels (row shape) or probabilities (x's shape)
    weight: np.ndarray | None   # float64, shape (C,)
    sample_weight: np.ndarray | None  # float64, row shape
    ignore_index: int
    reduction: str
    eps: float                  # label smoothing

    @property
    def row_shape(self):
        return self.x.shape[: self.axis] + self.x.shape[self.axis + 1:]

    def along_classes(self, v):
        """Reshape a length-C vector so that it broadcasts along the class axis."""
        return v.reshape((-1,) + (1,) * (self.x.ndim - 1 - self.axis))

    def keep(self, rows):
        """Give a row-shaped array the class axis back, with length 1."""
        return np.expand_dims(rows, self.axis)


def _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction, label_smoothing):
    return _Problem(*check_cross_entropy_args(logits, target, axis, weight, sample_weight,
                                              ignore_index, reduction, label_smoothing))


def _gather(a, y, axis):
    """The entries of ``a`` at the class indices ``y`` along ``axis``.

    An empty class axis is allowed when every row is ignored: ``y`` then holds only
    the placeholder 0 and the (unused) result is zeros.
    """
    if a.shape[axis] == 0:
        return np.zeros(y.shape)
    return np.take_along_axis(a, y, axis=axis)


def _scatter(a, y, values, axis):
    """Write ``values`` into ``a`` at the class indices ``y`` (see ``_gather``)."""
    if a.shape[axis]:
        np.put_along_axis(a, y, values, axis=axis)


def _reduce(rows, row_weight, reduction, dtype, axis):
    """Reduce per-row losses (float64, class axis kept) to the requested result."""
    if reduction == "none":
        return finish_float(np.squeeze(rows, axis=axis), dtype)
    total = np.sum(rows, dtype=np.float64)
    if reduction == "mean":
        total = total / np.sum(row_weight, dtype=np.float64)  # 0 / 0 = NaN: nothing to average
    return finish_float(np.asarray(total), dtype)


def _grad_scale(pb, grad_output, denominator):
    """d reduced loss / d l_i, per row (class axis kept), before sample weights."""
    if pb.reduction == "none":
        return pb.keep(grad_output)
    if pb.reduction == "mean":
        return grad_output / denominator
    return grad_output


def _cross_entropy(pb, grad_output=None, out=None):
    """The loss and, if ``grad_output`` is given, the gradient ``grad_output * dloss/dx``.

    ``out`` must have been checked already.  Returns ``(loss, grad or None)``.
    """
    x, ax = pb.x, pb.axis
    n_classes = x.shape[ax]
    eps_c = pb.eps / n_classes if n_classes else 0.0
    want_grad = grad_output is not None
    # The shifted logits go straight into the gradient's buffer (which may be the
    # logits themselves): the logits are not read again.
    work = work_buffer(out, x.dtype, x.shape) if want_grad else np.empty(x.shape, x.dtype)
    sw = 1.0 if pb.sample_weight is None else pb.keep(pb.sample_weight)
    with np.errstate(all="ignore"):
        m = np.max(x, axis=ax, keepdims=True, initial=-np.inf)
        # The loss reads the shifted logits in float64 (taken before `work`, which may
        # be the logits, is written): in float32, x - m overflows for logits of both
        # signs near the float max, where the loss itself may still fit.
        d_loss = None if x.dtype == np.float64 else np.subtract(x, m, dtype=np.float64)
        np.subtract(x, m, out=work)
        d = work
        if d_loss is None:
            d_loss = d
        s = np.sum(np.exp(d), axis=ax, keepdims=True, dtype=np.float64)
        log_s = np.log(s)

        if pb.kind == "index":
            active = pb.keep(pb.target != intp_ignore_index(pb.ignore_index))
            y = np.where(active, pb.keep(pb.target), 0)       # ignored rows read class 0
            w_y = np.ones(y.shape) if pb.weight is None else pb.weight[y]
            w_y = np.where(active, w_y, 0.0)                   # ignored rows weigh 0
            d_y = _gather(d_loss, y, ax)
            rows = (1 - pb.eps) * w_y * (log_s - d_y)          # (1 - eps) w_y (-log p_y)
            total_w = n_classes if pb.weight is None else pb.weight.sum()
            if pb.eps:
                # sum_c w_c (-log p_c) = W log s - sum_c w_c d_c.  A class of weight 0
                # adds nothing, even where its logit is -inf (0 * inf would be NaN).
                if pb.weight is None:
                    wd = d_loss
                else:
                    wb = pb.along_classes(pb.weight)
                    wd = np.where(wb == 0, 0.0, d_loss * wb)
                smooth = total_w * log_s - np.sum(wd, axis=ax, keepdims=True, dtype=np.float64)
                rows = rows + eps_c * smooth
            rows = np.where(active, rows, 0.0)  # 0 even where an ignored row holds NaN
            row_weight = w_y * sw
        else:
            q = pb.target
            if pb.eps:
                q = q * (1 - pb.eps) + eps_c
            wq = q if pb.weight is None else q * pb.along_classes(pb.weight)
            # Convention 0 log 0 = 0: a class of target mass 0 adds nothing, even when
            # its logit is -inf (a masked class).
            terms = np.where(wq == 0, 0.0, wq * (d_loss - log_s))
            rows = -np.sum(terms, axis=ax, keepdims=True, dtype=np.float64)
            row_weight = np.broadcast_to(sw, rows.shape)

        loss = _reduce(rows * sw, row_weight, pb.reduction, pb.dtype, ax)
        if not want_grad:
            return loss, None

        # coef_i = d (reduced, scaled loss) / d l_i, times the sample weight.
        denominator = np.sum(row_weight, dtype=np.float64) if pb.reduction == "mean" else None
        coef = _grad_scale(pb, grad_output, denominator) * sw
        p = np.exp(work, out=work)
        np.divide(p, s, out=p, casting="same_kind")
        if pb.kind == "index":
            a = coef * ((1 - pb.eps) * w_y + eps_c * total_w)  # factor of p_ij
            b = coef * (1 - pb.eps) * w_y                       # taken off at j = y_i
            np.multiply(p, a, out=p, casting="same_kind")
            # The target entry p_y a - b is recomputed in float64 from d_y: p_y is close
            # to 1 for a well-classified row and the difference would lose digits.
            p_y = np.exp(d_y) / s
            _scatter(p, y, (p_y * a - b).astype(p.dtype), ax)
            if pb.eps:
                wb = 1.0 if pb.weight is None else pb.along_classes(pb.weight)
                np.subtract(p, coef * eps_c * wb, out=p, casting="same_kind")
            np.copyto(p, 0, where=~active)  # ignored rows: zero gradient, NaN or not
        else:
            total_wq = np.sum(wq, axis=ax, keepdims=True, dtype=np.float64)
            np.multiply(p, coef * total_wq, out=p, casting="same_kind")
            np.subtract(p, coef * wq, out=p, casting="same_kind")
    return loss, finish_float(p, pb.dtype, out)


def cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None,
                  ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """The NumPy implementation of :func:`fastloss.cross_entropy`."""
    pb = _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                  label_smoothing)
    return _cross_entropy(pb)[0]


def cross_entropy_backward(logits, target, grad_output=1.0, *, axis=-1, weight=None,
                           sample_weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, out=None):
    """The NumPy implementation of :func:`fastloss.cross_entropy_backward`."""
    pb = _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                  label_smoothing)
    g = check_grad_output(grad_output, pb.reduction, pb.row_shape)
    if out is not None:
        check_out(out, pb.x.shape, pb.dtype)
    return _cross_entropy(pb, g, out)[1]


def cross_entropy_with_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                            ignore_index=-100, reduction="mean", label_smoothing=0.0,
                            out=None):
    """The NumPy implementation of :func:`fastloss.cross_entropy_with_grad`."""
    pb = _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                  label_smoothing)
    if out is not None:
        check_out(out, pb.x.shape, pb.dtype)
    # With "none" the gradient is that of the summed loss: grad_output 1 for every row.
    g = np.ones(pb.row_shape) if pb.reduction == "none" else np.float64(1.0)
    return _cross_entropy(pb, g, out)


# -- nll_loss ---------------------------------------------------------------------------

def _nll(log_probs, target, axis, weight, ignore_index, reduction, want_grad):
    x, dtype, ax, t, w, ignore_index, reduction = check_nll_args(
        log_probs, target, axis, weight, ignore_index, reduction)
    with np.errstate(all="ignore"):
        active = np.expand_dims(t != intp_ignore_index(ignore_index), ax)
        y = np.where(active, np.expand_dims(t, ax), 0)  # ignored rows read class 0
        w_y = np.ones(y.shape) if w is None else w[y]
        w_y = np.where(active, w_y, 0.0)
        x_y = _gather(x, y, ax).astype(np.float64)
        # l_i = -w_{y_i} log p_{i y_i}; 0 for ignored rows whatever their input.
        rows = np.where(active, -w_y * x_y, 0.0)
        loss = _reduce(rows, w_y, reduction, dtype, ax)
        if not want_grad:
            return loss
        # dl_i / dx_ij = -w_{y_i} [j = y_i]: one nonzero entry per row.
        scale = np.sum(w_y, dtype=np.float64) if reduction == "mean" else 1.0
        grad = np.zeros(x.shape, x.dtype)
        _scatter(grad, y, np.where(active, -w_y / scale, 0.0).astype(x.dtype), ax)
    return loss, finish_float(grad, dtype)


def nll_loss(log_probs, target, *, axis=-1, weight=None, ignore_index=-100, reduction="mean"):
    """The NumPy implementation of :func:`fastloss.nll_loss`."""
    return _nll(log_probs, target, axis, weight, ignore_index, reduction, want_grad=False)


def nll_loss_with_grad(log_probs, target, *, axis=-1, weight=None, ignore_index=-100,
                       reduction="mean"):
    """The NumPy implementation of :func:`fastloss.nll_loss_with_grad`."""
    return _nll(log_probs, target, axis, weight, ignore_index, reduction, want_grad=True)
