"""Public softmax family: validate, allocate, reshape, dispatch.

Each function checks its arguments (dtype, axis, ``out``) *before* anything is
written, views the input as ``(outer, C, inner)`` around the class axis and hands the
views to the compiled kernel, or -- with the numpy backend -- calls its twin in
``fastloss.fallback``.  No math here.
"""
from __future__ import annotations

from typing import Literal, SupportsIndex, overload

import numpy as np

from fastloss import _runtime
from fastloss import fallback as _fallback
from fastloss._dispatch import with_fallback
from fastloss._layout import class_axis_layout, kernel_ready, lanes_first, output_view
from fastloss._loss_validation import check_logsumexp_args
from fastloss._typing import ArrayLike, Axes, FloatArray, Loss
from fastloss._validation import (
    as_float_array,
    check_out,
    class_axis_view,
    finish_float,
    normalize_axis,
)

__all__ = ["softmax", "log_softmax", "logsumexp", "softmax_backward", "log_softmax_backward"]


def _softmax_like(x, axis, out, log_mode):
    arr, result_dtype = as_float_array(x, "x")
    axes = normalize_axis(axis, arr.ndim)
    if out is not None:
        check_out(out, arr.shape, result_dtype)
    work, ax, restore = class_axis_layout(arr, axes)
    direct_out = out if restore is None else None
    result, out3 = output_view(direct_out, arr.dtype, work.shape, ax, work, (work,))
    x3, out3 = lanes_first(kernel_ready(class_axis_view(work, ax)), out3)
    # fresh: the kernel must not stream into memory the OS has just zeroed (see
    # fl_stream_output in src/csrc/kernels_all.h)
    _runtime.kernels().softmax(x3, out3, log_mode, _runtime.get_num_threads(),
                               result is not direct_out)
    if restore is not None:
        result = restore(result)
    return finish_float(result, result_dtype, out)


@with_fallback(_fallback.softmax)
def softmax(x: ArrayLike, axis: Axes = -1, *, out: FloatArray | None = None) -> FloatArray:
    """Softmax along ``axis``: ``exp(x - max) / sum(exp(x - max))``.

    Parameters
    ----------
    x : array_like
        Input data.
    axis : int, tuple of ints or None, optional
        Axis or axes over which the probabilities sum to 1 (``None``: the whole array).
        Default is the last axis.
    out : ndarray, optional
        A location into which the result is stored; it must have the shape of ``x`` and
        its result dtype, and may be ``x`` itself.

    Returns
    -------
    ndarray
        The probabilities, in the dtype of ``x`` (float64 for integer input).

    Raises
    ------
    TypeError
        ``x`` of complex, object or other non-real data; an axis that is not an int; an
        ``out`` that is not a NumPy array.
    ValueError
        An axis out of range or repeated (``numpy.exceptions.AxisError``); an ``out`` of
        the wrong shape or dtype, or read-only.
    """
    return _softmax_like(x, axis, out, False)


@with_fallback(_fallback.log_softmax)
def log_softmax(x: ArrayLike, axis: Axes = -1, *,
                out: FloatArray | None = None) -> FloatArray:
    """Log of the softmax along ``axis``: ``x - logsumexp(x)``.

    Parameters
    ----------
    x : array_like
        Input data.
    axis : int, tuple of ints or None, optional
        Axis or axes to normalize over (``None``: the whole array). Default -1.
    out : ndarray, optional
        A location into which the result is stored; it must have the shape of ``x`` and
        its result dtype, and may be ``x`` itself.

    Returns
    -------
    ndarray
        The log-probabilities, in the dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` of complex, object or other non-real data; an axis that is not an int; an
        ``out`` that is not a NumPy array.
    ValueError
        An axis out of range or repeated (``numpy.exceptions.AxisError``); an ``out`` of
        the wrong shape or dtype, or read-only.
    """
    return _softmax_like(x, axis, out, True)


