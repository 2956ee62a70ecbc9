"""Array plumbing for the class-axis kernels: softmax, cross-entropy, multi-margin.

These kernels read and write strided ``(outer, C, inner)`` views around the class axis
(``fastloss._validation.class_axis_view``) and per-row ``(outer, inner)`` views, and
take per-class or per-row arrays by pointer.  This module makes views the kernels can
read (aligned, strides of whole elements), decides where they write (``out`` itself or
a fresh buffer) and picks the lane direction they walk.  The elementwise kernels' flat
layout is ``fastloss._flat``'s job.

No math here.
"""
from __future__ import annotations

import numpy as np

from fastloss._validation import class_axis_view, move_axes_last

__all__ = [
    "aligned_array",
    "class_axis_layout",
    "kernel_ready",
    "lanes_first",
    "output_view",
]


def _is_kernel_ready(view):
    """The kernels need aligned data whose strides are whole elements."""
    flags = view.flags
    return flags.aligned and (flags.c_contiguous   # the common case, without the loop
                              or all(s % view.itemsize == 0 for s in view.strides))


def kernel_ready(view):
    """``view``, or an aligned C-ordered copy where the kernels could not read it
    (``np.ascontiguousarray`` would keep an unaligned contiguous array as it is)."""
    return view if _is_kernel_ready(view) else view.copy()


def aligned_array(a, dtype=None):
    """``a`` as an aligned C-contiguous array of ``dtype`` (one copy if it is not one),
    for the per-class and per-row arrays the kernels read by pointer."""
    return np.require(a, dtype=dtype, requirements=("C", "A"))


def lanes_first(x3, *others):
    """Prefer the lane direction with the smaller stride as ``inner``.

    A Fortran-ordered (N, C) array seen as (N, C, 1) has its rows 1 element apart; as
    (1, C, N) the kernel walks the contiguous direction in its vector loops.  Returns
    ``(x3, *others)``, every array transposed (its axes reversed) when ``x3``'s are
    swapped: the (outer, C, inner) views and the per-row (outer, inner) views that go
    with it.  ``None`` stays ``None``.
    """
    if x3.shape[2] == 1 and abs(x3.strides[0]) < abs(x3.strides[1]):
        return (x3.T, *(None if a is None else a.T for a in others))
    return (x3, *others)


def class_axis_layout(arr, axis):
    """Reduce ``axis`` (normalized tuple) to one class axis: ``(work, ax, restore)``.

    ``restore`` maps a result of ``work``'s layout back to ``arr``'s axis order; it is
    ``None`` when ``axis`` already is a single axis and ``work`` is ``arr``.
    """
    if len(axis) == 1:
        return arr, axis[0], None
    work, restore = move_axes_last(arr, axis)
    return work, work.ndim - 1, restore


def _same_layout(a, b):
    """Whether a and b are the same elements in the same order (``out=x``)."""
    return a is b or (a.strides == b.strides
                      and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def output_view(out, compute_dtype, shape, ax, like, inputs=()):
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
