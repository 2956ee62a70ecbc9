"""Activations and their backward passes: both backends against long-double
references over dtypes and memory layouts; out= (fresh, reused, in place, strided,
overlapping, wrong); the stable forms for huge |x|; NaN; the SIMD log1p and tanh
swept for accuracy; gradients against finite differences; PyTorch when installed;
threads and SIMD levels."""
import warnings

import numpy as np
import pytest

import fastloss
from conftest import assert_close, layouts, nasty_rows

FLOATS = [np.float32, np.float64]
LD = np.longdouble


# ----------------------------------------------------------------------------- references


def _ld(a):
    return np.asarray(a, dtype=LD)


def ref_sigmoid(x):
    x = _ld(x)
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def ref_softplus(x, beta=1.0, threshold=20.0):
    x = _ld(x)
    u = x * LD(beta)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(u > threshold, x, np.logaddexp(LD(0), u) / LD(beta))


FORWARD = {
    # name -> (reference, options)
    "sigmoid": (lambda x: ref_sigmoid(x), {}),
    "tanh": (lambda x: np.tanh(_ld(x)), {}),
    "relu": (lambda x: np.maximum(_ld(x), 0), {}),          # NaN propagates
    "leaky_relu": (lambda x, negative_slope=0.01: np.where(_ld(x) > 0, _ld(x), _ld(x) * negative_slope),
                   {"negative_slope": 0.2}),
    "softplus": (ref_softplus, {"beta": 0.7, "threshold": 15.0}),
}


def ref_backward(name, g, z, **opts):
    g, z = _ld(g), _ld(z)
    if name == "sigmoid":
        return g * z * (1 - z)
    if name == "tanh":
        return g * (1 - z * z)
    if name == "relu":
        return np.where(z <= 0, 0, g)           # PyTorch: the gradient passes where x is NaN
    if name == "leaky_relu":
        return np.where(z > 0, g, g * opts.get("negative_slope", 0.01))
    beta, threshold = opts.get("beta", 1.0), opts.get("threshold", 20.0)
    u = z * LD(beta)
    return np.where(u > threshold, g, g * ref_sigmoid(u))


def _input(shape, dtype, seed=0, scale=4.0):
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    if x.size > 3:
        x.reshape(-1)[:3] = [0.0, -0.0, 1e-30]
    return x.astype(dtype)


def _second_arg(name, x):
    """What the backward pass takes: the forward output (sigmoid, tanh) or input."""
    if name == "sigmoid":
        return np.asarray(ref_sigmoid(x), dtype=x.dtype)
    if name == "tanh":
        return np.tanh(x)
    return x


def _tol_ok(actual, ref, dtype):
    assert_close(actual, np.asarray(ref, dtype=np.float64), dtype)


SHAPES = [(1,), (7,), (13, 11), (4, 5, 6), (3, 700), (2049, 3), ()]


# ----------------------------------------------------------------------------- sweep


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(FORWARD))
def test_forward_and_backward_match_reference(backend, name, shape, dtype):
    ref, opts = FORWARD[name]
    x = _input(shape, dtype, seed=len(shape))
    for o in ({}, opts):
        y = getattr(fastloss, name)(x, **o)
        assert y.dtype == dtype and y.shape == shape
        _tol_ok(y, ref(x, **o), dtype)
        g = _input(shape, dtype, seed=99, scale=1.0)
        z = _second_arg(name, x)
        dx = getattr(fastloss, name + "_backward")(g, z, **o)
        assert dx.dtype == dtype and dx.shape == shape
        _tol_ok(dx, ref_backward(name, g, z, **o), dtype)


@pytest.mark.parametrize("name", list(FORWARD))
def test_layouts(backend, name):
    x = _input((9, 14), np.float32, seed=3)
    g = _input((9, 14), np.float32, seed=4, scale=1.0)
    z = _second_arg(name, x)
    want = getattr(fastloss, name)(np.ascontiguousarray(x))
    want_b = getattr(fastloss, name + "_backward")(g, z)
    for layout, xl in layouts(x):
        before = xl.copy()
        y = getattr(fastloss, name)(xl)
        _tol_ok(y, want, np.float32)
        np.testing.assert_array_equal(xl, before)          # input not modified
        if layout == "F":
            assert y.flags.f_contiguous                     # the input's memory order kept
        for lg, gl in layouts(g):
            zl = np.asfortranarray(z) if lg == "C" else z
            _tol_ok(getattr(fastloss, name + "_backward")(gl, zl), want_b, np.float32)


