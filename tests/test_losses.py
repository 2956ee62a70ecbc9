"""Pointwise and margin losses, each as ``f`` and fused ``f_with_grad``: both backends
against float64/long-double references written here, over dtypes, reductions,
options, shapes, memory layouts and broadcast factors; the contract's numerics (NaN
per element, huge inputs, empty and 0-d arrays); errors; gradients against finite
differences; PyTorch when installed; threads and SIMD levels."""
import itertools
import warnings

import numpy as np
import pytest

import fastloss
from fastloss import fallback
from conftest import assert_close, layouts, nasty_rows

FLOATS = [np.float32, np.float64]
LD = np.longdouble

# ----------------------------------------------------------------------------- references
# Per-element losses and the gradient of their plain sum, in long double (80-bit on
# x86-64), written the textbook way and independent of both backends.


def _ld(*arrays):
    return [np.asarray(a, dtype=LD) for a in arrays]


def _sign(d):
    return np.sign(d)


def ref_mse(x, t):
    x, t = _ld(x, t)
    d = x - t
    return d * d, 2 * d


def ref_smooth_l1(x, t, beta=1.0):
    x, t = _ld(x, t)
    d = x - t
    a = np.abs(d)
    if beta == 0:
        return a, _sign(d)
    inside = a < beta
    return (np.where(inside, 0.5 * d * d / beta, a - 0.5 * beta),
            np.where(inside, d / beta, _sign(d)))


def ref_huber(x, t, delta=1.0):
    x, t = _ld(x, t)
    d = x - t
    a = np.abs(d)
    inside = a < delta
    return (np.where(inside, 0.5 * d * d, delta * (a - 0.5 * delta)),
            np.where(inside, d, delta * _sign(d)))


def ref_bce(p, t, weight=None):
    p, t = _ld(p, t)
    w = LD(1) if weight is None else np.asarray(weight, dtype=LD)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.maximum(np.log(p), -100)
        l1p = np.maximum(np.log1p(-p), -100)
        loss = -w * (t * lp + (1 - t) * l1p)
        # PyTorch's floor EPSILON is a float constant: float32(1e-12) for every dtype
        grad = w * (p - t) / np.maximum(p * (1 - p), LD(np.float32(1e-12)))
    return loss, grad


def _softplus(u):
    return np.logaddexp(LD(0), u)


def _sigmoid(u):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-u))


def ref_bce_logits(x, t, weight=None, pos_weight=None):
    x, t = _ld(x, t)
    w = LD(1) if weight is None else np.asarray(weight, dtype=LD)
    pw = LD(1) if pos_weight is None else np.asarray(pos_weight, dtype=LD)
    loss = w * (pw * t * _softplus(-x) + (1 - t) * _softplus(x))
    grad = w * ((1 - t) * _sigmoid(x) - pw * t * _sigmoid(-x))
    return loss, grad


def ref_kl(x, t, log_target=False):
    x, t = _ld(x, t)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            q = np.exp(t)
            loss = np.where(t == -np.inf, 0, q * (t - x))
        else:
            q = t
            loss = np.where(t == 0, 0, t * (np.log(t) - x))
    return loss, np.broadcast_to(-q, np.broadcast_shapes(x.shape, t.shape))


def ref_multi_margin(x, target, p=1, margin=1.0, weight=None, axis=-1):
    """Per-row losses (the target's shape) and the gradient of their sum."""
    x = np.moveaxis(np.asarray(x, dtype=LD), axis, -1)
    c = x.shape[-1]
    rows = x.reshape(-1, c)
    ys = np.asarray(target).reshape(-1)
    losses = np.zeros(len(rows), dtype=LD)
    grad = np.zeros_like(rows)
    for r, (row, y) in enumerate(zip(rows, ys)):
        wy = LD(1) if weight is None else LD(weight[y])
        for j in range(c):
            if j == y:
                continue
            z = margin - row[y] + row[j]
            if z > 0:
                losses[r] += wy * z ** p / c
                d = wy * (1 if p == 1 else 2 * z) / c
                grad[r, j] += d
                grad[r, y] -= d
    return (losses.reshape(np.shape(target)),
            np.moveaxis(grad.reshape(x.shape), -1, axis))


def reduce_ref(elems, grad, reduction, shape):
    """Reduce reference per-element losses; scale the gradient alike."""
    elems = np.asarray(elems, dtype=LD)
    n = {"mean": int(np.prod(shape)), "batchmean": shape[0] if shape else 1}.get(reduction, 1)
    if reduction == "none":
        return elems.astype(np.float64), np.asarray(grad, dtype=np.float64)
    return np.float64(elems.sum() / n), np.asarray(grad / n, dtype=np.float64)


# ----------------------------------------------------------------------------- problems


def _probs(rng, shape, dtype):
    p = rng.uniform(0, 1, shape)
    flat = p.reshape(-1)
    flat[::7] = 0.0            # exact 0 and 1: the log clamps at -100
    flat[3::11] = 1.0
    return p.astype(dtype)


