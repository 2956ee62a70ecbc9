"""Cross-entropy family (cross_entropy, cross_entropy_backward, cross_entropy_with_grad,
nll_loss, nll_loss_with_grad) on both backends.

  * every option combination against a long-double reference (loss and gradient),
    over shapes and class axes that take each kernel layout (rows, flat small-C,
    columns with the class axis not last) and over memory layouts;
  * the compiled kernels against their fallback twin, at every SIMD level and
    thread count;
  * gradients against central finite differences in float64;
  * in-place (out=logits) and out-of-place gradients identical; loss == the loss
    from *_with_grad; inputs never modified unless asked;
  * the contract's numerics: -inf masked classes, huge logits, NaN rows, all-ignored
    batches (mean NaN, as in PyTorch), empty inputs;
  * errors: IndexError naming value and position before anything is written, and the
    ValueError/TypeError of bad targets, weights, reductions, smoothing and out=;
  * PyTorch's F.cross_entropy / F.nll_loss and autograd, when PyTorch is installed.
"""
import itertools

import numpy as np
import pytest

import fastloss
from fastloss import fallback
from conftest import assert_close, layouts, rows_read_once, tolerance

FLOATS = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


# ----------------------------------------------------------------------------- reference
# Textbook formulas in long double (80-bit on x86-64), independent of both backends.