def test_dtype_rules(backend):
    x = _input((5, 6), np.float64)
    y = fastloss.sigmoid(x.astype(np.float16))
    assert y.dtype == np.float16
    _tol_ok(y.astype(np.float32), np.asarray(ref_sigmoid(x.astype(np.float16)), np.float16), np.float32)
    assert fastloss.relu(np.arange(-3, 3)).dtype == np.float64
    assert fastloss.tanh([0.5, 1]).dtype == np.float64
    # backward of mixed dtypes: promoted
    out = fastloss.sigmoid_backward(np.ones(3, np.float32), np.full(3, 0.5))
    assert out.dtype == np.float64
    with pytest.raises(TypeError, match="x"):
        fastloss.softplus(np.ones(3, complex))
    with pytest.raises(TypeError, match="grad"):
        fastloss.relu_backward(np.array(["a"]), np.ones(1))


# ----------------------------------------------------------------------------- out=


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", list(FORWARD))
def test_out_and_in_place(backend, name, dtype):
    x = _input((33, 17), dtype, seed=5)
    want = getattr(fastloss, name)(x)
    out = np.empty_like(x)
    r = getattr(fastloss, name)(x, out=out)
    assert r is out
    np.testing.assert_array_equal(out, want)
    # in place, C and Fortran order
    for xi in (x.copy(), np.asfortranarray(x)):
        r = getattr(fastloss, name)(xi, out=xi)
        assert r is xi
        np.testing.assert_array_equal(xi, want)
    # a strided out
    big = np.zeros((33, 34), dtype)
    r = getattr(fastloss, name)(x, out=big[:, ::2])
    assert np.shares_memory(r, big)
    np.testing.assert_array_equal(big[:, ::2], want)
    assert not big[:, 1::2].any()
    # in place through a strided view of itself
    xs = np.zeros((33, 34), dtype)
    xs[:, ::2] = x
    v = xs[:, ::2]
    getattr(fastloss, name)(v, out=v)
    np.testing.assert_array_equal(v, want)
    # out overlapping the input by a shift: still the right values
    buf = np.concatenate([x.reshape(-1), np.zeros(1, dtype)])
    src, dst = buf[:-1], buf[1:]
    getattr(fastloss, name)(src, out=dst)
    np.testing.assert_array_equal(dst, want.reshape(-1))
    # float16 out from float32 math
    if dtype == np.float32:
        o16 = np.empty(x.shape, np.float16)
        getattr(fastloss, name)(x.astype(np.float16), out=o16)
        _tol_ok(o16.astype(np.float32), getattr(fastloss, name)(x.astype(np.float16)).astype(np.float32),
                np.float32)