def make_problem(name, shape, dtype, seed=0):
    """(input, target) for loss `name`, in dtype, with the awkward values each has."""
    rng = np.random.default_rng(seed)
    if name in ("mse_loss", "smooth_l1_loss", "huber_loss"):
        x = rng.standard_normal(shape) * 3
        t = rng.standard_normal(shape)
        return x.astype(dtype), t.astype(dtype)
    if name == "binary_cross_entropy":
        t = rng.uniform(0, 1, shape)
        t.reshape(-1)[::3] = np.round(t.reshape(-1)[::3])
        return _probs(rng, shape, dtype), t.astype(dtype)
    if name == "binary_cross_entropy_with_logits":
        x = rng.standard_normal(shape) * 5
        x.reshape(-1)[::13] *= 1e3               # far in both tails
        t = rng.uniform(0, 1, shape)
        t.reshape(-1)[::2] = np.round(t.reshape(-1)[::2])
        return x.astype(dtype), t.astype(dtype)
    if name == "kl_div":
        a = rng.standard_normal(shape) * 2
        b = rng.standard_normal(shape) * 2
        lp = a - np.log(np.exp(a).sum(-1, keepdims=True)) if a.ndim else a
        q = np.exp(b) / (np.exp(b).sum(-1, keepdims=True) if b.ndim else 1)
        q.reshape(-1)[::5] = 0.0                 # 0 log 0 = 0
        return lp.astype(dtype), q.astype(dtype)
    raise KeyError(name)


# name -> (reference, option sets)
POINTWISE = {
    "mse_loss": (ref_mse, [{}]),
    "smooth_l1_loss": (ref_smooth_l1, [{}, {"beta": 0.5}, {"beta": 0.0}, {"beta": 4.0}]),
    "huber_loss": (ref_huber, [{}, {"delta": 0.3}, {"delta": 2.5}]),
    "binary_cross_entropy": (ref_bce, [{}, {"weight": "vector"}]),
    "binary_cross_entropy_with_logits": (
        ref_bce_logits, [{}, {"pos_weight": "vector"}, {"weight": "column", "pos_weight": "vector"}]),
    "kl_div": (ref_kl, [{}, {"log_target": True}]),
}


