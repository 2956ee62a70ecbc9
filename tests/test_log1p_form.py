"""The log1p form in the compiled kernels: rows dominated by their maximum keep the
small terms of their log-sum-exp, against an exact (mpmath) oracle.

With the row max m at class k, logsumexp = m + log1p(t) with t = sum_{j != k}
exp(x_j - m); log_softmax at k is -log1p(t) and the cross-entropy of target k is
log1p(t). Computing log(1 + t) instead loses every digit of t below 2^-53 (a loss of
4e-18 becomes 0) and most of them while t is small.

Rows: the max at 0 (or a power of two), the other classes a gap below it, plus dyadic
offsets so that every x_j - m is exact in float32 and float64 -- the oracle is then the
exact answer for the same inputs, and any error is the kernel's. Gaps run from 1 (the
plain form, t of order C) to the edge of the exponent range: losses of 1e-300
(float64) and 1e-30 (float32). Every layout that takes a log of a sum: tiles (C <= 16),
rows in two passes, rows read once (>= 16 KiB), columns (class axis not last), strided
rows, the streamed output, and the cross-entropy gradient in place (where the logits
are overwritten by the exponentials before the loss is formed); at every SIMD level.

Bounds (the issue's): float64 1e-15 relative for C <= 10 and 2e-14 up to C = 40000;
float32 2e-6. Last, float32 softmax of rows up to 262144 classes, within 2e-6 of a
float64 computation (the sums are float64).
"""
import numpy as np
import pytest

import fastloss

mp = pytest.importorskip("mpmath")

# The small gaps put rows on both sides of the kernels' switch to the second sum
# (FL_LOG1P_BELOW in src/csrc/softmax_impl.h: t = s - 1 below 2^-2 in float64).
GAPS = {np.float64: [0.5, 1, 1.5, 2.5, 3.5, 5, 20, 36, 37, 40, 100, 300, 690],
        np.float32: [0.5, 1, 2.5, 5, 10, 17, 20, 40, 69]}
CLASS_COUNTS = [2, 5, 10, 100, 2053, 4099, 40000]


def rtol(dtype, n_classes):
    if dtype == np.float32:
        return 2e-6
    return 1e-15 if n_classes <= 10 else 2e-14


def dominated_rows(n_classes, dtype, seed=0):
    """One row per gap: the max at class k (a different k per row), the others at
    max - gap - u with u in {0, 1/64, ..., 2}; the last row has a few -inf classes."""
    rng = np.random.default_rng(seed)
    gaps = GAPS[dtype]
    x = np.empty((len(gaps), n_classes), np.float64)
    target = rng.integers(0, n_classes, len(gaps))
    for r, gap in enumerate(gaps):
        top = [0.0, 2.0, -4.0][r % 3]
        x[r] = top - gap - rng.integers(0, 129, n_classes) / 64.0
        x[r, target[r]] = top
    if n_classes > 3:
        masked = rng.choice(np.delete(np.arange(n_classes), target[-1]), 2, replace=False)
        x[-1, masked] = -np.inf
    assert np.array_equal(x.astype(dtype), x)   # exact in either dtype
    return x.astype(dtype), target


def oracle(x, target):
    """(logsumexp, log1p(t)) per row, exact to double rounding."""
    lse, l1p = [], []
    with mp.workdps(40):
        for row, k in zip(np.asarray(x, np.float64), target):
            m = mp.mpf(row[k])
            t = mp.fsum(mp.exp(mp.mpf(v) - m) for j, v in enumerate(row)
                        if j != k and v != -np.inf)
            lse.append(float(m + mp.log1p(t)))
            l1p.append(float(mp.log1p(t)))
    return np.array(lse), np.array(l1p)


def assert_rel(got, want, tol, scale=None):
    """|got - want| <= tol * scale, scale = |want| unless given."""
    got = np.asarray(got, np.float64)
    err = np.abs(got - want) / (np.abs(want) if scale is None else scale)
    assert np.all(err <= tol), (err.max(), got[np.argmax(err)], want[np.argmax(err)])


