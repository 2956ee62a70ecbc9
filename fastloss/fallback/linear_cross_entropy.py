"""Cross-entropy of a linear layer's output in plain NumPy (reference and fallback).

The whole ``(N, V)`` logits array at once, every step spelled out:

    z_i    = softcap(logit_scale * (h_i W^T + b))     softcap(u) = c tanh(u / c)
    lse_i  = log sum_j exp(z_ij)
    l_i    = s_i (ce_i + z_loss lse_i^2)              0 for an ignored row

``ce_i`` is ``fastloss.fallback.cross_entropy``'s row loss (class weight and label
smoothing included), ``s_i`` the sample weight.  The gradient of ``sum_i l_i`` with
respect to the logits is that of the cross-entropy plus ``2 z_loss s_i lse_i p_ij``
(``p = softmax(z)``); it goes back through the softcap (``1 - tanh^2``) and the scale,
then ``dh = dz W``, ``dW = dz^T h``, ``db = sum_i dz_i``.
"""
from __future__ import annotations

import numpy as np

from fastloss._loss_validation import check_linear_cross_entropy_args, intp_ignore_index
from fastloss._typing import LinearCrossEntropyResult
from fastloss._validation import finish_float, finish_scalar
from fastloss.fallback.cross_entropy import cross_entropy_with_grad
from fastloss.fallback.softmax import logsumexp

__all__ = ["linear_cross_entropy"]


def _divisor(a, target, active):
    """The ``"mean"`` divisor: summed class weight times sample weight of active rows,
    or ``normalize_by`` when given."""
    if a["normalize_by"] is not None:
        return a["normalize_by"]
    w_y = np.ones(target.shape) if a["class_weight"] is None \
        else a["class_weight"][np.where(active, target, 0)]
    if a["sample_weight"] is not None:
        w_y = w_y * a["sample_weight"]
    return float(np.sum(np.where(active, w_y, 0.0), dtype=np.float64))


def linear_cross_entropy(hidden, weight, target, *, bias=None, class_weight=None,
                         sample_weight=None, ignore_index=-100, label_smoothing=0.0,
                         reduction="mean", softcap=None, logit_scale=1.0, z_loss=0.0,
                         normalize_by=None, chunk_size="auto", return_grad=True, extras=()):
    """The NumPy implementation of :func:`fastloss.linear_cross_entropy`."""
    a = check_linear_cross_entropy_args(
        hidden, weight, target, bias, class_weight, sample_weight, ignore_index,
        label_smoothing, reduction, softcap, logit_scale, z_loss, normalize_by, chunk_size,
        return_grad, extras)
    h, w, b, t = a["h"], a["w"], a["b"], a["target"]
    dtype, row_shape = a["dtype"], a["row_shape"]
    sw = np.ones(t.shape) if a["sample_weight"] is None else a["sample_weight"]
    ignore = intp_ignore_index(a["ignore_index"])
    active = t != ignore

    with np.errstate(all="ignore"):
        z = h @ w.T
        if b is not None:
            z = z + b
        z = z * z.dtype.type(a["logit_scale"])
        if a["softcap"] is not None:
            th = np.tanh(z / z.dtype.type(a["softcap"]))
            z = th * z.dtype.type(a["softcap"])
        lse = logsumexp(z, axis=-1).astype(np.float64)
        ce_rows, dz = cross_entropy_with_grad(
            z, t, weight=a["class_weight"], sample_weight=a["sample_weight"],
            ignore_index=ignore, reduction="none", label_smoothing=a["label_smoothing"])
        rows = ce_rows.astype(np.float64)
        if a["z_loss"]:
            rows = rows + np.where(active, a["z_loss"] * sw * lse ** 2, 0.0)

        if a["reduction"] == "mean":
            divisor = _divisor(a, t, active)
            total = np.sum(rows, dtype=np.float64)
            loss = finish_scalar(total / divisor if divisor else np.nan, dtype)
            factor = 1.0 / divisor if divisor else 0.0   # nothing to average: no gradient
        elif a["reduction"] == "sum":
            loss = finish_scalar(np.sum(rows, dtype=np.float64), dtype)
            factor = 1.0
        else:
            loss = finish_float(rows.reshape(row_shape), dtype)
            factor = 1.0

        grads = (None, None, None)
        if a["return_grad"]:
            if a["z_loss"]:
                p = np.exp(z.astype(np.float64) - lse[:, None])
                coef = np.where(active, 2.0 * a["z_loss"] * sw * lse, 0.0)
                dz = (dz + coef[:, None] * p).astype(z.dtype)
            if a["softcap"] is not None:
                dz = dz * (1 - th * th)
            dz = dz * dz.dtype.type(a["logit_scale"] * factor)
            grads = (finish_float((dz @ w).reshape(row_shape + (h.shape[1],)), dtype),
                     finish_float(dz.T @ h, dtype),
                     None if b is None else finish_float(dz.sum(axis=0), dtype))

        out = {}
        for name in a["extras"]:
            if name == "loss_per_row":
                out[name] = finish_float(rows.reshape(row_shape), dtype)
            elif name == "logsumexp":
                out[name] = finish_float(lse.reshape(row_shape), dtype)
            elif name == "argmax":
                out[name] = np.argmax(z, axis=-1).reshape(row_shape)
            elif name == "accuracy":
                hits = np.count_nonzero((np.argmax(z, axis=-1) == t) & active)
                n_active = np.count_nonzero(active)
                out[name] = np.float64(hits / n_active) if n_active else np.float64(np.nan)
            elif name == "entropy":
                # H_i = lse_i - sum_j p_ij z_ij (a class of probability 0 adds nothing)
                z64 = z.astype(np.float64)
                p = np.exp(z64 - lse[:, None])
                pz = np.where(p == 0, 0.0, p * z64)
                out[name] = finish_float((lse - pz.sum(axis=-1)).reshape(row_shape), dtype)
    return LinearCrossEntropyResult(loss, *grads, out)