def _resolve(opts, shape, seed=5):
    """Replace the placeholders "vector" (last axis) / "column" (per row) by arrays."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in opts.items():
        if v == "vector":
            v = rng.uniform(0.2, 3.0, shape[-1:])
        elif v == "column":
            v = rng.uniform(0.2, 3.0, shape[:-1] + (1,))
        out[k] = v
    return out


def _reductions(name):
    return ["mean", "sum", "none"] + (["batchmean"] if name == "kl_div" else [])


def _kl_input(name, opts, x, t):
    """kl_div with log_target takes log-probabilities as target."""
    if name == "kl_div" and opts.get("log_target"):
        with np.errstate(divide="ignore"):
            return x, np.log(t)
    return x, t


def check_loss(name, x, t, dtype, reduction, opts, ref_opts=None):
    ref, _ = POINTWISE[name]
    ref_opts = opts if ref_opts is None else ref_opts
    elems, g = ref(x, t, **ref_opts)
    want_loss, want_grad = reduce_ref(elems, g, reduction, x.shape)
    f = getattr(fastloss, name)
    fg = getattr(fastloss, name + "_with_grad")
    loss = f(x, t, reduction=reduction, **opts)
    loss2, grad = fg(x, t, reduction=reduction, **opts)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == x.shape and loss.dtype == dtype
    else:
        assert isinstance(loss, np.generic) and loss.dtype == dtype
    assert grad.shape == x.shape and grad.dtype == dtype
    assert_close(loss, want_loss, dtype)
    assert_close(loss2, want_loss, dtype)
    # Gradients of a mean are O(1/N): compare them at the scale of the summed loss.
    n = {"mean": x.size, "batchmean": x.shape[0] if x.ndim else 1}.get(reduction, 1)
    assert_close(np.asarray(grad, np.float64) * n, want_grad * n, dtype)


# ----------------------------------------------------------------------------- sweep

SHAPES = [(7,), (13, 11), (4, 5, 6), (3, 700), (1, 1), (2049, 3)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(POINTWISE))
def test_pointwise_losses_match_reference(backend, name, shape, dtype):
    x, t = make_problem(name, shape, dtype, seed=len(shape) + shape[-1])
    for opts in POINTWISE[name][1]:
        opts = _resolve(opts, shape)
        xx, tt = _kl_input(name, opts, x, t)
        # factors are used in the computation's dtype (PyTorch's rule): the reference
        # gets the same rounded values
        ref_opts = {k: (np.asarray(v, dtype).astype(np.float64) if isinstance(v, np.ndarray) else v)
                    for k, v in opts.items()}
        for reduction in _reductions(name):
            check_loss(name, xx, tt, dtype, reduction, opts, ref_opts)


@pytest.mark.parametrize("name", list(POINTWISE))
def test_layouts(backend, name):
    """C, Fortran, strided, reversed, transposed and read-only inputs and targets."""
    dtype = np.float32
    x, t = make_problem(name, (9, 14), dtype, seed=3)
    want = getattr(fastloss, name + "_with_grad")(np.ascontiguousarray(x), t, reduction="none")
    for (lx, xl), (lt, tl) in itertools.product(layouts(x), layouts(t)):
        x_before, t_before = xl.copy(), tl.copy()
        loss, grad = getattr(fastloss, name + "_with_grad")(xl, tl, reduction="none")
        # the same values; an element may land in a vector body or a scalar tail
        # depending on the layout, which can change its last bit
        assert_close(loss, want[0].astype(np.float64), dtype)
        assert_close(grad, want[1].astype(np.float64), dtype)
        total = getattr(fastloss, name)(xl, tl, reduction="sum")
        assert_close(total, np.sum(want[0], dtype=np.float64), dtype)
        np.testing.assert_array_equal(xl, x_before)      # inputs never modified
        np.testing.assert_array_equal(tl, t_before)


def test_unaligned_arrays(backend):
    x, t = make_problem("binary_cross_entropy_with_logits", (10, 7), np.float64, seed=19)
    want = fastloss.binary_cross_entropy_with_logits_with_grad(x, t, reduction="none")
    xu, tu = (np.frombuffer(np.zeros(a.nbytes + 1, np.uint8).data, a.dtype, a.size, 1).reshape(a.shape)
              for a in (x, t))
    xu[...], tu[...] = x, t
    got = fastloss.binary_cross_entropy_with_logits_with_grad(xu, tu, reduction="none")
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # factors too (weight, pos_weight): an unpickled array can be contiguous, unaligned
    w = np.linspace(0.5, 2.0, 7)
    wu = np.frombuffer(np.zeros(w.nbytes + 4, np.uint8).data, w.dtype, w.size, 4)
    wu[...] = w
    assert not wu.flags.aligned
    for kw in ({"weight": wu}, {"pos_weight": wu}, {"weight": wu[:1]}):
        want = fastloss.binary_cross_entropy_with_logits(
            x, t, reduction="none", **{k: np.array(v) for k, v in kw.items()})
        got = fastloss.binary_cross_entropy_with_logits(xu, tu, reduction="none", **kw)
        np.testing.assert_array_equal(got, want)
    y = np.arange(10) % 7
    want = fastloss.multi_margin_loss_with_grad(x, y)
    got = fastloss.multi_margin_loss_with_grad(xu, y)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


# ----------------------------------------------------------------------------- factors

FACTOR_CASES = [
    # (input shape, factor shape): covers scalar, last-axis vectors (tiled, and longer
    # than a tile), columns (short and long runs), a middle axis, and factors that
    # only broadcast when expanded.
    ((5, 6), ()),
    ((5, 6), (6,)),
    ((5, 6), (1, 6)),
    ((5, 6), (5, 1)),
    ((5, 6), (5, 6)),
    ((3, 700), (700,)),
    ((1000, 3), (1000, 1)),
    ((2, 100, 70), (100, 1)),
    ((5, 6, 7), (6, 1)),
    ((4, 6, 7), (4, 1, 7)),
    ((3, 1, 5), (3, 4, 5)[1:]),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,fshape", FACTOR_CASES)
def test_broadcast_factors(backend, shape, fshape, dtype):
    if len(fshape) > len(shape) or np.broadcast_shapes(shape, fshape) != shape:
        fshape = shape[-1:]
    rng = np.random.default_rng(len(shape) * 31 + sum(fshape))
    w = rng.uniform(0.2, 3.0, fshape)
    pw = rng.uniform(0.2, 3.0, fshape)
    x, t = make_problem("binary_cross_entropy_with_logits", shape, dtype, seed=2)
    w_used = np.asarray(w, dtype).astype(np.float64)
    pw_used = np.asarray(pw, dtype).astype(np.float64)
    for reduction in ("sum", "none"):
        check_loss("binary_cross_entropy_with_logits", x, t, dtype, reduction,
                   {"weight": w, "pos_weight": pw}, {"weight": w_used, "pos_weight": pw_used})
        check_loss("binary_cross_entropy_with_logits", x, t, dtype, reduction,
                   {"pos_weight": pw}, {"pos_weight": pw_used})
    p, tp = make_problem("binary_cross_entropy", shape, dtype, seed=4)
    check_loss("binary_cross_entropy", p, tp, dtype, "mean", {"weight": w}, {"weight": w_used})


@pytest.mark.parametrize("name", ["mse_loss", "kl_div", "binary_cross_entropy_with_logits"])
def test_target_broadcasts_like_the_fallback(backend, name):
    x, t = make_problem(name, (6, 5), np.float64, seed=9)
    t_row = t[:1]
    loss, grad = getattr(fastloss, name + "_with_grad")(x, t_row, reduction="none")
    want_loss, want_grad = getattr(fastloss, name + "_with_grad")(x, np.broadcast_to(t_row, x.shape).copy(),
                                                                  reduction="none")
    np.testing.assert_allclose(loss, want_loss, rtol=1e-15)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-15)


def test_factor_dtype_does_not_promote(backend):
    x, t = make_problem("binary_cross_entropy_with_logits", (8, 3), np.float32)
    loss, grad = fastloss.binary_cross_entropy_with_logits_with_grad(
        x, t, weight=[1.0, 2.0, 3.0], pos_weight=np.array([2.0, 1.0, 0.5]))
    assert loss.dtype == np.float32 and grad.dtype == np.float32


def test_dtype_rules(backend):
    x, t = make_problem("mse_loss", (6, 4), np.float64)
    # float16 is computed in float32 and returned as float16
    loss, grad = fastloss.mse_loss_with_grad(x.astype(np.float16), t.astype(np.float16))
    assert loss.dtype == np.float16 and grad.dtype == np.float16
    # integer input is promoted to float64
    loss, grad = fastloss.mse_loss_with_grad(np.arange(6).reshape(2, 3), np.ones((2, 3)))
    assert loss.dtype == np.float64 and loss == np.mean((np.arange(6) - 1.0) ** 2)
    # integer/bool targets take the input's dtype
    loss, grad = fastloss.binary_cross_entropy_with_logits_with_grad(
        x.astype(np.float32), (t > 0).astype(np.int64))
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    # a float64 target with a float32 input: computed as NumPy promotes, result float32
    x32 = x.astype(np.float32)
    loss = fastloss.mse_loss(x32, t, reduction="sum")
    assert loss.dtype == np.float32
    assert_close(loss, np.sum((x32.astype(np.float64) - t) ** 2), np.float32)
    with pytest.raises(TypeError, match="input"):
        fastloss.mse_loss(x.astype(np.complex128), t)
    with pytest.raises(TypeError, match="target"):
        fastloss.mse_loss(x, t.astype(object))


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", FLOATS)
def test_bce_with_logits_is_stable_for_huge_logits(backend, dtype):
    big = np.finfo(dtype).max
    x = np.array([big, -big, 1e30, -1e30, 88.0, -88.0, 0.0, 710.0, -710.0], dtype=dtype)
    for tv in (0.0, 0.25, 1.0):
        t = np.full_like(x, tv)
        loss, grad = fastloss.binary_cross_entropy_with_logits_with_grad(x, t, reduction="none")
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)), (tv, loss, grad)
        want, want_g = ref_bce_logits(x, t)
        assert_close(loss, want.astype(np.float64), dtype)
        assert_close(grad, want_g.astype(np.float64), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no overflow warnings either
        fastloss.binary_cross_entropy_with_logits(x, np.full_like(x, 0.5))


@pytest.mark.parametrize("dtype", FLOATS)
def test_regression_losses_do_not_overflow(backend, dtype):
    big = np.array([np.finfo(dtype).max, -np.finfo(dtype).max, 1e30], dtype=dtype)
    for name in ("smooth_l1_loss", "huber_loss"):
        loss, grad = getattr(fastloss, name + "_with_grad")(big, np.zeros_like(big), reduction="none")
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["mse_loss", "smooth_l1_loss", "huber_loss",
                                  "binary_cross_entropy_with_logits", "kl_div"])
def test_nasty_inputs(backend, name, dtype):
    """The shared generator's rows (huge, float max, -inf, NaN, zeros, tiny) as input:
    every element matches the long-double reference wherever that fits the dtype."""
    x = nasty_rows(dtype)
    t = np.random.default_rng(0).uniform(0, 1, x.shape).astype(dtype)
    t[:, 0] = 0.0
    ref, _ = POINTWISE[name]
    with np.errstate(all="ignore"):
        loss, grad = getattr(fastloss, name + "_with_grad")(x, t, reduction="none")
        want, want_g = (np.asarray(a, dtype=np.float64) for a in ref(x, t))
    big = np.finfo(dtype).max
    for got, ref_val in ((loss, want), (grad, want_g)):
        fits = ~(np.abs(ref_val) > big)            # NaN counts as fitting: it must match
        assert_close(got[fits], ref_val[fits], dtype)
        assert np.all(np.isinf(got[~fits]))


def test_mse_squares_in_double(backend):
    """(x - t)^2 of float32 data is formed in double for a reduced loss: a mean that
    fits in float32 is finite even when one square would not be."""
    x = np.array([3e19, 0.0, 0.0, 0.0], dtype=np.float32)
    with np.errstate(over="raise"):
        loss = fastloss.mse_loss(x, np.zeros_like(x))
    assert_close(loss, float(np.float64(x[0]) ** 2 / 4), np.float32)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", list(POINTWISE))
def test_nan_stays_in_its_element(backend, name, dtype):
    x, t = make_problem(name, (4, 6), dtype, seed=1)
    x[1, 2] = np.nan
    t[2, 3] = np.nan
    with np.errstate(all="ignore"):
        loss, grad = getattr(fastloss, name + "_with_grad")(x, t, reduction="none")
        total = getattr(fastloss, name)(x, t, reduction="sum")
    bad = np.zeros(x.shape, bool)
    bad[1, 2] = bad[2, 3] = True
    assert np.isnan(loss[1, 2]) and np.isnan(loss[2, 3])
    assert not np.isnan(loss[~bad]).any()
    assert not np.isnan(grad[~bad]).any()
    assert np.isnan(grad[1, 2]) or name == "kl_div"      # kl's gradient is -target only
    assert np.isnan(total)


@pytest.mark.parametrize("dtype", FLOATS)
def test_kl_div_zero_target_against_minus_inf(backend, dtype):
    x = np.array([-np.inf, -1.0, np.nan, -np.inf], dtype=dtype)
    t = np.array([0.0, 0.0, 0.0, 0.5], dtype=dtype)
    loss = fastloss.kl_div(x, t, reduction="none")
    assert loss[0] == 0 and loss[1] == 0 and np.isnan(loss[2]) and loss[3] == np.inf
    log_t = np.array([-np.inf, -np.inf, -np.inf, 0.0], dtype=dtype)
    loss = fastloss.kl_div(x, log_t, reduction="none", log_target=True)
    assert loss[0] == 0 and loss[1] == 0 and np.isnan(loss[2]) and loss[3] == np.inf


def _kl_cancelling_problem(shape=(500, 1000), seed=24):
    """log_softmax(x) against softmax(x + 0.01 noise), float32.  The terms
    q (log q - input) have both signs and the divergence is ~1e-4 of the sum of their
    magnitudes: terms formed in float32 put the sum off by 2.5e-5 relative."""
    rng = np.random.default_rng(seed)
    x = 5 * rng.standard_normal(shape)
    y = x + 0.01 * rng.standard_normal(shape)
    lp = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
    lq = y - np.log(np.exp(y - y.max(-1, keepdims=True)).sum(-1, keepdims=True)) - y.max(-1, keepdims=True)
    return lp.astype(np.float32), np.exp(lq).astype(np.float32), lq.astype(np.float32)


def _kl_sum_float64(x, t, log_target):
    """The summed divergence in float64 math on the given (rounded) values."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            return np.sum(np.where(t == -np.inf, 0.0, np.exp(t) * (t - x)))
        return np.sum(np.where(t == 0, 0.0, t * (np.log(t) - x)))


