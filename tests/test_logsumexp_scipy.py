"""``logsumexp``'s ``b=`` and ``return_sign`` against SciPy's meaning of them.

* SciPy's own real-valued cases (scipy/special/tests/test_logsumexp.py), ported to
  fastloss's defaults -- ``axis`` is passed explicitly, SciPy reduces everything by
  default -- and dtype rules (the result dtype is ``x``'s; complex raises).
* A differential sweep against ``scipy.special.logsumexp`` (fed float64) over shapes,
  axes, keepdims, weights (zeros, negatives, broadcasting), return_sign and
  -inf/+inf/NaN entries.  Where SciPy is inconsistent the contract says which answer is
  right and the reference is adjusted (``scipy_reference``).
* Exact oracles (mpmath) for rows dominated by their maximum: the log1p form keeps the
  small terms, to 1e-15 relative in the fallback (the kernels: test_log1p_form.py).

Calls with ``b`` or ``return_sign`` run the NumPy implementation under both backends;
the cython backend's plain calls run the kernels (the contract's 1e-12 there).
"""
import math

import numpy as np
import pytest

import fastloss
import fastloss.fallback as fb
from conftest import assert_close

scipy_special = pytest.importorskip("scipy.special")  # SciPy is the specification here
lse = fastloss.logsumexp
inf, nan = np.inf, np.nan
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def close(actual, desired, rtol=1e-13):
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=0)


# ------------------------------------------------------------------ SciPy's own cases

def test_scipy_logsumexp(backend):
    assert lse(np.array([]), axis=None) == -inf
    a = np.arange(200.0)
    close(lse(a, axis=None), np.log(np.sum(np.exp(a))))
    close(lse(np.array([1000.0, 1000.0]), axis=None), 1000.0 + math.log(2.0))
    close(lse(np.full(1000, 10000), axis=None), 10000.0 + math.log(1000))
    x = np.full(1_000_000, 1e-40)
    X, logX = np.stack([x, x]), np.log(np.stack([x, x]))
    close(np.exp(lse(logX, axis=None)), np.sum(X))
    close(np.exp(lse(logX, axis=0)), np.sum(X, axis=0))
    close(np.exp(lse(logX, axis=1)), np.sum(X, axis=1), rtol=1e-12)
    assert lse(np.array([inf]), axis=None) == inf
    assert lse(np.array([-inf]), axis=None) == -inf
    assert np.isnan(lse(np.array([nan]), axis=None))
    assert lse(np.array([-inf, -inf]), axis=None) == -inf
    a = np.array([[1e10, 1e-10], [-1e10, -inf]])
    close(lse(a, axis=-1), [1e10, -1e10])
    close(lse(a, axis=-1, keepdims=True), [[1e10], [-1e10]])
    close(lse(a, axis=(-1, -2)), 1e10)


def test_scipy_logsumexp_b(backend):
    a = np.arange(200.0)
    b = np.arange(200.0, 0.0, -1.0)
    close(lse(a, axis=None, b=b), np.log(np.sum(b * np.exp(a))))
    close(lse(np.array([1000, 1000]), axis=None, b=np.array([1.2, 1.2])),
          1000 + math.log(2 * 1.2))
    x = np.full(100_000, 1e-40)
    b = np.linspace(1, 1000, 100_000)
    X, logX, B = np.stack((x, x)), np.log(np.stack((x, x))), np.stack((b, b))
    close(np.exp(lse(logX, axis=None, b=B)), np.sum(B * X))
    close(np.exp(lse(logX, axis=0, b=B)), np.sum(B * X, axis=0))
    close(np.exp(lse(logX, axis=1, b=B)), np.sum(B * X, axis=1))


def test_scipy_sign(backend):
    r, s = lse(np.array([1, 1, 1]), axis=None, b=np.array([1, -1, -1]), return_sign=True)
    close(r, 1.0)
    assert s == -1.0
    r, s = lse(np.array([1, 1]), axis=None, b=np.array([1, -1]), return_sign=True)
    assert r == -inf and s == 0


def test_scipy_shapes(backend):
    a = np.ones((1, 2, 3, 4))
    b = np.ones_like(a)
    r, s = lse(a, axis=2, b=b, return_sign=True)
    assert r.shape == s.shape == (1, 2, 4)
    r, s = lse(a, axis=(1, 3), b=b, return_sign=True)
    assert r.shape == s.shape == (1, 3)
    assert lse(a, axis=2, b=b).shape == (1, 2, 4)
    assert lse(a, axis=(1, 3), b=b).shape == (1, 3)
    # b broadcasts against x, and either may grow (axes refer to the common shape).
    r = lse(np.zeros((4, 1, 2, 1)), axis=None, b=np.ones((3, 1, 5)))
    close(r, math.log(4 * 3 * 2 * 5))
    assert lse(np.zeros((4, 1, 2, 1)), axis=-1, b=np.ones((3, 1, 5))).shape == (4, 3, 2)


