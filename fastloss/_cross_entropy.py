"""Public cross-entropy family: validate, allocate, reshape, dispatch.

Each function checks every argument with ``fastloss._loss_validation`` (the checks the
fallback uses, in the same order, so both backends raise the same errors) *before*
anything is computed or written -- a class index outside ``[0, C)`` raises
``IndexError`` even with ``out=logits``.  Then the logits are viewed as ``(outer, C,
inner)`` around the class axis and every per-row array (targets, sample weights,
upstream gradients, per-row losses) as ``(outer, inner)``, and the views go to the
fused kernel (src/csrc/cross_entropy_impl.h), which returns the float64 sum of the
weighted row losses.  The wrapper's own arithmetic is per row only: the ``"mean"``
denominator (needed before the gradient is written) and the final division.

With the numpy backend, or for inputs the kernels do not cover (an empty array), each
function calls its twin in ``fastloss.fallback``.
"""
from __future__ import annotations

import math
from typing import SupportsIndex

import numpy as np

from fastloss import _runtime
from fastloss import fallback as _fallback
from fastloss._dispatch import with_fallback
from fastloss._loss_validation import (
    check_cross_entropy_args,
    check_grad_output,
    check_nll_args,
    intp_ignore_index,
)
from fastloss._layout import aligned_array, kernel_ready, lanes_first, output_view
from fastloss._typing import ArrayLike, FloatArray, Loss, LossAndGrad, Reduction
from fastloss._validation import (
    check_out,
    class_axis_view,
    finish_float,
    finish_scalar,
)

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
]

_INT64_DTYPE = np.dtype(np.int64)
_INT64_LO, _INT64_HI = -2**63, 2**63 - 1


class _Problem:
    """The validated arguments of one call, plus the kernel's views of them."""

    def __init__(self, x, dtype, axis, kind, target, weight, sample_weight, ignore_index,
                 reduction, eps):
        self.x, self.dtype, self.axis = x, dtype, axis
        self.kind, self.target = kind, target
        self.weight, self.sample_weight = weight, sample_weight
        self.ignore_index, self.reduction, self.eps = ignore_index, reduction, eps
        self.row_shape = x.shape[:axis] + x.shape[axis + 1:]
        self.lanes_shape = (math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:]))
        self.kernel_ignore = intp_ignore_index(ignore_index)

    def kernel_covers(self):
        return self.x.size > 0

    def lanes(self, arr):
        """A per-row array (of the row shape) as the kernel's (outer, inner) view."""
        if arr is None:
            return None
        return kernel_ready(arr.reshape(self.lanes_shape))

    def active(self):
        """Rows whose class index is not ignore_index (index targets)."""
        return self.target != self.kernel_ignore

    def active_count(self):
        """How many rows have a class index that is not ignore_index."""
        count = _count_labels(self.target, self.x.shape[self.axis], self.kernel_ignore)
        return np.count_nonzero(self.active()) if count is None else count

    def denominator(self):
        """The ``"mean"`` divisor: summed weights of the rows that count (PyTorch's)."""
        sw = self.sample_weight
        if self.kind == "probs":
            return float(math.prod(self.row_shape)) if sw is None \
                else float(np.sum(sw, dtype=np.float64))
        if self.weight is None and sw is None:
            return float(self.active_count())
        active = self.active()
        row_w = np.ones(active.shape) if self.weight is None \
            else self.weight[np.where(active, self.target, 0)]
        row_w = np.where(active, row_w, 0.0)
        if sw is not None:
            row_w = row_w * sw
        return float(np.sum(row_w, dtype=np.float64))


def _count_labels(target, n_classes, ignore_index):
    """count_labels (one C pass) on int64 labels: how many are not ignore_index, -1 if
    one is outside [0, n_classes) and not ignore_index, None for labels it does not
    read (another dtype, not contiguous, an ignore_index beyond int64)."""
    if (target.dtype is not _INT64_DTYPE or not target.flags.c_contiguous
            or not target.flags.aligned
            or not _INT64_LO <= ignore_index <= _INT64_HI):
        return None
    return _runtime.kernels().count_labels(target.reshape(-1), n_classes, ignore_index)


def label_screen(target, n_classes, ignore_index):
    """The label check's fast path (see check_index_values): True when count_labels
    finds every label in [0, n_classes) or equal to ignore_index.  For labels it does
    not read it returns False, and NumPy checks them."""
    count = _count_labels(target, n_classes, ignore_index)
    return count is not None and count >= 0


