"""linear_cross_entropy: the chunked layer + cross-entropy against independent references.

* A float64 computation written out here (the logits built whole, PyTorch's
  cross-entropy formula by hand, the gradient by hand) for every option and extra, odd
  sizes, chunks of 1 row, 7 rows and more rows than there are, under both backends.
* The compiled (chunked) path against its NumPy twin.
* PyTorch autograd (``F.linear`` + ``F.cross_entropy``, softcap and z-loss spelled in
  torch, and ``F.linear_cross_entropy`` where it exists).
* Central finite differences for the softcap and z-loss gradients.
* Peak extra memory (tracemalloc sees NumPy's allocations): O(chunk x V), not N x V.
"""
import math
import tracemalloc

import numpy as np
import pytest

import fastloss
from fastloss._linear_cross_entropy import CHUNK_BYTES, auto_chunk_rows

IGNORE = -100
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def make_problem(n=13, h=6, v=11, dtype=np.float64, seed=0, ignore_rows=(3, 8)):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n, h)).astype(dtype)
    weight = (rng.standard_normal((v, h)) / math.sqrt(h) * 2).astype(dtype)
    bias = rng.standard_normal(v).astype(dtype)
    target = rng.integers(0, v, n)
    for r in ignore_rows:
        if r < n:
            target[r] = IGNORE
    return hidden, weight, bias, target


def reference(hidden, weight, target, *, bias=None, class_weight=None, sample_weight=None,
              ignore_index=IGNORE, label_smoothing=0.0, reduction="mean", softcap=None,
              logit_scale=1.0, z_loss=0.0, normalize_by=None, **_):
    """Everything in float64, from the formulas (PyTorch's cross-entropy definition)."""
    h = np.asarray(hidden, np.float64)
    w = np.asarray(weight, np.float64)
    n, v = h.shape[0], w.shape[0]
    u = h @ w.T + (0.0 if bias is None else np.asarray(bias, np.float64))
    u = u * logit_scale
    if softcap is not None:
        th = np.tanh(u / softcap)
        z = softcap * th
    else:
        z = u
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    logp = z - lse[:, None]
    p = np.exp(logp)
    active = target != ignore_index
    y = np.where(active, target, 0)
    cw = np.ones(v) if class_weight is None else np.asarray(class_weight, np.float64)
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    eps = label_smoothing
    w_y = np.where(active, cw[y], 0.0)
    ce = (1 - eps) * w_y * -logp[np.arange(n), y] + eps / v * (-(cw * logp).sum(axis=1))
    rows = np.where(active, s * (ce + z_loss * lse ** 2), 0.0)
    # d l_i / d z_ij, then back through the softcap and the scale
    onehot = np.zeros((n, v))
    onehot[np.arange(n), y] = 1.0
    dce = (p * ((1 - eps) * w_y + eps / v * cw.sum())[:, None]
           - (1 - eps) * w_y[:, None] * onehot - eps / v * cw[None, :])
    dz = (dce + 2 * z_loss * lse[:, None] * p) * (s * active)[:, None]
    if softcap is not None:
        dz = dz * (1 - th ** 2)
    dz = dz * logit_scale
    if reduction == "mean":
        den = normalize_by if normalize_by is not None else np.sum(w_y * s)
        loss, dz = rows.sum() / den, dz / den
    elif reduction == "sum":
        loss = rows.sum()
    else:
        loss = rows
    argmax = z.argmax(axis=1)
    extras = {"loss_per_row": rows, "logsumexp": lse, "argmax": argmax,
              "accuracy": np.mean(argmax[active] == target[active]),
              "entropy": lse - (p * z).sum(axis=1)}
    return loss, dz @ w, dz.T @ h, None if bias is None else dz.sum(axis=0), extras


def assert_close(actual, expected, dtype, name=""):
    tol = TOL[dtype]
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    scale = np.max(np.abs(expected)) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(scale, 1.0),
                               err_msg=name)


