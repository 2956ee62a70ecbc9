"""Public ``linear_cross_entropy``: a linear layer and cross-entropy, chunk by chunk.

The ``(N, V)`` logits of ``hidden @ weight.T + bias`` are never built.  The rows go
through in chunks; each chunk's logits are written into one preallocated ``(chunk, V)``
buffer by NumPy's matmul (NumPy's BLAS), scaled and soft-capped in place, read for the
requested by-products, and then overwritten by their own gradient by the fused
cross-entropy kernel (``cross_entropy_with_grad(..., out=z)``: loss and gradient from
one pass).  The gradient goes back through the softcap and the scale in place and into
``grad_hidden[chunk] = dz @ W`` and ``grad_weight += dz^T h[chunk]``.  Peak extra memory
is that buffer, one more of its size for the softcap's tanh and one for the softmax
(only when ``z_loss`` or ``"entropy"`` needs it), and, when there is more than one
chunk, a buffer of at most ``CHUNK_BYTES`` for a block of ``grad_weight``'s partial
product (NumPy's matmul cannot accumulate into its ``out=``).

The GEMMs run on the BLAS's threads and the kernel on fastloss's OpenMP threads, one
after the other; the BLAS is held to fastloss's thread count for the call
(``_runtime.blas_threads_at_most``), so one setting limits both pools.

The gradients are accumulated for the summed loss and divided once at the end for
``"mean"``: each chunk's arithmetic does not depend on the others.  The math is
written out in ``fastloss/fallback/linear_cross_entropy.py``, the twin that builds the
whole logits array.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from fastloss import _runtime
from fastloss import fallback as _fallback
from fastloss._cross_entropy import label_screen, cross_entropy, cross_entropy_with_grad
from fastloss._dispatch import with_fallback
from fastloss._loss_validation import check_linear_cross_entropy_args, intp_ignore_index
from fastloss._softmax import logsumexp
from fastloss._typing import ArrayLike, LinearCEExtra, LinearCrossEntropyResult, Reduction
from fastloss._validation import finish_float, finish_scalar

__all__ = ["linear_cross_entropy", "CHUNK_BYTES"]

# The size of one chunk's logits with chunk_size="auto" (and the cap of the block of
# grad_weight's partial product, a block of classes).  The chunk's rows are the inner
# dimension of the GEMM that forms grad_weight's share, and every chunk adds a whole
# V x H product into grad_weight: with 32 MiB (65 rows at V = 128256) that GEMM ran far
# below the BLAS's speed and the adds' memory traffic grew with the number of chunks.  At
# 128 MiB a float32 chunk has 261 rows at V = 128256 and 1048 at V = 32000, and the
# O(chunk x V) buffers (up to three, plus the product block) stay under 512 MiB.
CHUNK_BYTES = 128 * 2**20


def auto_chunk_rows(n_rows: int, n_classes: int, itemsize: int) -> int:
    """Rows per chunk for ``chunk_size="auto"``: logits of about ``CHUNK_BYTES``, at
    least one row and at most all of them."""
    return max(1, min(n_rows, CHUNK_BYTES // max(1, n_classes * itemsize)))


def _divisor(a, target, active):
    """The ``"mean"`` divisor: summed class weight times sample weight of the active
    rows (PyTorch's), or ``normalize_by`` when given."""
    if a["normalize_by"] is not None:
        return a["normalize_by"]
    if a["class_weight"] is None and a["sample_weight"] is None:
        return float(np.count_nonzero(active))
    w_y = np.ones(target.shape) if a["class_weight"] is None \
        else a["class_weight"][np.where(active, target, 0)]
    if a["sample_weight"] is not None:
        w_y = w_y * a["sample_weight"]
    return float(np.sum(np.where(active, w_y, 0.0), dtype=np.float64))


class _Buffers:
    """The preallocated per-chunk arrays; ``view(rows)`` gives the first ``rows`` rows."""

    def __init__(self, rows, n_classes, dtype, softcap, softmax):
        self.z = np.empty((rows, n_classes), dtype)
        self.th = np.empty((rows, n_classes), dtype) if softcap else None
        self.p = np.empty((rows, n_classes), dtype) if softmax else None

    def view(self, rows):
        return tuple(None if b is None else b[:rows] for b in (self.z, self.th, self.p))


def _run(a):
    h, w, b, t = a["h"], a["w"], a["b"], a["target"]
    n_rows, n_hidden = h.shape
    n_classes = w.shape[0]
    dtype = h.dtype
    ignore = intp_ignore_index(a["ignore_index"])
    active = t != ignore
    sw = a["sample_weight"]
    cap, scale, zl = a["softcap"], a["logit_scale"], a["z_loss"]
    want_grad, extras = a["return_grad"], a["extras"]

    want_rows = a["reduction"] == "none" or "loss_per_row" in extras
    want_lse = bool(zl) or "logsumexp" in extras or "entropy" in extras
    want_p = (bool(zl) and want_grad) or "entropy" in extras
    want_argmax = "argmax" in extras or "accuracy" in extras

    rows = a["chunk_rows"] or auto_chunk_rows(n_rows, n_classes, dtype.itemsize)
    rows = max(1, min(rows, n_rows))
    block = max(1, min(n_classes, CHUNK_BYTES // max(1, n_hidden * dtype.itemsize)))
    buf = _Buffers(rows, n_classes, dtype, cap is not None, want_p)
    ce_options = dict(weight=a["class_weight"], ignore_index=ignore,
                      label_smoothing=a["label_smoothing"],
                      reduction="none" if want_rows else "sum")

    total = 0.0
    row_loss = np.empty(n_rows, np.float64) if want_rows else None
    lse_all = np.empty(n_rows, np.float64) if "logsumexp" in extras else None
    entropy = np.empty(n_rows, np.float64) if "entropy" in extras else None
    argmax = np.empty(n_rows, np.intp) if want_argmax else None
    grad_h = grad_w = grad_b = product = None
    if want_grad:
        grad_h = np.empty((n_rows, n_hidden), dtype)
        grad_w = np.zeros((n_classes, n_hidden), dtype)
        grad_b = None if b is None else np.zeros(n_classes, np.float64)
    scale_t = dtype.type(scale)
    cap_t = None if cap is None else dtype.type(cap)

    # The BLAS's pool and the kernels' OpenMP team take turns (each GEMM returns before
    # the kernel starts, and the kernel before the next GEMM); both at fastloss's
    # thread count, so neither ever asks for more cores than the user allowed.
    blas_limit = _runtime.blas_threads_at_most(_runtime.get_num_threads())
    with np.errstate(all="ignore"), blas_limit:
        for start in range(0, n_rows, rows):
            stop = min(n_rows, start + rows)
            z, th, p = buf.view(stop - start)
            h_c, t_c = h[start:stop], t[start:stop]
            sw_c = None if sw is None else sw[start:stop]
            np.matmul(h_c, w.T, out=z)
            if b is not None:
                z += b
            if scale != 1.0:
                z *= scale_t
            if cap is not None:       # z = c tanh(z / c); th keeps tanh for the gradient
                np.divide(z, cap_t, out=th)
                np.tanh(th, out=th)
                np.multiply(th, cap_t, out=z)

            # By-products of the logits, read before the kernel overwrites them.
            lse = logsumexp(z, axis=-1).astype(np.float64) if want_lse else None
            if lse_all is not None:
                lse_all[start:stop] = lse
            if want_argmax:
                argmax[start:stop] = np.argmax(z, axis=-1)
            if p is not None:         # softmax, a second pass over the chunk
                np.subtract(z, lse[:, None].astype(dtype), out=p)
                np.exp(p, out=p)
                if entropy is not None:   # H = lse - sum p z (finite logits: no 0 * inf)
                    entropy[start:stop] = lse - np.einsum("ij,ij->i", p, z, dtype=np.float64)

            if want_grad:
                loss_c, _ = cross_entropy_with_grad(z, t_c, sample_weight=sw_c, out=z,
                                                    **ce_options)
            else:
                loss_c = cross_entropy(z, t_c, sample_weight=sw_c, **ce_options)
            if zl:
                z_rows = np.where(active[start:stop], zl * lse * lse, 0.0)
                if sw_c is not None:
                    z_rows *= sw_c
            if want_rows:
                r = np.asarray(loss_c, np.float64)
                if zl:
                    r = r + z_rows
                row_loss[start:stop] = r
                total += float(np.sum(r))
            else:
                total += float(loss_c) + (float(np.sum(z_rows)) if zl else 0.0)

            if not want_grad:
                continue
            if zl:                    # + 2 z_loss s lse softmax, per active row
                coef = np.where(active[start:stop], 2.0 * zl * lse, 0.0)
                if sw_c is not None:
                    coef *= sw_c
                p *= coef[:, None].astype(dtype)
                z += p
            if cap is not None:       # d c tanh(u / c) / du = 1 - tanh^2
                np.multiply(th, th, out=th)
                np.subtract(dtype.type(1), th, out=th)
                z *= th
            if scale != 1.0:
                z *= scale_t
            np.matmul(z, w, out=grad_h[start:stop])
            if start == 0:
                np.matmul(z.T, h_c, out=grad_w)
            else:
                # matmul cannot accumulate into its out=: the product goes through a
                # buffer of at most CHUNK_BYTES, a block of classes at a time.
                if product is None:
                    product = np.empty((block, n_hidden), dtype)
                for v0 in range(0, n_classes, block):
                    v1 = min(n_classes, v0 + block)
                    np.matmul(z[:, v0:v1].T, h_c, out=product[:v1 - v0])
                    grad_w[v0:v1] += product[:v1 - v0]
            if grad_b is not None:
                grad_b += z.sum(axis=0, dtype=np.float64)

    if a["reduction"] == "mean":
        divisor = _divisor(a, t, active)
        loss = finish_scalar(total / divisor if divisor else np.nan, a["dtype"])
        factor = 1.0 / divisor if divisor else 0.0   # nothing to average: no gradient
    elif a["reduction"] == "sum":
        loss, factor = finish_scalar(total, a["dtype"]), 1.0
    else:
        loss, factor = finish_float(row_loss.astype(dtype).reshape(a["row_shape"]),
                                    a["dtype"]), 1.0

    grads = (None, None, None)
    if want_grad:
        if factor != 1.0:
            grad_h *= dtype.type(factor)
            grad_w *= dtype.type(factor)
            if grad_b is not None:
                grad_b *= factor
        grads = (finish_float(grad_h.reshape(a["row_shape"] + (n_hidden,)), a["dtype"]),
                 finish_float(grad_w, a["dtype"]),
                 None if grad_b is None else finish_float(grad_b.astype(dtype), a["dtype"]))
    return LinearCrossEntropyResult(loss, *grads,
                                    _extras(a, row_loss, lse_all, argmax, entropy, active))


def _extras(a, row_loss, lse, argmax, entropy, active):
    """The requested by-products by name, in the row shape and the result dtype."""
    shape, dtype, out = a["row_shape"], a["dtype"], {}
    for name in a["extras"]:
        if name == "loss_per_row":
            out[name] = finish_float(row_loss.reshape(shape), dtype)
        elif name == "logsumexp":
            out[name] = finish_float(lse.reshape(shape), dtype)
        elif name == "argmax":
            out[name] = argmax.reshape(shape)
        elif name == "accuracy":
            n_active = np.count_nonzero(active)
            hits = np.count_nonzero((argmax == a["target"]) & active)
            out[name] = np.float64(hits / n_active) if n_active else np.float64(np.nan)
        elif name == "entropy":
            out[name] = finish_float(entropy.reshape(shape), dtype)
    return out


@with_fallback(_fallback.linear_cross_entropy)
def linear_cross_entropy(hidden: ArrayLike, weight: ArrayLike, target: ArrayLike, *,
                         bias: ArrayLike | None = None,
                         class_weight: ArrayLike | None = None,
                         sample_weight: ArrayLike | None = None, ignore_index: int = -100,
                         label_smoothing: float = 0.0, reduction: Reduction = "mean",
                         softcap: float | None = None, logit_scale: float = 1.0,
                         z_loss: float = 0.0, normalize_by: float | None = None,
                         chunk_size: int | Literal["auto"] = "auto",
                         return_grad: bool = True,
                         extras: Sequence[LinearCEExtra] = ()) -> LinearCrossEntropyResult:
    """Cross-entropy of a linear layer's logits and its gradients, without the logits.

    The logits ``z = softcap(logit_scale * (hidden @ weight.T + bias))`` are computed a
    chunk of rows at a time into one ``(chunk, V)`` buffer, and each chunk's loss and
    gradient come from the fused cross-entropy kernel writing over that buffer; the
    ``(N, V)`` logits never exist. Peak extra memory is ``O(chunk x V)`` (up to three
    such buffers: the logits, the softcap's tanh, the softmax for ``z_loss`` or
    ``"entropy"``) plus a block of ``grad_weight``'s partial product, of the same
    size at most.

    Parameters
    ----------
    hidden : array_like
        The layer's input, ``(..., H)`` (usually ``(N, H)``), float32 or float64.
    weight : array_like
        The layer's weight, ``(V, H)`` as in ``torch.nn.Linear``; the same dtype as
        ``hidden``.
    target : array_like of int
        Class indices in ``[0, V)``, of ``hidden``'s shape without its last axis.
    bias : array_like, optional
        The layer's bias, ``(V,)``.
    class_weight : array_like, optional
        Per-class weight of length V (``cross_entropy``'s ``weight``).
    sample_weight : array_like, optional
        Per-row weight, of the target's shape; it multiplies the whole row loss,
        z-loss included, and, for ``"mean"``, its share of the denominator.
    ignore_index : int, optional
        A target value whose row contributes no loss, no z-loss and no gradient, and is
        left out of the ``"mean"`` denominator. Default -100.
    label_smoothing : float, optional
        In [0, 1], PyTorch semantics (with ``class_weight``). Default 0.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` divides the summed row losses by the summed weights of the
        non-ignored rows (class weight of the target times sample weight; the z-loss
        is not class-weighted); NaN when they sum to 0, with zero gradients.
        ``"none"`` returns the row losses, with the gradients of their sum.
        Default "mean".
    softcap : float, optional
        ``c > 0``: the logits become ``c * tanh(z / c)`` (Gemma 2), after
        ``logit_scale``. Default None (no cap).
    logit_scale : float, optional
        The logits are multiplied by it before the softcap. Default 1.
    z_loss : float, optional
        ``>= 0``: adds ``z_loss * lse_i**2`` to each non-ignored row's loss, where
        ``lse_i`` is the log-sum-exp of the row's logits (PaLM's auxiliary loss,
        Liger's ``lse_square_scale``). Default 0.
    normalize_by : float, optional
        ``K > 0`` replaces the ``"mean"`` denominator: the summed loss and the
        gradients are divided by K (accumulating gradients over micro-batches, with K
        the token count of the whole batch). Needs ``reduction="mean"``. Default None.
    chunk_size : int or "auto", optional
        Rows per chunk. ``"auto"`` takes the logits of a chunk to about
        ``fastloss._linear_cross_entropy.CHUNK_BYTES`` (128 MiB), at least one row.
        The results do not depend on it beyond rounding. Default "auto".
    return_grad : bool, optional
        Compute the three gradients. Default True.
    extras : tuple of str, optional
        By-products of the logits (after scale and softcap), computed per chunk
        before the kernel overwrites them: ``"loss_per_row"`` (the ``"none"`` loss,
        whatever ``reduction``), ``"logsumexp"``, ``"argmax"`` (intp), ``"entropy"``
        (of the softmax: ``lse - sum(p * z)``, a second pass over the chunk), each of
        the target's shape; ``"accuracy"``, the float64 fraction of non-ignored rows
        whose argmax is the target (NaN if none). Default ().

    Returns
    -------
    LinearCrossEntropyResult
        A named tuple ``(loss, grad_hidden, grad_weight, grad_bias, extras)``: the loss
        as :func:`cross_entropy` returns it (scalar, or the row losses for
        ``"none"``); the gradients with respect to ``hidden``, ``weight`` and ``bias``
        in the input dtype (``None`` with ``return_grad=False``; ``grad_bias`` ``None``
        without a bias); ``extras`` a dict by name (empty if none were asked for).

    Raises
    ------
    IndexError
        A class index outside ``[0, V)`` that is not ``ignore_index``; the message
        names the value and its position.
    ValueError
        ``weight``, ``bias``, ``target``, ``class_weight`` or ``sample_weight`` of the
        wrong shape; an option out of its range (``softcap <= 0``, ``z_loss < 0``,
        ``normalize_by <= 0`` or without ``reduction="mean"``, ``chunk_size < 1``, an
        unknown extra or reduction).
    TypeError
        ``hidden`` and ``weight`` of different dtypes; complex, object or string
        input; a target that is not integer; an option of the wrong type (``extras``
        given as a bare string).

    Notes
    -----
    Threads: the GEMMs run on NumPy's BLAS threads and the cross-entropy kernel on
    fastloss's OpenMP threads, in turn, never at the same time. During the call the
    BLAS is held to at most :func:`get_num_threads` threads (through ``threadpoolctl``),
    so :func:`set_num_threads` (or ``OMP_NUM_THREADS``, or
    ``threadpoolctl.threadpool_limits(n, "openmp")``) limits both and the two pools
    never ask for more cores than that. A lower limit already on the BLAS
    (``OPENBLAS_NUM_THREADS``, ``threadpool_limits(n, "blas")``) stands, and the
    BLAS's own count is back when the call returns. That count is process-wide: while
    the call runs, NumPy matmuls in other Python threads get the limit too, and calls
    overlapping it from other threads run under it. The NumPy backend
    (``fastloss.fallback.linear_cross_entropy``) leaves the BLAS alone.

    Examples
    --------
    >>> import numpy as np, fastloss
    >>> rng = np.random.default_rng(0)
    >>> h = rng.standard_normal((6, 4)); W = rng.standard_normal((10, 4))
    >>> res = fastloss.linear_cross_entropy(h, W, np.array([1, 2, 3, 4, 5, 6]),
    ...                                     chunk_size=4, extras=("accuracy",))
    >>> res.grad_hidden.shape, res.grad_weight.shape, res.grad_bias is None
    ((6, 4), (10, 4), True)
    """
    a = check_linear_cross_entropy_args(
        hidden, weight, target, bias, class_weight, sample_weight, ignore_index,
        label_smoothing, reduction, softcap, logit_scale, z_loss, normalize_by, chunk_size,
        return_grad, extras, label_screen=label_screen)
    if a["h"].shape[0] == 0 or a["w"].shape[0] == 0:
        return _fallback.linear_cross_entropy(
            hidden, weight, target, bias=bias, class_weight=class_weight,
            sample_weight=sample_weight, ignore_index=ignore_index,
            label_smoothing=label_smoothing, reduction=reduction, softcap=softcap,
            logit_scale=logit_scale, z_loss=z_loss, normalize_by=normalize_by,
            chunk_size=chunk_size, return_grad=return_grad, extras=extras)
    return _run(a)
