"""fastloss.fallback against PyTorch, the reference semantics of the contract.

Every loss and option combination is compared in float64 -- the loss and the
gradient, which PyTorch computes by autograd -- and in float32 against the float64
oracle within the contract's 1e-6.  Skipped when PyTorch is not installed.
"""
import itertools

import numpy as np
import pytest

from fastloss import fallback as fb

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL64 = 1e-10


def tt(a, grad=False):
    """A float64 torch tensor holding a copy of ``a`` (labels stay int64)."""
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return torch.from_numpy(a.astype(np.int64))
    t = torch.from_numpy(a.astype(np.float64))
    return t.requires_grad_(grad)


def npy(t):
    return t.detach().numpy()


def close(actual, expected, rtol=RTOL64, atol=1e-12):
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def torch_loss_and_grad(fn, x, *args, grad_output=None, **kwargs):
    """PyTorch's loss and the autograd gradient of sum(grad_output * loss)."""
    xt = tt(x, grad=True)
    loss = fn(xt, *args, **kwargs)
    weight = torch.ones_like(loss) if grad_output is None else tt(grad_output)
    (loss * weight).sum().backward()
    return npy(loss), npy(xt.grad)


# ------------------------------------------------------------------------- cross-entropy

# (logits shape, class axis): torch puts the classes on dim 1; the oracle moves them.
CE_LAYOUTS = [((6, 5), -1), ((4, 5, 3), 1), ((5, 4), 0), ((3, 2, 4), -1), ((5,), 0)]