def check(result, ref, dtype, extras=()):
    loss, gh, gw, gb, ex = ref
    assert_close(result.loss, loss, dtype, "loss")
    assert_close(result.grad_hidden, gh, dtype, "grad_hidden")
    assert_close(result.grad_weight, gw, dtype, "grad_weight")
    if gb is None:
        assert result.grad_bias is None
    else:
        assert_close(result.grad_bias, gb, dtype, "grad_bias")
    assert set(result.extras) == set(extras)
    for name in extras:
        if name == "argmax":
            np.testing.assert_array_equal(result.extras[name], ex[name])
        else:
            assert_close(result.extras[name], ex[name], dtype, name)
    for arr in (result.grad_hidden, result.grad_weight, result.grad_bias):
        assert arr is None or arr.dtype == dtype


OPTION_SETS = {
    "plain": {},
    "bias": {"bias": True},
    "smoothing-weights": {"bias": True, "label_smoothing": 0.2, "class_weight": True,
                          "sample_weight": True},
    "softcap": {"softcap": 1.5},
    "scale-softcap-zloss": {"bias": True, "logit_scale": 0.7, "softcap": 2.0,
                            "z_loss": 0.03},
    "zloss-weights": {"z_loss": 0.1, "class_weight": True, "sample_weight": True,
                      "label_smoothing": 0.1},
    "sum": {"reduction": "sum", "bias": True, "z_loss": 0.01},
    "none": {"reduction": "none", "softcap": 3.0, "sample_weight": True},
    "normalize_by": {"normalize_by": 37.0, "label_smoothing": 0.1, "z_loss": 1e-2},
}
ALL_EXTRAS = ("loss_per_row", "logsumexp", "argmax", "accuracy", "entropy")


def build_options(spec, bias, v, n, dtype, seed=1):
    rng = np.random.default_rng(seed)
    options = {k: val for k, val in spec.items()
               if k not in ("bias", "class_weight", "sample_weight")}
    if spec.get("bias"):
        options["bias"] = bias
    if spec.get("class_weight"):
        options["class_weight"] = rng.random(v) + 0.25
    if spec.get("sample_weight"):
        options["sample_weight"] = rng.random(n) + 0.25
    return options


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [1, 7, 1000, "auto"])
@pytest.mark.parametrize("spec", list(OPTION_SETS), ids=list(OPTION_SETS))
def test_against_float64_formulas(backend, dtype, chunk, spec):
    hidden, weight, bias, target = make_problem(dtype=dtype)
    options = build_options(OPTION_SETS[spec], bias, weight.shape[0], hidden.shape[0], dtype)
    result = fastloss.linear_cross_entropy(hidden, weight, target, chunk_size=chunk,
                                           extras=ALL_EXTRAS, **options)
    assert isinstance(result, fastloss.LinearCrossEntropyResult)
    check(result, reference(hidden, weight, target, **options), dtype, ALL_EXTRAS)
    if OPTION_SETS[spec].get("reduction") == "none":
        assert result.loss.shape == target.shape and result.loss.dtype == dtype
    else:
        assert np.ndim(result.loss) == 0 and result.loss.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_chunk_budget_blocks_rows_and_classes(backend, dtype, monkeypatch):
    """A budget of 200 bytes: "auto" takes 2 rows of 11 classes, and grad_weight's
    partial product goes 4 classes (of 6 hidden units) at a time."""
    from fastloss import _linear_cross_entropy

    monkeypatch.setattr(_linear_cross_entropy, "CHUNK_BYTES", 200 * np.dtype(dtype).itemsize // 8)
    hidden, weight, bias, target = make_problem(dtype=dtype)
    options = build_options(OPTION_SETS["scale-softcap-zloss"], bias, 11, 13, dtype)
    result = fastloss.linear_cross_entropy(hidden, weight, target, extras=ALL_EXTRAS,
                                           **options)
    check(result, reference(hidden, weight, target, **options), dtype, ALL_EXTRAS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", list(OPTION_SETS), ids=list(OPTION_SETS))
def test_chunked_path_matches_the_fallback(dtype, spec):
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    hidden, weight, bias, target = make_problem(n=29, h=9, v=37, dtype=dtype, seed=3)
    options = build_options(OPTION_SETS[spec], bias, 37, 29, dtype)
    twin = fastloss.fallback.linear_cross_entropy(hidden, weight, target, extras=ALL_EXTRAS,
                                                  **options)
    previous = fastloss.get_backend()
    fastloss.set_backend("cython")
    try:
        for chunk in (1, 7, 64):
            got = fastloss.linear_cross_entropy(hidden, weight, target, chunk_size=chunk,
                                                extras=ALL_EXTRAS, **options)
            ref = (twin.loss, twin.grad_hidden, twin.grad_weight, twin.grad_bias, twin.extras)
            check(got, ref, dtype, ALL_EXTRAS)
    finally:
        fastloss.set_backend(previous)


def test_leading_axes_keep_their_shape(backend):
    hidden, weight, bias, target = make_problem(n=12)
    h3, t3 = hidden.reshape(3, 4, -1), target.reshape(3, 4)
    sw = np.linspace(0.5, 2, 12)
    flat = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias, sample_weight=sw,
                                         reduction="none", chunk_size=5,
                                         extras=("argmax", "entropy"))
    res = fastloss.linear_cross_entropy(h3, weight, t3, bias=bias,
                                        sample_weight=sw.reshape(3, 4), reduction="none",
                                        chunk_size=5, extras=("argmax", "entropy"))
    assert res.loss.shape == (3, 4) and res.grad_hidden.shape == h3.shape
    assert res.extras["argmax"].shape == (3, 4) and res.extras["entropy"].shape == (3, 4)
    np.testing.assert_array_equal(res.loss.ravel(), flat.loss)
    np.testing.assert_array_equal(res.grad_hidden.reshape(12, -1), flat.grad_hidden)
    np.testing.assert_array_equal(res.grad_weight, flat.grad_weight)


def test_return_grad_false_and_inputs_untouched(backend):
    hidden, weight, bias, target = make_problem()
    copies = [a.copy() for a in (hidden, weight, bias, target)]
    res = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias, softcap=2.0,
                                        z_loss=0.1, return_grad=False, chunk_size=4,
                                        extras=("accuracy",))
    assert res.grad_hidden is None and res.grad_weight is None and res.grad_bias is None
    ref = reference(hidden, weight, target, bias=bias, softcap=2.0, z_loss=0.1)
    assert_close(res.loss, ref[0], np.float64)
    assert_close(res.extras["accuracy"], ref[4]["accuracy"], np.float64)
    for a, c in zip((hidden, weight, bias, target), copies):
        np.testing.assert_array_equal(a, c)
    assert fastloss.linear_cross_entropy(hidden, weight, target).extras == {}


