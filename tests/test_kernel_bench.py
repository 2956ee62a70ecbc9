"""The C kernel harness (benchmarks/kernel_bench.py) builds, checks and times every
kernel at every SIMD level this CPU has, on a tiny shape.

It needs the source tree and a C compiler, and skips without them (e.g. when the tests
run against an installed wheel).  The first build compiles the kernels (minutes); it is
kept in build/kernel_bench/ and reused while the sources are unchanged.
"""
import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "kernel_bench.py"
KERNELS = ["logsumexp", "softmax_out", "log_softmax_out", "ce_fwd", "ce_grad_inplace"]


def _cpu_flags():
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    for line in (cpuinfo.read_text() if cpuinfo.exists() else "").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


@pytest.fixture(scope="module")
def harness():
    if not SCRIPT.exists() or not (ROOT / "src" / "csrc" / "fl_kernels.h").exists():
        pytest.skip("needs the source tree")
    spec = importlib.util.spec_from_file_location("kernel_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.compiler() is None:
        pytest.skip("needs a C compiler")
    return module


def test_harness_runs_every_kernel_and_level(harness):
    harness.build()
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--shapes", "16x256", "--repeats", "1", "--min-ms", "1"],
        check=True, capture_output=True, text=True, timeout=120).stdout
    header = [line for line in out.splitlines() if line.startswith("#")]
    lines = [line.split() for line in out.splitlines() if line and not line.startswith("#")]
    assert lines[0][:4] == ["shape", "dtype", "kernel", "simd"]
    levels_line = next(line for line in header if line.startswith("# levels:"))
    levels = levels_line.split("(")[0].split()[2:]   # "(skipped ...: avx512)" follows
    flags = _cpu_flags()
    if flags is not None:
        want = ["baseline"]
        if {"avx2", "fma", "bmi2"} <= flags:
            want.append("avx2")
            if {"avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512cd"} <= flags:
                want.append("avx512")
        assert levels == want
    has_ref = "# reference: avx2" in header
    rows = {(shape, dtype, kernel, simd): values
            for shape, dtype, kernel, simd, *values in lines[1:]}
    expected = {("16x256", dtype, kernel, level)
                for dtype in ("float32", "float64") for kernel in KERNELS for level in levels}
    if has_ref:
        expected |= {("16x256", dtype, "reference", "avx2") for dtype in ("float32", "float64")}
    assert set(rows) == expected   # no read/copy yardsticks below 32 MiB
    for key, (ns, gelem, ratio, spread, calls) in rows.items():
        assert float(ns) > 0 and float(gelem) > 0 and int(calls) >= 1, key
        assert float(spread) >= 0, key
        assert (ratio == "-") if not has_ref else float(ratio) > 0, key