def test_scipy_b_zero(backend):
    close(lse(np.array([1, 10000]), axis=None, b=np.array([1, 0])), 1.0)


@pytest.mark.parametrize("arg", [1, [1, 2, 3]])
def test_scipy_array_like(backend, arg):
    assert lse(arg, axis=None) == pytest.approx(scipy_special.logsumexp(arg), rel=1e-13, abs=0)
    close(lse([1000, 1000], axis=None), 1000.0 + math.log(2.0))


REAL_DTYPES = ["float32", "float64", "int32", "int64"]
DTYPES = REAL_DTYPES + ["complex64", "complex128"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_scipy_dtypes_a(backend, dtype):
    a = np.array([1000.0, 1000.0], dtype=dtype)
    if dtype.startswith("complex"):
        with pytest.raises(TypeError, match="x"):
            lse(a, axis=None)
        return
    res = lse(a, axis=None)
    assert res.dtype == (np.float64 if dtype.startswith("int") else dtype)
    assert_close(res, 1000.0 + math.log(2.0), res.dtype)


@pytest.mark.parametrize("dtype_b", DTYPES)
@pytest.mark.parametrize("dtype_a", DTYPES)
def test_scipy_dtypes_ab(backend, dtype_a, dtype_b):
    a = np.array([2, 1], dtype=dtype_a)
    b = np.array([1, -1], dtype=dtype_b)
    for name, dtype in (("x", dtype_a), ("b", dtype_b)):
        if dtype.startswith("complex"):
            with pytest.raises(TypeError, match=rf"^{name} "):
                lse(a, axis=None, b=b)
            return
    res = lse(a, axis=None, b=b)
    # fastloss: the result dtype is x's (b is a weight); SciPy would promote.
    assert res.dtype == (np.float64 if dtype_a.startswith("int") else dtype_a)
    assert_close(res, math.log(math.exp(2) - math.exp(1)), res.dtype)


def test_scipy_small_term_is_kept(backend):
    assert lse(np.array([0.0, -40.0]), axis=None) == pytest.approx(4.248354255291589e-18,
                                                                   rel=1e-15, abs=0)


@pytest.mark.parametrize("y", [-inf, inf])
@pytest.mark.parametrize("x", [-inf, inf])
def test_scipy_infinite_elements(backend, x, y):
    ref = np.log(np.sum(np.exp(np.array([x, y]))))
    assert lse(np.array([x, y]), axis=None) == ref


def test_scipy_no_writeback(backend):
    a, b = np.array([5.0, 4.0]), np.array([3.0, 2.0])
    lse(a, axis=None)
    lse(a, axis=None, b=b)
    lse(a, axis=None, b=b, return_sign=True)
    assert a.tolist() == [5.0, 4.0] and b.tolist() == [3.0, 2.0]


def test_scipy_negative_weight_at_the_maximum(backend):
    # A negative weight at the maximum, a positive sum: not NaN.
    a = np.array([3.06409428, 0.37251854, 3.87471931])
    b = np.array([1.88190708, 2.84174795, -0.85016884])
    close(lse(a, axis=None, b=b), lse(a, axis=None, b=b, return_sign=True)[0])
    assert np.isfinite(lse(a, axis=None, b=b))
    b = np.array([1.88190708, 2.84174795, -3.85016884])
    assert np.isnan(lse(a, axis=None, b=b))


@pytest.mark.parametrize("a, b, sign_ref", [([inf], None, 1.0), ([inf], [-1.0], -1.0)])
def test_scipy_sign_of_infinite_results(backend, a, b, sign_ref):
    val, sign = lse(np.array(a), axis=None, b=b, return_sign=True)
    assert val == inf and sign == sign_ref


# ------------------------------------------------------------- fastloss's decisions

def test_zero_weight_masks_even_inf_and_nan(backend):
    # SciPy 1.17 masks +inf/NaN under b == 0 when the rest of the row is finite ...
    assert lse(np.array([inf, 1.0]), axis=-1, b=[0, 1]) == 1.0
    assert lse(np.array([nan, 1.0]), axis=-1, b=[0, 1]) == 1.0
    # ... and returns NaN for these two (its direct formula computes 0 * inf); the
    # masking is applied consistently here.
    assert lse(np.array([inf, inf]), axis=-1, b=[1, 0]) == inf
    assert lse(np.array([inf]), axis=-1, b=[0], return_sign=True) == (-inf, 0.0)


def test_cancelling_weights_at_the_maximum(backend):
    # The two terms at 1000 cancel exactly; what is left is exp(999).  (SciPy 1.17
    # gives NaN: its ratio to the weight at the maximum divides by zero.)
    assert lse(np.array([1000.0, 1000.0, 999.0]), axis=-1, b=[1, -1, 1]) == 999.0
    r, s = lse(np.array([1000.0, 1000.0, 999.0]), axis=-1, b=[1, -1, -2], return_sign=True)
    assert (r, s) == (999.0 + math.log(2), -1.0)


def test_infinite_terms_and_weights(backend):
    assert lse(np.array([inf, 1.0]), axis=-1, b=[-1, 1], return_sign=True) == (inf, -1.0)
    assert np.isnan(lse(np.array([inf, 1.0]), axis=-1, b=[-1, 1]))
    r, s = lse(np.array([inf, inf]), axis=-1, b=[1, -1], return_sign=True)
    assert np.isnan(r) and np.isnan(s)
    assert lse(np.array([1.0, 0.0]), axis=-1, b=[inf, 1], return_sign=True) == (inf, 1.0)
    assert lse(np.array([1.0, 0.0]), axis=-1, b=[1, -inf], return_sign=True) == (inf, -1.0)
    r, s = lse(np.array([1.0, 1.0]), axis=-1, b=[nan, 1], return_sign=True)
    assert np.isnan(r) and np.isnan(s)


def test_empty_axis_sign_is_zero(backend):
    # SciPy 1.17 returns sign -1 (the sign of its -inf fill); the sum is 0.
    r, s = lse(np.zeros((2, 0)), axis=-1, return_sign=True)
    assert r.tolist() == [-inf, -inf] and s.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64])
