"""Input checking and array plumbing shared by the compiled wrapper and the fallback.

Everything here is about *shapes, dtypes and memory*; no math lives in this module.
The central idea: every function with a class axis sees its input as a 3-D view
``(outer, C, inner)`` -- the axes before the class axis collapsed into ``outer``, the
ones after it into ``inner``.  For the common last-axis case ``inner == 1`` and the
view is the familiar rows x classes matrix.  Reshaping to that view copies only when
the strides cannot express it (e.g. a transposed input whose outer axes do not merge).
"""
from __future__ import annotations

import math
import operator

import numpy as np

__all__ = [
    "FLOAT_DTYPES",
    "as_float_array",
    "normalize_axis",
    "class_axis_view",
    "move_axes_last",
    "check_out",
    "work_buffer",
    "check_reduction",
    "finish_float",
    "finish_scalar",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, name):
    """Convert an array-like to the dtype it is computed in.

    Returns ``(array, result_dtype)``: float32/float64 pass through untouched (no
    copy); float16 is computed in float32 and returned as float16; integer and bool
    are promoted to float64 (as SciPy does); other real floats (longdouble) are
    computed in float64.  Complex, object, string and datetime data raise
    ``TypeError`` naming the argument.
    """
    arr = np.asarray(x)
    dtype = arr.dtype
    if dtype in FLOAT_DTYPES:
        return arr, dtype
    if dtype == np.float16:
        return arr.astype(np.float32), dtype
    if dtype.kind in "biu":
        return arr.astype(np.float64), np.dtype(np.float64)
    if dtype.kind == "f":
        return arr.astype(np.float64), np.dtype(np.float64)
    raise TypeError(
        f"{name} must be a real floating, integer or bool array; got dtype {dtype}"
    )


def normalize_axis(axis, ndim, name="axis"):
    """Return ``axis`` as a sorted tuple of non-negative ints.

    ``None`` means every axis.  Raises ``numpy.exceptions.AxisError`` (a subclass of
    both ``ValueError`` and ``IndexError``) for an out-of-range or repeated axis and
    ``TypeError`` for a non-integer one -- a bool included: ``operator.index(True)`` is
    1, so ``axis=True`` would silently mean axis 1 (NumPy 2 rejects it too).
    """
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:   # the common case, without the loop
        return (axis % ndim,)
    axes = axis if isinstance(axis, tuple) else (axis,)
    result = []
    for ax in axes:
        if isinstance(ax, (bool, np.bool_)):
            raise TypeError(f"{name} must be an integer, not bool; got {axis!r}")
        try:
            ax = operator.index(ax)
        except TypeError:
            raise TypeError(f"{name} must be an int, a tuple of ints or None; got {axis!r}") from None
        if not -ndim <= ax < ndim:
            raise np.exceptions.AxisError(ax, ndim, msg_prefix=name)
        result.append(ax % ndim)
    if len(set(result)) != len(result):
        raise np.exceptions.AxisError(f"{name}: repeated axis in {axis!r}")
    return tuple(sorted(result))


def class_axis_view(arr, axis):
    """View ``arr`` as ``(outer, C, inner)`` around the single class axis ``axis``.

    ``axis`` must already be normalized.  NumPy's reshape returns a view whenever the
    strides allow it and copies otherwise; callers that write must therefore write
    through a view of their *output*, which they allocate so that it never copies.
    """
    shape = arr.shape
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1:])
    return arr.reshape(outer, shape[axis], inner)


def move_axes_last(arr, axes):
    """Move ``axes`` to the end and merge them into one: ``(rest..., prod(axes))``.

    Used for ``axis=None`` or a tuple of axes.  Returns the (possibly copied) array and
    the function that maps a result of the same layout back to ``arr``'s axis order.
    """
    ndim = arr.ndim
    rest = [a for a in range(ndim) if a not in axes]
    order = rest + list(axes)
    moved = np.transpose(arr, order)
    rest_shape = moved.shape[: len(rest)]
    merged = moved.reshape(rest_shape + (math.prod(moved.shape[len(rest):]),))
    moved_shape = moved.shape
    inverse = np.argsort(order)

    def restore(result):
        return np.transpose(result.reshape(moved_shape), inverse)

    return merged, restore


def check_out(out, shape, dtype, name="out"):
    """Check a user-supplied output array before anything is written to it."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}; expected {tuple(shape)}")
    if out.dtype != dtype:
        raise ValueError(f"{name} has dtype {out.dtype}; expected {np.dtype(dtype)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def work_buffer(out, dtype, shape):
    """``out`` (already checked) when results can be computed in it directly, else a
    new array of ``shape`` and ``dtype``."""
    if out is not None and out.dtype == dtype:
        return out
    return np.empty(shape, dtype)


REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction, allowed=REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(
            f"reduction must be one of {', '.join(map(repr, allowed))}; got {reduction!r}"
        )
    return reduction


def finish_scalar(value, result_dtype):
    """A float64 reduction (a Python or NumPy float) as a NumPy scalar of the caller's
    dtype: what ``finish_float`` gives for a 0-d array, without building one."""
    return np.dtype(result_dtype).type(value)


def finish_float(result, result_dtype, out=None):
    """Cast a computed result to the caller's dtype and deliver it (into ``out`` if given).

    0-d results are returned as NumPy scalars, as NumPy's own reductions do.
    """
    if out is not None:
        if result is not out:
            np.copyto(out, result, casting="unsafe")
        return out
    if result.dtype != result_dtype:
        result = result.astype(result_dtype)
    if result.ndim == 0:
        return result[()]
    return result