def _check_kl_cancelling_terms():
    lp, q, lq = _kl_cancelling_problem()
    n = lp.shape[0]
    for log_target, t in ((False, q), (True, lq)):
        want = _kl_sum_float64(lp, t, log_target)
        got = {"sum": fastloss.kl_div(lp, t, reduction="sum", log_target=log_target),
               "batchmean": fastloss.kl_div(lp, t, reduction="batchmean", log_target=log_target) * n}
        loss, grad = fastloss.kl_div_with_grad(lp, t, reduction="sum", log_target=log_target)
        got["sum, with_grad"] = loss
        for what, v in got.items():
            assert v.dtype == np.float32
            rel = abs(float(v) - want) / abs(want)
            assert rel <= 1e-6, (log_target, what, float(v), want, rel)
        dq = np.exp(np.float64(t)) if log_target else np.float64(t)
        assert_close(grad, -dq, np.float32)


def test_kl_div_float32_cancelling_terms_summed_in_double(backend):
    _check_kl_cancelling_terms()


def test_kl_div_float32_cancelling_terms_every_simd_level(simd_level):
    _check_kl_cancelling_terms()


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_float64_input_float32_target(backend, log_target):
    """A float32 target against a float64 input: the computation is float64, also
    the target's log (exp); the fallback once took it in float32."""
    rng = np.random.default_rng(11)
    a = rng.standard_normal((300, 100))
    lp = a - np.log(np.exp(a).sum(-1, keepdims=True))
    b = a + 0.1 * rng.standard_normal(a.shape)
    lq = b - np.log(np.exp(b).sum(-1, keepdims=True))
    t = (lq if log_target else np.exp(lq)).astype(np.float32)
    t64 = np.float64(t)
    want = _kl_sum_float64(lp, t64, log_target)
    got = fastloss.kl_div(lp, t, reduction="sum", log_target=log_target)
    assert got.dtype == np.float64
    assert abs(float(got) - want) <= 1e-13 * abs(want), (float(got), want)
    elems = fastloss.kl_div(lp, t, reduction="none", log_target=log_target)
    want_elems = np.exp(t64) * (t64 - lp) if log_target else t64 * (np.log(t64) - lp)
    assert_close(elems, want_elems, np.float64)
    _, grad = fastloss.kl_div_with_grad(lp, t, reduction="sum", log_target=log_target)
    assert_close(grad, -(np.exp(t64) if log_target else t64), np.float64)


