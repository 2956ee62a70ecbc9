"""Installation checks: what a user gets after `pip install`.

* The compiled backend loaded (mandatory when FASTLOSS_REQUIRE_EXTENSION=1, as in CI),
  and the benchmark's command and yardstick extension are installed.
* show_config() reports the OpenMP build and the SIMD level in use; with
  FASTLOSS_EXPECT_OPENMP=1 / 0 (set by CI per build) it must say yes / no.
* An installed copy, not the source tree, is tested (FASTLOSS_TEST_INSTALLED=1), and
  its metadata carries fastloss.__version__.
* threadpoolctl reaches the OpenMP runtime the extension uses (in a repaired wheel
  that is a renamed, bundled libgomp).
* Without the extension the package still imports, warns once and runs on NumPy.
* A child of a "fork" Pool runs the kernels on 1 thread instead of hanging in the
  libgomp pool it inherited from a parent that used 2 threads.
"""
import io
import json
import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastloss
import fastloss.fallback
from fastloss import _runtime

REQUIRE_EXTENSION = os.environ.get("FASTLOSS_REQUIRE_EXTENSION", "") == "1"
TEST_INSTALLED = os.environ.get("FASTLOSS_TEST_INSTALLED", "") == "1"
EXPECT_OPENMP = os.environ.get("FASTLOSS_EXPECT_OPENMP", "")  # "1", "0" or unset

EXTENSION_LOADED = _runtime.config()["extension"] == "loaded"
needs_extension = pytest.mark.skipif(
    not EXTENSION_LOADED, reason="the compiled extension is not available"
)


def show_config_text():
    buf = io.StringIO()
    fastloss.show_config(file=buf)
    return buf.getvalue()


def show_config_lines():
    """show_config() as {lower-cased key: value}; it prints one `key : value` a line."""
    lines = {}
    for line in show_config_text().splitlines():
        key, sep, value = line.partition(" : ")
        if sep:
            lines[key.strip().lower()] = value.strip()
    return lines


def package_root():
    """The directory holding the imported fastloss package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))


def test_extension_loaded_when_required():
    if not REQUIRE_EXTENSION:
        pytest.skip("set FASTLOSS_REQUIRE_EXTENSION=1 to require the compiled extension")
    info = _runtime.config()
    assert info["extension"] == "loaded", (
        f"the compiled extension did not load from {fastloss.__file__}: {info['extension']}"
    )
    if os.environ.get("FASTLOSS_BACKEND", "").strip().lower() != "numpy":
        assert fastloss.get_backend() == "cython"


def test_installed_copy_is_tested():
    if not TEST_INSTALLED:
        pytest.skip("set FASTLOSS_TEST_INSTALLED=1 to require an installed fastloss")
    root = package_root()
    # A source checkout has setup.py beside the package; site-packages does not.
    assert not os.path.exists(os.path.join(root, "setup.py")), (
        f"fastloss was imported from the source tree {root}, not from the installed copy"
    )


def test_bench_command_is_installed():
    """The README's benchmark command, `fastloss-bench`, comes with the package."""
    if not TEST_INSTALLED:
        pytest.skip("set FASTLOSS_TEST_INSTALLED=1 to require an installed fastloss")
    script = pathlib.Path(sys.executable).with_name("fastloss-bench")
    assert script.exists(), f"{script} was not installed"


def test_installed_version_is_the_package_version():
    """pyproject.toml takes the version from fastloss.__version__ (written once)."""
    if not TEST_INSTALLED:
        pytest.skip("set FASTLOSS_TEST_INSTALLED=1 to require an installed fastloss")
    from importlib.metadata import version
    assert version("fastloss") == fastloss.__version__


def test_bench_yardsticks_are_installed():
    """The benchmark's own extension (its bandwidth yardsticks) comes with the package,
    built like the kernels: with OpenMP exactly when they have it."""
    if not REQUIRE_EXTENSION:
        pytest.skip("set FASTLOSS_REQUIRE_EXTENSION=1 to require the compiled extensions")
    from fastloss.bench import _yardsticks

    if EXPECT_OPENMP in ("0", "1"):
        assert _yardsticks.OPENMP is (EXPECT_OPENMP == "1")


