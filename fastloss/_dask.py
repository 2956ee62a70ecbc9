"""Dask arrays in, lazy Dask arrays out: the graph builders behind the public functions.

``fastloss._dispatch`` sends here every call that has a Dask array among its
arguments.  Nothing is computed when the graph is built (beyond a probe call of the
function on a one-element NumPy array, which checks the options and gives the result
dtype); every block runs the public NumPy function itself, so blocks get the
compiled kernels and their numerics.

* Elementwise functions: one task per block (``map_blocks``).
* Row-wise functions with the class axis in one chunk: one task per block.  When the
  class axis is split across chunks, ``fastloss._dask_split`` tree-reduces the online
  softmax state and a blockwise pass writes the outputs and gradients: no rechunk
  (index targets without label smoothing; the rest needs the class axis in one chunk).
* ``"mean"`` and ``"sum"``: each block gives the float64 sum of its weighted losses and,
  for a mean, the sum of its row weights (PyTorch's denominator); the two are summed
  over blocks and divided once -- never a mean of block means, which would weigh
  unequal blocks, ignored rows and sample weights wrongly.
* ``*_with_grad``: the ``"mean"`` denominator is reduced first; then one task per block
  runs the fused loss-and-gradient function and scales its gradient by ``1 / den``.
  The loss and the gradient are two arrays over the same tasks: compute them
  together (``dask.compute(loss, grad)``) to run each block once.

``out=`` is refused (a Dask result is a new array).  Out-of-range class indices raise
``IndexError`` when the block holding them is computed.
"""
from __future__ import annotations

import functools
import operator

import dask.array as da
import numpy as np

import fastloss
from fastloss import _dask_split as split
from fastloss._loss_validation import check_class_axis
from fastloss._validation import as_float_array, normalize_axis

__all__ = ["call"]

ACTIVATIONS = {
    "sigmoid": ("x",), "tanh": ("x",), "relu": ("x",), "leaky_relu": ("x",),
    "softplus": ("x",), "sigmoid_backward": ("grad", "y"), "tanh_backward": ("grad", "y"),
    "relu_backward": ("grad", "x"), "leaky_relu_backward": ("grad", "x"),
    "softplus_backward": ("grad", "x"),
}
# Array arguments of the elementwise losses, the input first.
POINTWISE_LOSSES = {
    "binary_cross_entropy": ("probs", "target", "weight"),
    "binary_cross_entropy_with_logits": ("logits", "target", "weight", "pos_weight"),
    "kl_div": ("input", "target"),
    "mse_loss": ("input", "target"),
    "smooth_l1_loss": ("input", "target"),
    "huber_loss": ("input", "target"),
}
ROW_LOSSES = ("cross_entropy", "nll_loss")


def call(name, signature, args, kwargs):
    """``fastloss.<name>(*args, **kwargs)`` with Dask arrays: its lazy result."""
    base = name.removesuffix("_with_grad")
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    opts = dict(bound.arguments)
    if opts.pop("out", None) is not None:
        raise TypeError(f"fastloss.{name}: out= cannot be used with Dask arrays "
                        f"(the result is a new lazy array)")
    if name in ACTIVATIONS:
        return _activation(name, opts)
    if base in POINTWISE_LOSSES:
        return _pointwise_loss(name, base, opts)
    if base in ROW_LOSSES:
        return _row_loss(name, opts)
    if name in ("softmax", "log_softmax"):
        return _softmax(name, opts)
    if name == "logsumexp":
        return _logsumexp(opts)
    raise TypeError(f"fastloss.{name} does not take Dask arrays: compute them first, or "
                    f"call it on each block with dask.array.map_blocks")


# -- tasks (module-level functions: they are pickled to worker processes) ---------------

def _apply(name, names, options, *blocks):
    return getattr(fastloss, name)(**dict(zip(names, blocks)), **options)