def ref_ce(x, target, axis=-1, weight=None, sample_weight=None, ignore_index=-100,
           reduction="mean", label_smoothing=0.0, grad_output=1.0):
    """(loss, gradient of grad_output * loss) with PyTorch's definitions."""
    ld = np.longdouble
    xm = np.moveaxis(np.asarray(x, dtype=ld), axis, -1)
    n_classes = xm.shape[-1]
    target = np.asarray(target)
    soft = target.dtype.kind == "f"
    w = np.ones(n_classes, ld) if weight is None else np.asarray(weight, ld)
    row_shape = xm.shape[:-1]
    sw = np.ones(row_shape, ld) if sample_weight is None else np.asarray(sample_weight, ld)
    eps = label_smoothing
    with np.errstate(all="ignore"):
        m = xm.max(axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        log_s = np.log(np.exp(xm - m).sum(axis=-1, keepdims=True))
        logp = (xm - m) - log_s
        p = np.exp(logp)
        if soft:
            q = np.moveaxis(target.astype(ld), axis, -1) * (1 - eps) + eps / n_classes
            active = np.ones(row_shape, bool)
            share = np.ones(row_shape, ld)
        else:
            active = target != ignore_index
            y = np.where(active, target, 0)
            q = (np.arange(n_classes) == y[..., None]) * (1 - eps) + eps / n_classes
            share = np.where(active, w[y], 0)
        wq = w * q
        terms = np.where(wq == 0, 0, -wq * logp)          # 0 log 0 = 0
        rows = np.where(active, terms.sum(axis=-1), 0) * sw
        dl = np.where(active[..., None], p * wq.sum(axis=-1, keepdims=True) - wq, 0)
        share = share * sw
        if reduction == "none":
            loss = rows
            coef = np.broadcast_to(np.asarray(grad_output, ld), row_shape)
        else:
            loss = rows.sum()
            coef = np.asarray(grad_output, ld)
            if reduction == "mean":
                loss = loss / share.sum()
                coef = coef / share.sum()
        grad = dl * (coef * sw)[..., None]
    return np.asarray(loss, np.float64), np.moveaxis(grad, -1, axis).astype(np.float64)


def ref_nll(x, target, axis=-1, weight=None, ignore_index=-100, reduction="mean"):
    xm = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    n_classes = xm.shape[-1]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    active = target != ignore_index
    y = np.where(active, target, 0)
    x_y = np.take_along_axis(xm, y[..., None], -1)[..., 0]
    rows = np.where(active, -w[y] * x_y, 0.0)
    share = np.where(active, w[y], 0.0)
    onehot = np.arange(n_classes) == y[..., None]
    grad = np.where(active[..., None] & onehot, -w[y][..., None], 0.0)
    if reduction == "none":
        return rows, np.moveaxis(grad, -1, axis)
    if reduction == "sum":
        return rows.sum(), np.moveaxis(grad, -1, axis)
    with np.errstate(all="ignore"):
        return rows.sum() / share.sum(), np.moveaxis(grad / share.sum(), -1, axis)


def make_problem(shape, axis, kind, dtype, seed=0, ignore_frac=0.2):
    """Logits, a target of `kind`, a class weight (one class of weight 0) and a
    sample weight, all deterministic."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    n_classes = shape[axis]
    row_shape = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    if kind == "index":
        target = rng.integers(0, n_classes, size=row_shape)
        target[rng.random(row_shape) < ignore_frac] = -100
    else:
        target = rng.random(shape) ** 3
        target /= target.sum(axis=axis, keepdims=True)
        target[target < 0.02] = 0.0                     # exact zeros: 0 log 0 = 0
        target = target.astype(dtype)
    weight = rng.random(n_classes) + 0.25
    if n_classes > 2:
        weight[1] = 0.0
    sample_weight = rng.random(row_shape) + 0.5
    return x, target, weight, sample_weight


def close(actual, expected, dtype, scale=1.0):
    """The contract's accuracy; `scale` lifts the absolute floor for gradients whose
    entries are all small (a mean over many rows)."""
    tol = tolerance(dtype)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol,
                               atol=tol * scale, equal_nan=True)


# ----------------------------------------------------------------------------- the sweep
# (shape, axis): rows layout, flat small-C layout (with a ragged last block), columns
# layout (class axis not last: (N, C, H, W) with axis 1, blocks of lanes wider than
# one kernel block), a class axis first, 1-D input.
SHAPES = [
    ((13, 37), -1),
    ((1031, 10), -1),
    ((2, 5, 9, 31), 1),
    ((3, 7, 150), 1),
    ((6, 40), 0),
    ((11,), 0),
]
OPTIONS = list(itertools.product(["index", "probs"], [0.0, 0.15], [False, True], [False, True]))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("kind,eps,weighted,sample_weighted", OPTIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_reference(backend, dtype, shape, axis, kind, eps, weighted, sample_weighted,
                           reduction):
    x, target, weight, sw = make_problem(shape, axis, kind, dtype, seed=len(shape))
    opts = dict(axis=axis, weight=weight if weighted else None,
                sample_weight=sw if sample_weighted else None, reduction=reduction,
                label_smoothing=eps)
    expected, expected_grad = ref_ce(x, target, **opts)

    loss = fastloss.cross_entropy(x, target, **opts)
    close(loss, expected, dtype)
    assert np.shape(loss) == np.shape(expected)
    if np.ndim(expected) == 0:    # 0-d results (a mean, a sum, "none" of 1-D logits)
        assert isinstance(loss, np.generic)
    assert loss.dtype == dtype

    loss2, grad = fastloss.cross_entropy_with_grad(x, target, **opts)
    np.testing.assert_array_equal(loss2, loss)
    assert grad.dtype == dtype and grad.shape == x.shape
    close(grad, expected_grad, dtype)

    go = (np.random.default_rng(3).standard_normal(np.shape(expected))
          if reduction == "none" else 0.7)
    _, expected_bwd = ref_ce(x, target, grad_output=go, **opts)
    close(fastloss.cross_entropy_backward(x, target, go, **opts), expected_bwd, dtype)

    # in place: the gradient written over (a copy of) the logits is the same array
    xi = x.copy()
    loss3, grad3 = fastloss.cross_entropy_with_grad(xi, target, out=xi, **opts)
    assert grad3 is xi
    np.testing.assert_array_equal(grad3, grad)
    np.testing.assert_array_equal(loss3, loss)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_memory_layouts(backend, dtype, kind):
    """C, Fortran, strided, reversed, transposed and read-only logits and targets."""
    x, target, weight, sw = make_problem((40, 23), -1, kind, dtype, seed=5)
    opts = dict(weight=weight, sample_weight=sw, label_smoothing=0.1, reduction="none")
    expected, expected_grad = ref_ce(x, target, **opts)
    targets = dict(layouts(target)) if kind == "probs" else {"C": target}
    for (name, xl), (tname, tl) in itertools.product(layouts(x), targets.items()):
        before = xl.copy()
        loss, grad = fastloss.cross_entropy_with_grad(xl, tl, **opts)
        close(loss, expected, dtype)
        close(grad, expected_grad, dtype)
        np.testing.assert_array_equal(xl, before)          # input untouched
        if xl.flags.writeable:
            xi = xl.copy(order="K")
            fastloss.cross_entropy_with_grad(xi, tl, out=xi, **opts)
            if backend == "cython":   # the kernel computes each row alike in either case
                np.testing.assert_array_equal(xi, grad, err_msg=f"{name}/{tname}")
            else:                     # NumPy's sums may run in another order
                np.testing.assert_allclose(xi, grad, rtol=1e-13, atol=1e-16)


def _every_other(values):
    """The same values as a view of every other element of a buffer twice as long."""
    buf = np.full(values.shape + (2,), 7, values.dtype)
    buf[..., 0] = values
    return buf[..., 0]


@pytest.mark.parametrize("shape,axis", [((300, 10), -1),      # packed short rows (tiles)
                                        ((5, 9, 70), 1)])     # columns: lanes along axis 2
def test_strided_per_lane_arguments(simd_level, shape, axis):
    """Strided targets, sample weights and upstream gradients: the kernels read each
    lane's own entries in both lane layouts (rows of a tile, columns side by side)."""
    x, target, weight, sw = make_problem(shape, axis, "index", np.float64, seed=17)
    go = np.linspace(0.5, 2.0, sw.size).reshape(sw.shape)
    strided = [_every_other(a) for a in (target, sw, go)]
    assert not any(a.flags.c_contiguous for a in strided)
    for eps in (0.0, 0.1):
        opts = dict(axis=axis, weight=weight, label_smoothing=eps, reduction="none")
        loss, grad = fastloss.cross_entropy_with_grad(x, strided[0], sample_weight=strided[1],
                                                      **opts)
        fb_loss, fb_grad = fallback.cross_entropy_with_grad(x, target, sample_weight=sw, **opts)
        close(loss, fb_loss, np.float64)
        close(grad, fb_grad, np.float64)
        back = fastloss.cross_entropy_backward(x, strided[0], strided[2], sample_weight=sw,
                                               **opts)
        close(back, fallback.cross_entropy_backward(x, target, go, sample_weight=sw, **opts),
              np.float64)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
def test_nd_and_every_axis(backend, dtype, axis):
    """(N, C, H, W)-like input reduced over each axis, out= into a Fortran buffer."""
    x, target, weight, sw = make_problem((3, 4, 5, 6), axis, "index", dtype, seed=axis + 9)
    opts = dict(axis=axis, weight=weight, sample_weight=sw, label_smoothing=0.2)
    expected, expected_grad = ref_ce(x, target, **opts)
    out = np.asfortranarray(np.empty_like(x))
    loss, grad = fastloss.cross_entropy_with_grad(x, target, out=out, **opts)
    assert grad is out
    close(loss, expected, dtype)
    close(grad, expected_grad, dtype)


# ----------------------------------------------------------------------------- vs fallback

LARGE = [((300, 517), -1), ((2, 21, 33, 35), 1), ((4000, 7), -1), ((64, 1000, 3), 1),
         ((700, 300), 0)]


@pytest.mark.parametrize("shape,axis", LARGE)
@pytest.mark.parametrize("kind,eps,weighted,sample_weighted",
                         [("index", 0.0, False, False), ("index", 0.1, True, True),
                          ("probs", 0.0, False, False), ("probs", 0.2, True, True)])
def test_kernels_match_fallback(simd_level, shape, axis, kind, eps, weighted, sample_weighted):
    """The compiled kernels (at every SIMD level) against their NumPy twin."""
    dtype = np.float32
    x, target, weight, sw = make_problem(shape, axis, kind, dtype, seed=7)
    x *= 3
    opts = dict(axis=axis, weight=weight if weighted else None,
                sample_weight=sw if sample_weighted else None, label_smoothing=eps)
    for reduction in REDUCTIONS:
        loss, grad = fastloss.cross_entropy_with_grad(x, target, reduction=reduction, **opts)
        fb_loss, fb_grad = fallback.cross_entropy_with_grad(x, target, reduction=reduction,
                                                            **opts)
        close(loss, fb_loss, dtype)
        close(grad, fb_grad, dtype, scale=np.abs(fb_grad).max())
        expected, expected_grad = ref_ce(x, target, reduction=reduction, **opts)
        close(loss, expected, dtype)
        close(grad, expected_grad, dtype)
    if kind == "index":
        logp = fallback.log_softmax(x, axis)
        for reduction in REDUCTIONS:
            nl, ng = fastloss.nll_loss_with_grad(logp, target, axis=axis, weight=opts["weight"],
                                                 reduction=reduction)
            fl, fg = fallback.nll_loss_with_grad(logp, target, axis=axis,
                                                 weight=opts["weight"], reduction=reduction)
            close(nl, fl, dtype)
            close(ng, fg, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_tiles_every_width(simd_level, dtype, kind):
    """Packed rows of 1..16 classes go through the tiles path (transposed into an L1
    tile, in registers on AVX-512, and the gradient back): every width, with row counts
    around a transposed group (16) and a tile (128), against the long-double reference,
    in place included."""
    for n in range(1, 17):
        for n_rows in (5, 16, 17, 145):
            x, target, weight, sw = make_problem((n_rows, n), -1, kind, dtype, seed=n * n_rows)
            x *= 3
            opts = dict(weight=weight, sample_weight=sw, label_smoothing=0.1)
            expected, expected_grad = ref_ce(x, target, **opts)
            loss, grad = fastloss.cross_entropy_with_grad(x, target, **opts)
            close(loss, expected, dtype)
            close(grad, expected_grad, dtype)
            xi = x.copy()
            loss_i, grad_i = fastloss.cross_entropy_with_grad(xi, target, out=xi, **opts)
            assert grad_i is xi
            np.testing.assert_array_equal(grad_i, grad)
            np.testing.assert_array_equal(loss_i, loss)
            expected_rows, _ = ref_ce(x, target, reduction="none")
            close(fastloss.cross_entropy(x, target, reduction="none"), expected_rows, dtype)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_threads_agree_and_are_deterministic(threads, n_threads):
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    x, target, weight, sw = make_problem((1500, 301), -1, "index", np.float32, seed=2)
    xc, tc, _, _ = make_problem((3, 20, 40, 37), 1, "index", np.float32, seed=3)
    fastloss.set_num_threads(1)
    one = fastloss.cross_entropy_with_grad(x, target, weight=weight, reduction="sum")
    one_c = fastloss.cross_entropy_with_grad(xc, tc, axis=1)
    fastloss.set_num_threads(n_threads)
    runs = [fastloss.cross_entropy_with_grad(x, target, weight=weight, reduction="sum")
            for _ in range(3)]
    for loss, grad in runs:
        assert loss == runs[0][0]                       # same thread count: same bits
        np.testing.assert_array_equal(grad, one[1])     # rows are independent of threads
        close(loss, one[0], np.float32)
    loss_c, grad_c = fastloss.cross_entropy_with_grad(xc, tc, axis=1)
    close(loss_c, one_c[0], np.float32)
    np.testing.assert_array_equal(grad_c, one_c[1])


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("shape,axis", [((5, 4), -1), ((2, 3, 4), 1), ((4, 3), 0)])
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps,weighted,sample_weighted",
                         [(0.0, False, False), (0.3, True, True), (1.0, True, False)])
def test_gradient_finite_differences(backend, shape, axis, kind, reduction, eps, weighted,
                                     sample_weighted):
    x, target, weight, sw = make_problem(shape, axis, kind, np.float64, seed=4,
                                         ignore_frac=0.3)
    opts = dict(axis=axis, weight=weight if weighted else None,
                sample_weight=sw if sample_weighted else None, reduction=reduction,
                label_smoothing=eps)
    go = np.random.default_rng(1).standard_normal(target.shape if kind == "index"
                                                  else np.delete(shape, axis % len(shape)))
    go = go if reduction == "none" else np.float64(1.3)

    def scalar(z):
        return float(np.sum(fastloss.cross_entropy(z, target, **opts) * go))

    h = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (scalar(xp) - scalar(xm)) / (2 * h)
    grad = fastloss.cross_entropy_backward(x, target, go, **opts)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    if reduction != "none":
        _, g2 = fastloss.cross_entropy_with_grad(x, target, **opts)
        np.testing.assert_allclose(g2 * go, grad, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", [((13, 37), -1), ((2, 5, 9, 31), 1), ((3, 300, 2), 1)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(backend, dtype, shape, axis, weighted, reduction):
    x, target, weight, _ = make_problem(shape, axis, "index", dtype, seed=6)
    logp = fastloss.log_softmax(x, axis)
    opts = dict(axis=axis, weight=weight if weighted else None, reduction=reduction)
    expected, expected_grad = ref_nll(logp, target, **opts)
    loss = fastloss.nll_loss(logp, target, **opts)
    close(loss, expected, dtype)
    assert loss.dtype == dtype
    loss2, grad = fastloss.nll_loss_with_grad(logp, target, **opts)
    np.testing.assert_array_equal(loss2, loss)
    assert grad.dtype == dtype and grad.shape == x.shape
    close(grad, expected_grad, dtype)
    # nll of log_softmax is cross-entropy of the logits
    close(loss, ref_ce(x, target, **opts)[0], dtype)


# ----------------------------------------------------------------------------- numerics

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_masked_and_huge_logits(backend, dtype, kind, eps):
    big = np.finfo(np.float32).max
    x = np.array([
        [0.5, -np.inf, 2.0, -np.inf, 1.0],     # masked classes
        [1e30, 1e30 + 1e24, -1e30, 0.0, 5.0],  # huge
        [big, -big, big, 0.0, -big],            # float32 max
        [-np.inf, -np.inf, 3.0, -np.inf, -np.inf],
        [1.0, 2.0, 3.0, 4.0, 5.0],
    ], dtype=dtype)
    y = np.array([0, 1, 2, 2, 4])
    if eps == 0:   # the dtype's own max (float64: the smoothing sum would overflow double)
        dmax = np.finfo(dtype).max
        x = np.vstack([x, np.array([[dmax, -dmax, dmax, 0.0, -dmax]], dtype)])
        y = np.append(y, 0)
    n = len(y)
    if kind == "index":
        target = y
    else:
        target = np.zeros(x.shape, dtype)
        target[np.arange(n), y] = 1.0
        target[4] = [0.1, 0.2, 0.3, 0.2, 0.2]
    opts = dict(reduction="none", label_smoothing=eps)
    loss, grad = fastloss.cross_entropy_with_grad(x, target, **opts)
    expected, expected_grad = ref_ce(x, target, **opts)
    with np.errstate(over="ignore"):
        expected = expected.astype(dtype).astype(np.float64)   # float max overflows in float32
    rows = list(range(n))
    if backend == "numpy" and dtype == np.float32 and eps > 0:
        # The fallback forms x - max in float32, where -max - max overflows to -inf, and
        # the smoothing term sum_j (x_j - max) then is inf; the kernels form it in double.
        rows.remove(2)
    loss, grad, expected, expected_grad = (a[rows] for a in (loss, grad, expected, expected_grad))
    assert not np.isnan(loss).any() and not np.isnan(grad).any()
    finite = np.isfinite(expected)
    if eps == 0:
        assert finite.all()
    else:  # smoothing spreads mass onto masked classes: -log 0 = inf, never NaN
        assert not finite[[rows.index(0), rows.index(3)]].any()
    np.testing.assert_array_equal(np.isfinite(loss), finite)
    close(loss, expected, dtype)
    close(grad, expected_grad, dtype)
    if eps == 0:
        assert grad[3, 2] == 0     # the only finite class, certain: no gradient


@pytest.mark.parametrize("dtype", FLOATS)
def test_soft_target_zero_mass_on_masked_class(backend, dtype):
    """0 * log 0 = 0: a masked class (logit -inf) with target mass 0 adds nothing."""
    x = np.array([[0.0, -np.inf, 1.0], [2.0, 1.0, -np.inf]], dtype)
    q = np.array([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]], dtype)
    w = np.array([1.0, 2.0, 0.5])
    for weight in (None, w):
        loss, grad = fastloss.cross_entropy_with_grad(x, q, weight=weight, reduction="none")
        expected, expected_grad = ref_ce(x, q, weight=weight, reduction="none")
        assert np.isfinite(loss).all() and np.isfinite(grad).all()
        close(loss, expected, dtype)
        close(grad, expected_grad, dtype)


@pytest.mark.parametrize("shape,axis", [((6, 5), -1), ((2, 5, 3), 1), ((6, 200), -1)])
def test_nan_stays_in_its_row(backend, shape, axis):
    x, target, _, _ = make_problem(shape, axis, "index", np.float32, seed=1, ignore_frac=0)
    x = np.moveaxis(x, axis, -1).copy()
    x[1, ..., 2] = np.nan
    x = np.moveaxis(x, -1, axis)
    loss, grad = fastloss.cross_entropy_with_grad(x, target, axis=axis, reduction="none")
    nan_rows = np.isnan(np.moveaxis(x, axis, -1)).any(axis=-1)
    np.testing.assert_array_equal(np.isnan(loss), nan_rows)
    np.testing.assert_array_equal(np.isnan(np.moveaxis(grad, axis, -1)).any(axis=-1), nan_rows)
    assert np.isnan(fastloss.cross_entropy(x, target, axis=axis))


@pytest.mark.parametrize("shape,axis", [((6, 5), -1), ((6, 40), -1), ((2, 5, 3), 1)])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_ignored_rows_contribute_nothing(backend, shape, axis, eps):
    """Zero loss and an exactly zero gradient row, even where the row holds NaN/inf."""
    x, target, weight, _ = make_problem(shape, axis, "index", np.float32, seed=8, ignore_frac=0)
    target = target.copy()
    target[0] = -1                       # a custom ignore_index
    xm = np.moveaxis(x, axis, -1)
    xm[0] = np.nan
    xm[0, ..., 0] = np.inf
    opts = dict(axis=axis, weight=weight, ignore_index=-1, label_smoothing=eps)
    loss, grad = fastloss.cross_entropy_with_grad(x, target, reduction="none", **opts)
    assert (loss[0] == 0).all() and np.isfinite(loss).all()
    assert (np.moveaxis(grad, axis, -1)[0] == 0).all() and np.isfinite(grad).all()
    expected, expected_grad = ref_ce(np.nan_to_num(x), target, reduction="mean", **opts)
    loss, grad = fastloss.cross_entropy_with_grad(x, target, **opts)
    close(loss, expected, np.float32)
    close(grad, expected_grad, np.float32)


@pytest.mark.parametrize("eps", [0.0, 0.3])
@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((2, 6, 3), 1)])
def test_all_ignored_batch(backend, eps, shape, axis):
    """mean is 0/0 = NaN (as in PyTorch); sum is 0; the gradient is all zeros."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    target = np.full(np.delete(shape, axis % len(shape)), -100)
    opts = dict(axis=axis, label_smoothing=eps)
    assert np.isnan(fastloss.cross_entropy(x, target, **opts))
    loss, grad = fastloss.cross_entropy_with_grad(x, target, **opts)
    assert np.isnan(loss) and not grad.any()
    assert fastloss.cross_entropy(x, target, reduction="sum", **opts) == 0
    assert not fastloss.cross_entropy_backward(x, target, **opts).any()
    assert np.isnan(fastloss.nll_loss(x, target, axis=axis))
    assert not fastloss.nll_loss_with_grad(x, target, axis=axis)[1].any()


def test_float32_long_rows_accumulate_in_float64(backend):
    x = np.random.default_rng(4).standard_normal((3, 200_000)).astype(np.float32)
    target = np.array([0, 5, 199_999])
    expected, expected_grad = ref_ce(x, target, reduction="none")
    loss, grad = fastloss.cross_entropy_with_grad(x, target, reduction="none")
    close(loss, expected, np.float32)
    close(grad, expected_grad, np.float32)


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_rows_in_one_read(simd_level, dtype):
    """Rows of 16 KiB and more read once (ce_row_online in cross_entropy_impl.h): blocks
    of 128 classes, each raising the running max or not, the sum rescaled at each raise
    and the stored exponentials of each stretch brought to the final max in the
    gradient.  Against the long-double reference, fresh and in place, at every SIMD
    level (only the AVX-512 build reads rows once; the others check the same rows in
    two passes), for rows that raise the max in a few blocks, in every block (sorted
    upwards: more raises than the stretches kept, so the rest of the row's max is taken
    at once), or only after blocks of -inf, and for the NaN and -inf rules of the
    two-pass rows."""
    rng = np.random.default_rng(31)
    x = rows_read_once(dtype, rng)
    n = x.shape[1]
    target = np.array([0, n - 1, n // 2, 1, 302])          # first, last, middle; 302: the
                                                           # first finite class of `masked`
    for xin in (x, _unaligned(x)):
        loss, grad = fastloss.cross_entropy_with_grad(xin, target, reduction="none")
        expected, expected_grad = ref_ce(x, target, reduction="none")
        close(loss, expected, dtype)
        close(grad, expected_grad, dtype)
        assert (grad[4][np.isneginf(x[4])] == 0).all()
        close(fastloss.cross_entropy(xin, target, reduction="none"), expected, dtype)
        g = xin.copy()
        fastloss.cross_entropy_with_grad(g, target, reduction="none", out=g)
        np.testing.assert_array_equal(g, grad)

    # NaN in a block of -inf read while the max is still -inf, NaN later, +inf, all -inf
    bad = np.array([rng.standard_normal(n) * 4 for _ in range(5)]).astype(dtype)
    bad[0, :200] = -np.inf
    bad[0, 150] = np.nan
    bad[1, n - 3] = np.nan
    bad[2, 1000] = np.inf
    bad[3] = -np.inf
    loss, grad = fastloss.cross_entropy_with_grad(bad, np.array([300, 0, 5, 0, 7]),
                                                  reduction="none")
    np.testing.assert_array_equal(np.isnan(loss), [True, True, True, True, False])
    assert np.isnan(grad[:4]).all() and np.isfinite(grad[4]).all()


# ----------------------------------------------------------------------------- conventions

@pytest.mark.parametrize("kind", ["index", "probs"])
def test_dtypes(backend, kind):
    x, target, _, _ = make_problem((5, 4), -1, kind, np.float32, seed=2)
    for dtype in (np.float16, np.float32, np.float64):
        t = target.astype(dtype) if kind == "probs" else target
        xd = x.astype(dtype)
        assert fastloss.cross_entropy(xd, t).dtype == dtype
        loss, grad = fastloss.cross_entropy_with_grad(xd, t, reduction="none")
        assert loss.dtype == dtype and grad.dtype == dtype
        if dtype == np.float16:
            expected, expected_grad = ref_ce(xd.astype(np.float32), t, reduction="none")
            np.testing.assert_allclose(loss, expected, rtol=2e-3, atol=1e-3)
            xi = xd.copy()
            fastloss.cross_entropy_with_grad(xi, t, out=xi)
            np.testing.assert_array_equal(xi, fastloss.cross_entropy_with_grad(xd, t)[1])
    ints = np.arange(20).reshape(5, 4) % 3
    if kind == "index":
        assert fastloss.cross_entropy(ints, target).dtype == np.float64
        assert fastloss.nll_loss(ints, target).dtype == np.float64


@pytest.mark.parametrize("kind", ["index", "probs"])
def test_empty(backend, kind):
    x = np.zeros((0, 5), np.float32)
    target = np.zeros(0, np.int64) if kind == "index" else np.zeros((0, 5), np.float32)
    assert np.isnan(fastloss.cross_entropy(x, target))
    assert fastloss.cross_entropy(x, target, reduction="sum") == 0
    assert fastloss.cross_entropy(x, target, reduction="none").shape == (0,)
    loss, grad = fastloss.cross_entropy_with_grad(x, target)
    assert np.isnan(loss) and grad.shape == (0, 5)
    x4 = np.zeros((2, 3, 0, 4), np.float64)
    t4 = (np.zeros((2, 0, 4), np.int64) if kind == "index" else x4)
    assert fastloss.cross_entropy(x4, t4, axis=1, reduction="none").shape == (2, 0, 4)


def test_uint_targets_and_custom_ignore_index(backend):
    x, _, _, _ = make_problem((6, 5), -1, "index", np.float64, seed=3)
    target = np.array([0, 4, 2, 255, 1, 255], dtype=np.uint8)
    expected = ref_ce(x, target.astype(np.int64), ignore_index=255)[0]
    close(fastloss.cross_entropy(x, target, ignore_index=255), expected, np.float64)
    # uint64 labels equal to an ignore_index beyond int64 (converted to intp, both wrap
    # to -1: intp_ignore_index)
    huge = np.array([0, 1, 2**64 - 1, 3, 4, 0], dtype=np.uint64)
    expected = ref_ce(x, np.array([0, 1, -7, 3, 4, 0]), ignore_index=-7)[0]
    close(fastloss.cross_entropy(x, huge, ignore_index=2**64 - 1), expected, np.float64)
    close(fastloss.nll_loss(x, huge, ignore_index=2**64 - 1),
          fastloss.nll_loss(x, np.array([0, 1, -7, 3, 4, 0]), ignore_index=-7), np.float64)
    # an ignore_index that is a class: that class is ignored
    target = np.array([0, 1, 2, 3, 4, 0])
    close(fastloss.cross_entropy(x, target, ignore_index=0),
          ref_ce(x, target, ignore_index=0)[0], np.float64)


def test_out_of_place_leaves_inputs_and_shares_out(backend):
    x, target, weight, _ = make_problem((30, 12), -1, "probs", np.float32, seed=1)
    x0, t0 = x.copy(), target.copy()
    out = np.empty_like(x)
    loss, grad = fastloss.cross_entropy_with_grad(x, target, weight=weight, out=out)
    assert grad is out and np.shares_memory(grad, out)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(target, t0)
    g2 = fastloss.cross_entropy_backward(x, target, weight=weight, out=np.empty_like(x))
    np.testing.assert_array_equal(g2, grad)
    if backend == "cython":
        # the gradient written over the probability targets themselves (the fallback
        # overwrites them before it has read them all)
        q = target.copy()
        fastloss.cross_entropy_with_grad(x, q, weight=weight, out=q)
        np.testing.assert_array_equal(q, grad)


def _unaligned(a):
    """A copy of ``a`` whose data starts one byte past an element boundary."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


