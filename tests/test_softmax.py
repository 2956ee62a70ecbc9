"""Softmax family: both backends against a long-double reference, over shapes,
axes, dtypes and memory layouts; the contract's numerics; out=; bad input;
backward passes against finite differences; threads and SIMD levels."""
import itertools
import math
import mmap
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss
from fastloss import fallback
from conftest import assert_close, layouts, nasty_rows, rows_read_once, tolerance

FLOATS = [np.float32, np.float64]

# ----------------------------------------------------------------------------- references
# Independent of both backends: long double (80-bit on x86-64), written the textbook way.


def _shift_and_log_sum(x, axis):
    """(m, log(sum(exp(x - m)))) along axis, with m the max (0 where not finite)."""
    x = np.asarray(x, dtype=np.longdouble)
    axes = tuple(range(x.ndim)) if axis is None else axis
    m = np.max(x, axis=axes, keepdims=True) if x.size else np.zeros([1] * x.ndim)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return x, m, np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True))


def ref_logsumexp(x, axis):
    _, m, log_sum = _shift_and_log_sum(x, axis)
    return m + log_sum


def ref_log_softmax(x, axis):
    # (x - m) - log_sum, not x - (m + log_sum): the latter loses everything at 1e30
    x, m, log_sum = _shift_and_log_sum(x, axis)
    with np.errstate(invalid="ignore"):
        return (x - m) - log_sum


def ref_softmax(x, axis):
    return np.exp(ref_log_softmax(x, axis))


def as64(a):
    with np.errstate(over="ignore"):
        return np.asarray(a, dtype=np.float64)


# ----------------------------------------------------------------------------- sweep