def _computed(block):
    """float16 data as the float32 the kernels compute it in, so that a block's sum and
    its scaled gradient are rounded to float16 once, at the end (the contract's
    float16 results)."""
    return block.astype(np.float32) if block.dtype == np.float16 else block


def _block_sum(name, names, options, ndim, first, *blocks):
    """The block's summed loss, as a float64 cell of ``ndim`` length-1 axes."""
    total = _apply(name, names, dict(options, reduction="sum"), _computed(first), *blocks)
    return np.full((1,) * ndim, float(total))


def _fused_block(name, names, options, scaled, first, *blocks):
    """``(loss, grad)`` of a block; ``scaled``: the last block is the 0-d ``"mean"``
    denominator, and the gradient of the summed loss is divided by it."""
    if scaled:
        *blocks, den = blocks
    loss, grad = _apply(name, names, options, _computed(first), *blocks)
    if scaled:
        with np.errstate(divide="ignore", invalid="ignore"):
            grad *= grad.dtype.type(np.float64(1.0) / np.float64(den))
    # A reduced loss stays in the computed dtype: the blocks' sums are added in float64.
    if np.ndim(loss):
        loss = loss.astype(first.dtype, copy=False)
    return loss, grad.astype(first.dtype, copy=False)


def _loss_cell(ndim, pair):
    return np.full((1,) * ndim, float(pair[0]))


def _loss_rows(axis, pair):
    return np.expand_dims(pair[0], axis)


def _row_weight(ignore_index, weight, target, sample_weight=None):
    """Each row's share of the ``"mean"`` denominator (index targets): its class
    weight, times its sample weight, 0 for ignore_index.  Out-of-range labels are
    clipped here; the loss task reports them."""
    active = target != ignore_index
    w = np.ones(target.shape) if weight is None else np.take(weight, target, mode="clip")
    w = np.where(active, w, 0.0)
    return w if sample_weight is None else w * sample_weight


def _den_cell(n_classes, soft, ignore_index, weight, ndim, target, sample_weight=None):
    if soft:
        den = target.size // max(n_classes, 1) if sample_weight is None \
            else np.sum(sample_weight, dtype=np.float64)
    else:
        den = np.sum(_row_weight(ignore_index, weight, target, sample_weight),
                     dtype=np.float64)
    return np.full((1,) * ndim, float(den))