@pytest.mark.parametrize("kind", ["index", "probs"])
def test_unaligned_arrays(backend, kind):
    x, target, weight, sw = make_problem((30, 12), -1, kind, np.float64, seed=13)
    opts = dict(weight=_unaligned(weight), sample_weight=_unaligned(sw), label_smoothing=0.1)
    want_loss, want_grad = fastloss.cross_entropy_with_grad(x, target, **opts)
    xu, tu = _unaligned(x), _unaligned(target)
    loss, grad = fastloss.cross_entropy_with_grad(xu, tu, **opts)
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(grad, want_grad)
    loss, grad = fastloss.cross_entropy_with_grad(xu, tu, out=xu, **opts)
    assert grad is xu
    np.testing.assert_array_equal(xu, want_grad)
    go = _unaligned(np.linspace(0.5, 2, 30))
    np.testing.assert_array_equal(
        fastloss.cross_entropy_backward(_unaligned(x), tu, go, reduction="none", **opts),
        fastloss.cross_entropy_backward(x, target, go.copy(), reduction="none", **opts))
    if kind == "index":
        np.testing.assert_array_equal(fastloss.nll_loss_with_grad(_unaligned(x), tu)[1],
                                      fastloss.nll_loss_with_grad(x, target)[1])


def test_loss_equals_loss_from_with_grad_and_backward_scaling(backend):
    x, target, weight, sw = make_problem((50, 30), -1, "index", np.float64, seed=12)
    opts = dict(weight=weight, sample_weight=sw, label_smoothing=0.05)
    for reduction in REDUCTIONS:
        loss = fastloss.cross_entropy(x, target, reduction=reduction, **opts)
        loss2, grad = fastloss.cross_entropy_with_grad(x, target, reduction=reduction, **opts)
        np.testing.assert_array_equal(loss, loss2)
        go = np.ones(np.shape(loss)) if reduction == "none" else 1.0
        np.testing.assert_allclose(
            fastloss.cross_entropy_backward(x, target, go, reduction=reduction, **opts), grad,
            rtol=1e-15, atol=0)
    # "none": grad_output broadcasts to the loss's shape
    g = fastloss.cross_entropy_backward(x, target, 2.0, reduction="none", **opts)
    np.testing.assert_allclose(g, 2 * grad, rtol=1e-15)