@pytest.mark.parametrize("dtype", FLOATS)
def test_bce_clamps_logs(backend, dtype):
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-45 if dtype == np.float32 else 1e-300], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0], dtype=dtype)
    loss, grad = fastloss.binary_cross_entropy_with_grad(p, t, reduction="none")
    assert_close(loss, [100.0, 100.0, 0.0, 0.0, min(100.0, -np.log(float(p[4])))], dtype)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("name", list(POINTWISE))
def test_empty_and_zero_dim(backend, name):
    for dtype in FLOATS:
        x, t = make_problem(name, (0, 3), dtype)
        with np.errstate(all="ignore"):
            mean = getattr(fastloss, name)(x, t)
        assert np.isnan(mean) and mean.dtype == dtype
        assert getattr(fastloss, name)(x, t, reduction="sum") == 0
        loss, grad = getattr(fastloss, name + "_with_grad")(x, t, reduction="none")
        assert loss.shape == (0, 3) and grad.shape == (0, 3)
    x, t = make_problem(name, (1,), np.float64)
    x0, t0 = x.reshape(()), t.reshape(())
    loss, grad = getattr(fastloss, name + "_with_grad")(x0, t0)
    assert isinstance(loss, np.generic) and grad.shape == ()
    want, want_g = POINTWISE[name][0](x0, t0)
    assert_close(loss, np.float64(want), np.float64)
    assert_close(grad, np.float64(want_g), np.float64)
    lnone = getattr(fastloss, name)(x0, t0, reduction="none")
    assert np.shape(lnone) == ()