SHAPES_AXES = [
    ((1, 1), [-1, 0]),
    ((1, 7), [-1, 0]),
    ((3, 1), [-1, 0]),
    ((17, 33), [-1, 0, 1, -2]),
    ((64, 10), [-1, 0]),
    ((1031, 10), [-1]),          # small-C flat path with a ragged last block
    ((40, 1000), [-1, 0]),
    ((5, 3, 4), [0, 1, 2, -1]),
    ((2, 3, 4, 5), [1, 3, -3]),
    ((3, 200, 7), [1]),          # class axis not last, inner > 1
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axes", SHAPES_AXES)
def test_softmax_family_matches_reference(backend, dtype, shape, axes):
    rng = np.random.default_rng(hash(shape) % 2**32)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    for axis in axes:
        for layout, xl in layouts(x):
            y = fastloss.softmax(xl, axis)
            assert y.dtype == dtype and y.shape == shape, layout
            assert_close(y, as64(ref_softmax(x, (axis % x.ndim,))), dtype)
            ly = fastloss.log_softmax(xl, axis)
            assert_close(ly, as64(ref_log_softmax(x, (axis % x.ndim,))), dtype)
            lse = fastloss.logsumexp(xl, axis)
            assert lse.shape == tuple(n for i, n in enumerate(shape) if i != axis % x.ndim)
            assert_close(lse, as64(ref_logsumexp(x, (axis % x.ndim,))).squeeze(axis), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [None, (0, 2), (-1, 0), (1,)])
def test_multiple_axes(backend, dtype, axis):
    x = np.random.default_rng(1).standard_normal((4, 5, 6)).astype(dtype)
    axes = None if axis is None else tuple(a % 3 for a in axis)
    assert_close(fastloss.softmax(x, axis), as64(ref_softmax(x, axes)), dtype)
    assert_close(fastloss.log_softmax(x, axis), as64(ref_log_softmax(x, axes)), dtype)
    lse = fastloss.logsumexp(x, axis, keepdims=True)
    assert_close(lse, as64(ref_logsumexp(x, axes)), dtype)
    if axis is None:
        scalar = fastloss.logsumexp(x, None)
        assert isinstance(scalar, np.generic) and scalar.dtype == dtype


def test_backends_agree(dtype=np.float32):
    """The compiled kernels against the fallback twin on one larger input."""
    if "cython" not in (fastloss.get_backend(),) and not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    x = np.random.default_rng(2).standard_normal((300, 517)).astype(dtype) * 10
    for name in ["softmax", "log_softmax", "logsumexp"]:
        assert_close(getattr(fastloss, name)(x), as64(getattr(fallback, name)(x)), dtype)


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", FLOATS)
def test_nasty_rows(backend, dtype):
    x = nasty_rows(dtype)
    nan_row = np.isnan(x).any(axis=1)
    with np.errstate(all="ignore"):
        y = fastloss.softmax(x)
        ly = fastloss.log_softmax(x)
        lse = fastloss.logsumexp(x)
    # NaN stays in its row; every other row is finite and sums to 1
    assert np.isnan(y[nan_row]).all() and np.isnan(lse[nan_row]).all()
    ok = ~nan_row
    assert np.isfinite(y[ok]).all() and np.isfinite(lse[ok]).all()
    np.testing.assert_allclose(y[ok].sum(axis=1, dtype=np.float64), 1.0, rtol=4 * tolerance(dtype))
    assert_close(y[ok], as64(ref_softmax(x[ok], (1,))), dtype)
    assert_close(lse[ok], as64(ref_logsumexp(x[ok], (1,))).ravel(), dtype)
    # log-probabilities below -float max overflow to -inf in the data's dtype
    ref_ly = as64(ref_log_softmax(x[ok], (1,)))
    with np.errstate(over="ignore"):
        representable = np.isfinite(ref_ly.astype(dtype))
    assert_close(ly[ok][representable], ref_ly[representable], dtype)
    assert np.isneginf(ly[ok][~representable]).all()
    # masked classes: probability exactly 0, log-probability -inf
    masked = np.isneginf(x[ok])
    assert (y[ok][masked] == 0).all() and np.isneginf(ly[ok][masked]).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_infinite_rows(backend, dtype):
    x = np.array([[-np.inf, -np.inf], [np.inf, 0.0], [np.inf, np.nan]], dtype=dtype)
    with np.errstate(all="ignore"):
        lse = fastloss.logsumexp(x)
        y = fastloss.softmax(x)
    assert np.isneginf(lse[0]) and lse[1] == np.inf and np.isnan(lse[2])
    assert np.isnan(y[0]).all()  # nothing to normalize: as scipy and PyTorch


@pytest.mark.parametrize("dtype", FLOATS)
def test_empty(backend, dtype):
    assert fastloss.softmax(np.zeros((0, 5), dtype)).shape == (0, 5)
    assert fastloss.log_softmax(np.zeros((3, 0), dtype)).shape == (3, 0)
    lse = fastloss.logsumexp(np.zeros((3, 0), dtype))
    assert lse.shape == (3,) and np.isneginf(lse).all() and lse.dtype == dtype
    assert fastloss.logsumexp(np.zeros((0, 4), dtype)).shape == (0,)


def test_zero_dim(backend):
    assert fastloss.softmax(np.float64(3.0), axis=None) == 1.0
    assert fastloss.logsumexp(np.float32(3.0), axis=None) == np.float32(3.0)
    with pytest.raises(np.exceptions.AxisError):
        fastloss.softmax(np.float64(3.0))


def test_dtype_rules(backend):
    assert fastloss.softmax(np.arange(6, dtype=np.int32).reshape(2, 3)).dtype == np.float64
    assert fastloss.softmax(np.ones((2, 3), dtype=bool)).dtype == np.float64
    x16 = np.linspace(-2, 2, 12, dtype=np.float16).reshape(3, 4)
    y16 = fastloss.softmax(x16)
    assert y16.dtype == np.float16
    np.testing.assert_allclose(y16.astype(float), ref_softmax(x16, (1,)).astype(float), rtol=2e-3)
    assert fastloss.softmax([[1, 2, 3]]).dtype == np.float64  # array-likes
    for bad in [np.ones((2, 3), complex), np.array([["a", "b"]]), np.array([[object()]])]:
        with pytest.raises(TypeError, match="x"):
            fastloss.softmax(bad)


@pytest.mark.parametrize("axis", [2, -3, 1.5, "0"])
def test_bad_axis(backend, axis):
    with pytest.raises((np.exceptions.AxisError, TypeError), match="axis"):
        fastloss.softmax(np.ones((2, 3)), axis)


# ----------------------------------------------------------------------------- out=


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_and_in_place(backend, dtype, name):
    fn = getattr(fastloss, name)
    x = np.random.default_rng(3).standard_normal((20, 30)).astype(dtype)
    expected = fn(x)
    out = np.empty_like(x)
    assert fn(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    for axis in (0, -1):
        out_f = np.empty(x.shape, dtype, order="F")
        assert fn(x, axis, out=out_f) is out_f
        # another layout may sum in another order: equal to the tolerance, not bitwise
        assert_close(out_f, as64(fn(x, axis)), dtype)
    inplace = x.copy()
    assert fn(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)
    # a view that only partly overlaps its input still gets the right answer
    buf = np.concatenate([x.ravel(), np.zeros(30, dtype)])
    src, dst = buf[30:].reshape(x.shape), buf[:-30].reshape(x.shape)
    src_values = src.copy()
    fn(src, out=dst)
    np.testing.assert_array_equal(dst, fn(src_values))


def _odd_memory(shape, dtype, kind):
    """An array the kernels cannot address as it is: its data one byte past an element
    boundary ("unaligned", contiguous), or rows whose byte stride is not a whole number
    of elements ("byte-strided")."""
    itemsize = np.dtype(dtype).itemsize
    if kind == "unaligned":
        buf = np.zeros(np.prod(shape) * itemsize + 1, np.uint8)
        return np.ndarray(shape, dtype, buffer=buf, offset=1)
    row = shape[1] * itemsize + 2
    buf = np.zeros(shape[0] * row, np.uint8)
    return np.ndarray(shape, dtype, buffer=buf, strides=(row, itemsize))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("kind", ["unaligned", "byte-strided"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_and_input_the_kernels_cannot_address(backend, dtype, kind, name):
    """An ``out=`` (or input) that is unaligned or whose strides are not whole elements
    is computed aside and copied: the result lands in ``out``, right, and nothing is
    written past it (a set_strides that truncated 22 // 4 filled it with garbage)."""
    fn, ref = getattr(fastloss, name), getattr(fallback, name)
    x = (np.arange(20 * 5).reshape(20, 5) / 10).astype(dtype)
    expected = ref(x.astype(np.float64))
    out = _odd_memory(x.shape, dtype, kind)
    before = out.base.copy() if kind == "byte-strided" else None
    assert fn(x, out=out) is out
    assert_close(out, expected, dtype)
    if before is not None:   # the two padding bytes of every row are left alone
        row = out.strides[0]
        pad = np.zeros(out.base.shape, bool)
        for r in range(x.shape[0]):
            pad[r * row + x.shape[1] * out.itemsize:(r + 1) * row] = True
        np.testing.assert_array_equal(out.base[pad], before[pad])
    xin = _odd_memory(x.shape, dtype, kind)
    xin[...] = x
    assert_close(fn(xin), expected, dtype)
    loss, grad = fastloss.cross_entropy_with_grad(x, np.arange(20) % 5, out=out)
    ref_loss, ref_grad = fallback.cross_entropy_with_grad(x.astype(np.float64), np.arange(20) % 5)
    assert_close(grad, ref_grad, dtype)
    assert grad is out


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_bad_out_writes_nothing(backend, name):
    fn = getattr(fastloss, name)
    x = np.ones((4, 5), np.float32)
    good_shape = (4,) if name == "logsumexp" else (4, 5)
    for bad in [np.full((5, 4), 7, np.float32), np.full(good_shape, 7, np.float64)]:
        before = bad.copy()
        with pytest.raises(ValueError, match="out"):
            fn(x, out=bad)
        np.testing.assert_array_equal(bad, before)


def test_logsumexp_out_keepdims(backend):
    x = np.random.default_rng(4).standard_normal((3, 4, 5))
    out = np.empty((3, 1, 5))
    assert fastloss.logsumexp(x, 1, keepdims=True, out=out) is out
    assert_close(out, as64(ref_logsumexp(x, (1,))), np.float64)


def test_input_not_modified(backend):
    x = np.random.default_rng(5).standard_normal((8, 9)).astype(np.float32)
    before = x.copy()
    for fn in (fastloss.softmax, fastloss.log_softmax, fastloss.logsumexp):
        fn(x)
    np.testing.assert_array_equal(x, before)


# ----------------------------------------------------------------------------- backward


def _numeric_vjp(f, x, grad, axis, eps=1e-6):
    """Central finite differences of sum(grad * f(x)) with respect to x (float64)."""
    result = np.zeros_like(x)
    for idx in itertools.product(*map(range, x.shape)):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        result[idx] = (np.sum(grad * f(xp, axis)) - np.sum(grad * f(xm, axis))) / (2 * eps)
    return result


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_backward_finite_differences(backend, axis):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 5))
    grad = rng.standard_normal(x.shape)
    y = fastloss.softmax(x, axis)
    np.testing.assert_allclose(fastloss.softmax_backward(grad, y, axis),
                               _numeric_vjp(fastloss.softmax, x, grad, axis), atol=1e-8)
    ly = fastloss.log_softmax(x, axis)
    np.testing.assert_allclose(fastloss.log_softmax_backward(grad, ly, axis),
                               _numeric_vjp(fastloss.log_softmax, x, grad, axis), atol=1e-8)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", [((50, 70), -1), ((50, 70), 0), ((4, 9, 6), 1), ((0, 3), -1)])
def test_backward_matches_formula(backend, dtype, shape, axis):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y = fastloss.softmax(x, axis)
    y64, g64 = y.astype(np.longdouble), g.astype(np.longdouble)
    expected = y64 * (g64 - np.sum(g64 * y64, axis=axis, keepdims=True))
    for _, gl in layouts(g):
        got = fastloss.softmax_backward(gl, y, axis)
        assert got.dtype == dtype
        assert_close(got, as64(expected), dtype)
    ly = fastloss.log_softmax(x, axis)
    expected = g64 - np.exp(ly.astype(np.longdouble)) * np.sum(g64, axis=axis, keepdims=True)
    assert_close(fastloss.log_softmax_backward(g, ly, axis), as64(expected), dtype)
    out = g.copy()
    assert fastloss.log_softmax_backward(out, ly, axis, out=out) is out  # in place over grad
    assert_close(out, as64(expected), dtype)


def test_backward_bad_input(backend):
    with pytest.raises(ValueError, match="shape"):
        fastloss.softmax_backward(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(TypeError, match="grad"):
        fastloss.softmax_backward(np.ones((2, 3), complex), np.ones((2, 3)))
    with pytest.raises(ValueError, match="out"):
        fastloss.softmax_backward(np.ones((2, 3)), np.ones((2, 3)), out=np.ones((3, 2)))


# ----------------------------------------------------------------------------- properties


finite_rows = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
    elements=st.floats(-1e4, 1e4, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(x=finite_rows, shift=st.floats(-1e3, 1e3))
def test_properties(x, shift):
    for name in ("cython", "numpy") if fastloss.available_simd_levels() else ("numpy",):
        fastloss.set_backend(name)
        try:
            y = fastloss.softmax(x)
            assert np.all(y >= 0)
            np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)
            # shift invariance: softmax(x + c) == softmax(x)
            np.testing.assert_allclose(fastloss.softmax(x + shift), y, rtol=1e-9, atol=1e-300)
            # log_softmax == log(softmax) where softmax is not tiny
            ly = fastloss.log_softmax(x)
            big = y > 1e-200
            np.testing.assert_allclose(ly[big], np.log(y[big]), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(fastloss.logsumexp(x), ly.max(axis=1) * -1 + x.max(axis=1),
                                       rtol=1e-9, atol=1e-9)
        finally:
            fastloss.set_backend("cython" if fastloss.available_simd_levels() else "numpy")


# ----------------------------------------------------------------------------- threads, SIMD


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", [((4096, 10), -1), ((300, 1000), -1), ((8, 500, 40), 1)])
def test_simd_levels(simd_level, dtype, shape, axis):
    x = np.random.default_rng(8).standard_normal(shape).astype(dtype) * 8
    x.flat[::97] = -np.inf
    assert_close(fastloss.softmax(x, axis), as64(ref_softmax(x, (axis % x.ndim,))), dtype)
    assert_close(fastloss.log_softmax(x, axis)[np.isfinite(x)],
                 as64(ref_log_softmax(x, (axis % x.ndim,)))[np.isfinite(x)], dtype)
    assert_close(fastloss.logsumexp(x, axis),
                 as64(ref_logsumexp(x, (axis % x.ndim,))).squeeze(axis), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_row_max_sees_every_position(simd_level, dtype):
    """The shift must be the row's true maximum wherever it sits: in any of the vector
    accumulators, the single-vector loop or the masked tail (row lengths around the
    vector and unroll widths).  softmax itself is shift-invariant, so the check is a
    spike too large for exp(spike - wrong max) to stay finite: softmax must give
    exactly one-hot and logsumexp the spike itself; cross-entropy at the spike is 0."""
    big = np.finfo(dtype).max / 4
    for n in (1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 129, 1000):
        positions = sorted({0, n // 3, n // 2, n - 2, n - 1} - {-1})
        x = np.zeros((len(positions), n), dtype=dtype)
        x[:] = np.linspace(-3.0, 3.0, n, dtype=dtype)
        for r, p in enumerate(positions):
            x[r, p] = big
        expected = np.zeros_like(x)
        expected[np.arange(len(positions)), positions] = 1
        np.testing.assert_array_equal(fastloss.softmax(x), expected, err_msg=f"n={n}")
        np.testing.assert_array_equal(fastloss.logsumexp(x, -1), np.full(len(positions), big, dtype),
                                      err_msg=f"n={n}")
        loss = fastloss.cross_entropy(x, np.array(positions), reduction="none")
        np.testing.assert_array_equal(loss, np.zeros(len(positions), dtype), err_msg=f"n={n}")


@pytest.fixture(params=[0, 1 << 40], ids=["every-row-long", "no-row-long"])
def long_rows(request):
    """Run the rows kernels with every row counted as long (0: next-row prefetch, and
    streamed outputs over 24 MiB) and none (2**40 bytes): the default draws the line
    at 1 KiB or 16 KiB rows depending on the CPU, so either path may be the one users
    run."""
    kernels = fastloss._runtime._kernels
    if kernels is None:
        pytest.skip("compiled extension not available")
    previous = kernels.get_long_row_bytes()
    kernels.set_long_row_bytes(request.param)
    try:
        yield request.param
    finally:
        kernels.set_long_row_bytes(previous)


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_row_paths(simd_level, long_rows, dtype):
    """The prefetching variants of the row loops (blocks of FL_PF_BLOCK elements with a
    tail) against the float64 reference, for row lengths around the block size, and
    an output over 24 MiB (streamed when its rows count as long); cross-entropy too."""
    rng = np.random.default_rng(21)
    for shape in [(7, 127), (5, 128), (6, 129), (3, 1000), (2, 4099)]:
        x = (rng.standard_normal(shape) * 6).astype(dtype)
        x[1, ::37] = -np.inf
        assert_close(fastloss.softmax(x), as64(ref_softmax(x, (1,))), dtype)
        fin = np.isfinite(x)
        assert_close(fastloss.log_softmax(x)[fin], as64(ref_log_softmax(x, (1,)))[fin], dtype)
        assert_close(fastloss.logsumexp(x, -1), as64(ref_logsumexp(x, (1,))).squeeze(1), dtype)
        labels = rng.integers(0, shape[1], shape[0])
        labels[1] = 1   # a finite logit in the row with masked classes
        loss, grad = fastloss.cross_entropy_with_grad(x, labels, reduction="none")
        ref_loss, ref_grad = fallback.cross_entropy_with_grad(x.astype(np.float64), labels,
                                                              reduction="none")
        assert_close(loss, ref_loss, dtype)
        assert_close(grad, ref_grad, dtype)
    # an output of 25 MiB, rows of 1000 and 8191 classes (4 KiB and 32 KiB rows): given
    # as out= (a fresh output is never streamed), and fresh
    for n in (1000, 8191):
        x = rng.standard_normal(((25 << 20) // (n * np.dtype(dtype).itemsize) + 1, n)).astype(dtype)
        rows = [0, len(x) // 2, len(x) - 1]
        out = np.empty_like(x)
        for name, ref in (("softmax", ref_softmax), ("log_softmax", ref_log_softmax)):
            for y in (getattr(fastloss, name)(x, out=out), getattr(fastloss, name)(x)):
                assert_close(y[rows], as64(ref(x[rows], (1,))), dtype)
                assert np.isfinite(y).all()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n_rows", [1, 15, 16, 17, 136, 300])
def test_tiles_every_width(simd_level, dtype, n_rows):
    """Packed rows of 1..16 classes (the tiles path: blocks of rows transposed into an
    L1 tile and back, in registers on AVX-512) at every SIMD level: row counts below,
    at and above a transposed group (16 rows) and a tile (128 rows).  A value moved to
    the wrong row or class shows up against the float64 reference; a NaN and a -inf
    are planted to check that they stay in their own row."""
    rng = np.random.default_rng(n_rows)
    for n in range(1, 17):
        x = (rng.standard_normal((n_rows, n)) * 5).astype(dtype)
        x[n_rows // 2, n // 2] = np.nan
        if n_rows > 1:
            x[n_rows // 2 - 1, n - 1] = -np.inf   # all -inf (a NaN row) when n == 1
        finite = ~np.isnan(x).any(axis=1, keepdims=True) & np.isfinite(x)
        y = fastloss.softmax(x)
        assert_close(y, as64(ref_softmax(x, (1,))), dtype)
        clean = ~np.isnan(x).any(axis=1) & np.isfinite(x).any(axis=1)
        assert np.isnan(y[n_rows // 2]).all() and not np.isnan(y[clean]).any()
        ly = fastloss.log_softmax(x)
        assert_close(ly[finite], as64(ref_log_softmax(x, (1,)))[finite], dtype)
        assert_close(fastloss.logsumexp(x, -1), as64(ref_logsumexp(x, (1,))).squeeze(1), dtype)
        xi = x.copy()   # in place: the transposes back write over the rows read
        assert fastloss.softmax(xi, out=xi) is xi
        np.testing.assert_array_equal(xi, y)


def _built_with_openmp():
    return fastloss._runtime.config().get("openmp", "").startswith("yes")


def test_threads_give_identical_results(threads):
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    if not _built_with_openmp():
        pytest.skip("built without OpenMP: single-threaded")
    x = np.random.default_rng(9).standard_normal((2000, 300)).astype(np.float32)
    fastloss.set_num_threads(1)
    one = [fastloss.softmax(x), fastloss.log_softmax(x), fastloss.logsumexp(x)]
    fastloss.set_num_threads(2)
    assert fastloss.get_num_threads() == 2
    two = [fastloss.softmax(x), fastloss.log_softmax(x), fastloss.logsumexp(x)]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_threadpoolctl_limits(threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _built_with_openmp():
        pytest.skip("built without OpenMP: single-threaded")
    fastloss.set_num_threads(2)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastloss.get_num_threads() == 1
    assert fastloss.get_num_threads() == 2


def test_set_num_threads_validates():
    with pytest.raises(ValueError):
        fastloss.set_num_threads(0)
    with pytest.raises(TypeError):
        fastloss.set_num_threads(1.5)


def test_set_backend_validates():
    with pytest.raises(ValueError, match="backend"):
        fastloss.set_backend("torch")


def test_repeated_calls_do_not_grow_memory(backend):
    tracemalloc = pytest.importorskip("tracemalloc")
    x = np.random.default_rng(10).standard_normal((64, 100)).astype(np.float32)
    out = np.empty_like(x)
    for _ in range(50):
        fastloss.softmax(x, out=out)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(500):
        fastloss.softmax(x, out=out)
        fastloss.logsumexp(x)
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert grown < 64 * 1024, grown


def test_show_config_reports(capsys):
    fastloss.show_config()
    text = capsys.readouterr().out
    for key in ("fastloss", "backend", "threads"):
        assert key in text
    if fastloss.available_simd_levels():
        assert "simd level in use" in text and "openmp" in text.lower()
        assert "long rows" in text


def test_long_row_env_var_sets_start_value():
    """FASTLOSS_LONG_ROW_BYTES sets the long-row length at import; a bad value
    warns and leaves the CPU's default."""
    if fastloss._runtime._kernels is None:
        pytest.skip("compiled extension not available")
    import subprocess
    import sys
    code = ("import warnings; warnings.simplefilter('always');"
            "import fastloss; print(fastloss._runtime._kernels.get_long_row_bytes())")
    def start_value(env_value):
        env = dict(os.environ, FASTLOSS_LONG_ROW_BYTES=env_value)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True, cwd=os.path.dirname(__file__))
        return int(done.stdout.split()[-1]), done.stderr
    assert start_value("4096") == (4096, "")
    default, err = start_value("")
    assert default in (1024, 16384) and err == ""
    assert start_value("-5")[0] == default
    assert "FASTLOSS_LONG_ROW_BYTES ignored" in start_value("-5")[1]


def test_logsumexp_matches_fsum():
    """An accuracy check against math.fsum on a long float32 row."""
    x = np.random.default_rng(11).standard_normal(100_000).astype(np.float32)
    m = float(x.max())
    expected = m + math.log(math.fsum(math.exp(float(v) - m) for v in x))
    assert abs(float(fastloss.logsumexp(x)) - expected) <= 1e-6 * abs(expected)


# ----------------------------------------------------------------------------- large outputs
# Outputs over 24 MiB with long rows (>= 16 KiB is long on every CPU) take the
# kernels' streaming path (the next row prefetched, the output written with streaming
# stores while the next row computes, line-boundary head pieces).  Rows of 4099 floats put every row's start at
# a different offset within a cache line; an output view one element into its buffer
# shifts them again; in place overwrites the rows that are still being read.
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_streamed_large_outputs(simd_level, threads, name, n_threads):
    fastloss.set_num_threads(n_threads)
    rng = np.random.default_rng(7)
    n_rows, n_classes = 1600, 4099           # 26 MB of float32
    x = (rng.standard_normal((n_rows, n_classes)) * 4).astype(np.float32)
    x[3, 5] = -np.inf                          # a masked class
    x[7, :] = -np.inf                          # an all-masked row: NaN, in its row only
    x[11, 100] = np.nan                        # NaN stays in its row
    fn = getattr(fastloss, name)
    check = np.r_[0:20, n_rows - 20:n_rows, 797:803]   # start, end, thread boundary
    expected = (ref_softmax if name == "softmax" else ref_log_softmax)(x[check], -1)
    buf = np.empty(n_rows * n_classes + 1, dtype=np.float32)
    out = buf[1:].reshape(n_rows, n_classes)  # misaligned rows
    for got in (fn(x, axis=-1), fn(x, axis=-1, out=out)):
        np.testing.assert_array_equal(np.isnan(got[check]), np.isnan(expected))
        ok = ~np.isnan(expected)
        assert_close(got[check][ok], np.asarray(expected[ok], dtype=np.float64), np.float32)
        assert not np.isnan(np.delete(got, [7, 11], axis=0)).any()
    whole = fn(x, axis=-1)
    y = x.copy()
    assert fn(y, axis=-1, out=y) is y
    np.testing.assert_array_equal(y, whole)   # in place == out of place, bitwise


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore: Linux only")
def test_fresh_output_pages():
    """A fresh output over 24 MiB is streamed into only when its pages are already there
    (the allocator reused memory): fl_output_is_fresh asks mincore.  Memory just mapped
    has no pages until it is written; below 24 MiB it is never asked (fresh)."""
    kernels = pytest.importorskip("fastloss._lib.kernels")
    mapped = mmap.mmap(-1, 32 << 20)
    buf = np.frombuffer(mapped, dtype=np.int8)
    assert kernels.output_is_fresh(buf)
    buf[::4096] = 1                          # every page touched
    assert not kernels.output_is_fresh(buf)
    assert kernels.output_is_fresh(buf[: 16 << 20])
    del buf
    mapped.close()


# Rows of 16 KiB and more are read once in the AVX-512 build (online_blocks in
# softmax_impl.h): blocks of 128 classes, the running max raised or not at each, the sum
# rescaled at each raise, and the stored exponentials of each stretch brought to the
# final max by one factor per stretch when the output is written.  The other levels
# check the same rows in two passes.
def _check_rows(name, got, x, dtype):
    expected = as64((ref_softmax if name == "softmax" else ref_log_softmax)(x, (1,)))
    finite = np.isfinite(expected)
    assert_close(got[finite], expected[finite], dtype)
    np.testing.assert_array_equal(got[~finite], expected[~finite])   # -inf: masked classes


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_rows_in_one_read(simd_level, dtype):
    """softmax, log_softmax and logsumexp of such rows against the long-double
    reference; out= and in place give the same bits as a fresh output; the NaN and
    -inf rules of the two-pass rows."""
    rng = np.random.default_rng(33)
    x = rows_read_once(dtype, rng)
    for name in ("softmax", "log_softmax"):
        fn = getattr(fastloss, name)
        got = fn(x)
        _check_rows(name, got, x, dtype)
        out = np.empty_like(x)
        np.testing.assert_array_equal(fn(x, out=out), got)
        xi = x.copy()
        np.testing.assert_array_equal(fn(xi, out=xi), got)
    assert_close(fastloss.logsumexp(x, -1), as64(ref_logsumexp(x, (1,))).squeeze(1), dtype)

    # NaN in a block of -inf read while the max is still -inf, NaN later, +inf, all -inf
    bad = (rng.standard_normal((5, x.shape[1])) * 4).astype(dtype)
    bad[0, :200] = -np.inf
    bad[0, 150] = np.nan
    bad[1, -3] = np.nan
    bad[2, 1000] = np.inf
    bad[3] = -np.inf
    for name in ("softmax", "log_softmax"):
        y = getattr(fastloss, name)(bad)
        assert np.isnan(y[:4]).all() and np.isfinite(y[4]).all()
    lse = fastloss.logsumexp(bad, -1)
    assert np.isnan(lse[:2]).all() and lse[2] == np.inf and lse[3] == -np.inf
    assert_close(lse[4], as64(ref_logsumexp(bad[4:], (1,))).item(), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_rows_in_one_read_streamed(simd_level, dtype):
    """The same rows inside an output over 24 MiB given as out= (streamed: each row's
    output leaves while the next row is read, cut where its stretches end; rows
    starting off a cache line, so the cuts fall off line boundaries): the same bits
    as a fresh (not streamed) output, and the reference on the planted rows."""
    rng = np.random.default_rng(34)
    rows = rows_read_once(dtype, rng)
    n = rows.shape[1]
    x = rng.standard_normal(((25 << 20) // (n * np.dtype(dtype).itemsize) + 1, n)).astype(dtype)
    planted = [0, 1, 2, len(x) // 2, len(x) - 1]
    x[planted] = rows
    buf = np.empty(x.size + 1, dtype=dtype)
    out = buf[1:].reshape(x.shape)
    for name in ("softmax", "log_softmax"):
        fn = getattr(fastloss, name)
        fresh = fn(x)
        np.testing.assert_array_equal(fn(x, out=out), fresh)
        _check_rows(name, out[planted], rows, dtype)