def test_return_sign_dtypes_scalars_and_out(backend, dtype):
    x = (np.arange(12).reshape(3, 4) % 5).astype(dtype)
    b = np.array([1.0, -1.0, 2.0, -3.0])
    rdt = np.float64 if dtype == np.int64 else dtype
    r, s = lse(x, axis=-1, b=b, return_sign=True)
    assert r.dtype == s.dtype == rdt and r.shape == s.shape == (3,)
    r0, s0 = lse(x, axis=None, b=b, return_sign=True)
    assert isinstance(r0, np.floating) and isinstance(s0, np.floating)
    assert r0.dtype == s0.dtype == rdt
    # out= receives the log-magnitude; the sign is a new array.
    out = np.full((3, 1), 7.0, rdt)
    r1, s1 = lse(x, axis=-1, b=b, keepdims=True, return_sign=True, out=out)
    assert r1 is out and s1 is not out and s1.shape == (3, 1)
    np.testing.assert_array_equal(out[:, 0], r)
    np.testing.assert_array_equal(s1[:, 0], s)
    out = np.full(3, 7.0, rdt)
    assert lse(x, axis=-1, b=b, out=out) is out
    np.testing.assert_array_equal(out, np.where(s < 0, nan, r))


def test_weighted_calls_run_the_twin(backend):
    x = np.random.default_rng(1).standard_normal((4, 6))
    b = np.random.default_rng(2).standard_normal(6)
    for kw in (dict(b=b), dict(return_sign=True), dict(b=b, return_sign=True, keepdims=True)):
        got, want = lse(x, axis=-1, **kw), fb.logsumexp(x, axis=-1, **kw)
        for g, w in zip(np.atleast_1d(got) if not isinstance(got, tuple) else got,
                        np.atleast_1d(want) if not isinstance(want, tuple) else want):
            np.testing.assert_array_equal(g, w)


# ------------------------------------------------------------------ differential sweep

def scipy_reference(x, axis, b, keepdims):
    """``scipy_special.logsumexp(..., return_sign=True)`` in float64, adjusted to the
    contract where SciPy 1.17 is inconsistent: a zero weight masks its term always
    (passed to SciPy as x = -inf), and an empty or zero sum has sign 0."""
    x = np.asarray(x, np.float64)
    if b is not None:
        b = np.asarray(b, np.float64)
        x, b = np.broadcast_arrays(x, b)
        x = np.where(b == 0, -inf, x)
    r, s = scipy_special.logsumexp(x, axis=axis, b=b, keepdims=keepdims, return_sign=True)
    s = np.where(np.asarray(r) == -inf, 0.0, s)
    return np.asarray(r), s


SHAPES_AXES = [((7,), [-1, 0, None, (0,)]),
               ((3, 5), [-1, 0, None, (0, 1)]),
               ((2, 3, 4), [-1, 1, (0, 2), None])]
B_KINDS = ["none", "normal", "zeros", "positive-row", "scalar-neg", "scalar-zero",
           "mutual"]