def _ce_problem(shape, axis, kind, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    n_classes = shape[axis]
    row_shape = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    if kind == "index":
        target = rng.integers(0, n_classes, size=row_shape)
        if target.ndim:
            target.flat[:: 3] = -100 if target.size > 1 else target.flat[0]
    else:
        target = rng.random(shape) ** 3        # unnormalized, some nearly 0
        target /= target.sum(axis=axis, keepdims=True)
        target[(target < 0.05)] = 0.0           # exact zeros: 0 log 0 = 0
    weight = rng.random(n_classes) + 0.5
    return x, target, weight


def _torch_ce(x, target, axis, kind, **kwargs):
    """Move the class axis to torch's dim 1 and back again for the gradient."""
    xm = np.moveaxis(x, axis, 1) if x.ndim > 1 else x
    tm = np.moveaxis(target, axis, 1) if (kind == "probs" and x.ndim > 1) else target
    go = kwargs.pop("grad_output", None)
    if "weight" in kwargs and kwargs["weight"] is not None:
        kwargs["weight"] = tt(kwargs["weight"])
    loss, grad = torch_loss_and_grad(F.cross_entropy, xm, tt(tm), grad_output=go, **kwargs)
    if x.ndim > 1:
        grad = np.moveaxis(grad, 1, axis)
    return loss, grad


@pytest.mark.parametrize("shape,axis", CE_LAYOUTS)
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_cross_entropy_matches_torch(shape, axis, kind, weighted, reduction, eps):
    x, target, weight = _ce_problem(shape, axis, kind, seed=len(shape) * 10 + axis % 7)
    weight = weight if weighted else None
    opts = dict(weight=weight, reduction=reduction, label_smoothing=eps)
    expected, expected_grad = _torch_ce(x, target, axis, kind, **opts)

    loss = fb.cross_entropy(x, target, axis=axis, **opts)
    close(loss, expected)
    loss2, grad = fb.cross_entropy_with_grad(x, target, axis=axis, **opts)
    close(loss2, expected)
    close(grad, expected_grad)

    # backward with an upstream gradient: a scalar, or one value per row for "none"
    rng = np.random.default_rng(7)
    go = rng.standard_normal(np.shape(expected)) if reduction == "none" else 0.7
    _, expected_grad = _torch_ce(x, target, axis, kind, grad_output=go, **opts)
    close(fb.cross_entropy_backward(x, target, go, axis=axis, **opts), expected_grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_ignore_index_is_a_class(reduction, eps, weighted):
    """ignore_index may name a real class: those rows vanish, as in PyTorch."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 4))
    target = rng.integers(0, 4, 12)
    weight = rng.random(4) + 0.1 if weighted else None
    opts = dict(weight=weight, reduction=reduction, label_smoothing=eps, ignore_index=2)
    expected, expected_grad = _torch_ce(x, target, -1, "index", **opts)
    loss, grad = fb.cross_entropy_with_grad(x, target, **opts)
    close(loss, expected)
    close(grad, expected_grad)
    assert np.all(grad[target == 2] == 0)


@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_sample_weight_against_torch_rows(kind, eps, weighted):
    """sample_weight: sum(s_i l_i) / sum(s_i w_i), built from torch's per-row losses."""
    shape, axis = (4, 5, 3), 1
    x, target, weight = _ce_problem(shape, axis, kind, seed=11)
    weight = weight if weighted else None
    rng = np.random.default_rng(12)
    sw = rng.random((4, 3)) * 2
    xt = tt(x, grad=True)
    rows = F.cross_entropy(xt, tt(target), weight=None if weight is None else tt(weight),
                           reduction="none", label_smoothing=eps)
    if kind == "index":
        active = target != -100
        w_y = np.where(active, (np.ones(5) if weight is None else weight)[np.where(active, target, 0)], 0)
        denominator = np.sum(sw * w_y)
    else:
        denominator = np.sum(sw)
    for reduction in ["mean", "sum", "none"]:
        xt.grad = None
        total = (rows * tt(sw))
        expected = total.sum() / denominator if reduction == "mean" else total.sum()
        expected.backward(retain_graph=True)
        opts = dict(axis=axis, weight=weight, sample_weight=sw, reduction=reduction,
                    label_smoothing=eps)
        loss, grad = fb.cross_entropy_with_grad(x, target, **opts)
        close(grad, npy(xt.grad))
        close(loss, npy(total) if reduction == "none" else npy(expected))


@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_float32_within_contract(kind, reduction):
    """float32 results within 1e-6 of PyTorch's float64 on the same float32 values."""
    x, target, weight = _ce_problem((64, 37), -1, kind, seed=5)
    x = (x * 5).astype(np.float32)
    target = target.astype(np.float32) if kind == "probs" else target
    opts = dict(weight=weight.astype(np.float32), reduction=reduction, label_smoothing=0.1)
    expected, expected_grad = _torch_ce(x.astype(np.float64), target, -1, kind, **opts)
    loss, grad = fb.cross_entropy_with_grad(x, target, **opts)
    assert grad.dtype == np.float32 and np.asarray(loss).dtype == np.float32
    close(loss, expected, rtol=1e-6, atol=1e-6)
    close(grad, expected_grad, rtol=1e-6, atol=1e-6)


def test_cross_entropy_extreme_logits_match_torch():
    """1e30, float max and -inf (masked) logits: the finite losses PyTorch gives."""
    big = np.finfo(np.float64).max
    x = np.array([
        [1e30, 1e30 + 1e15, -1e30, 0.0],
        [big, -big, big, 0.0],
        [-np.inf, 2.0, -np.inf, 1.0],
        [3.0, -np.inf, 0.5, -np.inf],
    ])
    target = np.array([1, 2, 3, 0])
    for reduction in ["mean", "none"]:
        expected, expected_grad = _torch_ce(x, target, -1, "index", reduction=reduction)
        loss, grad = fb.cross_entropy_with_grad(x, target, reduction=reduction)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        close(loss, expected)
        close(grad, expected_grad)


# ------------------------------------------------------------------------------ nll_loss

@pytest.mark.parametrize("shape,axis", CE_LAYOUTS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_torch(shape, axis, weighted, reduction):
    x, target, weight = _ce_problem(shape, axis, "index", seed=21)
    logp = fb.log_softmax(x, axis)
    xm = np.moveaxis(logp, axis, 1) if logp.ndim > 1 else logp
    expected, expected_grad = torch_loss_and_grad(
        F.nll_loss, xm, tt(target), weight=tt(weight) if weighted else None, reduction=reduction)
    if logp.ndim > 1:
        expected_grad = np.moveaxis(expected_grad, 1, axis)
    opts = dict(axis=axis, weight=weight if weighted else None, reduction=reduction)
    close(fb.nll_loss(logp, target, **opts), expected)
    loss, grad = fb.nll_loss_with_grad(logp, target, **opts)
    close(loss, expected)
    close(grad, expected_grad)


def test_all_ignored_batch_like_torch():
    x = np.random.default_rng(0).standard_normal((3, 4))
    target = np.full(3, -100)
    for eps in [0.0, 0.4]:
        expected, expected_grad = _torch_ce(x, target, -1, "index", label_smoothing=eps)
        loss, grad = fb.cross_entropy_with_grad(x, target, label_smoothing=eps)
        assert np.isnan(expected) and np.isnan(loss)
        close(grad, expected_grad)
    loss, grad = fb.nll_loss_with_grad(x, target)
    assert np.isnan(loss) and np.all(grad == 0)
    assert np.isnan(npy(F.nll_loss(tt(x), tt(target))))


# ------------------------------------------------------------------------ binary losses

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_matches_torch(reduction, weighted):
    rng = np.random.default_rng(31)
    p = rng.random((5, 6)) * 0.98 + 0.01
    p[0, :4] = [0.0, 1.0, 1e-9, 1 - 1e-9]           # the clamped logs and gradient
    target = rng.random((5, 6))
    target[0, :4] = [0.3, 0.6, 0.0, 1.0]
    p[1, :2], target[1, :2] = [0.0, 1.0], [0.0, 1.0]
    weight = rng.random(6) + 0.5 if weighted else None
    expected, expected_grad = torch_loss_and_grad(
        F.binary_cross_entropy, p, tt(target),
        weight=None if weight is None else tt(np.broadcast_to(weight, p.shape)),
        reduction=reduction)
    close(fb.binary_cross_entropy(p, target, weight=weight, reduction=reduction), expected)
    loss, grad = fb.binary_cross_entropy_with_grad(p, target, weight=weight, reduction=reduction)
    close(loss, expected)
    close(grad, expected_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,pos_weighted", list(itertools.product([False, True], repeat=2)))
def test_bce_with_logits_matches_torch(reduction, weighted, pos_weighted):
    rng = np.random.default_rng(32)
    x = rng.standard_normal((4, 2, 5)) * 4
    big = np.finfo(np.float64).max
    x[0, 0] = [1e30, -1e30, big, -big, 1e30]
    target = rng.random((4, 2, 5))
    target[0, 0] = [1.0, 0.0, 1.0, 0.0, 0.5]    # finite: 0, 0, 0, 0 and 5e29
    weight = rng.random((2, 5)) + 0.5 if weighted else None
    pos_weight = rng.random(5) * 3 if pos_weighted else None
    opts = dict(weight=weight, pos_weight=pos_weight, reduction=reduction)
    t_opts = {k: (None if v is None else tt(v)) if k != "reduction" else v for k, v in opts.items()}
    expected, expected_grad = torch_loss_and_grad(
        F.binary_cross_entropy_with_logits, x, tt(target), **t_opts)
    loss, grad = fb.binary_cross_entropy_with_logits_with_grad(x, target, **opts)
    assert np.all(np.isfinite(loss))
    close(fb.binary_cross_entropy_with_logits(x, target, **opts), expected)
    close(loss, expected)
    close(grad, expected_grad)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(reduction, log_target):
    rng = np.random.default_rng(33)
    logp = fb.log_softmax(rng.standard_normal((6, 4)), -1)
    q = fb.softmax(rng.standard_normal((6, 4)) * 2, -1)
    # A zero target probability: PyTorch agrees (xlogy) for probabilities; a log-target
    # of -inf gives NaN in PyTorch (0 * inf), 0 here (see test_fallback_reference.py).
    q[0, 1] = 1e-300 if log_target else 0.0
    target = np.log(q) if log_target else q
    expected, expected_grad = torch_loss_and_grad(
        F.kl_div, logp, tt(target), reduction=reduction, log_target=log_target)
    opts = dict(reduction=reduction, log_target=log_target)
    close(fb.kl_div(logp, target, **opts), expected)
    loss, grad = fb.kl_div_with_grad(logp, target, **opts)
    close(loss, expected)
    close(grad, expected_grad)


# ---------------------------------------------------------------------- regression losses

def _regression_problem(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((7, 3)) * 2
    target = rng.standard_normal((7, 3)) * 2
    target[0, 0] = x[0, 0]          # a zero difference (sign(0) = 0)
    return x, target


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_torch(reduction):
    x, target = _regression_problem(41)
    expected, expected_grad = torch_loss_and_grad(F.mse_loss, x, tt(target), reduction=reduction)
    close(fb.mse_loss(x, target, reduction=reduction), expected)
    loss, grad = fb.mse_loss_with_grad(x, target, reduction=reduction)
    close(loss, expected)
    close(grad, expected_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0])
def test_smooth_l1_matches_torch(reduction, beta):
    x, target = _regression_problem(42)
    expected, expected_grad = torch_loss_and_grad(
        F.smooth_l1_loss, x, tt(target), beta=beta, reduction=reduction)
    close(fb.smooth_l1_loss(x, target, beta=beta, reduction=reduction), expected)
    loss, grad = fb.smooth_l1_loss_with_grad(x, target, beta=beta, reduction=reduction)
    close(loss, expected)
    close(grad, expected_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_huber_matches_torch(reduction, delta):
    x, target = _regression_problem(43)
    expected, expected_grad = torch_loss_and_grad(
        F.huber_loss, x, tt(target), delta=delta, reduction=reduction)
    close(fb.huber_loss(x, target, delta=delta, reduction=reduction), expected)
    loss, grad = fb.huber_loss_with_grad(x, target, delta=delta, reduction=reduction)
    close(loss, expected)
    close(grad, expected_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.4])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(8, 5), (5,)])
def test_multi_margin_matches_torch(reduction, p, margin, weighted, shape):
    rng = np.random.default_rng(44)
    x = rng.standard_normal(shape)
    target = rng.integers(0, shape[-1], size=shape[:-1])
    weight = rng.random(shape[-1]) + 0.5 if weighted else None
    # a row with exact ties z = margin - x_y + x_j = 0 (not a violation in PyTorch)
    tie = x.reshape(-1, shape[-1])[0]
    tie[:] = np.arange(shape[-1]) * margin
    target.reshape(-1)[0] = 1
    expected, expected_grad = torch_loss_and_grad(
        F.multi_margin_loss, x, tt(target), p=p, margin=margin,
        weight=None if weight is None else tt(weight), reduction=reduction)
    opts = dict(p=p, margin=margin, weight=weight, reduction=reduction)
    close(fb.multi_margin_loss(x, target, **opts), expected)
    loss, grad = fb.multi_margin_loss_with_grad(x, target, **opts)
    close(loss, expected)
    close(grad, expected_grad)


def test_multi_margin_class_axis_not_last():
    rng = np.random.default_rng(45)
    x = rng.standard_normal((5, 6))         # classes on axis 0
    target = rng.integers(0, 5, 6)
    expected, expected_grad = torch_loss_and_grad(F.multi_margin_loss, x.T, tt(target), p=2)
    loss, grad = fb.multi_margin_loss_with_grad(x, target, p=2, axis=0)
    close(loss, expected)
    close(grad, expected_grad.T)


# ------------------------------------------------------------------ activations, softmax

ACTIVATIONS = [
    # (fallback name, torch forward, whether *_backward takes the output, kwargs)
    ("sigmoid", torch.sigmoid, True, {}),
    ("tanh", torch.tanh, True, {}),
    ("relu", F.relu, False, {}),
    ("leaky_relu", F.leaky_relu, False, {"negative_slope": 0.2}),
    ("softplus", F.softplus, False, {}),
    ("softplus", F.softplus, False, {"beta": 2.0, "threshold": 5.0}),
    ("softplus", F.softplus, False, {"beta": 0.5, "threshold": 30.0}),
]


@pytest.mark.parametrize("name,torch_fn,takes_output,kwargs", ACTIVATIONS)
def test_activations_match_torch(name, torch_fn, takes_output, kwargs):
    rng = np.random.default_rng(51)
    x = rng.standard_normal((6, 7)) * 10
    x[0, :4] = [0.0, 700.0, -700.0, 2.4999]
    g = rng.standard_normal(x.shape)
    xt = tt(x, grad=True)
    yt = torch_fn(xt, **kwargs)
    (yt * tt(g)).sum().backward()
    y = getattr(fb, name)(x, **kwargs)
    close(y, npy(yt))
    second = y if takes_output else x
    close(getattr(fb, name + "_backward")(g, second, **kwargs), npy(xt.grad))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family_matches_torch(axis):
    rng = np.random.default_rng(61)
    x = rng.standard_normal((4, 5, 6)) * 3
    g = rng.standard_normal(x.shape)
    for name, torch_fn in [("softmax", torch.softmax), ("log_softmax", torch.log_softmax)]:
        xt = tt(x, grad=True)
        yt = torch_fn(xt, axis)
        (yt * tt(g)).sum().backward()
        y = getattr(fb, name)(x, axis)
        close(y, npy(yt))
        close(getattr(fb, name + "_backward")(g, y, axis), npy(xt.grad))
    close(fb.logsumexp(x, axis), npy(torch.logsumexp(tt(x), axis)))
    close(fb.logsumexp(x, (0, 2), keepdims=True),
          npy(torch.logsumexp(tt(x), (0, 2), keepdim=True)))