def test_show_config_basics():
    text = show_config_text()
    lines = show_config_lines()
    assert fastloss.__version__ in text
    assert lines.get("backend") == fastloss.get_backend()
    assert lines.get("threads") == str(fastloss.get_num_threads())


@needs_extension
def test_show_config_reports_openmp_and_simd():
    lines = show_config_lines()
    openmp = [v for k, v in lines.items() if "openmp" in k]
    assert openmp, f"show_config() has no OpenMP line:\n{show_config_text()}"
    value = openmp[0]
    assert "openmp" in value.lower() or value.lower().startswith(("yes", "no")), value
    if EXPECT_OPENMP == "1":
        assert value.lower().startswith("yes"), f"expected an OpenMP build; show_config says {value!r}"
    elif EXPECT_OPENMP == "0":
        assert value.lower().startswith("no"), f"expected a build without OpenMP; show_config says {value!r}"

    level = fastloss.get_simd_level()
    assert level in fastloss.available_simd_levels()
    simd = [v for k, v in lines.items() if "simd" in k and "in use" in k]
    assert simd == [level], f"show_config() should name the SIMD level in use ({level}):\n{show_config_text()}"
    assert lines.get("compiler"), "show_config() should name the compiler"


@needs_extension
def test_threads_follow_the_build():
    if EXPECT_OPENMP == "0":
        # Single-threaded build: one thread, whatever is asked.
        assert fastloss.get_num_threads() == 1
        return
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not show_config_lines().get("openmp", "yes").lower().startswith("yes"):
        pytest.skip("built without OpenMP")
    before = fastloss.get_num_threads()
    # threadpoolctl must find the OpenMP runtime our extension uses (bundled and renamed
    # in a repaired wheel) and its limit must reach the kernels.
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastloss.get_num_threads() == 1
    assert fastloss.get_num_threads() == before


NO_EXTENSION_SCRIPT = textwrap.dedent(
    r"""
    import importlib.abc, io, json, sys, warnings

    class BlockKernels(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "fastloss._lib.kernels":
                raise ImportError("fastloss._lib.kernels blocked by test_install")
            return None

    sys.meta_path.insert(0, BlockKernels())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastloss
        import fastloss.fallback
        import numpy as np
        x = np.array([[1.0, 2.0, 3.0], [0.0, -1e30, 5.0]])
        y = fastloss.softmax(x)
        z = fastloss.log_softmax(x.astype(np.float32), axis=0)
        fastloss.softmax(x)  # a second call warns no more
    try:
        fastloss.set_backend("cython")
        cython_error = None
    except RuntimeError as exc:
        cython_error = str(exc)
    buf = io.StringIO()
    fastloss.show_config(file=buf)
    print(json.dumps({
        "file": fastloss.__file__,
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "backend": fastloss.get_backend(),
        "softmax": y.tolist(),
        "log_softmax_dtype": str(z.dtype),
        "simd": fastloss.get_simd_level(),
        "threads": fastloss.get_num_threads(),
        "cython_error": cython_error,
        "config": buf.getvalue(),
    }))
    """
)


def test_import_without_extension_falls_back_to_numpy(tmp_path):
    env = dict(os.environ)
    for var in ("FASTLOSS_BACKEND", "FASTLOSS_SIMD", "PYTHONWARNINGS"):
        env.pop(var, None)
    # Import the same fastloss this test process imported, not whatever a cwd holds.
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    proc = subprocess.run(
        [sys.executable, "-c", NO_EXTENSION_SCRIPT],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert os.path.samefile(out["file"], fastloss.__file__)

    ours = [w for w in out["warnings"] if "fastloss" in w]
    assert len(ours) == 1, f"expected exactly one warning, got {out['warnings']}"
    assert ours[0].startswith("RuntimeWarning") and "NumPy fallback" in ours[0], ours[0]
    assert "blocked by test_install" in ours[0]

    assert out["backend"] == "numpy"
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1e30, 5.0]])
    np.testing.assert_allclose(np.array(out["softmax"]), fastloss.fallback.softmax(x),
                               rtol=1e-12, atol=0)
    assert out["log_softmax_dtype"] == "float32"
    assert out["simd"] is None
    assert out["threads"] >= 1
    assert out["cython_error"] and "unavailable" in out["cython_error"]
    assert "not available" in out["config"] and "numpy" in out["config"]


