"""Dask arrays in, lazy Dask results out (fastloss._dask), computed on a real
distributed scheduler: a LocalCluster of 2 worker processes, 1 thread each.

Results equal the NumPy path's within the float64 contract (1e-12) for equal and
unequal row chunks, a class axis split across chunks, ignore_index rows, class and
sample weights; nothing is computed before ``.compute()``; the xarray recipe of
docs/scaling-out.md works.
"""
import subprocess
import sys

import numpy as np
import pytest

import fastloss
from conftest import nasty_rows

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")
dask = pytest.importorskip("dask")

N_CLASSES = 11
CHUNKINGS = {
    "equal rows": ((10, 10, 10, 10), (N_CLASSES,)),
    "unequal rows": ((7, 20, 13), (N_CLASSES,)),
    "split classes": ((15, 25), (4, 5, 2)),
}
REDUCTIONS = ["none", "sum", "mean"]


@pytest.fixture(scope="module")
def client():
    """Two worker processes: every block crosses a process boundary (pickled tasks,
    fastloss imported by the workers, PYTHONPATH inherited).  No memory limit: the
    blocks are tiny, and under AddressSanitizer (.ci/sanitize) a worker's resident
    size is mostly shadow memory."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, memory_limit=0) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, N_CLASSES)) * 3
    target = rng.integers(0, N_CLASSES, 40)
    target[[0, 9, 10, 33]] = -100
    return x, target, rng.random(40) + 0.5, rng.random(N_CLASSES) + 0.5


def assert_equal_within_contract(actual, expected):
    assert type(actual) is type(expected)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.fixture(params=list(CHUNKINGS))
def chunks(request):
    return CHUNKINGS[request.param]


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family(client, chunks, name):
    x = problem()[0]
    lazy = getattr(fastloss, name)(da.from_array(x, chunks=chunks))
    assert isinstance(lazy, da.Array)
    assert_equal_within_contract(lazy.compute(), getattr(fastloss, name)(x))


def test_split_class_axis_keeps_the_contract_numerics(client):
    """Huge logits, masked (-inf) classes, NaN rows: the merged online-softmax state
    gives what the one-pass kernels give."""
    x = nasty_rows(np.float64, 6)
    target = np.array([0, 1, 2, 3, 4, 5, 0])
    lazy = da.from_array(x, chunks=(3, (2, 3, 1)))
    with np.errstate(invalid="ignore"):
        for name in ("softmax", "log_softmax", "logsumexp"):
            assert_equal_within_contract(getattr(fastloss, name)(lazy).compute(),
                                         getattr(fastloss, name)(x))
        assert_equal_within_contract(
            fastloss.cross_entropy(lazy, target, reduction="none").compute(),
            fastloss.cross_entropy(x, target, reduction="none"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy(client, chunks, reduction):
    x, target, sample_weight, weight = problem()
    for options in ({}, {"weight": weight, "sample_weight": sample_weight}):
        lazy = fastloss.cross_entropy(da.from_array(x, chunks=chunks), target,
                                      reduction=reduction, **options)
        assert_equal_within_contract(
            lazy.compute(), fastloss.cross_entropy(x, target, reduction=reduction, **options))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(client, chunks, reduction):
    x, target, _, weight = problem(1)
    lazy = fastloss.nll_loss(da.from_array(x, chunks=chunks), da.from_array(target, 8),
                             weight=weight, reduction=reduction)
    assert_equal_within_contract(
        lazy.compute(), fastloss.nll_loss(x, target, weight=weight, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_grad(client, chunks, reduction):
    x, target, sample_weight, weight = problem(2)
    options = {"weight": weight, "sample_weight": sample_weight, "reduction": reduction}
    if chunks != CHUNKINGS["split classes"]:
        options["label_smoothing"] = 0.1
    loss, grad = fastloss.cross_entropy_with_grad(da.from_array(x, chunks=chunks), target,
                                                  **options)
    loss, grad = dask.compute(loss, grad)
    ref_loss, ref_grad = fastloss.cross_entropy_with_grad(x, target, **options)
    assert_equal_within_contract(loss, ref_loss)
    assert_equal_within_contract(grad, ref_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_with_grad(client, chunks, reduction):
    x, target, _, weight = problem(3)
    loss, grad = dask.compute(*fastloss.nll_loss_with_grad(
        da.from_array(x, chunks=chunks), target, weight=weight, reduction=reduction))
    ref_loss, ref_grad = fastloss.nll_loss_with_grad(x, target, weight=weight,
                                                     reduction=reduction)
    assert_equal_within_contract(loss, ref_loss)
    assert_equal_within_contract(grad, ref_grad)


def test_soft_targets(client):
    x = problem(3)[0]
    probs = fastloss.softmax(np.random.default_rng(4).standard_normal(x.shape))
    chunks = CHUNKINGS["unequal rows"]
    lazy = fastloss.cross_entropy(da.from_array(x, chunks=chunks), da.from_array(probs, 16))
    assert_equal_within_contract(lazy.compute(), fastloss.cross_entropy(x, probs))


def test_float32_keeps_its_dtype(client):
    x, target, _, _ = problem(5)
    for chunks in CHUNKINGS.values():
        x32 = da.from_array(x.astype(np.float32), chunks=chunks)
        loss = fastloss.cross_entropy(x32, target).compute()
        assert loss.dtype == np.float32
        assert abs(loss - fastloss.cross_entropy(x, target)) <= 1e-6 * abs(loss)
        probs = fastloss.softmax(x32).compute()
        assert probs.dtype == np.float32
        np.testing.assert_allclose(probs, fastloss.softmax(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float16_is_rounded_once(client, reduction):
    """float16 blocks are computed in float32 and rounded to float16 at the end: a sum
    of per-block float16 losses, or a gradient scaled in float16, would differ."""
    x, target, _, _ = problem(10)
    x16 = x.astype(np.float16)
    lazy = da.from_array(x16, chunks=CHUNKINGS["unequal rows"])
    loss, grad = dask.compute(*fastloss.cross_entropy_with_grad(lazy, target,
                                                                reduction=reduction))
    ref_loss, ref_grad = fastloss.cross_entropy_with_grad(x16, target, reduction=reduction)
    assert loss.dtype == grad.dtype == np.float16
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_elementwise_losses_and_activations(client, reduction):
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((30, 8)), rng.standard_normal((30, 8))
    chunks = ((4, 16, 10), (5, 3))
    loss, grad = dask.compute(*fastloss.huber_loss_with_grad(
        da.from_array(x, chunks=chunks), y, delta=0.5, reduction=reduction))
    ref_loss, ref_grad = fastloss.huber_loss_with_grad(x, y, delta=0.5, reduction=reduction)
    assert_equal_within_contract(loss, ref_loss)
    assert_equal_within_contract(grad, ref_grad)
    labels = (y > 0).astype(np.float64)
    lazy = fastloss.binary_cross_entropy_with_logits(
        da.from_array(x, chunks=chunks), labels, pos_weight=np.full(8, 2.0),
        reduction=reduction)
    assert_equal_within_contract(lazy.compute(), fastloss.binary_cross_entropy_with_logits(
        x, labels, pos_weight=np.full(8, 2.0), reduction=reduction))
    assert_equal_within_contract(
        fastloss.softplus_backward(da.from_array(y, chunks=chunks), x, beta=2.0).compute(),
        fastloss.softplus_backward(y, x, beta=2.0))


def test_nothing_is_computed_before_compute(client):
    """Building the graph runs no task: none in the local process (a scheduler
    callback counts them) and none on the cluster's scheduler."""
    started = []

    class CountTasks(dask.callbacks.Callback):
        def _start_state(self, dsk, state):
            started.append(len(state["ready"]) + len(state["waiting"]))

    x, target, sample_weight, _ = problem(7)
    logits = da.from_array(x, chunks=CHUNKINGS["split classes"]) * 1.0
    with CountTasks():
        results = [fastloss.cross_entropy(logits, target, sample_weight=sample_weight),
                   fastloss.softmax(logits),
                   fastloss.cross_entropy_with_grad(logits, target)[1]]
    assert started == []
    keys = {str(k) for r in results for k in r.__dask_graph__()}
    on_scheduler = client.run_on_scheduler(
        lambda dask_scheduler: {str(k) for k in dask_scheduler.tasks})
    assert keys and not keys & on_scheduler
    with CountTasks():
        dask.compute(*results, scheduler="threads")
    assert started and started[0] > 0
    assert_equal_within_contract(results[0].compute(),
                                 fastloss.cross_entropy(x, target, sample_weight=sample_weight))


