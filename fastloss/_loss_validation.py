"""Argument checks for the loss functions, shared by the compiled wrapper and the fallback.

Like ``fastloss._validation`` this module holds no math: it checks what callers pass
(targets, class and sample weights, scalar options, shapes) and raises the error the
contract asks for -- ``TypeError`` for a wrong kind of argument, ``ValueError`` for a
wrong shape or value, ``IndexError`` for a class label outside ``[0, C)`` -- always
naming the argument.  Every check runs before anything is computed or written, so a
rejected call leaves ``out`` untouched.
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from fastloss._validation import as_float_array, check_out, check_reduction, normalize_axis

__all__ = [
    "check_class_axis",
    "check_class_target",
    "check_index_target",
    "check_index_values",
    "intp_ignore_index",
    "check_class_weight",
    "check_sample_weight",
    "check_ignore_index",
    "check_bool",
    "check_label_smoothing",
    "check_real",
    "check_grad_output",
    "check_probabilities",
    "check_same_shape",
    "check_broadcastable",
    "common_float_dtype",
    "check_logsumexp_args",
    "check_linear_cross_entropy_args",
    "LINEAR_CE_EXTRAS",
]


def check_class_axis(axis, ndim, name="axis"):
    """Return the single class axis as a non-negative int.

    Loss functions and the backward passes take one class axis: ``None`` and tuples
    (accepted by ``softmax``, ``log_softmax`` and ``logsumexp``) raise ``TypeError``.
    """
    if axis is None or isinstance(axis, tuple):
        raise TypeError(f"{name} must be a single int here; got {axis!r}")
    if ndim == 0:
        raise ValueError(f"the input must have at least one dimension for {name}={axis!r}; got a 0-d array")
    (ax,) = normalize_axis(axis, ndim, name)
    return ax


def _position(flat_index, shape):
    """The position of a flat index: an int for 1-D arrays, an index tuple otherwise."""
    pos = tuple(int(i) for i in np.unravel_index(flat_index, shape))
    return pos[0] if len(pos) == 1 else pos


def check_index_values(target, n_classes, ignore_index=None, name="target", screen=None):
    """Raise ``IndexError`` unless every label is in ``[0, n_classes)`` or ``ignore_index``.

    The message names the first offending value and its position (an int for 1-D
    targets, an index tuple otherwise).  The comparison runs on the caller's integer
    dtype, so huge unsigned labels are reported as they are, not wrapped around.
    ``screen(target, n_classes, ignore_index)``: an optional faster check (the compiled
    backend's one C pass); when it returns True the labels are good, otherwise the
    checks below decide.
    """
    if screen is not None and screen(target, n_classes, ignore_index):
        return
    # The common case in one reduction: seen as unsigned, a negative label is huge, so
    # the largest unsigned value is below n_classes exactly when every label is in range.
    if target.size and target.view(target.dtype.str.replace("i", "u")).max() < n_classes:
        return
    bad = (target < 0) | (target >= n_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bad.any():
        flat = int(np.flatnonzero(bad.ravel())[0])
        value = target.ravel()[flat]
        allowed = f"[0, {n_classes})"
        if ignore_index is not None:
            allowed += f" or equal ignore_index={ignore_index}"
        raise IndexError(
            f"{name} value {value} at position {_position(flat, target.shape)} is out of "
            f"range: class indices must be in {allowed}"
        )


def intp_ignore_index(ignore_index):
    """``ignore_index`` as the int the checked labels, converted to intp, are compared with.

    ``check_index_target`` checks the labels in their own dtype and then converts them
    to intp, which wraps a uint64 label >= 2**63 -- which can only have passed the check
    by being ``ignore_index`` -- to the same negative number as ``ignore_index`` wraps
    to.  An ``ignore_index`` no uint64 can hold equals no label: any negative sentinel
    will do (every other label is in [0, C)).
    """
    if -2**63 <= ignore_index < 2**63:
        return ignore_index
    if 0 <= ignore_index < 2**64:
        return ignore_index - 2**64
    return -1


def check_index_target(target, row_shape, n_classes, ignore_index=None, name="target",
                       screen=None):
    """Check integer class labels: dtype, shape ``row_shape`` and values (``screen`` as in
    ``check_index_values``).

    Returns the labels as an ``intp`` array (no copy when they already are).
    """
    arr = np.asarray(target)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of class indices; got dtype {arr.dtype}")
    if arr.shape != tuple(row_shape):
        raise ValueError(
            f"{name} has shape {arr.shape}; class indices must have shape {tuple(row_shape)} "
            "(the input's shape without the class axis)"
        )
    check_index_values(arr, n_classes, ignore_index, name, screen)
    return arr.astype(np.intp, copy=False)


def check_class_target(target, logits_shape, axis, ignore_index=None, name="target",
                       screen=None):
    """Tell class-index targets from class-probability targets and check them.

    Integer targets are class indices of ``logits_shape`` without ``axis``; their values
    are checked as in ``check_index_values`` (with ``screen``).  Floating targets are class
    probabilities of ``logits_shape`` itself.  Returns ``(kind, array)`` with ``kind``
    ``"index"`` (an ``intp`` array) or ``"probs"`` (a float array, in the dtype
    ``as_float_array`` gives it).
    """
    arr = np.asarray(target)
    logits_shape = tuple(logits_shape)
    row_shape = logits_shape[:axis] + logits_shape[axis + 1:]
    kind = arr.dtype.kind
    if kind in "iu":
        return "index", check_index_target(arr, row_shape, logits_shape[axis], ignore_index, name,
                                           screen)
    if kind == "b":
        raise TypeError(
            f"{name} must be integer class indices or floating class probabilities; got dtype bool"
        )
    probs, _ = as_float_array(arr, name)  # TypeError for complex, object, ...
    if probs.shape != logits_shape:
        hint = ""
        if probs.shape == row_shape:
            hint = "; for class indices pass an integer array"
        raise ValueError(
            f"{name} has a floating dtype, so it holds class probabilities and must have "
            f"the logits' shape {logits_shape}; got shape {probs.shape}{hint}"
        )
    return "probs", probs


def check_class_weight(weight, n_classes, name="weight"):
    """A per-class weight: ``None`` or a 1-D array of length ``n_classes``, as float64."""
    if weight is None:
        return None
    arr, _ = as_float_array(weight, name)
    if arr.shape != (n_classes,):
        raise ValueError(f"{name} must have shape ({n_classes},) (one value per class); got shape {arr.shape}")
    return arr.astype(np.float64, copy=False)


def check_sample_weight(sample_weight, row_shape, name="sample_weight"):
    """A per-row weight: ``None`` or an array of exactly ``row_shape``, as float64."""
    if sample_weight is None:
        return None
    arr, _ = as_float_array(sample_weight, name)
    if arr.shape != tuple(row_shape):
        raise ValueError(
            f"{name} must have shape {tuple(row_shape)} (one value per row, the target's "
            f"shape); got shape {arr.shape}"
        )
    return arr.astype(np.float64, copy=False)


def check_ignore_index(ignore_index, name="ignore_index"):
    """``ignore_index`` as a Python int (``TypeError`` for anything else, bool included)."""
    if isinstance(ignore_index, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int; got {ignore_index!r}")
    try:
        return operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"{name} must be an int; got {ignore_index!r}") from None


def check_bool(value, name):
    """A flag as a Python bool: ``True``/``False`` or a NumPy bool, else ``TypeError``.

    Truthiness would take ``"no"``, ``[0]`` or ``0.5`` as a choice; a flag that picks
    the formula (``kl_div``'s ``log_target``) must not guess.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {value!r}")
    return bool(value)


def check_real(value, name, *, low=None, high=None, low_open=False):
    """A real scalar option as a float, optionally within ``[low, high]`` (``(low, high]``).

    Non-real values (strings, complex, arrays, bool) raise ``TypeError``; NaN and values
    outside the range raise ``ValueError``.
    """
    if type(value) is not float and (isinstance(value, (bool, np.bool_))
                                     or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    if low is not None and (value <= low if low_open else value < low):
        bracket = "(" if low_open else "["
        upper = "inf)" if high is None else f"{high}]"
        raise ValueError(f"{name} must be in {bracket}{low}, {upper}; got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be in [{low}, {high}]; got {value}")
    return value


def check_label_smoothing(label_smoothing, name="label_smoothing"):
    """``label_smoothing`` as a float in ``[0, 1]``."""
    return check_real(label_smoothing, name, low=0.0, high=1.0)


def check_grad_output(grad_output, reduction, row_shape, name="grad_output"):
    """The upstream gradient of a loss, as float64.

    A scalar for ``"mean"``/``"sum"`` (and ``"batchmean"``); for ``"none"`` an array
    broadcastable to ``row_shape`` (the shape of the unreduced loss), returned
    broadcast to it.
    """
    arr, _ = as_float_array(grad_output, name)
    arr = arr.astype(np.float64, copy=False)
    if reduction == "none":
        try:
            return np.broadcast_to(arr, tuple(row_shape))
        except ValueError:
            raise ValueError(
                f"{name} has shape {arr.shape}; with reduction='none' it must have the "
                f"loss's shape {tuple(row_shape)}"
            ) from None
    if arr.ndim != 0:
        raise ValueError(
            f"{name} must be a scalar with reduction={reduction!r}; got shape {arr.shape}"
        )
    return arr


def check_probabilities(arr, name):
    """Raise ``ValueError`` unless every entry is in ``[0, 1]`` (NaN is let through).

    The message names the first offending value and its position.
    """
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        flat = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(
            f"{name} must hold probabilities in [0, 1]; got {arr.ravel()[flat]} at "
            f"position {_position(flat, arr.shape)}"
        )


def check_same_shape(a, b, name_a, name_b):
    """Raise ``ValueError`` unless two arrays have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")


def check_broadcastable(arr, shape, name, to_name="input"):
    """Raise ``ValueError`` unless ``arr`` broadcasts to ``shape`` without changing it."""
    try:
        ok = np.broadcast_shapes(arr.shape, tuple(shape)) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} has shape {arr.shape}, which does not broadcast to {to_name}'s shape {tuple(shape)}"
        )


def common_float_dtype(*result_dtypes):
    """The dtypes of a function of several float arrays: ``(compute_dtype, result_dtype)``.

    The result dtype is the promotion of the arguments' result dtypes (as given by
    ``as_float_array``); float16 results are computed in float32.
    """
    result = np.result_type(*result_dtypes)
    compute = np.dtype(np.float32) if result == np.float16 else result
    return compute, result


# -- whole argument lists ------------------------------------------------------------------
# One function per loss family checks every argument in a fixed order.  The compiled
# wrappers and the fallback both call these, so the two backends raise the same error
# for the same bad call.

def check_cross_entropy_args(logits, target, axis, weight, sample_weight, ignore_index,
                             reduction, label_smoothing, label_screen=None):
    """Validate cross-entropy arguments (``label_screen``: see ``check_index_values``).

    Returns ``(x, dtype, axis, target_kind, target, weight, sample_weight,
    ignore_index, reduction, label_smoothing)``: ``x`` the logits as computed,
    ``dtype`` the result dtype, ``target_kind`` ``"index"`` or ``"probs"``.
    """
    x, dtype = as_float_array(logits, "logits")
    ax = check_class_axis(axis, x.ndim)
    reduction = check_reduction(reduction)
    eps = check_label_smoothing(label_smoothing)
    ignore_index = check_ignore_index(ignore_index)
    kind, t = check_class_target(target, x.shape, ax, ignore_index, screen=label_screen)
    w = check_class_weight(weight, x.shape[ax])
    sw = check_sample_weight(sample_weight, x.shape[:ax] + x.shape[ax + 1:])
    return x, dtype, ax, kind, t, w, sw, ignore_index, reduction, eps


def check_nll_args(log_probs, target, axis, weight, ignore_index, reduction, label_screen=None):
    """Validate nll_loss arguments: ``(x, dtype, axis, target, weight, ignore_index,
    reduction)`` (``label_screen``: see ``check_index_values``)."""
    x, dtype = as_float_array(log_probs, "log_probs")
    ax = check_class_axis(axis, x.ndim)
    reduction = check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    n_classes = x.shape[ax]
    t = check_index_target(target, x.shape[:ax] + x.shape[ax + 1:], n_classes, ignore_index,
                           screen=label_screen)
    w = check_class_weight(weight, n_classes)
    return x, dtype, ax, t, w, ignore_index, reduction


def _broadcast_weights(arr, b):
    """``x`` and the weights ``b`` broadcast against each other (both may grow, as in
    SciPy); ``b`` is checked like any weight and held in float64."""
    if b is None:
        return arr, None
    bb, _ = as_float_array(b, "b")   # TypeError naming b for complex, object, ...
    try:
        shape = np.broadcast_shapes(arr.shape, bb.shape)
    except ValueError:
        raise ValueError(
            f"b has shape {bb.shape}, which does not broadcast against x's shape {arr.shape}"
        ) from None
    return np.broadcast_to(arr, shape), np.broadcast_to(bb.astype(np.float64, copy=False), shape)


def check_logsumexp_args(x, axis, b, keepdims, return_sign, out):
    """Validate ``logsumexp`` arguments.

    Returns ``(x, b, axes, out_shape, result_dtype)``: ``x`` in its computation dtype
    and ``b`` (float64, or None), both broadcast to their common shape; ``axes`` sorted;
    ``out_shape`` the shape of the result.  The result dtype is ``x``'s alone: ``b`` is
    a weight, as in the losses (SciPy would promote the two).
    """
    arr, res_dtype = as_float_array(x, "x")
    arr, bb = _broadcast_weights(arr, b)
    axes = normalize_axis(axis, arr.ndim)
    keepdims = check_bool(keepdims, "keepdims")
    check_bool(return_sign, "return_sign")
    kept_shape = tuple(1 if i in axes else n for i, n in enumerate(arr.shape))
    shape = kept_shape if keepdims else tuple(n for i, n in enumerate(arr.shape) if i not in axes)
    if out is not None:
        check_out(out, shape, res_dtype)
    return arr, bb, axes, shape, res_dtype


def check_multi_margin_args(input, target, p, margin, weight, reduction, axis):
    """Validate multi_margin_loss arguments: ``(x, dtype, axis, target, weight, p,
    margin, reduction)``."""
    x, dtype = as_float_array(input, "input")
    ax = check_class_axis(axis, x.ndim)
    reduction = check_reduction(reduction)
    if isinstance(p, (bool, np.bool_)) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2; got {p!r}")
    margin = check_real(margin, "margin")
    n_classes = x.shape[ax]
    t = check_index_target(target, x.shape[:ax] + x.shape[ax + 1:], n_classes)
    w = check_class_weight(weight, n_classes)
    return x, dtype, ax, t, w, p, margin, reduction


LINEAR_CE_EXTRAS = ("loss_per_row", "logsumexp", "argmax", "accuracy", "entropy")


def _check_extras(extras, name="extras"):
    """``extras`` as a tuple of known names (a bare string is a mistake, not a name)."""
    if isinstance(extras, str) or not isinstance(extras, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of names among {LINEAR_CE_EXTRAS}; "
                        f"got {extras!r}")
    for item in extras:
        if item not in LINEAR_CE_EXTRAS:
            raise ValueError(f"{name}: unknown name {item!r}; choose among {LINEAR_CE_EXTRAS}")
    return tuple(dict.fromkeys(extras))


def _check_chunk_size(chunk_size, name="chunk_size"):
    """``"auto"`` or a positive int of rows."""
    if isinstance(chunk_size, str):
        if chunk_size != "auto":
            raise ValueError(f"{name} must be 'auto' or a positive int; got {chunk_size!r}")
        return None
    if isinstance(chunk_size, (bool, np.bool_)):
        raise TypeError(f"{name} must be 'auto' or a positive int; got {chunk_size!r}")
    try:
        rows = operator.index(chunk_size)
    except TypeError:
        raise TypeError(f"{name} must be 'auto' or a positive int; got {chunk_size!r}") from None
    if rows < 1:
        raise ValueError(f"{name} must be 'auto' or a positive int; got {rows}")
    return rows


def check_linear_cross_entropy_args(hidden, weight, target, bias, class_weight, sample_weight,
                                    ignore_index, label_smoothing, reduction, softcap,
                                    logit_scale, z_loss, normalize_by, chunk_size,
                                    return_grad, extras, label_screen=None):
    """Validate linear_cross_entropy arguments (``label_screen``: see ``check_index_values``).

    Returns a dict: ``h`` (hidden as ``(N, H)`` in the computation dtype), ``w``
    (``(V, H)``), ``b`` (``(V,)`` or None), ``dtype`` (the result dtype), ``row_shape``
    (hidden's shape without its last axis), ``target`` (intp, ``(N,)``), ``class_weight``
    and ``sample_weight`` (float64 or None, the latter ``(N,)``), and the scalar options
    checked (``softcap``/``normalize_by`` None or a float, ``chunk_size`` None for
    "auto", ``extras`` a tuple).
    """
    h, h_dtype = as_float_array(hidden, "hidden")
    w, w_dtype = as_float_array(weight, "weight")
    if h.ndim < 1:
        raise ValueError("hidden must have shape (..., H) (at least one dimension); got a 0-d array")
    if w.ndim != 2 or w.shape[1] != h.shape[-1]:
        raise ValueError(f"weight must have shape (V, {h.shape[-1]}) (out_features, the "
                         f"hidden size of hidden's last axis); got shape {w.shape}")
    if h.dtype != w.dtype or h_dtype != w_dtype:
        raise TypeError(f"hidden has dtype {h_dtype} but weight has dtype {w_dtype}; "
                        "they must match (cast one of them)")
    n_classes = w.shape[0]
    b = None
    if bias is not None:
        b, _ = as_float_array(bias, "bias")
        if b.shape != (n_classes,):
            raise ValueError(f"bias must have shape ({n_classes},) (one value per class, "
                             f"weight's first axis); got shape {b.shape}")
        b = b.astype(h.dtype, copy=False)
    reduction = check_reduction(reduction)
    eps = check_label_smoothing(label_smoothing)
    ignore_index = check_ignore_index(ignore_index)
    row_shape = h.shape[:-1]
    t = check_index_target(target, row_shape, n_classes, ignore_index, screen=label_screen)
    cw = check_class_weight(class_weight, n_classes, name="class_weight")
    sw = check_sample_weight(sample_weight, row_shape)
    if softcap is not None:
        softcap = check_real(softcap, "softcap", low=0.0, low_open=True)
        if math.isinf(softcap):
            raise ValueError("softcap must be finite (None turns it off); got inf")
    logit_scale = check_real(logit_scale, "logit_scale")
    if math.isinf(logit_scale):
        raise ValueError(f"logit_scale must be finite; got {logit_scale}")
    z_loss = check_real(z_loss, "z_loss", low=0.0)
    if math.isinf(z_loss):
        raise ValueError("z_loss must be finite; got inf")
    if normalize_by is not None:
        normalize_by = check_real(normalize_by, "normalize_by", low=0.0, low_open=True)
        if reduction != "mean":
            raise ValueError(f"normalize_by replaces the 'mean' divisor: it needs "
                             f"reduction='mean'; got reduction={reduction!r}")
    chunk_rows = _check_chunk_size(chunk_size)
    return_grad = check_bool(return_grad, "return_grad")
    extras = _check_extras(extras)
    n_rows = math.prod(row_shape)
    return dict(h=h.reshape(n_rows, h.shape[-1]), w=w, b=b, dtype=h_dtype, row_shape=row_shape,
                target=t.reshape(n_rows), class_weight=cw,
                sample_weight=None if sw is None else sw.reshape(n_rows),
                ignore_index=ignore_index, label_smoothing=eps, reduction=reduction,
                softcap=softcap, logit_scale=logit_scale, z_loss=z_loss,
                normalize_by=normalize_by, chunk_rows=chunk_rows, return_grad=return_grad,
                extras=extras)