def test_normalize_by_is_the_sum_over_k(backend):
    hidden, weight, bias, target = make_problem()
    summed = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias, z_loss=0.05,
                                           reduction="sum")
    k = 100.0
    norm = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias, z_loss=0.05,
                                         normalize_by=k)
    for a, b in zip(norm[:4], summed[:4]):
        assert_close(a, np.asarray(b) / k, np.float64)
    # Two micro-batches normalized by the whole batch's count sum to the full mean.
    active = np.count_nonzero(target != IGNORE)
    full = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias)
    halves = [fastloss.linear_cross_entropy(hidden[s], weight, target[s], bias=bias,
                                            normalize_by=active)
              for s in (slice(0, 6), slice(6, None))]
    assert_close(halves[0].loss + halves[1].loss, full.loss, np.float64)
    assert_close(halves[0].grad_weight + halves[1].grad_weight, full.grad_weight, np.float64)
    with pytest.raises(ValueError, match="normalize_by"):
        fastloss.linear_cross_entropy(hidden, weight, target, normalize_by=k, reduction="sum")


def test_every_row_ignored(backend):
    hidden, weight, _, target = make_problem()
    target[:] = IGNORE
    res = fastloss.linear_cross_entropy(hidden, weight, target, z_loss=0.1, chunk_size=4,
                                        extras=("accuracy",))
    assert np.isnan(res.loss) and np.isnan(res.extras["accuracy"])
    assert not res.grad_hidden.any() and not res.grad_weight.any()
    res = fastloss.linear_cross_entropy(hidden, weight, target, reduction="sum")
    assert res.loss == 0 and not res.grad_weight.any()