def make_b(kind, shape, rng):
    if kind == "none":
        return None
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "zeros":
        b = rng.standard_normal(shape)
        b[rng.random(shape) < 0.4] = 0.0
        return b
    if kind == "positive-row":            # one weight per last-axis entry
        return rng.random(shape[-1:]) + 0.5
    if kind == "scalar-neg":
        return -2.0
    if kind == "scalar-zero":
        return 0.0
    return rng.standard_normal((2,) + (1,) * len(shape))   # grows x by one leading axis


@pytest.mark.parametrize("specials", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bkind", B_KINDS)
@pytest.mark.parametrize("shape, axes", SHAPES_AXES, ids=["1d", "2d", "3d"])
def test_differential_sweep(backend, shape, axes, bkind, dtype, specials):
    rng = np.random.default_rng([len(shape), B_KINDS.index(bkind), int(specials),
                                 np.dtype(dtype).itemsize])
    x = rng.standard_normal(shape) * 5
    if specials:
        flat = x.reshape(-1)
        for value in (-inf, inf, nan, -inf):
            flat[rng.integers(flat.size)] = value
    x = x.astype(dtype)
    b = make_b(bkind, shape, rng)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for axis in axes:
        if bkind == "mutual" and axis is not None:
            axis = axis if isinstance(axis, tuple) else (axis,)
            axis = tuple(a if a < 0 else a + 1 for a in axis)   # same axes of x
        for keepdims in (False, True):
            ref_r, ref_s = scipy_reference(x, axis, b, keepdims)
            r, s = lse(x, axis=axis, b=b, keepdims=keepdims, return_sign=True)
            plain = lse(x, axis=axis, b=b, keepdims=keepdims)
            for got in (r, s, plain):
                assert np.shape(got) == ref_r.shape and got.dtype == dtype
            np.testing.assert_array_equal(np.asarray(s, np.float64), ref_s)
            np.testing.assert_allclose(np.asarray(r, np.float64), ref_r, rtol=tol, atol=tol)
            np.testing.assert_allclose(np.asarray(plain, np.float64),
                                       np.where(ref_s < 0, nan, ref_r), rtol=tol, atol=tol)


# ------------------------------------------------------------------ exact oracles

GAPS = [1, 2, 5, 10, 20, 36, 37, 40, 50, 100, 200, 300, 500, 700]


def _mp_lse(x, b=None):
    mp = pytest.importorskip("mpmath")
    # Enough digits that log(1 + exp(-1400)) still holds the exp(-1400).
    with mp.workdps(800):
        b = [1] * len(x) if b is None else b
        s = mp.fsum(mp.mpf(bi) * mp.exp(mp.mpf(xi)) for xi, bi in zip(x, b))
        return float(mp.log(abs(s))), float(mp.sign(s))


def _rel_close(got, want, rtol=1e-15):
    assert abs(got - want) <= rtol * abs(want), (got, want, abs(got - want) / abs(want))


@pytest.mark.parametrize("gap", GAPS)
def test_max_dominated_rows_match_mpmath(gap):
    rows = [([0.0, -gap], None),
            ([0.0, -gap, -gap - 1.0], None),
            ([0.0, 0.0, -gap], None),
            ([-gap, 0.0, -2.0 * gap], None),
            ([0.0, -gap], [2.0, 3.0]),
            ([0.0, -gap], [1.0, -1.0]),
            ([0.0, -gap, -gap], [-1.0, 0.5, 0.25]),
            ([0.0, 0.0, -gap], [1.0, 0.5, 0.0])]
    for x, b in rows:
        want, want_sign = _mp_lse(x, b)
        r, s = fb.logsumexp(np.array(x), axis=-1, b=b, return_sign=True)
        _rel_close(float(r), want)
        assert s == want_sign
        if b is None:
            _rel_close(float(fb.logsumexp(np.array(x), axis=-1)), want)
    # log_softmax at the maximum is -log(sum): the same log1p form.
    want, _ = _mp_lse([0.0, -gap])
    _rel_close(float(fb.log_softmax(np.array([[0.0, -gap]]))[0, 0]), -want)


def test_the_small_term_figures():
    assert fb.logsumexp(np.array([0.0, -40.0])) == pytest.approx(4.248354255291589e-18,
                                                                 rel=1e-15, abs=0)
    assert fb.log_softmax(np.array([[0.0, -40.0]]))[0, 0] == pytest.approx(
        -4.248354255291589e-18, rel=1e-15, abs=0)


@pytest.mark.parametrize("gap", GAPS)
def test_weighted_max_dominated_rows_match_mpmath_in_both_backends(backend, gap):
    """Calls with b run the same NumPy code under either backend."""
    x, b = [0.0, -gap, -gap - 0.5], [1.5, -2.0, 0.75]
    want, want_sign = _mp_lse(x, b)
    r, s = lse(np.array(x), axis=-1, b=b, return_sign=True)
    _rel_close(float(r), want)
    assert s == want_sign
