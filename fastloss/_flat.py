"""Array plumbing for the elementwise kernels: flat views, outputs, broadcast factors.

The activation and pointwise-loss kernels (src/csrc/elementwise_impl.h) see every
array as one flat contiguous run, element k of each array at the same position.
This module makes the arrays so:

* ``flat_order`` picks the memory order ("C" or "F") in which the arrays that matter
  are already contiguous, so the common cases never copy; other layouts (strided,
  transposed N-D views) are copied once into that order.
* ``write_target`` decides where the kernel writes: straight into ``out`` when ``out``
  is contiguous, of the compute dtype and either disjoint from every input or exactly
  one of them (in place); otherwise into a fresh array that the caller copies into
  ``out`` afterwards (``finish_float``).  A partial overlap never reaches a kernel.
* ``bcast_factor`` describes a factor that broadcasts to the input (``weight``,
  ``pos_weight``) as ``(values, rep, period)``: element k of the flat input uses
  ``values[(k // rep) % period]``, the form the kernels read without expanding it.

No math here.
"""
from __future__ import annotations

import math

import numpy as np

from fastloss._layout import aligned_array

__all__ = ["flat_order", "as_flat", "write_target", "bcast_factor"]

# A factor whose values repeat fewer than this many times in a row, and whose whole
# pattern is too long to tile (src/csrc/kernels_all.h: FL_TILE_MAX_PERIOD), is
# expanded to the input's size: the kernels would otherwise run loops this short.
MIN_REP = 64
TILE_MAX_PERIOD = 512


def _order_of(a):
    if a.flags.c_contiguous:
        return "C"
    if a.flags.f_contiguous:
        return "F"
    return None


def flat_order(*arrays):
    """The memory order ("C" or "F") in which to lay the arrays out flat.

    "C" if every array given (``None`` is skipped) is C-contiguous, "F" if every one
    is F-contiguous, else the order of the first one that is contiguous at all (the
    others are copied into it), else "C".  The output, when there is one, goes first.
    """
    arrays = [a for a in arrays if a is not None]
    if all(a.flags.c_contiguous for a in arrays):
        return "C"
    if all(a.flags.f_contiguous for a in arrays):
        return "F"
    for a in arrays:
        order = _order_of(a)
        if order is not None:
            return order
    return "C"


def as_flat(arr, order, dtype):
    """``arr`` as a 1-D contiguous array of ``dtype`` in memory order ``order``.

    A view when ``arr`` already is contiguous in that order with that dtype; else one
    copy.
    """
    a = np.asarray(arr, dtype=dtype, order=order)
    if not a.flags.aligned:              # e.g. a view into a byte buffer at an odd offset
        a = a.copy(order=order)
    return a.reshape(-1, order=order)


def _same_memory(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.strides == b.strides and a.dtype == b.dtype and a.shape == b.shape)


def write_target(out, shape, dtype, order, inputs):
    """Where the kernel writes: ``(result, flat)``.

    ``flat`` is a 1-D contiguous view the kernel fills; ``result`` the array that holds
    the values afterwards (``out`` itself when the kernel can write into it).
    ``inputs`` are the flat arrays the kernel reads: ``out`` must be disjoint from
    each or be exactly it (element k is read before element k is written).
    """
    contiguous = out is not None and (
        out.flags.c_contiguous if order == "C" else out.flags.f_contiguous)
    if contiguous and out.dtype == dtype and out.shape == tuple(shape) and out.flags.aligned:
        flat = out.reshape(-1, order=order)           # a view: out is contiguous
        if all(_same_memory(flat, a) or not np.may_share_memory(flat, a) for a in inputs):
            return out, flat
    result = np.empty(shape, dtype=dtype, order=order)
    return result, result.reshape(-1, order=order)


def bcast_factor(values, shape, order, dtype):
    """``(flat_values, rep, period)`` for a factor that broadcasts to ``shape``.

    Flat element k (in memory order ``order``) uses ``flat_values[(k // rep) % period]``.
    That holds when the factor's non-unit axes form one block that matches the input
    (a scalar, a length-C vector along the last axis, an (N, 1) column ...); other
    factors, and those whose runs would be short, are expanded to the full size.
    ``flat_values`` is aligned: the kernels read it by pointer, and an array unpickled
    from a buffer (a Dask worker's) can be contiguous but not aligned.
    """
    w = np.asarray(values, dtype=dtype)
    ndim = len(shape)
    w = w.reshape((1,) * (ndim - w.ndim) + w.shape)
    if order == "F":
        w, shape = w.T, tuple(shape)[::-1]
    shape = tuple(shape)
    axes = [i for i in range(ndim) if w.shape[i] != 1]
    if not axes:
        return aligned_array(w).reshape(1), 1, 1
    first, last = axes[0], axes[-1]
    if all(w.shape[i] == shape[i] for i in range(first, last + 1)):
        period = math.prod(shape[first:last + 1])
        rep = math.prod(shape[last + 1:])
        if rep == 1 or rep >= MIN_REP or rep * period <= TILE_MAX_PERIOD:
            return aligned_array(w).reshape(-1), rep, period
    full = aligned_array(np.broadcast_to(w, shape)).reshape(-1)
    return full, 1, max(full.size, 1)