def test_empty_batch(backend):
    res = fastloss.linear_cross_entropy(np.zeros((0, 4)), np.ones((5, 4)),
                                        np.zeros(0, int), reduction="sum")
    assert res.loss == 0 and res.grad_hidden.shape == (0, 4) and not res.grad_weight.any()


def test_dtype_mismatch_and_bad_labels_are_named(backend):
    hidden, weight, _, target = make_problem()
    with pytest.raises(TypeError, match="hidden.*weight"):
        fastloss.linear_cross_entropy(hidden.astype(np.float32), weight, target)
    target[5] = 11
    with pytest.raises(IndexError, match=r"11 at position 5"):
        fastloss.linear_cross_entropy(hidden, weight, target)


def test_auto_chunk_rows():
    assert auto_chunk_rows(10**6, 32000, 4) == CHUNK_BYTES // (32000 * 4)
    assert auto_chunk_rows(10, 32000, 4) == 10
    assert auto_chunk_rows(10**6, 10**9, 8) == 1
    assert auto_chunk_rows(5, 0, 8) == 5


# -- finite differences --------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"softcap": 1.2}, {"z_loss": 0.2},
                                     {"softcap": 2.0, "z_loss": 0.1, "logit_scale": 1.7,
                                      "label_smoothing": 0.1}])
def test_gradients_match_finite_differences(backend, options):
    hidden, weight, bias, target = make_problem(n=9, h=4, v=7, seed=5)

    def loss(h, w, b):
        return float(fastloss.linear_cross_entropy(h, w, target, bias=b, chunk_size=4,
                                                   return_grad=False, **options).loss)

    res = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias, chunk_size=4,
                                        **options)
    step = 1e-6
    for arr, grad, idx in ((hidden, res.grad_hidden, [(0, 0), (4, 2), (8, 3)]),
                           (weight, res.grad_weight, [(0, 1), (3, 3), (6, 0)]),
                           (bias, res.grad_bias, [(0,), (2,), (6,)])):
        for i in idx:
            up, down = arr.copy(), arr.copy()
            up[i] += step
            down[i] -= step
            args_up = [up if a is arr else a for a in (hidden, weight, bias)]
            args_down = [down if a is arr else a for a in (hidden, weight, bias)]
            numeric = (loss(*args_up) - loss(*args_down)) / (2 * step)
            assert grad[i] == pytest.approx(numeric, rel=1e-6, abs=1e-8), (i, options)


# -- PyTorch --------------------------------------------------------------------------------

def torch_reference(hidden, weight, target, *, bias=None, class_weight=None,
                    label_smoothing=0.0, reduction="mean", softcap=None, logit_scale=1.0,
                    z_loss=0.0):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    h = torch.tensor(hidden, requires_grad=True)
    w = torch.tensor(weight, requires_grad=True)
    b = None if bias is None else torch.tensor(bias, requires_grad=True)
    t = torch.tensor(target)
    z = F.linear(h, w, b) * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    cw = None if class_weight is None else torch.tensor(class_weight)
    rows = F.cross_entropy(z, t, weight=cw, ignore_index=IGNORE, reduction="none",
                           label_smoothing=label_smoothing)
    active = t != IGNORE
    rows = rows + z_loss * torch.where(active, torch.logsumexp(z, dim=1), 0.0) ** 2
    if reduction == "mean":
        w_y = torch.ones(len(t), dtype=z.dtype) if cw is None \
            else cw[torch.where(active, t, 0)]
        loss = rows.sum() / (w_y * active).sum()
        # PyTorch's own mean agrees when there is no z-loss
        if not z_loss:
            same = F.cross_entropy(z, t, weight=cw, ignore_index=IGNORE,
                                   label_smoothing=label_smoothing)
            assert torch.allclose(loss, same, rtol=1e-6)
    elif reduction == "sum":
        loss = rows.sum()
    else:
        loss = rows
    loss.sum().backward()
    return (loss.detach().numpy(), h.grad.numpy(), w.grad.numpy(),
            None if b is None else b.grad.numpy())