def _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction,
             label_smoothing):
    return _Problem(*check_cross_entropy_args(logits, target, axis, weight, sample_weight,
                                              ignore_index, reduction, label_smoothing,
                                              label_screen=label_screen))


def _ratio(total, denominator):
    """total / denominator in float64; 0 / 0 is NaN (nothing to average), as in NumPy."""
    if denominator != 0:   # Python's float division is the IEEE double one, without errstate
        return float(total) / float(denominator)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(total) / np.float64(denominator)


def _fused(pb, grad_output=None, out=None, want_loss=True):
    """Run the fused kernel.  ``grad_output``: None (no gradient), a 0-d float64 (one
    upstream gradient) or a row-shaped float64 array ("none").  Returns ``(loss, grad)``."""
    x, ax = pb.x, pb.axis
    n_classes = x.shape[ax]
    want_grad = grad_output is not None
    mean_den = pb.denominator() if pb.reduction == "mean" else None

    x3 = kernel_ready(class_axis_view(x, ax))
    q3 = t2 = None
    if pb.kind == "probs":
        q = pb.target.astype(x.dtype, copy=False)
        q3 = kernel_ready(class_axis_view(q, ax))
    else:
        t2 = pb.lanes(pb.target.astype(np.int64, copy=False))
    sw2 = pb.lanes(pb.sample_weight)
    weight = None if pb.weight is None else aligned_array(pb.weight, np.float64)
    weight_sum = float(n_classes) if weight is None else float(weight.sum())

    grad_scale2, grad_scale0 = None, 1.0
    if want_grad:
        if pb.reduction == "none" and np.ndim(grad_output):
            grad_scale2 = pb.lanes(np.asarray(grad_output, dtype=np.float64))
        elif pb.reduction == "mean":
            grad_scale0 = float(_ratio(grad_output, mean_den))
        else:   # "sum", or "none" with one upstream gradient for every row
            grad_scale0 = float(grad_output)
        # The kernel writes exp(x - max) into the gradient before it reads the
        # probabilities a second time: an out that overlaps them gets its own buffer.
        direct = None if q3 is not None and out is not None and np.may_share_memory(out, q) \
            else out
        result, g3 = output_view(direct, x.dtype, x.shape, ax, x, (x,))
    else:
        result = g3 = None
    loss2 = None
    if want_loss and pb.reduction == "none":
        loss_rows = np.empty(pb.row_shape, dtype=x.dtype)
        loss2 = pb.lanes(loss_rows)

    x3, q3, g3, t2, sw2, grad_scale2, loss2 = lanes_first(
        x3, q3, g3, t2, sw2, grad_scale2, loss2)

    total = _runtime.kernels().cross_entropy(
        x3, q3, t2, pb.kernel_ignore, sw2, weight, weight_sum, pb.eps, grad_scale2,
        grad_scale0, g3, loss2, want_loss, _runtime.get_num_threads())

    loss = None
    if want_loss:
        if pb.reduction == "none":
            loss = finish_float(loss_rows, pb.dtype)
        elif pb.reduction == "mean":
            loss = finish_scalar(_ratio(total, mean_den), pb.dtype)
        else:
            loss = finish_scalar(total, pb.dtype)
    grad = finish_float(result, pb.dtype, out) if want_grad else None
    return loss, grad