def test_repeated_calls_do_not_grow_memory():
    import tracemalloc
    x, target, weight, sw = make_problem((200, 50), -1, "index", np.float32, seed=1)
    out = np.empty_like(x)
    for _ in range(20):
        fastloss.cross_entropy_with_grad(x, target, weight=weight, sample_weight=sw, out=out)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(300):
        fastloss.cross_entropy_with_grad(x, target, weight=weight, sample_weight=sw, out=out)
        fastloss.cross_entropy(x, target, reduction="none")
        fastloss.nll_loss_with_grad(x, target)
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert grown < 64 * 1024, grown


# ----------------------------------------------------------------------------- errors

def test_bad_label_raises_index_error_before_writing(backend):
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    target = np.zeros((4, 5), np.int64)
    target[2, 3] = 3
    for fn in (fastloss.cross_entropy, fastloss.cross_entropy_with_grad,
               fastloss.cross_entropy_backward, fastloss.nll_loss, fastloss.nll_loss_with_grad):
        with pytest.raises(IndexError, match=r"3.*\(2, 3\)"):
            fn(x, target, axis=1)
    target[2, 3] = -5
    xi = x.copy()
    with pytest.raises(IndexError, match=r"-5.*\(2, 3\)"):
        fastloss.cross_entropy_with_grad(xi, target, axis=1, out=xi)
    np.testing.assert_array_equal(xi, x)
    with pytest.raises(IndexError, match="-100"):   # -100 is only fine as ignore_index
        fastloss.cross_entropy(x[:, :, 0], np.array([0, -100, 1, 2]), ignore_index=-1)
    with pytest.raises(IndexError, match=r"value 9 at position 1\b"):
        fastloss.cross_entropy(x[:, :, 0], np.array([0, 9, 1, 2]))