def test_batchmean(backend):
    x, t = make_problem("kl_div", (6, 5), np.float64)
    total = fastloss.kl_div(x, t, reduction="sum")
    assert_close(fastloss.kl_div(x, t, reduction="batchmean"), total / 6, np.float64)
    loss, grad = fastloss.kl_div_with_grad(x, t, reduction="batchmean")
    assert_close(grad, -t / 6, np.float64)
    with pytest.raises(ValueError, match="reduction"):
        fastloss.mse_loss(x, t, reduction="batchmean")


def test_with_grad_gives_the_same_loss(backend):
    for name in POINTWISE:
        x, t = make_problem(name, (50, 40), np.float32, seed=8)
        for reduction in ("mean", "sum", "none"):
            a = getattr(fastloss, name)(x, t, reduction=reduction)
            b, _ = getattr(fastloss, name + "_with_grad")(x, t, reduction=reduction)
            assert_close(a, np.asarray(b, np.float64), np.float32)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", list(POINTWISE))
def test_shape_errors_name_both_shapes(backend, name):
    x, t = make_problem(name, (4, 5), np.float64)
    with pytest.raises(ValueError, match=r"target.*\(4, 6\).*\(4, 5\)"):
        getattr(fastloss, name)(x, np.zeros((4, 6)))
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        getattr(fastloss, name + "_with_grad")(x, np.zeros((5, 5)))
    with pytest.raises(ValueError, match="reduction"):
        getattr(fastloss, name)(x, t, reduction="avg")


def test_factor_and_option_errors(backend):
    x, t = make_problem("binary_cross_entropy_with_logits", (4, 5), np.float64)
    with pytest.raises(ValueError, match=r"pos_weight.*\(4,\)"):
        fastloss.binary_cross_entropy_with_logits(x, t, pos_weight=np.ones(4))
    with pytest.raises(ValueError, match=r"weight.*\(3, 5\)"):
        fastloss.binary_cross_entropy_with_logits_with_grad(x, t, weight=np.ones((3, 5)))
    with pytest.raises(TypeError, match="weight"):
        fastloss.binary_cross_entropy_with_logits(x, t, weight=np.ones(5, complex))
    with pytest.raises(ValueError, match="beta"):
        fastloss.smooth_l1_loss(x, t, beta=-1.0)
    with pytest.raises(ValueError, match="delta"):
        fastloss.huber_loss_with_grad(x, t, delta=0.0)
    with pytest.raises(TypeError, match="delta"):
        fastloss.huber_loss(x, t, delta="1")


def test_bce_rejects_probabilities_out_of_range(backend):
    p, t = make_problem("binary_cross_entropy", (30, 40), np.float32)
    p[17, 23] = 1.5
    p[20, 3] = -0.5
    with pytest.raises(ValueError, match=r"1\.5.*\(17, 23\)"):
        fastloss.binary_cross_entropy(p, t)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fastloss.binary_cross_entropy_with_grad(np.asfortranarray(p), t, reduction="none")
    p[17, 23] = p[20, 3] = np.nan          # NaN is let through, and stays in its element
    loss = fastloss.binary_cross_entropy(p, t, reduction="none")
    assert np.isnan(loss[17, 23]) and np.isnan(loss).sum() == 2


# ----------------------------------------------------------------------------- multi-margin

MM_CASES = [((13, 11), -1), ((7,), 0), ((4, 5, 6), 1), ((6, 4), 0), ((3, 200), -1), ((5, 3, 4), -1)]


def _mm_problem(shape, axis, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 1.5).astype(dtype)
    row_shape = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    y = rng.integers(0, shape[axis], size=row_shape)
    return x, y


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", MM_CASES)
def test_multi_margin_matches_reference(backend, shape, axis, dtype):
    x, y = _mm_problem(shape, axis, dtype, seed=len(shape))
    c = shape[axis]
    w = np.random.default_rng(1).uniform(0.5, 2.0, c)
    for p, margin, weight in itertools.product((1, 2), (1.0, 0.3, -0.5), (None, w)):
        elems, g = ref_multi_margin(x, y, p, margin, weight, axis)
        for reduction in ("mean", "sum", "none"):
            n = y.size if reduction == "mean" else 1
            want = (elems.astype(np.float64) if reduction == "none"
                    else np.float64(elems.sum() / max(n, 1)))
            kw = dict(p=p, margin=margin, weight=weight, reduction=reduction, axis=axis)
            loss = fastloss.multi_margin_loss(x, y, **kw)
            loss2, grad = fastloss.multi_margin_loss_with_grad(x, y, **kw)
            assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
            assert_close(loss, want, dtype)
            assert_close(loss2, want, dtype)
            assert_close(np.asarray(grad, np.float64) * n, g.astype(np.float64), dtype)