@pytest.fixture(scope="module")
def cases():
    """(dtype, C) -> (x, target, lse, log1p(t)): the oracle once per module."""
    out = {}
    for dtype in (np.float32, np.float64):
        for n in CLASS_COUNTS:
            x, target = dominated_rows(n, dtype)
            out[dtype, n] = (x, target) + oracle(x, target)
    return out


def views(x):
    """The same rows as (array, class axis): rows, columns, strided rows."""
    yield "rows", x, -1
    yield "columns", np.ascontiguousarray(x.T), 0
    padded = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
    padded[:, ::2] = x
    yield "strided", padded[:, ::2], -1


@pytest.mark.parametrize("n", CLASS_COUNTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_and_log_softmax(simd_level, cases, dtype, n):
    x, target, lse, l1p = cases[dtype, n]
    rows = np.arange(len(target))
    # m + log1p(t) to the accuracy of its two terms: where m < 0 cancels log s, the
    # sum's own rounding is magnified (any algorithm's); at m = 0 this is relative.
    scale = np.abs(lse - l1p) + l1p
    for _, a, axis in views(x):
        assert_rel(fastloss.logsumexp(a, axis=axis), lse, rtol(dtype, n), scale)
        ls = fastloss.log_softmax(a, axis=axis)
        ls = ls if axis == -1 else ls.T
        assert_rel(-ls[rows, target], l1p, rtol(dtype, n))
    inplace = x.copy()
    fastloss.log_softmax(inplace, axis=-1, out=inplace)
    assert_rel(-inplace[rows, target], l1p, rtol(dtype, n))


@pytest.mark.parametrize("n", CLASS_COUNTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_targets_at_the_max(simd_level, cases, dtype, n):
    x, target, _, l1p = cases[dtype, n]
    tol = rtol(dtype, n)
    for _, a, axis in views(x):
        assert_rel(fastloss.cross_entropy(a, target, axis=axis, reduction="none"), l1p, tol)
        loss, _ = fastloss.cross_entropy_with_grad(a, target, axis=axis, reduction="none")
        assert_rel(loss, l1p, tol)
    weight = np.linspace(0.5, 2.0, n)
    assert_rel(fastloss.cross_entropy(x, target, weight=weight, reduction="none"),
               weight[target] * l1p, tol)
    one_hot = np.eye(n, dtype=dtype)[target]
    for targets in (target, one_hot):
        assert_rel(fastloss.cross_entropy(x, targets, reduction="none"), l1p, tol)
        # the gradient over the logits: the loss is formed after they are overwritten
        for logits, axis in ((x.copy(), -1), (np.ascontiguousarray(x.T), 0)):
            t = targets if axis == -1 or targets.ndim == 1 else np.ascontiguousarray(targets.T)
            loss, grad = fastloss.cross_entropy_with_grad(logits, t, axis=axis,
                                                          reduction="none", out=logits)
            assert np.shares_memory(grad, logits)
            assert_rel(loss, l1p, tol)


@pytest.mark.parametrize("n", [100, 2053, 4099, 40000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_runs_of_dominated_rows(simd_level, cases, dtype, n):
    """The rows loops guess that a row after a dominated one is dominated too and sum it
    without its max's 1 from the start (log_others_row in src/csrc/softmax_impl.h):
    rows reordered so that every switch happens -- dominated after plain, plain after
    dominated, runs of each -- must give the same results as each row alone."""
    x, target, lse, l1p = cases[dtype, n]
    order = np.array([len(target) - 2, 0, len(target) - 3, len(target) - 4, 1, 2,
                      len(target) - 1, 3, len(target) - 5, 4])
    x, target, lse, l1p = x[order], target[order], lse[order], l1p[order]
    rows, tol = np.arange(len(target)), rtol(dtype, n)
    scale = np.abs(lse - l1p) + l1p
    assert_rel(fastloss.logsumexp(x, axis=-1), lse, tol, scale)
    inplace = x.copy()
    for a, out in ((x, None), (x, np.empty_like(x)), (inplace, inplace)):
        ls = fastloss.log_softmax(a, axis=-1, out=out)
        assert_rel(-ls[rows, target], l1p, tol)
    reps = -(-(32 << 20) // x.nbytes)   # an output streamed past the cache
    ls = fastloss.log_softmax(np.tile(x, (reps, 1)), axis=-1)
    assert_rel(-ls[(reps - 1) * len(target) + rows, target], l1p, tol)
    assert_rel(fastloss.cross_entropy(x, target, reduction="none"), l1p, tol)
    loss, _ = fastloss.cross_entropy_with_grad(x.copy(), target, reduction="none")
    assert_rel(loss, l1p, tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_smoothing_keeps_the_small_part(simd_level, cases, dtype):
    """With label smoothing eps the loss is (1 - eps) log1p(t) + eps/C sum_j (lse - x_j):
    no cancellation, so the small part is only a relative error away."""
    n, eps = 10, 0.1
    x, target, lse, l1p = cases[dtype, n]
    xd = x.astype(np.float64)
    with mp.workdps(40):
        want = np.array([float((1 - mp.mpf(eps)) * mp.mpf(l) + mp.mpf(eps) / n * mp.fsum(
            mp.mpf(lse_r) - mp.mpf(v) for v in row)) for row, l, lse_r in zip(xd, l1p, lse)])
    got = fastloss.cross_entropy(x, target, label_smoothing=eps, reduction="none")
    assert_rel(got[:-1], want[:-1], 4 * rtol(dtype, n))   # the last row: -inf, loss inf


def test_the_issue_figures(simd_level):
    assert fastloss.logsumexp(np.array([0.0, -40.0])) == pytest.approx(
        4.248354255291589e-18, rel=1e-15, abs=0)
    assert fastloss.cross_entropy(np.array([[30.0, 0.0]]), [0]) == pytest.approx(
        9.357622968839737e-14, rel=1e-15, abs=0)
    assert fastloss.log_softmax(np.array([[0.0, -40.0]]))[0, 0] == pytest.approx(
        -4.248354255291589e-18, rel=1e-15, abs=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_log_softmax(simd_level, cases, dtype):
    """An output large enough to be streamed (past the cache, rows of 16 KiB)."""
    x, target, _, l1p = cases[dtype, 4099]
    reps = -(-(32 << 20) // x.nbytes)
    big = np.tile(x, (reps, 1))
    out = fastloss.log_softmax(big, axis=-1)
    rows = np.arange(len(target))
    for r0 in (0, (reps - 1) * len(target)):
        assert_rel(-out[r0 + rows, target], l1p, rtol(dtype, 4099))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_with_logits_keeps_the_small_part(simd_level, dtype):
    """softplus(-|x|) terms: log1p(exp(-40)) = 4.25e-18, not 0."""
    z = np.array([40.0, 30.0, 60.0, -40.0] if dtype == np.float64 else [15.0, 30.0, 60.0, -15.0],
                 dtype)
    y = np.array([1.0, 1.0, 1.0, 0.0], dtype)
    with mp.workdps(40):
        want = np.array([float(mp.log1p(mp.exp(-abs(mp.mpf(float(v)))))) for v in z])
    got = fastloss.binary_cross_entropy_with_logits(z, y, reduction="none")
    assert_rel(got, want, rtol(dtype, 2))


@pytest.mark.parametrize("n", [128256, 262144])
def test_float32_softmax_of_huge_rows(simd_level, n):
    """Sums in float64: float32 softmax within 2e-6 relative at any C (PyTorch's float32
    sums drift to 1.6e-5 at C = 128256), every element, the smallest too. Standard
    normal logits: at |x - m| of 40 the float32 subtraction alone can be off by 2e-6
    relative in exp, whatever the sum."""
    x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    x[1, ::1000] = -np.inf
    xd = x.astype(np.float64)
    want = np.exp(xd - xd.max(-1, keepdims=True))
    want /= np.sum(want, -1, keepdims=True)   # float64, pairwise: ~1e-15
    got = fastloss.softmax(x).astype(np.float64)
    keep = want > 0
    assert np.all(got[~keep] == 0)
    assert np.max(np.abs(got[keep] - want[keep]) / want[keep]) <= 2e-6