_LABEL_LAYOUTS = {"int64": np.int64, "strided": np.int64, "fortran": np.int64,
                  "int32": np.int32, "int8": np.int8, "uint64": np.uint64}


def _labels_in_layout(values, layout):
    """The same label values in one of the memory layouts the label check meets."""
    if layout == "strided":   # every other element of a buffer twice as long
        buf = np.full(values.size * 2, 7, values.dtype)
        buf[::2] = values.ravel()
        return buf[::2].reshape(values.shape)
    if layout == "fortran":
        return np.asfortranarray(values)
    return np.ascontiguousarray(values)


def _on_both_backends(call):
    """call() with the numpy backend and with the cython one: (fallback, compiled)."""
    previous = fastloss.get_backend()
    try:
        results = []
        for name in ("numpy", "cython"):
            fastloss.set_backend(name)
            results.append(call())
        return results
    finally:
        fastloss.set_backend(previous)


@pytest.mark.parametrize("layout", list(_LABEL_LAYOUTS))
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_label_check_and_mean_denominator_every_label_layout(layout, ignore_index):
    """The compiled path checks contiguous int64 labels in one C pass (count_labels) and
    counts the "mean" denominator with it; other dtypes and layouts go through NumPy.
    Both must give the fallback's mean and raise its error (same value, same position)."""
    if fastloss.get_backend() != "cython":
        pytest.skip("needs the compiled extension")
    dtype = _LABEL_LAYOUTS[layout]
    ignore = 2**64 - 1 if ignore_index < 0 and dtype == np.uint64 else ignore_index
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 4, 5))                  # class axis 1: labels are (6, 5)
    values = rng.integers(0, 4, (6, 5)).astype(dtype)
    values[1, 2] = values[4, 0] = ignore                # two ignored rows
    labels = _labels_in_layout(values, layout)
    for fn in (fastloss.cross_entropy, fastloss.nll_loss):
        slow, fast = _on_both_backends(lambda: fn(x, labels, axis=1, ignore_index=ignore))
        assert_close(fast, slow, np.float64)
    bad_values = (4, 100, 2**63 if dtype == np.uint64 else -1)
    for pos, bad in itertools.product([(0, 0), (3, 2), (5, 4)], bad_values):
        wrong_values = values.copy()
        wrong_values[pos] = bad
        wrong = _labels_in_layout(wrong_values, layout)
        for fn in (fastloss.cross_entropy, fastloss.nll_loss):
            def message():
                with pytest.raises(IndexError) as err:
                    fn(x, wrong, axis=1, ignore_index=ignore)
                return str(err.value)
            slow, fast = _on_both_backends(message)
            assert fast == slow
            assert f"value {bad} at position {pos}" in fast