FORK_SCRIPT = textwrap.dedent(
    r"""
    import json, multiprocessing, sys, warnings
    import numpy as np
    import fastloss
    import fastloss.fallback

    def inputs(seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((2048, 4096)).astype(np.float32)
        return x, rng.integers(0, 4096, 2048)

    def checksums(lib, seed):
        x, t = inputs(seed)
        y = lib.softmax(x)
        loss, grad = lib.cross_entropy_with_grad(x, t)
        p = np.random.default_rng(seed).random(1 << 22)
        bce = lib.binary_cross_entropy(p, p)   # its [0, 1] check is a prange of 1 thread
        return [float(y[::97].sum(dtype=np.float64)), float(loss),
                float(np.abs(grad[::97]).sum(dtype=np.float64)), float(bce)]

    def work(seed):
        threads = fastloss.get_num_threads()
        sums = checksums(fastloss, seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fastloss.set_num_threads(4)
            fastloss.set_num_threads(2)
            again = checksums(fastloss, seed)
            after_set = fastloss.get_num_threads()
            fastloss._runtime._kernels.set_num_threads(3)   # as threadpoolctl would
            after_omp = fastloss.get_num_threads()
            checksums(fastloss, seed)
        return {"threads": threads, "threads_after_set": after_set,
                "threads_after_omp": after_omp,
                "sums": sums, "again": again,
                "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}

    if __name__ == "__main__":
        fastloss.set_num_threads(2)
        x, _ = inputs(0)
        fastloss.softmax(x)            # the parent starts a libgomp team of 2
        with multiprocessing.get_context("fork").Pool(2) as pool:
            try:
                children = pool.map_async(work, [1, 2]).get(timeout=40)
            except multiprocessing.TimeoutError:
                print("HANG: the forked children did not finish in 40 s", flush=True)
                pool.terminate()
                sys.exit(3)
        print(json.dumps({
            "parent_threads": fastloss.get_num_threads(),
            "children": children,
            "expected": [checksums(fastloss.fallback, seed) for seed in (1, 2)],
        }))
    """
)


@needs_extension
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork on this platform")
def test_fork_pool_children_do_not_hang(tmp_path):
    """After a 2-thread call in the parent, children of a fork Pool would hang in
    their first parallel region (libgomp's pool does not survive fork).  They now run
    on 1 thread, say so once when asked for more, and compute the right numbers.  A
    hang is a timeout (the script gives up after 40 s, this test after 60 s), never a
    stuck test run; the script runs in its own session so nothing it forked survives."""
    if not show_config_lines().get("openmp", "yes").lower().startswith("yes"):
        pytest.skip("built without OpenMP: no thread pool to inherit")
    env = dict(os.environ)
    for var in ("FASTLOSS_BACKEND", "OMP_NUM_THREADS", "PYTHONWARNINGS"):
        env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    proc = subprocess.Popen([sys.executable, "-c", FORK_SCRIPT], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the script and its hung children
        proc.communicate()
        pytest.fail("fastloss hung in the children of a fork Pool (no answer in 60 s)")
    assert proc.returncode == 0, stdout + stderr
    out = json.loads(stdout.strip().splitlines()[-1])

    assert out["parent_threads"] == 2            # the parent keeps its threads
    for child, expected in zip(out["children"], out["expected"]):
        assert child["threads"] == 1
        assert child["threads_after_set"] == 1
        assert child["threads_after_omp"] == 1     # the kernels stay on 1 thread
        np.testing.assert_allclose(child["sums"], expected, rtol=1e-5)
        np.testing.assert_allclose(child["again"], expected, rtol=1e-5)
        ours = [w for w in child["warnings"] if "fastloss" in w]
        assert len(ours) == 1, f"expected one warning in the child, got {child['warnings']}"
        assert ours[0].startswith("RuntimeWarning") and "fork" in ours[0] and "libgomp" in ours[0]
