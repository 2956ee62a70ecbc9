"""fastloss.fallback without PyTorch: straightforward float64 formulas, central finite
differences, the contract's conventions (dtypes, layouts, out=, empty arrays, 0-d
results) and its numerics, and the errors bad input must raise."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastloss import fallback as fb
from conftest import assert_close, layouts

# ------------------------------------------------------------------ float64 references


def ref_cross_entropy(x, target, axis=-1, weight=None, sample_weight=None, ignore_index=-100,
                      reduction="mean", label_smoothing=0.0):
    """Cross-entropy row by row in Python floats, as PyTorch documents it."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n_classes = x.shape[-1]
    row_shape = x.shape[:-1]
    x = x.reshape(-1, n_classes)
    soft = np.asarray(target).dtype.kind == "f"
    t = (np.moveaxis(np.asarray(target, dtype=np.float64), axis, -1).reshape(-1, n_classes)
         if soft else np.asarray(target).reshape(-1))
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    s = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, float).reshape(-1)
    eps = label_smoothing
    losses, shares = [], []
    for i, row in enumerate(x):
        m = max(row)
        lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
        logp = [v - lse for v in row]
        if soft:
            q = [qc * (1 - eps) + eps / n_classes for qc in t[i]]
            loss = -math.fsum(w[c] * q[c] * logp[c] for c in range(n_classes) if w[c] * q[c] != 0)
            share = 1.0
        elif t[i] == ignore_index:
            loss, share = 0.0, 0.0
        else:
            y = t[i]
            loss = (1 - eps) * w[y] * -logp[y]
            if eps:
                loss += eps / n_classes * math.fsum(-w[c] * logp[c] for c in range(n_classes))
            share = w[y]
        losses.append(s[i] * loss)
        shares.append(s[i] * share)
    if reduction == "none":
        return np.array(losses).reshape(row_shape)
    total = math.fsum(losses)
    if reduction == "sum":
        return total
    denominator = math.fsum(shares)
    return total / denominator if denominator else math.nan