def test_bad_arguments_raise(backend):
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    t = np.array([0, 1, 2, 1])
    with pytest.raises(TypeError, match="target"):
        fastloss.cross_entropy(x, t.astype(bool))
    with pytest.raises(TypeError, match="target"):
        fastloss.cross_entropy(x, t.astype(complex))
    with pytest.raises(TypeError, match="logits"):
        fastloss.cross_entropy(x.astype(complex), t)
    with pytest.raises(ValueError, match="target"):
        fastloss.cross_entropy(x, t[:3])
    with pytest.raises(ValueError, match="target"):
        fastloss.cross_entropy(x, np.ones((4, 4), np.float32))      # probabilities: wrong shape
    with pytest.raises(ValueError, match="weight"):
        fastloss.cross_entropy(x, t, weight=np.ones(4))
    with pytest.raises(ValueError, match="sample_weight"):
        fastloss.cross_entropy(x, t, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        fastloss.cross_entropy(x, t, reduction="batchmean")
    for eps in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing"):
            fastloss.cross_entropy(x, t, label_smoothing=eps)
    with pytest.raises(TypeError, match="label_smoothing"):
        fastloss.cross_entropy(x, t, label_smoothing="0.1")
    with pytest.raises(TypeError, match="ignore_index"):
        fastloss.cross_entropy(x, t, ignore_index=1.5)
    with pytest.raises(TypeError, match="axis"):
        fastloss.cross_entropy(x, t, axis=None)
    with pytest.raises(ValueError, match="grad_output"):
        fastloss.cross_entropy_backward(x, t, np.ones(4), reduction="mean")
    with pytest.raises(ValueError, match="grad_output"):
        fastloss.cross_entropy_backward(x, t, np.ones(3), reduction="none")
    for bad_out in (np.empty((4, 4), np.float32), np.empty((4, 3), np.float64)):
        before = bad_out.copy()
        with pytest.raises(ValueError, match="out"):
            fastloss.cross_entropy_with_grad(x, t, out=bad_out)
        with pytest.raises(ValueError, match="out"):
            fastloss.cross_entropy_backward(x, t, out=bad_out)
        np.testing.assert_array_equal(bad_out, before)
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastloss.cross_entropy_with_grad(x, t, out=ro)


# ----------------------------------------------------------------------------- PyTorch

def _torch():
    return pytest.importorskip("torch")


def _torch_ce(x, target, axis, kind, grad_output=None, **kwargs):
    """PyTorch's loss and autograd gradient (float64), class axis moved to dim 1."""
    torch = _torch()
    xm = np.moveaxis(x, axis, 1) if x.ndim > 1 else x
    xt = torch.tensor(np.asarray(xm, np.float64), requires_grad=True)
    if kind == "probs":
        tm = np.moveaxis(target, axis, 1) if x.ndim > 1 else target
        tt = torch.tensor(np.asarray(tm, np.float64))
    else:
        tt = torch.tensor(np.asarray(target, np.int64))
    if kwargs.get("weight") is not None:
        kwargs["weight"] = torch.tensor(kwargs["weight"])
    loss = torch.nn.functional.cross_entropy(xt, tt, **kwargs)
    go = torch.ones_like(loss) if grad_output is None else torch.tensor(grad_output)
    (loss * go).sum().backward()
    grad = xt.grad.numpy()
    return loss.detach().numpy(), np.moveaxis(grad, 1, axis) if x.ndim > 1 else grad


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", [((13, 37), -1), ((300, 10), -1), ((2, 5, 9, 31), 1),
                                        ((6, 40), 0)])
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.25])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch(backend, dtype, shape, axis, kind, weighted, eps, reduction):
    x, target, weight, _ = make_problem(shape, axis, kind, dtype, seed=21)
    weight = weight if weighted else None
    expected, expected_grad = _torch_ce(x, target, axis, kind, weight=weight,
                                        reduction=reduction, label_smoothing=eps)
    opts = dict(axis=axis, weight=weight, reduction=reduction, label_smoothing=eps)
    loss, grad = fastloss.cross_entropy_with_grad(x, target, **opts)
    tol = 1e-10 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(loss, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, expected_grad, rtol=tol, atol=tol)
    go = (np.random.default_rng(2).standard_normal(np.shape(expected))
          if reduction == "none" else np.float64(0.6))
    _, expected_bwd = _torch_ce(x, target, axis, kind, grad_output=go, weight=weight,
                                reduction=reduction, label_smoothing=eps)
    np.testing.assert_allclose(fastloss.cross_entropy_backward(x, target, go, **opts),
                               expected_bwd, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["index", "probs"])