def _unaligned(a):
    """A copy of ``a`` whose data starts one byte past an element boundary."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


@pytest.mark.parametrize("name", list(FORWARD))
def test_unaligned_arrays(backend, name):
    x = _input((10, 7), np.float64, seed=17)
    want = getattr(fastloss, name)(x)
    xu = _unaligned(x)
    np.testing.assert_array_equal(getattr(fastloss, name)(xu), want)
    assert getattr(fastloss, name)(xu, out=xu) is xu
    np.testing.assert_array_equal(xu, want)
    g = _input((10, 7), np.float64, seed=18, scale=1.0)
    z = _second_arg(name, x)
    np.testing.assert_array_equal(getattr(fastloss, name + "_backward")(_unaligned(g), _unaligned(z)),
                                  getattr(fastloss, name + "_backward")(g, z))


@pytest.mark.parametrize("name", list(FORWARD))
def test_backward_out_in_place(backend, name):
    x = _input((20, 9), np.float64, seed=6)
    g = _input((20, 9), np.float64, seed=7, scale=1.0)
    z = _second_arg(name, x)
    want = getattr(fastloss, name + "_backward")(g, z)
    g2, z2 = g.copy(), z.copy()
    assert getattr(fastloss, name + "_backward")(g2, z, out=g2) is g2
    np.testing.assert_array_equal(g2, want)
    assert getattr(fastloss, name + "_backward")(g, z2, out=z2) is z2
    np.testing.assert_array_equal(z2, want)


@pytest.mark.parametrize("name", list(FORWARD))
def test_bad_out_writes_nothing(backend, name):
    x = _input((4, 5), np.float32)
    for bad in (np.zeros((5, 4), np.float32), np.zeros((4, 5), np.float64), np.zeros(20, np.float32)):
        with pytest.raises(ValueError, match="out"):
            getattr(fastloss, name)(x, out=bad)
        assert not bad.any()
    ro = np.zeros((4, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        getattr(fastloss, name)(x, out=ro)
    bad = np.zeros((4, 5), np.float64)
    with pytest.raises(ValueError, match="out"):
        getattr(fastloss, name + "_backward")(x, x, out=bad)
    assert not bad.any()
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        getattr(fastloss, name + "_backward")(x, x.T)
    with pytest.raises(TypeError, match="out"):
        getattr(fastloss, name)(x, out=[0.0] * 20)


def test_option_errors(backend):
    x = np.ones(3)
    with pytest.raises(ValueError, match="beta"):
        fastloss.softplus(x, beta=0)
    with pytest.raises(ValueError, match="beta"):
        fastloss.softplus_backward(x, x, beta=0.0)
    with pytest.raises(TypeError, match="threshold"):
        fastloss.softplus(x, threshold="20")
    with pytest.raises(ValueError, match="negative_slope"):
        fastloss.leaky_relu(x, negative_slope=np.nan)
    with pytest.raises(TypeError, match="negative_slope"):
        fastloss.leaky_relu_backward(x, x, negative_slope=None)


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", FLOATS)
def test_stable_for_huge_inputs(backend, dtype):
    big = np.finfo(dtype).max
    x = np.array([big, -big, 1e30, -1e30, 100.0, -100.0, 1000.0, -1000.0, np.inf, -np.inf],
                 dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no overflow warnings
        s = fastloss.sigmoid(x)
        t = fastloss.tanh(x)
        sp = fastloss.softplus(x, threshold=1e9)    # never takes the linear shortcut
        sp_neg = fastloss.softplus(x, beta=-2.0)
        dsp = fastloss.softplus_backward(np.ones_like(x), x, threshold=1e9)
    np.testing.assert_array_equal(s[[0, 2, 8]], 1)
    np.testing.assert_array_equal(s[[1, 3, 9]], 0)
    np.testing.assert_array_equal(t[[0, 2, 8]], 1)
    np.testing.assert_array_equal(t[[1, 3, 9]], -1)
    np.testing.assert_array_equal(sp[[0, 2, 8]], x[[0, 2, 8]])
    np.testing.assert_array_equal(sp[[1, 3, 9]], 0)
    _tol_ok(sp[4:8], ref_softplus(x[4:8], threshold=1e9), dtype)
    _tol_ok(sp_neg[:8], ref_softplus(x[:8], beta=-2.0), dtype)
    np.testing.assert_array_equal(dsp[[0, 2, 8]], 1)
    np.testing.assert_array_equal(dsp[[1, 3, 9]], 0)
    _tol_ok(s[4:8], ref_sigmoid(x[4:8]), dtype)      # subnormal/tiny tails kept


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", list(FORWARD))
def test_nasty_inputs(backend, name, dtype):
    """The shared generator's rows (huge, float max, -inf, NaN, zeros, tiny)."""
    ref, opts = FORWARD[name]
    x = nasty_rows(dtype)
    g = np.ones_like(x)
    for o in ({}, opts):
        with np.errstate(all="ignore"):
            _tol_ok(getattr(fastloss, name)(x, **o), ref(x, **o), dtype)
            z = _second_arg(name, x) if name != "tanh" else np.tanh(x)
            _tol_ok(getattr(fastloss, name + "_backward")(g, z, **o),
                    ref_backward(name, g, z, **o), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", list(FORWARD))
def test_nan_stays_in_its_element(backend, name, dtype):
    x = _input((3, 8), dtype)
    x[1, 4] = np.nan
    y = getattr(fastloss, name)(x)
    assert np.isnan(y[1, 4]) and np.isnan(y).sum() == 1
    g = np.ones_like(x)
    g[2, 2] = np.nan
    z = _second_arg(name, np.nan_to_num(x)).copy()
    z[0, 1] = np.nan
    dx = getattr(fastloss, name + "_backward")(g, z)
    # relu and leaky_relu pass a (scaled) gradient where x is NaN, as PyTorch does
    assert np.isnan(dx[0, 1]) == (name not in ("relu", "leaky_relu"))
    assert not np.isnan(np.delete(dx.reshape(-1), [1, 2 * 8 + 2])).any()


def test_relu_edges(backend):
    x = np.array([-1.0, -0.0, 0.0, 1e-300, np.nan])
    g = np.array([5.0, 5.0, 5.0, 5.0, 5.0])
    np.testing.assert_array_equal(fastloss.relu(x)[:4], [0, 0, 0, 1e-300])
    np.testing.assert_array_equal(fastloss.relu_backward(g, x), [0, 0, 0, 5, 5])
    np.testing.assert_array_equal(fastloss.leaky_relu_backward(g, x, 0.5), [2.5, 2.5, 2.5, 5, 2.5])


def test_tanh_keeps_the_sign_of_zero(backend):
    y = fastloss.tanh(np.array([-0.0, 0.0], np.float32))
    assert np.signbit(y[0]) and not np.signbit(y[1])


@pytest.mark.parametrize("dtype", FLOATS)
def test_simd_math_accuracy_sweep(backend, dtype):
    """log1p (inside softplus and sigmoid) and tanh over a dense sweep of magnitudes,
    against long double: within the contract's 1e-6 (float32) / 1e-12 (float64)
    relative, and in fact a few ulp."""
    mags = np.geomspace(1e-30 if dtype == np.float32 else 1e-300, 80 if dtype == np.float32 else 700,
                        200_001)
    x = np.concatenate([-mags[::-1], [0.0], mags]).astype(dtype)
    eps = np.finfo(dtype).eps
    for name, ref in (("tanh", lambda v: np.tanh(_ld(v))), ("softplus", ref_softplus),
                      ("sigmoid", ref_sigmoid)):
        y = getattr(fastloss, name)(x).astype(LD)
        r = ref(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(r != 0, np.abs(y - r) / np.abs(r), np.abs(y))
        tiny = np.abs(r) < np.finfo(dtype).tiny / eps       # subnormal results: absolute
        assert np.max(rel[~tiny]) < 4 * eps, (name, float(np.max(rel[~tiny]) / eps))


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", list(FORWARD))
def test_backward_matches_finite_differences(backend, name):
    _, opts = FORWARD[name]
    x = _input((6, 7), np.float64, seed=8, scale=2.0)
    x = np.where(np.abs(x) < 1e-3, 0.5, x)           # away from relu's kink
    g = _input((6, 7), np.float64, seed=9, scale=1.0)
    for o in ({}, opts):
        f = getattr(fastloss, name)
        z = f(x, **o) if name in ("sigmoid", "tanh") else x
        dx = getattr(fastloss, name + "_backward")(g, z, **o)
        h = 1e-6
        fd = (f(x + h, **o) - f(x - h, **o)) / (2 * h) * g
        np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- PyTorch

torch = None
try:  # pragma: no cover - depends on the environment
    import torch
except ImportError:
    pass


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", list(FORWARD))
def test_against_pytorch(backend, name, dtype):
    F = torch.nn.functional
    _, opts = FORWARD[name]
    x = _input((40, 9), dtype, seed=11)
    g = _input((40, 9), dtype, seed=12, scale=1.0)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for o in ({}, opts):
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        if name == "softplus":
            yt = F.softplus(xt, o.get("beta", 1.0), o.get("threshold", 20.0))
        elif name == "leaky_relu":
            yt = F.leaky_relu(xt, o.get("negative_slope", 0.01))
        else:
            yt = getattr(torch, name)(xt)
        yt.backward(torch.from_numpy(g))
        y = getattr(fastloss, name)(x, **o)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
        z = y if name in ("sigmoid", "tanh") else x
        dx = getattr(fastloss, name + "_backward")(g, z, **o)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- fallback twin


@pytest.mark.parametrize("dtype", FLOATS)
def test_kernels_match_the_fallback(dtype):
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    x = _input((513, 129), dtype, seed=23, scale=6.0)
    g = _input((513, 129), dtype, seed=24, scale=1.0)
    previous = fastloss.get_backend()
    try:
        for name, (_, opts) in FORWARD.items():
            for o in ({}, opts):
                z = _second_arg(name, x)
                results = []
                for backend in ("cython", "numpy"):
                    fastloss.set_backend(backend)
                    results.append((getattr(fastloss, name)(x, **o),
                                    getattr(fastloss, name + "_backward")(g, z, **o)))
                for a, b in zip(*results):
                    _tol_ok(a, b.astype(np.float64), dtype)
    finally:
        fastloss.set_backend(previous)


# ----------------------------------------------------------------------------- threads, SIMD


def test_threads_give_identical_results(threads):
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    fastloss.set_backend("cython")
    x = _input((1001, 257), np.float32, seed=13)
    g = _input((1001, 257), np.float32, seed=14, scale=1.0)
    results = {}
    for n in (1, 2):
        fastloss.set_num_threads(n)
        for name in FORWARD:
            y = getattr(fastloss, name)(x)
            results[name, n] = (y, getattr(fastloss, name + "_backward")(g, _second_arg(name, x)))
    for name in FORWARD:
        for a, b in zip(results[name, 1], results[name, 2]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", FLOATS)
def test_simd_levels(simd_level, dtype):
    x = _input((301, 37), dtype, seed=15, scale=8.0)
    g = _input((301, 37), dtype, seed=16, scale=1.0)
    for name, (ref, opts) in FORWARD.items():
        _tol_ok(getattr(fastloss, name)(x, **opts), ref(x, **opts), dtype)
        z = _second_arg(name, x)
        _tol_ok(getattr(fastloss, name + "_backward")(g, z, **opts),
                ref_backward(name, g, z, **opts), dtype)