def test_multi_margin_layouts_and_nan(backend):
    x, y = _mm_problem((9, 12), -1, np.float32, seed=4)
    want_l, want_g = fastloss.multi_margin_loss_with_grad(np.ascontiguousarray(x), y, reduction="none")
    for layout, xl in layouts(x):
        loss, grad = fastloss.multi_margin_loss_with_grad(xl, y, reduction="none")
        assert_close(loss, want_l.astype(np.float64), np.float32)
        assert_close(grad, want_g.astype(np.float64), np.float32)
    x[2, 5] = np.nan
    with np.errstate(all="ignore"):
        loss, grad = fastloss.multi_margin_loss_with_grad(x, y, reduction="none")
    assert np.isnan(loss[2]) and not np.isnan(np.delete(loss, 2)).any()
    assert not np.isnan(np.delete(grad, 2, axis=0)).any()


def test_multi_margin_errors_write_nothing(backend):
    x, y = _mm_problem((5, 4), -1, np.float64)
    y[3] = 4
    with pytest.raises(IndexError, match=r"target value 4 at position 3"):
        fastloss.multi_margin_loss_with_grad(x, y)
    y[3] = -1
    with pytest.raises(IndexError, match="-1"):
        fastloss.multi_margin_loss(x, y)
    y[3] = 0
    with pytest.raises(TypeError, match="target"):
        fastloss.multi_margin_loss(x, y.astype(np.float64))
    with pytest.raises(ValueError, match="target"):
        fastloss.multi_margin_loss(x, y[:4])
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        fastloss.multi_margin_loss(x, y, p=3)
    with pytest.raises(ValueError, match="weight"):
        fastloss.multi_margin_loss(x, y, weight=np.ones(3))
    with pytest.raises(TypeError, match="axis"):
        fastloss.multi_margin_loss(x, y, axis=None)
    with np.errstate(invalid="ignore"):
        empty = fastloss.multi_margin_loss(np.zeros((0, 4)), np.zeros(0, int))
    assert np.isnan(empty)
    loss, grad = fastloss.multi_margin_loss_with_grad(np.zeros((0, 4)), np.zeros(0, int),
                                                      reduction="sum")
    assert loss == 0 and grad.shape == (0, 4)


# ----------------------------------------------------------------------------- gradients


def _central_difference(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


@pytest.mark.parametrize("name", list(POINTWISE) + ["multi_margin_loss"])
def test_gradients_match_finite_differences(backend, name):
    rng = np.random.default_rng(12)
    if name == "multi_margin_loss":
        x, t = _mm_problem((4, 5), -1, np.float64, seed=3)
        opts = [{}, {"p": 2, "weight": rng.uniform(0.5, 2, 5)}]
    else:
        x, t = make_problem(name, (4, 5), np.float64, seed=3)
        if name == "binary_cross_entropy":
            x = np.clip(x, 0.05, 0.95)       # away from the clamps
        if name == "binary_cross_entropy_with_logits":
            x = np.clip(x, -8, 8)            # central differences of huge losses are noise
        opts = [_resolve(o, x.shape) for o in POINTWISE[name][1]]
    for o in opts:
        xx, tt = _kl_input(name, o, x, t)
        for reduction in ("mean", "sum"):
            f = getattr(fastloss, name)
            _, grad = getattr(fastloss, name + "_with_grad")(xx, tt, reduction=reduction, **o)
            fd = _central_difference(lambda v: float(f(v, tt, reduction=reduction, **o)), xx)
            np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7, err_msg=f"{o} {reduction}")


# ----------------------------------------------------------------------------- PyTorch

torch = None
try:  # pragma: no cover - depends on the environment
    import torch
except ImportError:
    pass


