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
    check_bool,
    check_class_axis,
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
        s = np.sum(np.exp(buf), axis=axes, keepdims=True, dtype=np.float64)
        # log p = (x - max) - log(sum(exp(x - max))); log(s) >= 0 is computed in float64.
        np.subtract(buf, np.log(s), out=buf, casting="same_kind")
    return finish_float(buf, res_dtype, out)


def logsumexp(x, axis=-1, *, keepdims=False, out=None):
    """The NumPy implementation of :func:`fastloss.logsumexp`."""
    arr, res_dtype = as_float_array(x, "x")
    axes = normalize_axis(axis, arr.ndim)
    keepdims = check_bool(keepdims, "keepdims")
    kept_shape = tuple(1 if i in axes else n for i, n in enumerate(arr.shape))
    shape = kept_shape if keepdims else tuple(n for i, n in enumerate(arr.shape) if i not in axes)
    if out is not None:
        check_out(out, shape, res_dtype)
    with np.errstate(all="ignore"):
        m = np.max(arr, axis=axes, keepdims=True, initial=-np.inf)
        # An infinite maximum cannot be subtracted (inf - inf is NaN).  Shifting by 0
        # instead gives the right limits: +inf when any entry is +inf, -inf when all
        # entries are -inf (or the axis is empty).
        m = np.where(np.isinf(m), 0, m)
        s = np.sum(np.exp(arr - m), axis=axes, keepdims=True, dtype=np.float64)
        result = np.log(s) + m
    return finish_float(result.reshape(shape), res_dtype, out)


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