TORCH_CASES = [
    {},
    {"bias": True, "label_smoothing": 0.1},
    {"bias": True, "class_weight": True, "label_smoothing": 0.2},
    {"class_weight": True, "reduction": "sum"},
    {"bias": True, "reduction": "none", "label_smoothing": 0.05},
    {"softcap": 2.5, "logit_scale": 0.8, "z_loss": 1e-2, "bias": True},
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(TORCH_CASES)))
def test_against_torch_autograd(backend, dtype, case):
    hidden, weight, bias, target = make_problem(n=23, h=8, v=19, dtype=dtype, seed=11)
    options = build_options(TORCH_CASES[case], bias, 19, 23, dtype)
    if "class_weight" in options:
        options["class_weight"] = options["class_weight"].astype(dtype)
    expected = torch_reference(hidden, weight, target, **options)
    got = fastloss.linear_cross_entropy(hidden, weight, target, chunk_size=5, **options)
    for name, a, b in zip(("loss", "grad_hidden", "grad_weight", "grad_bias"), got, expected):
        if b is None:
            assert a is None
        else:
            assert_close(a, b, dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_torch_linear_cross_entropy(backend, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    if not hasattr(F, "linear_cross_entropy"):
        pytest.skip("this torch has no F.linear_cross_entropy")
    hidden, weight, bias, target = make_problem(n=31, h=8, v=23, dtype=dtype, seed=2)
    cw = (np.random.default_rng(4).random(23) + 0.5).astype(dtype)
    h = torch.tensor(hidden, requires_grad=True)
    w = torch.tensor(weight, requires_grad=True)
    b = torch.tensor(bias, requires_grad=True)
    loss = F.linear_cross_entropy(h, w, torch.tensor(target), linear_bias=b,
                                  weight=torch.tensor(cw), ignore_index=IGNORE,
                                  label_smoothing=0.1)
    loss.backward()
    got = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias, class_weight=cw,
                                        label_smoothing=0.1, chunk_size=8)
    for a, t in zip(got[:4], (loss, h.grad, w.grad, b.grad)):
        assert_close(a, t.detach().numpy(), dtype)


# -- memory ---------------------------------------------------------------------------------

def peak_bytes(func):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = func()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del result
    return peak


def test_peak_memory_is_chunk_by_vocabulary():
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    n, h, v, chunk = 512, 32, 4096, 32
    hidden, weight, bias, target = make_problem(n=n, h=h, v=v, seed=9)
    logits_bytes = n * v * hidden.itemsize
    options = dict(bias=bias, softcap=5.0, z_loss=1e-3, label_smoothing=0.1,
                   extras=ALL_EXTRAS)
    previous = fastloss.get_backend()
    try:
        fastloss.set_backend("cython")
        chunked = peak_bytes(lambda: fastloss.linear_cross_entropy(
            hidden, weight, target, chunk_size=chunk, **options))
        fastloss.set_backend("numpy")
        whole = peak_bytes(lambda: fastloss.linear_cross_entropy(
            hidden, weight, target, chunk_size=chunk, **options))
    finally:
        fastloss.set_backend(previous)
    # Three chunk buffers, grad_weight and a block of its partial product, grad_hidden,
    # row arrays.
    budget = 3 * chunk * v * 8 + 2 * v * h * 8 + 2 * n * h * 8 + 64 * n * 8 + 2**16
    assert whole > logits_bytes          # the measure sees NumPy's allocations
    assert chunked < budget < logits_bytes / 2, (chunked, budget, logits_bytes)


# -- threads: the BLAS follows fastloss's thread count -----------------------------------------

@pytest.fixture
def blas():
    """threadpoolctl's controller of the process's BLAS at 2 threads (restored after),
    and fastloss's thread count restored after; the cython backend."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        pytest.skip("threadpoolctl finds no BLAS in this process")
    previous_threads, previous_backend = fastloss.get_num_threads(), fastloss.get_backend()
    fastloss.set_backend("cython")
    try:
        with controller.limit(limits=2):
            if any(lib.num_threads != 2 for lib in controller.lib_controllers):
                pytest.skip("this BLAS cannot be set to 2 threads")
            yield controller
    finally:
        fastloss.set_num_threads(previous_threads)
        fastloss.set_backend(previous_backend)


def blas_threads_seen_by_matmul(controller, monkeypatch, call):
    """The BLAS thread counts in effect at each np.matmul that ``call`` makes."""
    seen = []
    matmul = np.matmul

    def spy(*args, **kwargs):
        seen.append(tuple(lib.num_threads for lib in controller.lib_controllers))
        return matmul(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    try:
        call()
    finally:
        monkeypatch.undo()
    return seen


def test_blas_follows_set_num_threads(blas, monkeypatch):
    """With fastloss on 1 thread, every GEMM runs on a BLAS held to 1 thread, and the
    BLAS's own count comes back after the call."""
    hidden, weight, bias, target = make_problem(n=13, h=6, v=11)
    fastloss.set_num_threads(1)
    seen = blas_threads_seen_by_matmul(blas, monkeypatch, lambda: fastloss.linear_cross_entropy(
        hidden, weight, target, bias=bias, chunk_size=4))
    assert len(seen) >= 3 * 4 and set(seen) == {(1,) * len(blas.lib_controllers)}, seen
    assert all(lib.num_threads == 2 for lib in blas.lib_controllers)


def test_blas_lower_limit_stands(blas, monkeypatch):
    """A BLAS held below fastloss's count is not raised to it."""
    hidden, weight, _, target = make_problem()
    fastloss.set_num_threads(2)
    with blas.limit(limits=1):
        seen = blas_threads_seen_by_matmul(blas, monkeypatch, lambda: (
            fastloss.linear_cross_entropy(hidden, weight, target, chunk_size=5)))
        assert all(lib.num_threads == 1 for lib in blas.lib_controllers)
    assert seen and set(seen) == {(1,) * len(blas.lib_controllers)}, seen


def test_blas_limit_restored_after_an_error_and_overlapping_calls(blas):
    """The BLAS's count comes back after a call that raises inside the loop, and after
    calls from several Python threads that overlap (each on 1 fastloss thread)."""
    import threading

    from fastloss import _runtime

    fastloss.set_num_threads(1)
    with pytest.raises(RuntimeError, match="inside"):
        with _runtime.blas_threads_at_most(1):
            assert all(lib.num_threads == 1 for lib in blas.lib_controllers)
            raise RuntimeError("inside")
    assert all(lib.num_threads == 2 for lib in blas.lib_controllers)

    hidden, weight, bias, target = make_problem(n=40, h=8, v=30, dtype=np.float32)
    expected = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias, chunk_size=3)
    errors = []

    def work():
        try:
            fastloss.set_num_threads(1)      # OpenMP's setting is per calling thread
            for _ in range(20):
                got = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias,
                                                    chunk_size=3)
                assert_close(got.grad_weight, expected.grad_weight, np.float32)
        except BaseException as exc:     # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(lib.num_threads == 2 for lib in blas.lib_controllers)


def test_blas_left_to_other_threads_after_a_call():
    """After a call that held the BLAS, another Python thread can still set its limits
    with threadpoolctl (threadpoolctl lets one thread at a time control OpenBLAS's
    shared pool, and a call must hand that control back)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import threading

    if not fastloss.available_simd_levels():
        pytest.skip("compiled extension not available")
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers or any(
            (lib.num_threads or 1) < 2 for lib in controller.lib_controllers):
        pytest.skip("needs a BLAS on 2 threads or more")
    before = [lib.num_threads for lib in controller.lib_controllers]
    hidden, weight, _, target = make_problem()
    previous, backend = fastloss.get_num_threads(), fastloss.get_backend()
    try:
        fastloss.set_backend("cython")
        fastloss.set_num_threads(1)
        fastloss.linear_cross_entropy(hidden, weight, target, chunk_size=4)
    finally:
        fastloss.set_num_threads(previous)
        fastloss.set_backend(backend)
    assert [lib.num_threads for lib in controller.lib_controllers] == before
    seen = []

    def other():
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            seen.extend(lib.num_threads for lib in controller.lib_controllers)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen and set(seen) == {1}, seen
    assert [lib.num_threads for lib in controller.lib_controllers] == before
