"""A class axis split across Dask chunks: the online-softmax state, tree-reduced.

The state of a set of logits is ``(m, r)``: ``m`` their max, ``r`` the sum of
``exp(x - m)`` over every term but one that equals ``m``, so that
``logsumexp = m + log1p(r)`` keeps the small terms (the contract's form).  Two states
merge as ``m = max(m1, m2)``, ``r = r1 + (1 + r2) exp(m2 - m1)`` when ``m1`` is the
larger -- the ``(max, sum of exp)`` merge with the max's own term kept out of ``r``.
A state is a structured float64 array (fields ``m`` and ``r``), so that
``dask.array.reduction`` carries it as one array through its tree; float32 logits
are reduced in float64.

Conventions at the edges: no term, or only ``-inf`` terms, is ``(-inf, 0)``; a
``+inf`` term is ``(+inf, 0)``; a NaN makes ``m`` NaN.  The blockwise passes then
compute from ``x - m`` and ``log1p(r)``: ``log_softmax = (x - m) - log1p(r)``,
``softmax = exp(x - m) / (1 + r)``, ``loss = (m - x_t) + log1p(r)`` and its gradient
``softmax - onehot``, no rechunk.
"""
from __future__ import annotations

import numpy as np

__all__ = ["STATE", "lse_state", "merge_states", "logsumexp_from_state", "softmax_from_state",
           "log_softmax_from_state", "pick_target", "loss_from_state", "nll_from_target",
           "ce_grad_from_state", "nll_grad"]

STATE = np.dtype([("m", np.float64), ("r", np.float64)])


def _last(a, axis):
    """``a`` with the axes ``axis`` moved to the end and flattened into one."""
    kept = [i for i in range(a.ndim) if i not in axis]
    moved = np.transpose(a, kept + list(axis))
    return moved.reshape(moved.shape[:len(kept)] + (-1,))


def _keepdims(values, shape, axis):
    return values.reshape(tuple(1 if i in axis else n for i, n in enumerate(shape)))


def _first_max_removed(terms, m, values):
    """Sum of ``terms`` along the last axis, less the term at the first max of
    ``values`` (which is ``exp(0) = 1`` for logits, ``r`` itself for states)."""
    if terms.shape[-1] == 0:
        return np.zeros(terms.shape[:-1])
    first = np.argmax(values, axis=-1)[..., None]
    np.put_along_axis(terms, first, 0.0, axis=-1)
    total = terms.sum(axis=-1)
    # +inf and -inf maxima: x - m is NaN or exp(-inf) for every term; r is 0 there.
    return np.where(np.isinf(m), 0.0, total)


def lse_state(x, axis, keepdims=True):
    """``dask.array.reduction`` chunk: the state of a block along ``axis``."""
    axis = tuple(axis)
    flat = _last(np.asarray(x, dtype=np.float64), axis)
    state = np.empty(flat.shape[:-1], dtype=STATE)
    with np.errstate(invalid="ignore", over="ignore"):
        m = flat.max(axis=-1, initial=-np.inf)   # NaN-propagating; -inf for no term
        terms = np.exp(flat - m[..., None])
        state["m"] = m
        state["r"] = _first_max_removed(terms, m, flat)
    return _keepdims(state, x.shape, axis)


def merge_states(state, axis, keepdims=True):
    """``dask.array.reduction`` combine and aggregate: merge states along ``axis``."""
    axis = tuple(axis)
    flat = _last(state, axis)
    m_all, r_all = flat["m"], flat["r"]
    merged = np.empty(flat.shape[:-1], dtype=STATE)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(m_all, axis=-1)
        scaled = np.where(m_all == -np.inf, 0.0,
                          (1.0 + r_all) * np.exp(m_all - m[..., None]))
        # The first state at the max keeps its own r; every other contributes its
        # (1 + r) scaled to the common max.
        first = np.argmax(m_all, axis=-1)[..., None]
        np.put_along_axis(scaled, first, np.take_along_axis(r_all, first, axis=-1), axis=-1)
        merged["m"] = m
        merged["r"] = np.where(np.isinf(m), 0.0, scaled.sum(axis=-1))
    return _keepdims(merged, state.shape, axis)


def logsumexp_from_state(state, dtype):
    return (state["m"] + np.log1p(state["r"])).astype(dtype, copy=False)


def log_softmax_from_state(x, state, dtype):
    with np.errstate(invalid="ignore"):
        out = (x.astype(np.float64) - state["m"]) - np.log1p(state["r"])
    return out.astype(dtype, copy=False)


def softmax_from_state(x, state, dtype):
    with np.errstate(invalid="ignore"):
        out = np.exp(x.astype(np.float64) - state["m"]) / (1.0 + state["r"])
    return out.astype(dtype, copy=False)


def pick_target(x, target, axis, ignore_index, block_info=None):
    """The logit of each row's target class if this block holds it, else 0 (each
    target is in exactly one block along ``axis``, so the sum over blocks is exact).
    ``target`` has a length-1 ``axis``; the result too."""
    start, stop = block_info[0]["array-location"][axis]
    n_classes = block_info[0]["shape"][axis]
    _check_labels(target, n_classes, ignore_index)
    inside = (target >= start) & (target < stop)
    local = np.where(inside, target - start, 0)
    picked = np.take_along_axis(x.astype(np.float64), local, axis=axis)
    return np.where(inside, picked, 0.0)


def _check_labels(target, n_classes, ignore_index):
    bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IndexError(f"target value {int(target[where])} at position {where} of its "
                         f"Dask block is outside [0, {n_classes})")


def loss_from_state(state, x_target, row_weight):
    """Cross-entropy rows ``row_weight * ((m - x_t) + log1p(r))``, 0 where
    ``row_weight`` is (ignored rows, whatever their logits)."""
    with np.errstate(invalid="ignore"):
        loss = (state["m"] - x_target) + np.log1p(state["r"])
    return np.where(row_weight == 0, 0.0, row_weight * loss)


def nll_from_target(x_target, row_weight):
    """NLL rows ``-row_weight * x_t``, 0 where ``row_weight`` is."""
    return np.where(row_weight == 0, 0.0, -row_weight * x_target)


def _is_target(x, target, axis, block_info):
    """Where a block's class equals its row's target (``target``: length 1 on axis)."""
    start = block_info[0]["array-location"][axis][0]
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return target == (np.arange(start, start + x.shape[axis]).reshape(shape))


def ce_grad_from_state(x, state, target, grad_weight, axis, dtype, block_info=None):
    """A block of the cross-entropy gradient: ``(softmax - onehot) * grad_weight``,
    with the row's loss weight (and the mean's ``1 / den``) in ``grad_weight``; 0 for
    rows of weight 0 (ignore_index)."""
    onehot = _is_target(x, target, axis, block_info)
    with np.errstate(invalid="ignore"):
        p = np.exp(x.astype(np.float64) - state["m"]) / (1.0 + state["r"])
        grad = np.where(grad_weight == 0, 0.0, (p - onehot) * grad_weight)
    return grad.astype(dtype, copy=False)


def nll_grad(x, target, grad_weight, axis, dtype, block_info=None):
    """A block of the NLL gradient: ``-grad_weight`` at the target class, else 0."""
    onehot = _is_target(x, target, axis, block_info)
    grad = np.where(onehot & (grad_weight != 0), -grad_weight, 0.0)
    return np.broadcast_to(grad, x.shape).astype(dtype)
