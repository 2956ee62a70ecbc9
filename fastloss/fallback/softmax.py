"""Softmax, log-softmax and logsumexp in plain NumPy (the reference for the kernels).

Every function subtracts the maximum along the reduced axes before exponentiating.
The results do not change under that shift, and with it the largest term is
exp(0) = 1: nothing overflows (not for 1e30, not for float32 max), and the sum is at
least 1, so its logarithm is finite.  Elementwise work runs in the computation dtype
(float32 or float64); sums of float32 data are accumulated in float64.
"""
from __future__ import annotations

import numpy as np

from fastloss._loss_validation import (
    check_class_axis,
    check_logsumexp_args,
    check_same_shape,
    common_float_dtype,
)
from fastloss._validation import (
    as_float_array,
    check_out,
    finish_float,
    normalize_axis,
    work_buffer,
)

__all__ = ["softmax", "log_softmax", "logsumexp", "softmax_backward", "log_softmax_backward"]


def _subtract_max(x, axes, buf):
    """Write ``x - max(x)`` along ``axes`` into ``buf`` (every entry ends up <= 0).

    A row that holds NaN, or +inf, or is all -inf gives NaN, as in PyTorch and SciPy.
    """
    # ``initial`` makes the maximum of an empty axis -inf instead of an error.
    m = np.max(x, axis=axes, keepdims=True, initial=-np.inf)
    np.subtract(x, m, out=buf)


def softmax(x, axis=-1, *, out=None):
    """The NumPy implementation of :func:`fastloss.softmax`."""
    arr, res_dtype = as_float_array(x, "x")
    axes = normalize_axis(axis, arr.ndim)
    if out is not None:
        check_out(out, arr.shape, res_dtype)
    buf = work_buffer(out, arr.dtype, arr.shape)
    with np.errstate(all="ignore"):
        _subtract_max(arr, axes, buf)
        np.exp(buf, out=buf)
        # Divide by the float64 sum directly (one rounding), not by a rounded copy of it.
        np.divide(buf, np.sum(buf, axis=axes, keepdims=True, dtype=np.float64),
                  out=buf, casting="same_kind")
    return finish_float(buf, res_dtype, out)


def log_softmax(x, axis=-1, *, out=None):
    """The NumPy implementation of :func:`fastloss.log_softmax`."""
    arr, res_dtype = as_float_array(x, "x")
    axes = normalize_axis(axis, arr.ndim)
    if out is not None:
        check_out(out, arr.shape, res_dtype)
    buf = work_buffer(out, arr.dtype, arr.shape)
    with np.errstate(all="ignore"):
        _subtract_max(arr, axes, buf)
        # x - max is exactly 0 at the maxima and nowhere else (subnormals make a
        # difference of distinct floats nonzero).  Their exp(0) = 1 terms are counted,
        # not summed: log(sum) = log(count) + log1p(rest / count), so terms far below
        # the maximum keep their digits (log(1 + 1e-18) would round to 0).
        at_max = buf == 0
        count = np.sum(at_max, axis=axes, keepdims=True, dtype=np.float64)
        e = np.asarray(np.exp(buf))   # asarray: a 0-d input gives a NumPy scalar
        e[at_max] = 0
        rest = np.sum(e, axis=axes, keepdims=True, dtype=np.float64)
        log_s = np.log(count) + np.log1p(rest / count)
        # log p = (x - max) - log(sum(exp(x - max))); log_s >= 0 is computed in float64.
        np.subtract(buf, log_s, out=buf, casting="same_kind")
    return finish_float(buf, res_dtype, out)