@overload
def logsumexp(x: ArrayLike, axis: Axes = ..., *, b: ArrayLike | None = ...,
              keepdims: bool = ..., return_sign: Literal[False] = ...,
              out: FloatArray | None = ...) -> Loss: ...
@overload
def logsumexp(x: ArrayLike, axis: Axes = ..., *, b: ArrayLike | None = ...,
              keepdims: bool = ..., return_sign: Literal[True],
              out: FloatArray | None = ...) -> tuple[Loss, Loss]: ...
@overload
def logsumexp(x: ArrayLike, axis: Axes = ..., *, b: ArrayLike | None = ...,
              keepdims: bool = ..., return_sign: bool = ...,
              out: FloatArray | None = ...) -> Loss | tuple[Loss, Loss]: ...


@with_fallback(_fallback.logsumexp)
def logsumexp(x: ArrayLike, axis: Axes = -1, *, b: ArrayLike | None = None,
              keepdims: bool = False, return_sign: bool = False,
              out: FloatArray | None = None) -> Loss | tuple[Loss, Loss]:
    """Stable ``log(sum(b * exp(x)))`` along ``axis``.

    ``b`` and ``return_sign`` mean what they mean in ``scipy.special.logsumexp``; the
    default axis differs (SciPy reduces the whole array).

    Parameters
    ----------
    x : array_like
        Input data.
    axis : int, tuple of ints or None, optional
        Axis or axes to reduce (``None``: the whole array). Default -1.
    b : array_like, optional
        Weights of the terms ``exp(x)``, broadcast against ``x`` (either may grow, as in
        SciPy; axes refer to the broadcast shape).  They may be negative; a zero weight
        removes its term whatever ``x`` holds there, +inf and NaN included.  Default:
        all ones.  The result dtype is that of ``x``: ``b`` does not promote it.
    keepdims : bool, optional
        Keep the reduced axes as axes of length 1.
    return_sign : bool, optional
        Also return the sign of the sum.  Without it a negative sum gives NaN.
    out : ndarray, optional
        A location into which the result is stored; it must have the shape of the
        result and the result dtype of ``x``.  With ``return_sign`` it receives the
        log-magnitude, and the sign is a new array.

    Returns
    -------
    lse : ndarray or scalar
        ``log|sum(b * exp(x))|``, in the dtype of ``x`` (float64 for integer input); a
        NumPy scalar when it is 0-d.  An empty axis, or a sum that is exactly zero,
        gives -inf (the log of 0); any +inf term gives +inf (NaN if +inf terms have
        weights of both signs); NaN gives NaN.
    sign : ndarray or scalar
        Only with ``return_sign``: the sign of the sum, +1.0, -1.0, 0.0 (a zero or empty
        sum) or NaN, of the shape and dtype of ``lse``.

    Raises
    ------
    TypeError
        ``x`` or ``b`` of complex, object or other non-real data; an axis that is not an
        int; ``keepdims`` or ``return_sign`` not a bool; an ``out`` that is not a NumPy
        array.
    ValueError
        ``b`` that does not broadcast against ``x``; an axis out of range or repeated
        (``numpy.exceptions.AxisError``); an ``out`` of the wrong shape or dtype, or
        read-only.

    Notes
    -----
    The largest term is taken out of the sum, ``log(s) = m + log(w) + log1p(r / w)``
    with ``w`` the weight of the terms at the maximum ``m`` and ``r`` the rest, so that
    terms far below the maximum are not lost to rounding (the compiled kernels, which
    compute the unweighted ``logsumexp``, do the same with ``w = 1``); calls with ``b``
    or ``return_sign`` run the NumPy implementation in ``fastloss.fallback``.
    """
    arr, bb, axes, out_shape, result_dtype = check_logsumexp_args(
        x, axis, b, keepdims, return_sign, out)
    if bb is not None or return_sign:
        # Odd inputs the kernels do not cover are routed to the twin.
        return _fallback.logsumexp(x, axis, b=b, keepdims=keepdims, return_sign=return_sign,
                                   out=out)
    work, ax, _ = class_axis_layout(arr, axes)
    x3 = kernel_ready(class_axis_view(work, ax))
    result = np.empty((x3.shape[0], x3.shape[2]), dtype=arr.dtype)
    x3, out2 = lanes_first(x3, result)
    _runtime.kernels().logsumexp(x3, out2, _runtime.get_num_threads())
    return finish_float(result.reshape(out_shape), result_dtype, out)