@with_fallback(_fallback.cross_entropy)
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
                  ignore_index: int = -100, reduction: Reduction = "mean",
                  label_smoothing: float = 0.0) -> Loss:
    """Cross-entropy between softmax(logits) and a target, as PyTorch's.

    One pass over the logits (max, log-sum-exp and the loss term while each row is in
    cache); no array of the logits' size is written. Sums accumulate in float64.

    Parameters
    ----------
    logits : array_like
        Unnormalized scores; ``-inf`` marks a masked class.
    target : array_like
        Integer class indices (the logits' shape without ``axis``) or floating class
        probabilities (the logits' shape; soft labels, with 0 log 0 = 0).
    axis : int, optional
        The class axis (negative counts from the end). Default -1.
    weight : array_like, optional
        Per-class weight, of length C.
    sample_weight : array_like, optional
        Per-row weight, of the shape of the loss with ``reduction="none"`` (the target's
        row shape). It multiplies each row's loss and, for ``"mean"``, its share of the
        denominator: ``sum(s_i w_i l_i) / sum(s_i w_i)``.
    ignore_index : int, optional
        A class-index target value that contributes no loss and no gradient and is left
        out of the ``"mean"`` denominator. Default -100.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides the weighted sum by the summed weights of the non-ignored rows
        (class weight of the target times sample weight; NaN when they sum to 0, e.g.
        when every target is ignored, as in PyTorch). Default "mean".
    label_smoothing : float, optional
        In [0, 1]: the target mixes ``1 - label_smoothing`` of itself with the uniform
        distribution over the C classes (PyTorch semantics, with both target kinds and
        with ``weight``). Default 0.

    Returns
    -------
    scalar or ndarray
        A NumPy scalar of the logits' dtype for ``"mean"``/``"sum"``, an array of the
        target's row shape for ``"none"``.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``; the message names
        the value and its position. Nothing is written.
    ValueError
        A target, weight or sample_weight of the wrong shape; an unknown reduction;
        label_smoothing outside [0, 1].
    TypeError
        A target that is neither integer nor floating; complex or object input.

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], dtype=np.float32)
    >>> float(fastloss.cross_entropy(logits, np.array([0, 2])))  # doctest: +ELLIPSIS
    0.1...
    """
    pb = _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                  label_smoothing)
    if not pb.kernel_covers():
        return _fallback.cross_entropy(
            logits, target, axis=axis, weight=weight, sample_weight=sample_weight,
            ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    return _fused(pb)[0]


@with_fallback(_fallback.cross_entropy_backward)
def cross_entropy_backward(logits: ArrayLike, target: ArrayLike,
                           grad_output: ArrayLike = 1.0, *, axis: SupportsIndex = -1,
                           weight: ArrayLike | None = None,
                           sample_weight: ArrayLike | None = None, ignore_index: int = -100,
                           reduction: Reduction = "mean", label_smoothing: float = 0.0,
                           out: FloatArray | None = None) -> FloatArray:
    """Gradient of ``cross_entropy`` with respect to the logits.

    Parameters
    ----------
    logits, target
        As for :func:`cross_entropy`.
    grad_output : float or array_like, optional
        The upstream gradient: a scalar for ``"mean"``/``"sum"``, an array of the loss's
        shape (or broadcastable to it) for ``"none"``. Default 1.
    axis, weight, sample_weight, ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.
    out : ndarray, optional
        A location into which the result is stored; may be ``logits`` itself.

    Returns
    -------
    ndarray
        ``grad_output * d loss / d logits``, of the logits' shape and dtype.

    Raises
    ------
    IndexError, ValueError, TypeError
        As for :func:`cross_entropy`; nothing is written.
    ValueError
        An ``out`` of the wrong shape or dtype, or read-only.
    TypeError
        An ``out`` that is not a NumPy array.
    """
    pb = _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                  label_smoothing)
    g = check_grad_output(grad_output, pb.reduction, pb.row_shape)
    if out is not None:
        check_out(out, pb.x.shape, pb.dtype)
    if not pb.kernel_covers():
        return _fallback.cross_entropy_backward(
            logits, target, grad_output, axis=axis, weight=weight,
            sample_weight=sample_weight, ignore_index=ignore_index, reduction=reduction,
            label_smoothing=label_smoothing, out=out)
    return _fused(pb, g, out, want_loss=False)[1]


@with_fallback(_fallback.cross_entropy_with_grad)
def cross_entropy_with_grad(logits: ArrayLike, target: ArrayLike, *,
                            axis: SupportsIndex = -1, weight: ArrayLike | None = None,
                            sample_weight: ArrayLike | None = None,
                            ignore_index: int = -100, reduction: Reduction = "mean",
                            label_smoothing: float = 0.0,
                            out: FloatArray | None = None) -> LossAndGrad:
    """Cross-entropy and its gradient from one fused pass.

    Per row the logits are read from memory once: max, log-sum-exp, the loss term and
    the gradient ``(softmax - target) * scale`` are produced while the row is in cache.

    Parameters
    ----------
    logits, target, axis, weight, sample_weight, ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.
    out : ndarray, optional
        A location into which the gradient is stored; ``out=logits`` writes it over the
        logits, so training needs no second buffer of their size.

    Returns
    -------
    loss : scalar or ndarray
        As :func:`cross_entropy` returns it.
    grad : ndarray
        The gradient d loss / d logits (of the summed loss when ``reduction="none"``).

    Raises
    ------
    IndexError, ValueError, TypeError
        As for :func:`cross_entropy`; nothing is written.
    ValueError
        An ``out`` of the wrong shape or dtype, or read-only.
    TypeError
        An ``out`` that is not a NumPy array.
    """
    pb = _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                  label_smoothing)
    if out is not None:
        check_out(out, pb.x.shape, pb.dtype)
    if not pb.kernel_covers():
        return _fallback.cross_entropy_with_grad(
            logits, target, axis=axis, weight=weight, sample_weight=sample_weight,
            ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
            out=out)
    # With "none" the gradient is that of the summed loss: upstream gradient 1 per row.
    return _fused(pb, np.float64(1.0), out)