def test_out_of_range_label_raises_at_compute(client):
    x, target, _, _ = problem(8)
    target[17] = N_CLASSES
    for chunks in CHUNKINGS.values():
        lazy = fastloss.cross_entropy(da.from_array(x, chunks=chunks), target)
        with pytest.raises(IndexError, match=str(N_CLASSES)):
            lazy.compute()


def test_refusals():
    x = da.ones((4, 6), chunks=(2, 3))
    with pytest.raises(TypeError, match="out="):
        fastloss.softmax(x, out=np.empty((4, 6)))
    with pytest.raises(TypeError, match="does not take Dask arrays"):
        fastloss.softmax_backward(x, x)
    with pytest.raises(NotImplementedError, match="one chunk"):
        fastloss.cross_entropy_with_grad(x, np.zeros(4, np.int64), label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        fastloss.cross_entropy(x.rechunk({1: -1}), np.zeros(4, np.int64),
                               label_smoothing=2.0)


def softmax_over(array, dim):
    """The xarray recipe of docs/scaling-out.md: the class dimension is the core
    dimension (one chunk), every block is a NumPy array."""
    import xarray as xr
    return xr.apply_ufunc(fastloss.softmax, array, input_core_dims=[[dim]],
                          output_core_dims=[[dim]], dask="parallelized",
                          output_dtypes=[array.dtype])


def cross_entropy_rows(logits, target, dim):
    import xarray as xr
    return xr.apply_ufunc(fastloss.cross_entropy, logits, target,
                          input_core_dims=[[dim], []], dask="parallelized",
                          kwargs={"reduction": "none"}, output_dtypes=[logits.dtype])


def test_xarray_recipe(client):
    xr = pytest.importorskip("xarray")
    x, target, _, _ = problem(9)
    logits = xr.DataArray(x, dims=("sample", "class")).chunk({"sample": 13})
    labels = xr.DataArray(target, dims=("sample",)).chunk({"sample": 13})
    probs = softmax_over(logits, "class")
    losses = cross_entropy_rows(logits, labels, "class")
    assert isinstance(probs.data, da.Array) and probs.dims == ("sample", "class")
    assert_equal_within_contract(probs.values, fastloss.softmax(x))
    assert_equal_within_contract(losses.values,
                                 fastloss.cross_entropy(x, target, reduction="none"))


def test_fastloss_imports_and_runs_without_dask():
    code = ("import sys; sys.modules['dask'] = None\n"
            "import numpy as np, fastloss\n"
            "print(fastloss.softmax(np.zeros(3))[0])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(1 / 3)