def fd_gradient(f, x, h=1e-6):
    """Central differences of the scalar function f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (f(xp) - f(xm)) / (2 * h)
    return grad


def check_fd(loss_fn, grad, x, grad_output=None, rtol=1e-6, atol=1e-8):
    """grad must be the gradient of sum(grad_output * loss_fn(x))."""
    def scalar(z):
        value = np.asarray(loss_fn(z), dtype=np.float64)
        return float(np.sum(value if grad_output is None else value * grad_output))

    np.testing.assert_allclose(grad, fd_gradient(scalar, x), rtol=rtol, atol=atol)


# -------------------------------------------------------------- cross-entropy vs formula

CE_CASES = [
    # shape, axis, kind
    ((5, 4), -1, "index"),
    ((3, 4, 2), 1, "index"),
    ((4, 3), 0, "index"),
    ((2, 3, 4), -1, "probs"),
    ((4, 3), 0, "probs"),
    ((6,), 0, "index"),
]


def make_ce(shape, axis, kind, seed=0, ignore=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    n_classes = shape[axis]
    row_shape = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    if kind == "index":
        target = rng.integers(0, n_classes, size=row_shape)
        if ignore and target.size > 1:
            target.flat[1] = -100
    else:
        target = rng.random(shape)
        target /= target.sum(axis=axis, keepdims=True)
    weight = rng.random(n_classes) + 0.25
    sample_weight = rng.random(row_shape) + 0.5
    return x, target, weight, sample_weight


@pytest.mark.parametrize("shape,axis,kind", CE_CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted,sample_weighted,eps",
                         [(False, False, 0.0), (True, False, 0.0), (False, True, 0.1),
                          (True, True, 0.35), (True, False, 1.0)])
def test_cross_entropy_formula_and_gradient(shape, axis, kind, reduction, weighted,
                                            sample_weighted, eps):
    x, target, weight, sw = make_ce(shape, axis, kind)
    opts = dict(axis=axis, weight=weight if weighted else None,
                sample_weight=sw if sample_weighted else None, reduction=reduction,
                label_smoothing=eps)
    expected = ref_cross_entropy(x, target, **opts)
    loss = fb.cross_entropy(x, target, **opts)
    np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-14)

    loss2, grad = fb.cross_entropy_with_grad(x, target, **opts)
    assert np.array_equal(loss2, loss)
    check_fd(lambda z: fb.cross_entropy(z, target, **opts), grad, x)

    go = np.random.default_rng(1).standard_normal(np.shape(loss)) if reduction == "none" else 1.7
    check_fd(lambda z: fb.cross_entropy(z, target, **opts),
             fb.cross_entropy_backward(x, target, go, **opts), x, grad_output=go)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_cross_entropy_property(data):
    """Random shapes, axes and options against the row-by-row formula."""
    ndim = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    axis = data.draw(st.integers(-ndim, ndim - 1))
    kind = data.draw(st.sampled_from(["index", "probs"]))
    seed = data.draw(st.integers(0, 2**16))
    x, target, weight, sw = make_ce(shape, axis, kind, seed, ignore=data.draw(st.booleans()))
    opts = dict(axis=axis,
                weight=data.draw(st.sampled_from([None, weight])),
                sample_weight=data.draw(st.sampled_from([None, sw])),
                reduction=data.draw(st.sampled_from(["mean", "sum", "none"])),
                label_smoothing=data.draw(st.sampled_from([0.0, 0.2, 1.0])))
    expected = ref_cross_entropy(x, target, **opts)
    loss, grad = fb.cross_entropy_with_grad(x, target, **opts)
    np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-14)
    assert grad.shape == x.shape


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_formula_and_gradient(weighted, reduction):
    x, target, weight, _ = make_ce((3, 5, 2), 1, "index", seed=3)
    logp = fb.log_softmax(x, 1)
    opts = dict(axis=1, weight=weight if weighted else None, reduction=reduction)
    # nll of log-softmax is cross-entropy of the logits
    np.testing.assert_allclose(fb.nll_loss(logp, target, **opts),
                               ref_cross_entropy(x, target, **opts), rtol=1e-12)
    _, grad = fb.nll_loss_with_grad(logp, target, **opts)
    check_fd(lambda z: fb.nll_loss(z, target, **opts), grad, logp)


# ------------------------------------------------------------ other losses vs formulas

def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _reduce(elems, reduction):
    return {"none": elems, "sum": np.sum(elems), "mean": np.mean(elems)}[reduction]


RNG = np.random.default_rng(2024)
P = RNG.random((4, 5)) * 0.9 + 0.05
T = RNG.random((4, 5))
X = RNG.standard_normal((4, 5)) * 2
Y = X + RNG.choice([-1, 1], size=(4, 5)) * (RNG.random((4, 5)) * 3 + 0.01)  # |d| in (0.01, 3)
W = RNG.random((4, 5)) + 0.5
PW = RNG.random(5) * 2
LOGQ = np.log(RNG.dirichlet(np.ones(5), size=4))
LOGP = np.log(RNG.dirichlet(np.ones(5), size=4))

# name -> (call taking the input and reduction, float64 formula of the elementwise loss)
ELEMENTWISE = {
    "bce": (lambda z, r: fb.binary_cross_entropy(z, T, weight=W, reduction=r),
            lambda z: -W * (T * np.log(z) + (1 - T) * np.log(1 - z)), P),
    "bce_logits": (lambda z, r: fb.binary_cross_entropy_with_logits(
                       z, T, weight=W, pos_weight=PW, reduction=r),
                   lambda z: -W * (PW * T * np.log(_sigmoid(z)) + (1 - T) * np.log(1 - _sigmoid(z))),
                   X),
    "kl_div": (lambda z, r: fb.kl_div(z, np.exp(LOGQ), reduction=r),
               lambda z: np.exp(LOGQ) * (LOGQ - z), LOGP),
    "kl_div_log_target": (lambda z, r: fb.kl_div(z, LOGQ, reduction=r, log_target=True),
                          lambda z: np.exp(LOGQ) * (LOGQ - z), LOGP),
    "mse": (lambda z, r: fb.mse_loss(z, Y, reduction=r), lambda z: (z - Y) ** 2, X),
    "smooth_l1": (lambda z, r: fb.smooth_l1_loss(z, Y, beta=1.3, reduction=r),
                  lambda z: np.where(abs(z - Y) < 1.3, 0.5 * (z - Y) ** 2 / 1.3, abs(z - Y) - 0.65),
                  X),
    "l1": (lambda z, r: fb.smooth_l1_loss(z, Y, beta=0.0, reduction=r),
           lambda z: abs(z - Y), X),
    "huber": (lambda z, r: fb.huber_loss(z, Y, delta=0.7, reduction=r),
              lambda z: np.where(abs(z - Y) < 0.7, 0.5 * (z - Y) ** 2, 0.7 * (abs(z - Y) - 0.35)),
              X),
}
WITH_GRAD = {
    "bce": lambda z, r: fb.binary_cross_entropy_with_grad(z, T, weight=W, reduction=r),
    "bce_logits": lambda z, r: fb.binary_cross_entropy_with_logits_with_grad(
        z, T, weight=W, pos_weight=PW, reduction=r),
    "kl_div": lambda z, r: fb.kl_div_with_grad(z, np.exp(LOGQ), reduction=r),
    "kl_div_log_target": lambda z, r: fb.kl_div_with_grad(z, LOGQ, reduction=r, log_target=True),
    "mse": lambda z, r: fb.mse_loss_with_grad(z, Y, reduction=r),
    "smooth_l1": lambda z, r: fb.smooth_l1_loss_with_grad(z, Y, beta=1.3, reduction=r),
    "l1": lambda z, r: fb.smooth_l1_loss_with_grad(z, Y, beta=0.0, reduction=r),
    "huber": lambda z, r: fb.huber_loss_with_grad(z, Y, delta=0.7, reduction=r),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_elementwise_losses_formula_and_gradient(name, reduction):
    call, formula, x = ELEMENTWISE[name]
    np.testing.assert_allclose(call(x, reduction), _reduce(formula(x), reduction), rtol=1e-12)
    loss, grad = WITH_GRAD[name](x, reduction)
    assert np.array_equal(loss, call(x, reduction))
    check_fd(lambda z: call(z, reduction), grad, x)


def test_kl_div_batchmean_divides_by_the_batch():
    loss = fb.kl_div(LOGP, np.exp(LOGQ), reduction="batchmean")
    np.testing.assert_allclose(loss, np.sum(np.exp(LOGQ) * (LOGQ - LOGP)) / 4, rtol=1e-12)
    _, grad = fb.kl_div_with_grad(LOGP, np.exp(LOGQ), reduction="batchmean")
    np.testing.assert_allclose(grad, -np.exp(LOGQ) / 4, rtol=1e-12)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin_formula_and_gradient(p, reduction, weighted):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 4))
    target = rng.integers(0, 4, 6)
    weight = rng.random(4) + 0.5 if weighted else None
    w = np.ones(4) if weight is None else weight
    rows = []
    for xi, y in zip(x, target):
        rows.append(sum(w[y] * max(0.0, 1.0 - xi[y] + xi[j]) ** p for j in range(4) if j != y) / 4)
    opts = dict(p=p, weight=weight, reduction=reduction)
    np.testing.assert_allclose(fb.multi_margin_loss(x, target, **opts),
                               _reduce(np.array(rows), reduction), rtol=1e-12)
    _, grad = fb.multi_margin_loss_with_grad(x, target, **opts)
    check_fd(lambda z: fb.multi_margin_loss(z, target, **opts), grad, x)


# ----------------------------------------------------------- activations and backwards

@pytest.mark.parametrize("name,kwargs,formula", [
    ("sigmoid", {}, _sigmoid),
    ("tanh", {}, np.tanh),
    ("relu", {}, lambda z: np.maximum(z, 0)),
    ("leaky_relu", {"negative_slope": 0.1}, lambda z: np.where(z > 0, z, 0.1 * z)),
    ("softplus", {}, lambda z: np.log1p(np.exp(z))),
    ("softplus", {"beta": 3.0, "threshold": 4.0},
     lambda z: np.where(3 * z > 4, z, np.log1p(np.exp(3 * z)) / 3)),
])
def test_activations_formula_and_gradient(name, kwargs, formula):
    x = X[np.abs(3 * X - 4) > 1e-3]                  # away from kinks and the threshold
    g = np.linspace(-1, 2, x.size)
    y = getattr(fb, name)(x, **kwargs)
    np.testing.assert_allclose(y, formula(x), rtol=1e-12, atol=1e-300)
    second = y if name in ("sigmoid", "tanh") else x
    grad = getattr(fb, name + "_backward")(g, second, **kwargs)
    check_fd(lambda z: getattr(fb, name)(z, **kwargs), grad, x, grad_output=g)


@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_backwards_are_vjps(axis):
    x, g = X[:, :4], T[:, :4]
    for forward, backward in [(fb.softmax, fb.softmax_backward),
                              (fb.log_softmax, fb.log_softmax_backward)]:
        grad = backward(g, forward(x, axis), axis)
        check_fd(lambda z, f=forward: f(z, axis), grad, x, grad_output=g)


# --------------------------------------------------------------------- the contract table
# Every public function, called on one (4, 5) input; used for the dtype, layout,
# empty-input and no-mutation checks.  (name of the first argument, call)

LABELS = np.array([0, 3, 4, 1])
PROBS = np.exp(LOGQ)

CALLS = {
    "softmax": ("x", lambda x: fb.softmax(x)),
    "log_softmax": ("x", lambda x: fb.log_softmax(x, 0)),
    "logsumexp": ("x", lambda x: fb.logsumexp(x, None)),
    "softmax_backward": ("grad", lambda x: fb.softmax_backward(x, x)),
    "log_softmax_backward": ("grad", lambda x: fb.log_softmax_backward(x, x)),
    "cross_entropy": ("logits", lambda x: fb.cross_entropy(x, LABELS, label_smoothing=0.1)),
    "cross_entropy_probs": ("logits", lambda x: fb.cross_entropy(x, PROBS, weight=W[0])),
    "cross_entropy_backward": ("logits", lambda x: fb.cross_entropy_backward(x, LABELS, 2.0)),
    "cross_entropy_with_grad": ("logits", lambda x: fb.cross_entropy_with_grad(
        x, LABELS, reduction="none", sample_weight=W[:, 0])),
    "nll_loss_with_grad": ("log_probs", lambda x: fb.nll_loss_with_grad(x, LABELS, weight=W[0])),
    "binary_cross_entropy_with_grad": ("probs", lambda x: fb.binary_cross_entropy_with_grad(x, T)),
    "binary_cross_entropy_with_logits_with_grad": (
        "logits", lambda x: fb.binary_cross_entropy_with_logits_with_grad(x, T, pos_weight=PW)),
    "kl_div_with_grad": ("input", lambda x: fb.kl_div_with_grad(x, PROBS, reduction="batchmean")),
    "mse_loss_with_grad": ("input", lambda x: fb.mse_loss_with_grad(x, Y, reduction="sum")),
    "smooth_l1_loss_with_grad": ("input", lambda x: fb.smooth_l1_loss_with_grad(x, Y)),
    "huber_loss_with_grad": ("input", lambda x: fb.huber_loss_with_grad(x, Y, reduction="none")),
    "multi_margin_loss_with_grad": ("input", lambda x: fb.multi_margin_loss_with_grad(
        x, LABELS, p=2, weight=W[0])),
    "sigmoid": ("x", fb.sigmoid),
    "sigmoid_backward": ("grad", lambda x: fb.sigmoid_backward(x, x)),
    "tanh_backward": ("grad", lambda x: fb.tanh_backward(x, x)),
    "relu_backward": ("grad", lambda x: fb.relu_backward(x, x)),
    "leaky_relu": ("x", lambda x: fb.leaky_relu(x, 0.2)),
    "softplus_backward": ("grad", lambda x: fb.softplus_backward(x, x, beta=2.0)),
}


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_dtypes(name):
    _, call = CALLS[name]
    x64 = P.copy()
    x32 = x64.astype(np.float32)
    results64 = _outputs(call(x64))
    for r in results64:
        assert r.dtype == np.float64
    # float32 keeps its dtype and is within 1e-6 of the float64 result from the same values
    for r32, r in zip(_outputs(call(x32)), _outputs(call(x32.astype(np.float64)))):
        assert r32.dtype == np.float32
        assert_close(r32, r, np.float32)
        if np.ndim(r32) == 0:
            assert isinstance(r32, np.float32)          # a NumPy scalar, not a 0-d array
    # float16 is computed in float32 and returned as float16
    x16 = x64.astype(np.float16)
    for r16, r32 in zip(_outputs(call(x16)), _outputs(call(x16.astype(np.float32)))):
        assert r16.dtype == np.float16
        np.testing.assert_array_equal(r16, np.asarray(r32).astype(np.float16))
    # integers and bools are promoted to float64
    xi = (np.arange(20).reshape(4, 5) % 2)
    for dtype in [np.int32, np.bool_]:
        for r, expected in zip(_outputs(call(xi.astype(dtype))), _outputs(call(xi.astype(np.float64)))):
            assert r.dtype == np.float64
            np.testing.assert_array_equal(r, expected)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("bad", [np.complex128, object])
def test_complex_and_object_input_raise_type_error(name, bad):
    arg, call = CALLS[name]
    with pytest.raises(TypeError, match=arg):
        call(P.astype(bad))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_layouts_and_no_mutation(name):
    _, call = CALLS[name]
    expected = _outputs(call(P.copy()))
    for layout, x in layouts(P):
        before = x.copy()
        for r, e in zip(_outputs(call(x)), expected):
            np.testing.assert_allclose(r, e, rtol=1e-13, atol=1e-15, err_msg=layout)
        np.testing.assert_array_equal(x, before)


def test_loss_equals_loss_from_with_grad():
    pairs = [
        (lambda: fb.cross_entropy(X, LABELS, weight=W[0]),
         lambda: fb.cross_entropy_with_grad(X, LABELS, weight=W[0])),
        (lambda: fb.nll_loss(LOGP, LABELS), lambda: fb.nll_loss_with_grad(LOGP, LABELS)),
        (lambda: fb.binary_cross_entropy(P, T), lambda: fb.binary_cross_entropy_with_grad(P, T)),
        (lambda: fb.multi_margin_loss(X, LABELS), lambda: fb.multi_margin_loss_with_grad(X, LABELS)),
    ]
    for loss, with_grad in pairs:
        assert np.array_equal(loss(), with_grad()[0])


# --------------------------------------------------------------------------- empty input

@pytest.mark.parametrize("kind", ["index", "probs"])
def test_cross_entropy_zero_rows(kind):
    x = np.zeros((0, 5), dtype=np.float32)
    target = np.zeros(0, dtype=np.int64) if kind == "index" else np.zeros((0, 5))
    none = fb.cross_entropy(x, target, reduction="none")
    assert none.shape == (0,) and none.dtype == np.float32
    total = fb.cross_entropy(x, target, reduction="sum")
    assert total == 0.0 and isinstance(total, np.float32)
    assert np.isnan(fb.cross_entropy(x, target))
    loss, grad = fb.cross_entropy_with_grad(x, target)
    assert np.isnan(loss) and grad.shape == (0, 5)


def test_empty_class_axis():
    """C = 0 is possible when every row is ignored (index) or with soft targets."""
    x = np.zeros((2, 0))
    ignored = np.array([-100, -100])
    assert fb.cross_entropy(x, ignored, reduction="none").tolist() == [0.0, 0.0]
    loss, grad = fb.cross_entropy_with_grad(x, ignored, label_smoothing=0.1)
    assert np.isnan(loss) and grad.shape == (2, 0)
    assert fb.nll_loss(x, ignored, reduction="sum") == 0.0
    assert fb.cross_entropy(x, np.zeros((2, 0)), reduction="sum") == 0.0
    with pytest.raises(IndexError, match="0 at position 0"):
        fb.cross_entropy(x, np.array([0, -100]))


def test_other_functions_zero_rows():
    x = np.zeros((0, 5))
    labels = np.zeros(0, dtype=np.int64)
    for fn, args in [(fb.binary_cross_entropy, (x, x)), (fb.mse_loss, (x, x)),
                     (fb.kl_div, (x, x)), (fb.multi_margin_loss, (x, labels)),
                     (fb.nll_loss, (x, labels)), (fb.huber_loss, (x, x))]:
        assert np.isnan(fn(*args))
        assert fn(*args, reduction="sum") == 0.0
        assert fn(*args, reduction="none").shape == np.shape(args[1])
    assert fb.softmax(x).shape == (0, 5)
    assert fb.logsumexp(x, 0).tolist() == [-np.inf] * 5          # empty axis: log 0
    assert fb.logsumexp(np.zeros(0), None) == -np.inf
    assert fb.logsumexp(x).shape == (0,)
    assert fb.sigmoid(x).shape == (0, 5)


# ---------------------------------------------------------------------------- numerics

def test_nan_row_stays_in_its_row():
    x = X.copy()
    x[1, 2] = np.nan
    loss, grad = fb.cross_entropy_with_grad(x, LABELS, reduction="none", label_smoothing=0.1)
    assert np.isnan(loss[1]) and np.all(np.isfinite(np.delete(loss, 1)))
    assert np.all(np.isnan(grad[1])) and np.all(np.isfinite(np.delete(grad, 1, axis=0)))
    loss = fb.cross_entropy(x, PROBS, reduction="none")
    assert np.isnan(loss[1]) and np.all(np.isfinite(np.delete(loss, 1)))
    loss = fb.multi_margin_loss(x, LABELS, reduction="none")
    assert np.isnan(loss[1]) and np.all(np.isfinite(np.delete(loss, 1)))
    lse = fb.logsumexp(x)
    assert np.isnan(lse[1]) and np.all(np.isfinite(np.delete(lse, 1)))


def test_ignored_row_with_nan_logits_contributes_nothing():
    x = X.copy()
    x[1] = np.nan
    target = LABELS.copy()
    target[1] = -100
    loss, grad = fb.cross_entropy_with_grad(x, target, label_smoothing=0.2)
    expected = ref_cross_entropy(np.delete(X, 1, 0), np.delete(target, 1), label_smoothing=0.2)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    assert np.all(grad[1] == 0) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_classes_with_soft_targets(dtype):
    """-inf logits with target probability 0: 0 log 0 = 0, finite loss and gradient."""
    x = X.astype(dtype)
    x[:, 1] = -np.inf
    q = PROBS.copy()
    q[:, 0] += q[:, 1]
    q[:, 1] = 0.0
    loss, grad = fb.cross_entropy_with_grad(x, q, reduction="none", weight=W[0])
    expected = ref_cross_entropy(np.delete(X, 1, 1), np.delete(q, 1, 1), weight=np.delete(W[0], 1),
                                 reduction="none")
    assert_close(loss, expected, dtype)
    assert np.all(np.isfinite(grad)) and np.all(grad[:, 1] == 0)
    # kl_div: a zero target probability against a -inf log-probability contributes 0
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    assert np.isfinite(fb.kl_div(log_q, q))
    assert np.isfinite(fb.kl_div(log_q, log_q, log_target=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits(dtype):
    big = np.finfo(dtype).max
    x = np.array([[big, -big, 0.0], [1e30, 1e30, -1e30], [-big, -big, -big]], dtype=dtype)
    target = np.array([0, 1, 2])
    loss, grad = fb.cross_entropy_with_grad(x, target, reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert_close(loss, [0.0, math.log(2), math.log(3)], dtype)
    assert_close(grad[1], [0.5, -0.5, 0.0], dtype)
    for fn in [fb.sigmoid, fb.softplus, fb.tanh]:
        assert np.all(np.isfinite(fn(x)))
    assert fb.sigmoid(x)[0].tolist() == [1.0, 0.0, 0.5]
    assert fb.softplus(np.array([1000.0, -1000.0]), threshold=np.inf).tolist() == [1000.0, 0.0]
    bce = fb.binary_cross_entropy_with_logits(x, np.eye(3, dtype=dtype), reduction="none")
    assert np.all(np.isfinite(bce))


def test_logsumexp_infinite_entries():
    x = np.array([[1.0, np.inf, 0.0], [-np.inf, -np.inf, -np.inf], [np.inf, -np.inf, 2.0]])
    assert fb.logsumexp(x).tolist() == [np.inf, -np.inf, np.inf]
    assert fb.logsumexp(x[1], None) == -np.inf


@pytest.mark.parametrize("axis", [0, -1])
def test_float32_long_axis_accumulates_in_float64(axis):
    """50,000 classes in float32: within 1e-6 of float64 from the same values."""
    x32 = np.random.default_rng(8).standard_normal((3, 50_000)).astype(np.float32) * 3
    x32 = np.ascontiguousarray(x32.T) if axis == 0 else x32
    x64 = x32.astype(np.float64)
    labels = np.array([5, 17, 40_000])
    for fn in [lambda z: fb.softmax(z, axis), lambda z: fb.log_softmax(z, axis),
               lambda z: fb.logsumexp(z, axis),
               lambda z: fb.cross_entropy_with_grad(z, labels, axis=axis, reduction="none"),
               lambda z: fb.cross_entropy_with_grad(z, fb.softmax(z, axis), axis=axis)]:
        for r32, r64 in zip(_outputs(fn(x32)), _outputs(fn(x64))):
            assert_close(r32, r64, np.float32)


def test_bce_clamps_logs_at_minus_100():
    loss = fb.binary_cross_entropy(np.array([0.0, 1.0]), np.array([1.0, 0.0]), reduction="none")
    assert loss.tolist() == [100.0, 100.0]


# --------------------------------------------------------------------------------- out=

def test_out_in_place_and_shared_memory():
    x = X.astype(np.float32)
    for fn in [fb.softmax, fb.log_softmax, fb.sigmoid, fb.tanh, fb.relu, fb.softplus]:
        expected = fn(x)
        buf = x.copy()
        result = fn(buf, out=buf)
        assert result is buf
        np.testing.assert_array_equal(buf, expected)
    # a strided out (every other column of a wider array)
    wide = np.zeros((4, 10), dtype=np.float32)
    fb.softmax(x, out=wide[:, ::2])
    np.testing.assert_array_equal(wide[:, ::2], fb.softmax(x))
    assert np.all(wide[:, 1::2] == 0)


@pytest.mark.parametrize("target", [LABELS, PROBS], ids=["index", "probs"])
def test_cross_entropy_out_is_logits(target):
    x = X.astype(np.float32)
    loss, grad = fb.cross_entropy_with_grad(x, target, label_smoothing=0.1, weight=W[0])
    buf = x.copy()
    loss2, grad2 = fb.cross_entropy_with_grad(buf, target, label_smoothing=0.1, weight=W[0], out=buf)
    assert grad2 is buf and loss2 == loss
    np.testing.assert_array_equal(buf, grad)
    buf = np.asfortranarray(x)
    fb.cross_entropy_backward(buf, target, 1.0, label_smoothing=0.1, weight=W[0], out=buf)
    np.testing.assert_array_equal(buf, grad)
    # float16 logits: out is float16 too
    x16 = x.astype(np.float16)
    out16 = np.empty_like(x16)
    fb.cross_entropy_backward(x16, target, out=out16)
    np.testing.assert_array_equal(out16, fb.cross_entropy_backward(x16.astype(np.float32), target)
                                  .astype(np.float16))


def test_backward_out_may_be_an_input():
    y = fb.softmax(X)
    for name, second in [("softmax_backward", y), ("log_softmax_backward", np.log(y)),
                         ("sigmoid_backward", y), ("tanh_backward", y)]:
        fn = getattr(fb, name)
        expected = fn(T, second)
        for which in range(2):
            g, s = T.copy(), second.copy()
            out = (g, s)[which]
            assert fn(g, s, out=out) is out
            np.testing.assert_allclose(out, expected, rtol=1e-15, err_msg=f"{name} out=arg{which}")


@pytest.mark.parametrize("bad_out", [np.zeros((4, 4)), np.zeros((4, 5), np.float32), [[0.0] * 5] * 4])
def test_bad_out_raises_and_writes_nothing(bad_out):
    snapshot = np.array(bad_out, copy=True)
    error = TypeError if isinstance(bad_out, list) else ValueError
    for call in [lambda o: fb.softmax(X, out=o), lambda o: fb.logsumexp(X, 0, out=o),
                 lambda o: fb.cross_entropy_with_grad(X, LABELS, out=o),
                 lambda o: fb.cross_entropy_backward(X, LABELS, out=o),
                 lambda o: fb.sigmoid(X, out=o), lambda o: fb.softmax_backward(T, X, out=o)]:
        with pytest.raises(error, match="out"):
            call(bad_out)
        np.testing.assert_array_equal(bad_out, snapshot)


def test_logsumexp_keepdims_out_and_scalars():
    out = np.empty((4, 1))
    assert fb.logsumexp(X, 1, keepdims=True, out=out) is out
    np.testing.assert_allclose(out[:, 0], fb.logsumexp(X, 1), rtol=1e-15)
    s = fb.logsumexp(X.astype(np.float32), (0, 1))
    assert isinstance(s, np.float32)


# ------------------------------------------------------------------------------ errors

def test_bad_label_names_value_and_position_and_writes_nothing():
    x = X.copy()
    target = np.array([0, 2, 7, 1])
    with pytest.raises(IndexError, match=r"7 at position 2\b"):
        fb.cross_entropy(x, target)
    for call in [lambda: fb.cross_entropy_with_grad(x, target, out=x),
                 lambda: fb.cross_entropy_backward(x, target, out=x)]:
        with pytest.raises(IndexError, match="7"):
            call()
        np.testing.assert_array_equal(x, X)
    x3 = np.zeros((2, 5, 3))
    target3 = np.zeros((2, 3), dtype=np.int8)
    target3[1, 2] = -3
    with pytest.raises(IndexError, match=r"-3 at position \(1, 2\)"):
        fb.cross_entropy(x3, target3, axis=1)
    with pytest.raises(IndexError, match=r"-3 at position \(1, 2\)"):
        fb.nll_loss(x3, target3, axis=1)
    with pytest.raises(IndexError, match=r"5 at position 3"):
        fb.multi_margin_loss(X, np.array([0, 1, 2, 5]))
    with pytest.raises(IndexError, match=r"-100 at position 0"):   # no ignore_index here
        fb.multi_margin_loss(X, np.array([-100, 1, 2, 3]))
    huge = np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(IndexError, match=str(2**64 - 1)):
        fb.cross_entropy(X, huge)
    with pytest.raises(IndexError, match=r"-1 at position \(\)"):
        fb.cross_entropy(X[0], np.array(-1))


@pytest.mark.parametrize("call,error,pattern", [
    (lambda: fb.cross_entropy(X, LABELS.astype(float)), ValueError, "target.*probabilities"),
    (lambda: fb.cross_entropy(X, LABELS > 0), TypeError, "target"),
    (lambda: fb.cross_entropy(X, LABELS[:3]), ValueError, "target"),
    (lambda: fb.cross_entropy(X, PROBS[:, :3]), ValueError, "target"),
    (lambda: fb.cross_entropy(X, LABELS, weight=np.ones(4)), ValueError, "weight"),
    (lambda: fb.cross_entropy(X, LABELS, sample_weight=np.ones(5)), ValueError, "sample_weight"),
    (lambda: fb.cross_entropy(X, LABELS, label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: fb.cross_entropy(X, LABELS, label_smoothing="a"), TypeError, "label_smoothing"),
    (lambda: fb.cross_entropy(X, LABELS, reduction="avg"), ValueError, "reduction"),
    (lambda: fb.cross_entropy(X, LABELS, ignore_index=1.5), TypeError, "ignore_index"),
    (lambda: fb.cross_entropy(X, LABELS, axis=(0, 1)), TypeError, "axis"),
    (lambda: fb.cross_entropy(X, LABELS, axis=2), ValueError, "axis"),
    (lambda: fb.cross_entropy(np.float64(1.0), np.array(0)), ValueError, "dimension"),
    (lambda: fb.cross_entropy(X + 0j, LABELS), TypeError, "logits"),
    (lambda: fb.cross_entropy_backward(X, LABELS, np.ones(4)), ValueError, "grad_output"),
    (lambda: fb.cross_entropy_backward(X, LABELS, np.ones(3), reduction="none"),
     ValueError, "grad_output"),
    (lambda: fb.nll_loss(X, PROBS), TypeError, "target"),
    (lambda: fb.binary_cross_entropy(P + 1, T), ValueError, r"probs.*\[0, 1\].*position \(0, 0\)"),
    (lambda: fb.binary_cross_entropy(P, T[:, :2]), ValueError, "target"),
    (lambda: fb.mse_loss(X[:1], X), ValueError, "target"),
    (lambda: fb.binary_cross_entropy_with_logits(X, T, pos_weight=np.ones(3)), ValueError,
     "pos_weight"),
    (lambda: fb.kl_div(X, T, reduction="batch"), ValueError, "reduction"),
    (lambda: fb.smooth_l1_loss(X, Y, beta=-1.0), ValueError, "beta"),
    (lambda: fb.huber_loss(X, Y, delta=0.0), ValueError, "delta"),
    (lambda: fb.multi_margin_loss(X, LABELS, p=3), ValueError, "p must be"),
    (lambda: fb.multi_margin_loss(X, LABELS, weight=np.ones(2)), ValueError, "weight"),
    (lambda: fb.softplus(X, beta=0.0), ValueError, "beta"),
    (lambda: fb.softmax_backward(X, X[:2]), ValueError, "grad"),
    (lambda: fb.softmax_backward(X, X, axis=None), TypeError, "axis"),
    (lambda: fb.softmax(X, axis=3), ValueError, "axis"),
])
def test_bad_arguments(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