def test_sample_weight_against_torch_rows(backend, kind):
    """sample_weight (not in PyTorch) against PyTorch's per-row losses, weighted by hand."""
    _torch()
    x, target, weight, sw = make_problem((20, 7), -1, kind, np.float64, seed=5)
    rows, _ = _torch_ce(x, target, -1, kind, weight=weight, reduction="none",
                        label_smoothing=0.1)
    active = target != -100
    share = np.ones(20) if kind == "probs" else np.where(active, weight[np.where(active, target, 0)], 0)
    expected = np.sum(sw * rows) / np.sum(sw * share)
    got = fastloss.cross_entropy(x, target, weight=weight, sample_weight=sw, label_smoothing=0.1)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_matches_torch(backend, weighted, reduction):
    torch = _torch()
    x, target, weight, _ = make_problem((3, 6, 4, 5), 1, "index", np.float64, seed=30)
    logp = fallback.log_softmax(x, 1)
    weight = weight if weighted else None
    xt = torch.tensor(logp, requires_grad=True)
    loss = torch.nn.functional.nll_loss(
        xt, torch.tensor(target), weight=None if weight is None else torch.tensor(weight),
        reduction=reduction)
    loss.sum().backward()
    got, grad = fastloss.nll_loss_with_grad(logp, target, axis=1, weight=weight,
                                            reduction=reduction)
    np.testing.assert_allclose(got, loss.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_all_ignored_like_torch(backend):
    torch = _torch()
    x = np.random.default_rng(0).standard_normal((4, 5))
    target = np.full(4, -100)
    expected = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(target))
    assert np.isnan(expected.item()) and np.isnan(fastloss.cross_entropy(x, target))


