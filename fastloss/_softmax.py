"""Public softmax family: validate, allocate, reshape, dispatch.

Each function checks its arguments (dtype, axis, ``out``) *before* anything is
written, views the input as ``(outer, C, inner)`` around the class axis and hands the
views to the compiled kernel, or -- with the numpy backend -- calls its twin in
``fastloss.fallback``.  No math here.
"""
from __future__ import annotations

import numpy as np

from fastloss import _runtime
from fastloss._dispatch import with_fallback
from fastloss import fallback as _fallback
from fastloss._loss_validation import check_bool
from fastloss._validation import (
    as_float_array,
    check_out,
    class_axis_view,
    finish_float,
    move_axes_last,
    normalize_axis,
)

__all__ = ["softmax", "log_softmax", "logsumexp", "softmax_backward", "log_softmax_backward"]


def _is_kernel_ready(view):
    """The kernels need aligned data whose strides are whole elements."""
    flags = view.flags
    return flags.aligned and (flags.c_contiguous   # the common case, without the loop
                              or all(s % view.itemsize == 0 for s in view.strides))


def _kernel_ready(view):
    """``view``, or an aligned C-ordered copy where the kernels could not read it
    (``np.ascontiguousarray`` would keep an unaligned contiguous array as it is)."""
    return view if _is_kernel_ready(view) else view.copy()


def _lanes_first(view):
    """Prefer the lane direction with the smaller stride as ``inner``.

    A Fortran-ordered (N, C) array seen as (N, C, 1) has its rows 1 element apart;
    as (1, C, N) the kernel walks the contiguous direction in its vector loops.
    """
    if view.shape[2] == 1 and abs(view.strides[0]) < abs(view.strides[1]):
        return view.transpose(2, 1, 0)
    return view


def _class_axis_layout(arr, axis):
    """Reduce ``axis`` (normalized tuple) to one class axis: ``(work, ax, restore)``."""
    if len(axis) == 1:
        return arr, axis[0], None
    work, restore = move_axes_last(arr, axis)
    return work, work.ndim - 1, restore


def _same_layout(a, b):
    """Whether a and b are the same elements in the same order (``out=x``)."""
    return a is b or (a.strides == b.strides
                      and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _output_view(out, compute_dtype, shape, ax, like, inputs=()):
    """A writable (outer, C, inner) view into ``out``, or a fresh array if it can't be.

    Returns ``(result, view)``: the kernel writes ``view``; ``result`` is what holds
    the values afterwards (``out`` itself when the view writes through to it).  The
    kernels read each element before writing the same element, so ``out`` may *be*
    an input; an ``out`` that only partly overlaps an input, or that the kernels cannot
    write (unaligned, or strides that are not whole elements), gets a fresh buffer.
    """
    if (out is not None and out.dtype == compute_dtype and out.shape == shape
            and all(_same_layout(out, a) or not np.may_share_memory(out, a) for a in inputs)):
        view = class_axis_view(out, ax)
        if np.may_share_memory(view, out) and _is_kernel_ready(view):
            return out, view
    # Same memory order as the input when that order can be viewed as (outer, C,
    # inner) (e.g. Fortran (N, C)), so the kernel reads and writes alike; else C order.
    result = np.empty_like(like, dtype=compute_dtype)
    view = class_axis_view(result, ax)
    if not np.may_share_memory(view, result):
        result = np.empty(shape, dtype=compute_dtype)
        view = class_axis_view(result, ax)
    return result, view


def _softmax_like(x, axis, out, log_mode):
    arr, result_dtype = as_float_array(x, "x")
    axes = normalize_axis(axis, arr.ndim)
    if out is not None:
        check_out(out, arr.shape, result_dtype)
    work, ax, restore = _class_axis_layout(arr, axes)
    direct_out = out if restore is None else None
    result, out3 = _output_view(direct_out, arr.dtype, work.shape, ax, work, (work,))
    x3 = _kernel_ready(class_axis_view(work, ax))
    if x3.shape[2] == 1 and abs(x3.strides[0]) < abs(x3.strides[1]):
        x3, out3 = x3.transpose(2, 1, 0), out3.transpose(2, 1, 0)
    # fresh: the kernel must not stream into memory the OS has just zeroed (see
    # fl_stream_output in src/csrc/kernels_all.h)
    _runtime.kernels().softmax(x3, out3, log_mode, _runtime.get_num_threads(),
                               result is not direct_out)
    if restore is not None:
        result = restore(result)
    return finish_float(result, result_dtype, out)


@with_fallback(_fallback.softmax)
def softmax(x, axis=-1, *, out=None):
    return _softmax_like(x, axis, out, False)


@with_fallback(_fallback.log_softmax)
def log_softmax(x, axis=-1, *, out=None):
    return _softmax_like(x, axis, out, True)


@with_fallback(_fallback.logsumexp)
def logsumexp(x, axis=-1, *, keepdims=False, out=None):
    arr, result_dtype = as_float_array(x, "x")
    axes = normalize_axis(axis, arr.ndim)
    keepdims = check_bool(keepdims, "keepdims")
    kept_shape = tuple(1 if a in axes else n for a, n in enumerate(arr.shape))
    reduced_shape = tuple(n for a, n in enumerate(arr.shape) if a not in axes)
    out_shape = kept_shape if keepdims else reduced_shape
    if out is not None:
        check_out(out, out_shape, result_dtype)
    work, ax, _ = _class_axis_layout(arr, axes)
    x3 = _kernel_ready(class_axis_view(work, ax))
    result = np.empty((x3.shape[0], x3.shape[2]), dtype=arr.dtype)
    out2 = result
    if x3.shape[2] == 1 and abs(x3.strides[0]) < abs(x3.strides[1]):
        x3, out2 = x3.transpose(2, 1, 0), result.T
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
    result, out3 = _output_view(out, g.dtype, g.shape, ax, g, (g, y_arr))
    g3 = _kernel_ready(class_axis_view(g, ax))
    y3 = _kernel_ready(class_axis_view(y_arr, ax))
    _runtime.kernels().softmax_backward(g3, y3, out3, log_mode, _runtime.get_num_threads())
    return finish_float(result, result_dtype, out)


@with_fallback(_fallback.softmax_backward)
def softmax_backward(grad, y, axis=-1, *, out=None):
    return _backward(grad, y, axis, out, False, "softmax_backward")


@with_fallback(_fallback.log_softmax_backward)
def log_softmax_backward(grad, y, axis=-1, *, out=None):
    return _backward(grad, y, axis, out, True, "log_softmax_backward")