def _ratio(dtype, total, den=None):
    """The final scalar: ``total`` (a sum) or ``total / den`` (a mean), 0 / 0 is NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.float64(total) if den is None else np.float64(total) / np.float64(den)
    return np.dtype(dtype).type(value)


# -- graph building --------------------------------------------------------------------

def _meta(ndim, dtype):
    return np.empty((0,) * ndim, dtype=dtype)


def _float_dtype(x):
    return as_float_array(np.empty(0, dtype=x.dtype), "x")[1]


def _probe_dtype(name, names, arrays, options):
    """Call the function on one-element arrays: checks ``options`` now, not at compute
    time, and gives the dtype of its (first) result."""
    ones = [np.ones((1,) * a.ndim, dtype=a.dtype) for a in arrays]
    result = _apply(name, names, options, *ones)
    return np.asarray(result[0] if isinstance(result, tuple) else result).dtype


def _scalar(total, dtype, den=None):
    """A 0-d Dask array of ``dtype``: ``total``, or ``total / den``."""
    parts = [total, ()] + ([] if den is None else [den, ()])
    return da.blockwise(functools.partial(_ratio, dtype), (), *parts, dtype=dtype,
                        meta=_meta(0, dtype))


def _pairs(fn, x, *blockwise_args):
    """A Dask array (of ``x``'s chunks) whose blocks are ``(loss, grad)`` tuples: one
    task per block for both results."""
    return da.blockwise(fn, tuple(range(x.ndim)), *blockwise_args, dtype=object,
                        meta=_meta(x.ndim, object), concatenate=True)


def _grad_of(pairs, dtype):
    return pairs.map_blocks(operator.itemgetter(1), dtype=dtype, meta=_meta(pairs.ndim, dtype))


def _summed_cells(pairs):
    cells = pairs.map_blocks(functools.partial(_loss_cell, pairs.ndim),
                             chunks=tuple((1,) * len(c) for c in pairs.chunks),
                             dtype=np.float64, meta=_meta(pairs.ndim, np.float64))
    return cells.sum()


def _activation(name, opts):
    names = ACTIVATIONS[name]
    arrays = [da.asarray(opts.pop(n)) for n in names]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError(f"{names[0]} has shape {arrays[0].shape} but {names[1]} has "
                         f"shape {arrays[1].shape}; they must match")
    arrays = [arrays[0]] + [a.rechunk(arrays[0].chunks) for a in arrays[1:]]
    dtype = _probe_dtype(name, names, arrays, opts)
    return da.map_blocks(functools.partial(_apply, name, names, opts), *arrays,
                         dtype=dtype, meta=_meta(arrays[0].ndim, dtype))


def _pointwise_loss(name, base, opts):
    names = [n for n in POINTWISE_LOSSES[base] if opts.get(n) is not None]
    x = da.asarray(opts.pop(names[0]))
    arrays = [x] + [da.broadcast_to(da.asarray(opts.pop(n)), x.shape).rechunk(x.chunks)
                    for n in names[1:]]
    for n in POINTWISE_LOSSES[base]:
        opts.pop(n, None)
    reduction = opts.pop("reduction")
    dtype = _probe_dtype(name, names, arrays, dict(opts, reduction=reduction))
    want_grad = name != base
    if reduction == "none":
        options = dict(opts, reduction="none")
        if not want_grad:
            return da.map_blocks(functools.partial(_apply, name, names, options), *arrays,
                                 dtype=dtype, meta=_meta(x.ndim, dtype))
        pairs = _pairs(functools.partial(_fused_block, name, names, options, False), x,
                       *_indexed(arrays))
        loss = pairs.map_blocks(operator.itemgetter(0), dtype=dtype,
                                meta=_meta(x.ndim, dtype))
        return loss, _grad_of(pairs, dtype)
    # PyTorch's divisors: every element for "mean", the batch (axis 0) for "batchmean".
    divisor = {"mean": x.size, "batchmean": x.shape[0] if x.ndim else 1}.get(reduction, 1)
    if not want_grad:
        cells = da.map_blocks(functools.partial(_block_sum, base, names, opts, x.ndim),
                              *arrays, chunks=tuple((1,) * len(c) for c in x.chunks),
                              dtype=np.float64, meta=_meta(x.ndim, np.float64))
        return _scalar(cells.sum(), dtype, None if divisor == 1 else np.float64(divisor))
    den = da.from_array(np.float64(divisor))
    pairs = _pairs(functools.partial(_fused_block, name, names,
                                     dict(opts, reduction="sum"), True), x,
                   *_indexed(arrays), den, ())
    return (_scalar(_summed_cells(pairs), dtype, None if divisor == 1 else den),
            _grad_of(pairs, dtype))


def _indexed(arrays):
    """``blockwise``'s (array, index) pairs for arrays of one shape."""
    out = []
    for a in arrays:
        out += [a, tuple(range(a.ndim))]
    return out


def _single_chunk(x, axes):
    return all(len(x.chunks[a]) == 1 for a in axes)


def _state(x, axes):
    return da.reduction(x, split.lse_state, split.merge_states, combine=split.merge_states,
                        axis=axes, keepdims=True, dtype=split.STATE,
                        meta=_meta(x.ndim, split.STATE), concatenate=True)


def _softmax(name, opts):
    x = da.asarray(opts["x"])
    axes = normalize_axis(opts["axis"], x.ndim)
    dtype = _float_dtype(x)
    if _single_chunk(x, axes):
        return x.map_blocks(functools.partial(_apply, name, ("x",), {"axis": axes}),
                            dtype=dtype, meta=_meta(x.ndim, dtype))
    from_state = split.softmax_from_state if name == "softmax" else split.log_softmax_from_state
    return da.map_blocks(functools.partial(from_state, dtype=dtype), x, _state(x, axes),
                         dtype=dtype, meta=_meta(x.ndim, dtype))


def _logsumexp(opts):
    if opts["b"] is not None or opts["return_sign"]:
        raise NotImplementedError("fastloss.logsumexp: b= and return_sign= are not "
                                  "implemented for Dask arrays")
    x = da.asarray(opts["x"])
    axes = normalize_axis(opts["axis"], x.ndim)
    keepdims = opts["keepdims"]
    dtype = _float_dtype(x)
    if _single_chunk(x, axes):
        lse = x.map_blocks(
            functools.partial(_apply, "logsumexp", ("x",), {"axis": axes, "keepdims": True}),
            chunks=tuple((1,) if i in axes else c for i, c in enumerate(x.chunks)),
            dtype=dtype, meta=_meta(x.ndim, dtype))
        return lse if keepdims else lse.squeeze(axis=axes)
    lse = _state(x, axes).map_blocks(functools.partial(split.logsumexp_from_state, dtype=dtype),
                                     dtype=dtype, meta=_meta(x.ndim, dtype))
    return lse if keepdims else lse.squeeze(axis=axes)


def _row_loss(name, opts):
    first = "logits" if "logits" in opts else "log_probs"
    x = da.asarray(opts.pop(first))
    ax = check_class_axis(opts.pop("axis"), x.ndim)
    t = da.asarray(opts.pop("target"))
    sw = opts.pop("sample_weight", None)
    reduction = opts.pop("reduction")
    want_grad = name.endswith("_with_grad")
    soft = t.dtype.kind == "f"
    row_shape = x.shape[:ax] + x.shape[ax + 1:]
    row_chunks = x.chunks[:ax] + x.chunks[ax + 1:]
    if t.shape != (x.shape if soft else row_shape):
        raise ValueError(f"target has shape {t.shape}; index targets need {row_shape} "
                         f"({first} without axis {ax}), class probabilities {x.shape}")
    t = t.rechunk(x.chunks if soft else row_chunks)
    names = [first, "target"]
    arrays = [x, t]
    if sw is not None:
        sw = da.asarray(sw)
        if sw.shape != row_shape:
            raise ValueError(f"sample_weight has shape {sw.shape}; it must be {row_shape}")
        sw = sw.rechunk(row_chunks)
        names.append("sample_weight")
        arrays.append(sw)
    opts["axis"] = ax
    if opts.get("weight") is not None:
        opts["weight"] = np.asarray(opts["weight"])
    # One row of the real class count: checks weight's length too.
    one_row = tuple(x.shape[ax] if i == ax else 1 for i in range(x.ndim))
    probe = [np.zeros(one_row, x.dtype),
             np.full(one_row, 1.0 / max(x.shape[ax], 1), t.dtype) if soft
             else np.zeros((1,) * len(row_shape), t.dtype)]
    if sw is not None:
        probe.append(np.ones((1,) * len(row_shape)))
    dtype = np.asarray(_apply(name.removesuffix("_with_grad"), names,
                              dict(opts, reduction=reduction), *probe)).dtype
    if len(x.chunks[ax]) > 1:
        return _split_row_loss(name, x, t, sw, ax, opts, reduction, dtype, soft)

    xi = tuple(range(x.ndim))
    ri = xi[:ax] + xi[ax + 1:]
    blockwise_args = [x, xi, t, xi if soft else ri] + ([sw, ri] if sw is not None else [])
    den = None
    if reduction == "mean":
        den_cells = da.blockwise(
            functools.partial(_den_cell, x.shape[ax], soft, opts["ignore_index"],
                              opts.get("weight"), len(ri)),
            ri, *blockwise_args[2:], adjust_chunks={i: 1 for i in ri},
            dtype=np.float64, meta=_meta(len(ri), np.float64), concatenate=True)
        den = den_cells.sum()
    if want_grad:
        scaled = reduction == "mean"
        options = dict(opts, reduction="none" if reduction == "none" else "sum")
        pairs = _pairs(functools.partial(_fused_block, name, names, options, scaled), x,
                       *blockwise_args, *([den, ()] if scaled else []))
        grad = _grad_of(pairs, dtype)
        if reduction == "none":
            loss = pairs.map_blocks(
                functools.partial(_loss_rows, ax), dtype=dtype, meta=_meta(x.ndim, dtype),
                chunks=tuple((1,) if i == ax else c for i, c in enumerate(x.chunks)))
            return loss.squeeze(axis=ax), grad
        return _scalar(_summed_cells(pairs), dtype, den), grad
    if reduction == "none":
        return da.blockwise(functools.partial(_apply, name, names, dict(opts, reduction="none")),
                            ri, *blockwise_args, dtype=dtype, concatenate=True,
                            meta=_meta(len(ri), dtype))
    cells = da.blockwise(functools.partial(_block_sum, name, names, opts, x.ndim), xi,
                         *blockwise_args, adjust_chunks={i: 1 for i in xi},
                         dtype=np.float64, meta=_meta(x.ndim, np.float64))
    return _scalar(cells.sum(), dtype, den)


def _split_row_loss(name, x, t, sw, ax, opts, reduction, dtype, soft):
    """Index targets, class axis split: ``(m - x_t) + log1p(r)`` from the reduced state
    (cross-entropy) or ``-x_t`` (NLL), times the row weight; the gradient blockwise
    from the same state, the ``"mean"`` denominator reduced first."""
    if soft or opts.get("label_smoothing", 0.0):
        raise NotImplementedError(
            f"fastloss.{name} with class probabilities or label_smoothing needs the "
            f"class axis in one chunk: x.rechunk({{{ax}: -1}})")
    ignore_index = opts["ignore_index"]
    t1 = da.expand_dims(t, ax)
    picked = da.map_blocks(functools.partial(split.pick_target, axis=ax,
                                             ignore_index=ignore_index),
                           x, t1, dtype=np.float64, meta=_meta(x.ndim, np.float64),
                           chunks=tuple(c if i != ax else (1,) * len(c)
                                        for i, c in enumerate(x.chunks)))
    x_target = picked.sum(axis=ax, keepdims=True)
    weights = [t1] + ([da.expand_dims(sw, ax)] if sw is not None else [])
    row_w = da.map_blocks(functools.partial(_row_weight, ignore_index, opts.get("weight")),
                          *weights, dtype=np.float64, meta=_meta(x.ndim, np.float64))
    state = _state(x, (ax,)) if name.startswith("cross_entropy") else None
    if state is not None:
        loss = da.map_blocks(split.loss_from_state, state, x_target, row_w,
                             dtype=np.float64, meta=_meta(x.ndim, np.float64))
    else:
        loss = da.map_blocks(split.nll_from_target, x_target, row_w,
                             dtype=np.float64, meta=_meta(x.ndim, np.float64))
    loss = loss.squeeze(axis=ax)
    den = row_w.sum() if reduction == "mean" else None
    result = loss.astype(dtype) if reduction == "none" else _scalar(loss.sum(), dtype, den)
    if not name.endswith("_with_grad"):
        return result
    grad_w = row_w if den is None else row_w / den
    if state is not None:
        grad = da.map_blocks(functools.partial(split.ce_grad_from_state, axis=ax, dtype=dtype),
                             x, state, t1, grad_w, dtype=dtype, meta=_meta(x.ndim, dtype))
    else:
        grad = da.map_blocks(functools.partial(split.nll_grad, axis=ax, dtype=dtype),
                             x, t1, grad_w, dtype=dtype, meta=_meta(x.ndim, dtype))
    return result, grad