# ----------------------------------------------------------------------------- races
RACE_SCRIPT = r"""
import sys, threading, time
import numpy as np
import fastloss

seconds = float(sys.argv[1])
x = np.random.default_rng(0).standard_normal((4096, 1000)).astype(np.float32)
xs = np.random.default_rng(1).standard_normal((65536, 10)).astype(np.float32)
t = np.random.default_rng(2).integers(0, 10, 65536)
calls = [lambda: fastloss.cross_entropy_with_grad(x, t[:4096]),     # rows
         lambda: fastloss.cross_entropy(xs, t),                     # tiles
         lambda: fastloss.nll_loss_with_grad(x, t[:4096])]
stop = time.monotonic() + seconds

def flip():   # runs while a kernel has released the GIL
    while time.monotonic() < stop:
        for i in (4000, 40000):
            t[i] = 10**11
            t[i] = 3

threading.Thread(target=flip, daemon=True).start()
done = raised = 0
while time.monotonic() < stop:
    for call in calls:
        try:
            call()
            done += 1
        except (ValueError, IndexError) as exc:
            # ValueError: a kernel read a changed label; IndexError: the validation
            # caught one (its message may then show the value written back since)
            assert "target" in str(exc), exc
            raised += 1
print(done, raised)
"""


def test_labels_changed_by_another_thread_never_crash(backend, tmp_path):
    """Another thread writes out-of-range labels while the kernels run without the GIL:
    the kernels check each label as they read it, so the process neither crashes nor
    reads out of bounds (before, it segfaulted within seconds), and a call that read
    one raises.  FASTLOSS_RACE_SECONDS sets the duration (default 6; 30 for a longer probe)."""
    import os
    import subprocess
    import sys

    if backend != "cython":
        pytest.skip("the NumPy fallback holds the GIL")
    seconds = float(os.environ.get("FASTLOSS_RACE_SECONDS", "6"))
    # cwd: away from a source tree, whose uncompiled fastloss/ would shadow the package
    run = subprocess.run([sys.executable, "-c", RACE_SCRIPT, str(seconds)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=seconds + 120)
    assert run.returncode == 0, f"rc {run.returncode}: {run.stderr[-2000:]}"
    done, raised = map(int, run.stdout.split())
    assert done > 0 and raised > 0
