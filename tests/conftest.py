"""Shared fixtures: the backend matrix, SIMD levels and a generator of nasty inputs.

Every public function is tested under both backends: ``cython`` (the compiled
kernels) and ``numpy`` (the fallback).  When the extension is missing the cython
cases are skipped -- unless FASTLOSS_REQUIRE_EXTENSION=1 (set by CI), where a
missing extension must fail loudly instead of silently testing the fallback twice.
"""
import os

import numpy as np
import pytest

import fastloss

REQUIRE_EXTENSION = os.environ.get("FASTLOSS_REQUIRE_EXTENSION", "") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "torch_compile: compiles with torch.compile (Inductor CPU and a C++ "
                   "compiler: seconds); -m 'not torch_compile' skips it")


def _extension_loaded():
    try:
        from fastloss._lib import kernels  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(params=["cython", "numpy"])
def backend(request):
    """Run the test with each backend active; restores the previous one after."""
    name = request.param
    if name == "cython" and not _extension_loaded():
        if REQUIRE_EXTENSION:
            pytest.fail("FASTLOSS_REQUIRE_EXTENSION=1 but fastloss._lib.kernels did not import")
        pytest.skip("compiled extension not available")
    previous = fastloss.get_backend()
    fastloss.set_backend(name)
    try:
        yield name
    finally:
        fastloss.set_backend(previous)


@pytest.fixture(params=fastloss.available_simd_levels() or ["none"])
def simd_level(request):
    """Run the test at every instruction-set level this CPU has (cython backend)."""
    if request.param == "none":
        pytest.skip("compiled extension not available")
    previous = fastloss.get_simd_level()
    fastloss.set_simd_level(request.param)
    previous_backend = fastloss.get_backend()
    fastloss.set_backend("cython")
    try:
        yield request.param
    finally:
        fastloss.set_simd_level(previous)
        fastloss.set_backend(previous_backend)


@pytest.fixture
def threads():
    """Restore the thread count after a test that changes it."""
    previous = fastloss.get_num_threads()
    yield
    fastloss.set_num_threads(previous)


def tolerance(dtype):
    """The contract's accuracy: float32 1e-6 relative, float64 1e-12 (with an
    absolute floor of the same size near 0)."""
    return {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}[np.dtype(dtype)]


def assert_close(actual, expected, dtype):
    tol = tolerance(dtype)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=tol, atol=tol)


def layouts(x):
    """The same values in the memory layouts that break C code: C order, Fortran
    order, reversed/strided views, a transposed copy seen back through .T, and a
    read-only array.  Yields (name, array equal to x)."""
    yield "C", np.ascontiguousarray(x)
    yield "F", np.asfortranarray(x)
    if x.ndim >= 1 and x.shape[-1] > 0:
        padded = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
        padded[..., ::2] = x
        yield "strided", padded[..., ::2]
        yield "reversed", np.flip(np.flip(x, -1).copy(), -1)
    if x.ndim >= 2:
        yield "transposed", np.ascontiguousarray(x.T).T
    ro = x.copy()
    ro.flags.writeable = False
    yield "readonly", ro


def rows_read_once(dtype, rng):
    """Rows of 16 KiB and a ragged last block (read once in the AVX-512 build: blocks
    of 128 classes and a running max, src/csrc/softmax_impl.h) that raise the running
    max in a few blocks, in every block (sorted upwards: more raises than the stretches
    kept, so the rest of the row's max is taken at once), in 10 steps, far apart
    (exp(m_k - m) tiny), or only after blocks of -inf (the last row, whose first
    finite class is 302)."""
    n = 4099 if dtype == np.float32 else 2053
    rows = [rng.standard_normal(n) * 4,
            np.sort(rng.standard_normal(n) * 4),
            np.repeat(np.arange(10.0), -(-n // 10))[:n],
            np.linspace(-50, 50, n)]
    masked = rng.standard_normal(n) * 4
    masked[:300] = -np.inf
    masked[::7] = -np.inf
    rows.append(masked)
    return np.array(rows).astype(dtype)


def nasty_rows(dtype, n_classes=6):
    """Rows that exercise the contract's numerics, one kind per row:
    ordinary, huge (1e30 / float max), masked (-inf), NaN, all equal, tiny."""
    big = np.finfo(dtype).max
    rows = [
        np.linspace(-3, 3, n_classes),
        np.full(n_classes, 1e30) + np.arange(n_classes),
        np.where(np.arange(n_classes) % 2 == 0, big, -big),
        np.where(np.arange(n_classes) < 2, -np.inf, np.arange(n_classes, dtype=float)),
        np.where(np.arange(n_classes) == 1, np.nan, 0.0),
        np.zeros(n_classes),
        np.full(n_classes, -1e-30),
    ]
    return np.array(rows, dtype=dtype)