def _torch_case(name, x, t, opts, reduction):
    F = torch.nn.functional
    xt = torch.from_numpy(np.array(x)).requires_grad_(True)
    kw = {k: torch.from_numpy(np.asarray(v, dtype=x.dtype)) if isinstance(v, np.ndarray) else v
          for k, v in opts.items()}
    with warnings.catch_warnings():
        # kl_div's "mean" warns that it is not the true KL divergence ("batchmean" is)
        warnings.filterwarnings("ignore", "reduction: 'mean' divides", UserWarning)
        if name == "multi_margin_loss":
            target = torch.from_numpy(t.astype(np.int64))
            loss = F.multi_margin_loss(xt, target, reduction=reduction, **kw)
        else:
            loss = getattr(F, name)(xt, torch.from_numpy(t), reduction=reduction, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", list(POINTWISE) + ["multi_margin_loss"])
def test_against_pytorch(backend, name, dtype):
    if name == "multi_margin_loss":
        x, t = _mm_problem((30, 7), -1, dtype, seed=2)
        optsets = [{}, {"p": 2, "margin": 0.5, "weight": np.linspace(0.5, 2, 7)}]
    else:
        x, t = make_problem(name, (30, 7), dtype, seed=2)
        optsets = [_resolve(o, x.shape) for o in POINTWISE[name][1]]
    reductions = ["mean", "sum", "none"] + (["batchmean"] if name == "kl_div" else [])
    for opts, reduction in itertools.product(optsets, reductions):
        tt = t
        if name == "kl_div" and opts.get("log_target"):
            # PyTorch gives exp(-inf) * (-inf - x) = NaN for a log-target of -inf;
            # fastloss follows the contract's 0 log 0 = 0 (tested above)
            tt = np.where(t == 0, dtype(1e-3), t)
        xx, tt = _kl_input(name, opts, x, tt)
        want_loss, want_grad = _torch_case(name, xx, tt, opts, reduction)
        loss, grad = getattr(fastloss, name + "_with_grad")(xx, tt, reduction=reduction, **opts)
        # PyTorch computes float32 in float32 (its sums too): compare at float32's
        # precision rather than the contract's, which is against a float64 reference.
        tol = 1e-5 if dtype == np.float32 else 1e-12
        n = {"mean": x.size, "batchmean": x.shape[0]}.get(reduction, 1)
        if name == "multi_margin_loss" and reduction == "mean":
            n = x.shape[0]
        np.testing.assert_allclose(loss, want_loss, rtol=tol, atol=tol, err_msg=f"{opts} {reduction}")
        np.testing.assert_allclose(grad * n, want_grad * n, rtol=tol, atol=tol,
                                   err_msg=f"{opts} {reduction}")


# ----------------------------------------------------------------------------- fallback twin


@pytest.mark.parametrize("dtype", FLOATS)
def test_kernels_match_the_fallback(dtype):
    """Every loss of the compiled backend against its NumPy twin, on larger inputs."""
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    previous = fastloss.get_backend()
    try:
        for name, (_, optsets) in POINTWISE.items():
            x, t = make_problem(name, (257, 129), dtype, seed=21)
            for opts in optsets:
                opts = _resolve(opts, x.shape)
                xx, tt = _kl_input(name, opts, x, t)
                for reduction in _reductions(name):
                    results = []
                    for backend in ("cython", "numpy"):
                        fastloss.set_backend(backend)
                        results.append(getattr(fastloss, name + "_with_grad")(
                            xx, tt, reduction=reduction, **opts))
                    (l1, g1), (l2, g2) = results
                    n = {"mean": x.size, "batchmean": x.shape[0]}.get(reduction, 1)
                    assert_close(l1, np.asarray(l2, np.float64), dtype)
                    assert_close(np.asarray(g1, np.float64) * n, np.asarray(g2, np.float64) * n, dtype)
        x, y = _mm_problem((257, 129), -1, dtype, seed=22)
        for kw in ({}, {"p": 2, "margin": 0.5, "weight": np.linspace(0.5, 2, 129)}):
            results = []
            for backend in ("cython", "numpy"):
                fastloss.set_backend(backend)
                results.append(fastloss.multi_margin_loss_with_grad(x, y, reduction="sum", **kw))
            assert_close(results[0][0], np.float64(results[1][0]), dtype)
            assert_close(results[0][1], results[1][1].astype(np.float64), dtype)
    finally:
        fastloss.set_backend(previous)


# ----------------------------------------------------------------------------- threads, SIMD


def _large_problems():
    out = {}
    for name in POINTWISE:
        out[name] = make_problem(name, (700, 301), np.float32, seed=6)
    return out


def test_threads_agree(threads):
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    fastloss.set_backend("cython")
    problems = _large_problems()
    results = {}
    for n in (1, 2):
        fastloss.set_num_threads(n)
        for name, (x, t) in problems.items():
            results[name, n] = getattr(fastloss, name + "_with_grad")(
                x, t, reduction="mean", **_resolve(POINTWISE[name][1][-1], x.shape))
        x, y = _mm_problem((700, 301), -1, np.float32, seed=1)
        results["mm", n] = fastloss.multi_margin_loss_with_grad(x, y)
    for key in [k for k in results if k[1] == 1]:
        a, b = results[key], results[key[0], 2]
        assert_close(b[0], np.float64(a[0]), np.float32)          # sums regroup
        np.testing.assert_array_equal(a[1], b[1])                 # elementwise: identical


def test_simd_levels_agree(simd_level):
    problems = _large_problems()
    for name, (x, t) in problems.items():
        opts = _resolve(POINTWISE[name][1][-1], x.shape)
        xx, tt = _kl_input(name, opts, x, t)
        ref_opts = {k: (np.asarray(v, np.float32).astype(np.float64) if isinstance(v, np.ndarray) else v)
                    for k, v in opts.items()}
        check_loss(name, xx, tt, np.float32, "sum", opts, ref_opts)
    x, y = _mm_problem((70, 301), -1, np.float32, seed=1)
    elems, g = ref_multi_margin(x, y, 2, 1.0, None, -1)
    loss, grad = fastloss.multi_margin_loss_with_grad(x, y, p=2, reduction="sum")
    assert_close(loss, np.float64(elems.sum()), np.float32)
    assert_close(grad, g.astype(np.float64), np.float32)


def test_repeated_calls_do_not_grow_memory(backend):
    import tracemalloc
    x, t = make_problem("binary_cross_entropy_with_logits", (64, 100), np.float32)
    pw = np.ones(100)
    for _ in range(20):
        fastloss.binary_cross_entropy_with_logits_with_grad(x, t, pos_weight=pw)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(300):
        fastloss.binary_cross_entropy_with_logits_with_grad(x, t, pos_weight=pw)
        fastloss.multi_margin_loss_with_grad(x, np.zeros(64, int))
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert grown < 64 * 1024, grown