def _backward(grad, y, axis, out, log_mode, name):
    g, result_dtype = as_float_array(grad, "grad")
    y_arr, y_dtype = as_float_array(y, "y")
    if g.shape != y_arr.shape:
        raise ValueError(f"grad has shape {g.shape} but y has shape {y_arr.shape}; they must match")
    if g.dtype != y_arr.dtype:
        common = np.promote_types(g.dtype, y_arr.dtype)
        g, y_arr = g.astype(common), y_arr.astype(common)
        result_dtype = np.promote_types(result_dtype, y_dtype)
    axes = normalize_axis(axis, g.ndim)
    if len(axes) != 1:
        raise ValueError(f"{name} takes a single int axis; got {axis!r}")
    if out is not None:
        check_out(out, g.shape, result_dtype)
    ax = axes[0]
    result, out3 = output_view(out, g.dtype, g.shape, ax, g, (g, y_arr))
    g3 = kernel_ready(class_axis_view(g, ax))
    y3 = kernel_ready(class_axis_view(y_arr, ax))
    _runtime.kernels().softmax_backward(g3, y3, out3, log_mode, _runtime.get_num_threads())
    return finish_float(result, result_dtype, out)


@with_fallback(_fallback.softmax_backward)
def softmax_backward(grad: ArrayLike, y: ArrayLike, axis: SupportsIndex = -1, *,
                     out: FloatArray | None = None) -> FloatArray:
    """Vector-Jacobian product of softmax, given its output ``y = softmax(x)``.

    Parameters
    ----------
    grad : array_like
        Gradient of the objective with respect to ``y``.
    y : array_like
        The softmax output, same shape as ``grad``.
    axis : int, optional
        The axis softmax was taken over. Default -1.
    out : ndarray, optional
        A location into which the result is stored; may be ``grad`` or ``y``.

    Returns
    -------
    ndarray
        ``y * (grad - sum(grad * y, axis))``, the gradient with respect to ``x``.

    Raises
    ------
    TypeError
        ``grad`` or ``y`` of complex, object or other non-real data; an axis that is not
        a single int; an ``out`` that is not a NumPy array.
    ValueError
        ``grad`` and ``y`` of different shapes; an axis out of range; an ``out`` of the
        wrong shape or dtype, or read-only.
    """
    return _backward(grad, y, axis, out, False, "softmax_backward")


@with_fallback(_fallback.log_softmax_backward)
def log_softmax_backward(grad: ArrayLike, y: ArrayLike, axis: SupportsIndex = -1, *,
                         out: FloatArray | None = None) -> FloatArray:
    """Vector-Jacobian product of log-softmax, given its output ``y = log_softmax(x)``.

    Parameters
    ----------
    grad : array_like
        Gradient of the objective with respect to ``y``.
    y : array_like
        The log-softmax output, same shape as ``grad``.
    axis : int, optional
        The axis log-softmax was taken over. Default -1.
    out : ndarray, optional
        A location into which the result is stored; may be ``grad`` or ``y``.

    Returns
    -------
    ndarray
        ``grad - exp(y) * sum(grad, axis)``, the gradient with respect to ``x``.

    Raises
    ------
    TypeError
        ``grad`` or ``y`` of complex, object or other non-real data; an axis that is not
        a single int; an ``out`` that is not a NumPy array.
    ValueError
        ``grad`` and ``y`` of different shapes; an axis out of range; an ``out`` of the
        wrong shape or dtype, or read-only.
    """
    return _backward(grad, y, axis, out, True, "log_softmax_backward")