# -- nll_loss ---------------------------------------------------------------------------

def _nll(log_probs, target, axis, weight, ignore_index, reduction, want_grad):
    x, dtype, ax, t, w, ignore_index, reduction = check_nll_args(
        log_probs, target, axis, weight, ignore_index, reduction, label_screen=label_screen)
    pb = _Problem(x, dtype, ax, "index", t, w, None, ignore_index, reduction, 0.0)
    if not pb.kernel_covers():
        f = _fallback.nll_loss_with_grad if want_grad else _fallback.nll_loss
        return f(x, t, axis=ax, weight=w, ignore_index=ignore_index, reduction=reduction)
    mean_den = pb.denominator() if reduction == "mean" else None
    x3 = kernel_ready(class_axis_view(x, ax))
    t2 = pb.lanes(t.astype(np.int64, copy=False))
    weight = None if w is None else aligned_array(w, np.float64)
    grad = g3 = loss2 = None
    if want_grad:
        # Zeros from calloc (np.zeros, not np.zeros_like, which writes them): pages
        # nobody writes cost nothing, so the kernel writes only the one nonzero entry
        # per row, as the fallback's np.zeros + put does.
        order = "F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C"
        grad = np.zeros(x.shape, x.dtype, order=order)
        g3 = class_axis_view(grad, ax)
    if reduction == "none":
        loss_rows = np.empty(pb.row_shape, dtype=x.dtype)
        loss2 = pb.lanes(loss_rows)
    grad_scale0 = float(_ratio(1.0, mean_den)) if reduction == "mean" else 1.0
    total = _runtime.kernels().nll_loss(x3, t2, pb.kernel_ignore, weight, grad_scale0, g3, True,
                                        loss2, _runtime.get_num_threads())
    if reduction == "none":
        loss = finish_float(loss_rows, dtype)
    elif reduction == "mean":
        loss = finish_scalar(_ratio(total, mean_den), dtype)
    else:
        loss = finish_scalar(total, dtype)
    return (loss, finish_float(grad, dtype)) if want_grad else loss


@with_fallback(_fallback.nll_loss)
def nll_loss(log_probs: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
             weight: ArrayLike | None = None, ignore_index: int = -100,
             reduction: Reduction = "mean") -> Loss:
    """Negative log-likelihood of class indices, as PyTorch's ``nll_loss``.

    Parameters
    ----------
    log_probs : array_like
        Log-probabilities (e.g. from ``log_softmax``).
    target : array_like of int
        Class indices, the shape of ``log_probs`` without ``axis``.
    axis : int, optional
        The class axis. Default -1.
    weight : array_like, optional
        Per-class weight, length C.
    ignore_index : int, optional
        Target value that contributes no loss and is left out of the mean. Default -100.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides by the summed class weights of the non-ignored targets.

    Returns
    -------
    scalar or ndarray
        A NumPy scalar of the input's dtype, or the per-row losses for ``"none"``.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``; the message names
        the value and its position.
    TypeError
        ``log_probs`` of complex, object or other non-real data; a ``target`` that is
        not an integer array; an ``ignore_index`` that is not an int.
    ValueError
        A ``target`` or ``weight`` of the wrong shape; an unknown reduction.
    """
    return _nll(log_probs, target, axis, weight, ignore_index, reduction, want_grad=False)


@with_fallback(_fallback.nll_loss_with_grad)
def nll_loss_with_grad(log_probs: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                       weight: ArrayLike | None = None, ignore_index: int = -100,
                       reduction: Reduction = "mean") -> LossAndGrad:
    """``nll_loss`` and its gradient with respect to ``log_probs``.

    Parameters
    ----------
    log_probs, target, axis, weight, ignore_index, reduction
        As for :func:`nll_loss`.

    Returns
    -------
    loss : scalar or ndarray
        As ``nll_loss`` returns it.
    grad : ndarray
        The gradient d loss / d log_probs (of the summed loss when ``reduction="none"``).

    Raises
    ------
    TypeError, ValueError, IndexError
        As for :func:`nll_loss`.
    """
    return _nll(log_probs, target, axis, weight, ignore_index, reduction, want_grad=True)