def _weighted_lse(arr, b, axes):
    """``(log|s|, sign(s))`` of ``s = sum(b * exp(x))`` along ``axes`` (``b`` None: all
    ones), float64, with the reduced axes kept.

    The maximum ``m`` of the entries with nonzero weight is taken out: the terms at
    ``m`` (any number of ties) add up to ``w = sum(b at m)`` exactly, since exp(0) = 1,
    and the rest to ``r = sum(b * exp(x - m))``, so ``s = exp(m) * w * (1 + r / w)`` and
    ``log|s| = m + log|w| + log1p(r / w)``; for ``1 + r / w < 0`` the magnitude is
    ``-(1 + r / w) = 1 + (-r / w - 2)``, again through log1p.  Terms far below the
    maximum keep their digits this way (log(1 + 1e-18) would round to 0).  When the
    weights at ``m`` cancel (``w == 0``) ``s = exp(m) * r``.
    """
    if b is not None:
        # The terms are float64 products anyway: exponentiate in float64 too.  A zero
        # weight removes its term, whatever x holds there (+inf or NaN too).
        arr = np.where(b == 0, -np.inf, arr.astype(np.float64, copy=False))
    m = np.max(arr, axis=axes, keepdims=True, initial=-np.inf)
    finite_m = np.isfinite(m)
    # A row's maximum is -inf when all its terms are masked (or it is empty), +inf when
    # it holds +inf, NaN when it holds NaN; those rows are settled below.  Shifting
    # them by 0 keeps inf - inf out of the arithmetic.
    shift = np.where(finite_m, m, np.array(0, arr.dtype))
    at_max = arr == m
    e = np.asarray(np.exp(arr - shift))   # without b in x's computation dtype (float32 stays)
    if b is None:
        w = np.sum(at_max, axis=axes, keepdims=True, dtype=np.float64)
    else:
        w = np.sum(np.where(at_max, b, 0.0), axis=axes, keepdims=True)
        e = np.asarray(b * e)          # float64; a new array, never a view of b
    # Zeroed after weighting, so that an infinite weight at the maximum (in w) gives
    # no inf * 0 here.
    e[at_max] = 0
    r = np.sum(e, axis=axes, keepdims=True, dtype=np.float64)
    t = r / np.where(w == 0, 1.0, w)
    below = t < -1
    sign = np.sign(w) * np.sign(1 + t)
    lse = m + np.log(np.abs(w)) + np.log1p(np.where(below, -t - 2, t))
    # The weights at the maximum cancel: what is left is the rest of the sum.
    cancel = w == 0
    lse = np.where(cancel, m + np.log(np.abs(r)), lse)
    sign = np.where(cancel, np.sign(r), sign)
    # Rows without a finite maximum.  +inf: the +inf terms decide, and they disagree
    # (inf - inf) when their weights have both signs.  -inf: an empty sum, log 0.
    pos_inf = m == np.inf
    if pos_inf.any():
        wb = 1.0 if b is None else b
        has_pos = np.any(at_max & (wb > 0), axis=axes, keepdims=True)
        has_neg = np.any(at_max & (wb < 0), axis=axes, keepdims=True)
        has_nan = np.any(at_max & np.isnan(wb), axis=axes, keepdims=True)
        inf_sign = np.where(has_nan | (has_pos & has_neg), np.nan, np.where(has_pos, 1.0, -1.0))
        lse = np.where(pos_inf, np.where(np.isnan(inf_sign), np.nan, np.inf), lse)
        sign = np.where(pos_inf, inf_sign, sign)
    lse = np.where(m == -np.inf, -np.inf, lse)
    sign = np.where(m == -np.inf, 0.0, sign)
    return lse, sign


def logsumexp(x, axis=-1, *, b=None, keepdims=False, return_sign=False, out=None):
    """The NumPy implementation of :func:`fastloss.logsumexp`."""
    arr, bb, axes, shape, res_dtype = check_logsumexp_args(x, axis, b, keepdims, return_sign, out)
    with np.errstate(all="ignore"):
        lse, sign = _weighted_lse(arr, bb, axes)
        if not return_sign:
            # The log of a negative sum is not real.
            lse = np.where(sign < 0, np.nan, lse)
    result = finish_float(np.asarray(lse).reshape(shape), res_dtype, out)
    if not return_sign:
        return result
    return result, finish_float(np.asarray(sign).reshape(shape), res_dtype)


def _backward_args(grad, y, axis, out):
    g, g_dtype = as_float_array(grad, "grad")
    yy, y_dtype = as_float_array(y, "y")
    check_same_shape(g, yy, "grad", "y")
    compute, res_dtype = common_float_dtype(g_dtype, y_dtype)
    ax = check_class_axis(axis, g.ndim)
    if out is not None:
        check_out(out, g.shape, res_dtype)
    return g, yy, ax, compute, res_dtype


def softmax_backward(grad, y, axis=-1, *, out=None):
    """The NumPy implementation of :func:`fastloss.softmax_backward`."""
    g, yy, ax, compute, res_dtype = _backward_args(grad, y, axis, out)
    with np.errstate(all="ignore"):
        # d y_i / d x_j = y_i (delta_ij - y_j), so grad_x = y * (grad - <grad, y>).
        dot = np.sum(g * yy, axis=ax, keepdims=True, dtype=np.float64)
        # The difference goes to a new array first: ``out`` may be ``y``, still needed.
        diff = np.subtract(g, dot, out=np.empty(g.shape, compute), casting="same_kind")
        buf = work_buffer(out, compute, g.shape)
        np.multiply(diff, yy, out=buf, casting="same_kind")
    return finish_float(buf, res_dtype, out)


def log_softmax_backward(grad, y, axis=-1, *, out=None):
    """The NumPy implementation of :func:`fastloss.log_softmax_backward`."""
    g, yy, ax, compute, res_dtype = _backward_args(grad, y, axis, out)
    with np.errstate(all="ignore"):
        # d y_i / d x_j = delta_ij - softmax_j, so grad_x = grad - softmax * sum(grad).
        total = np.sum(g, axis=ax, keepdims=True, dtype=np.float64)
        scaled = np.multiply(np.exp(yy), total, out=np.empty(g.shape, compute), casting="same_kind")
        buf = work_buffer(out, compute, g.shape)
        np.subtract(g, scaled, out=buf, casting="same_kind")
    return finish_float(buf, res_dtype, out)
