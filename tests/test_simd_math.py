"""Accuracy of the vectorizable exp/log in src/csrc/fl_math.h, in ulp.

The kernels' exp and log are inline C that no Python function exposes alone, so this
test compiles tests/ulp_sweep.c against the header with the system C compiler -- once
for the baseline instruction set and once with FMA (what the AVX2/AVX-512 kernels get:
gcc contracts a*b+c into fma there, which changes rounding) -- and checks the worst
error of a sweep over the whole input range.  It needs the source tree and a compiler,
and skips without them (e.g. when the tests run against an installed wheel).

FASTLOSS_ULP_CC names another compiler command whose programs run here, e.g.
"aarch64-linux-gnu-gcc -static" with qemu registered for aarch64 binaries (.ci/aarch64):
then only the "baseline" build is swept, for that compiler's target (the x86 builds'
flags are x86's).
"""
import os
import pathlib
import shlex
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER_DIR = ROOT / "src" / "csrc"

# Worst errors measured with the sweep (ulp); the bounds leave a little room for
# other compilers' choices of contraction.
# Measured (baseline / with FMA): expf 0.97 / 1.00, expf_nonpos 0.97 / 0.99,
# logf 1.22 / 1.15, exp 1.21 / 0.93, exp_nonpos 1.19 / 0.95, log 1.38 / 1.39.
# aarch64 (gcc contracts into fma there too): expf 1.00, expf_nonpos 0.99, logf 1.15,
# exp 0.93, exp_nonpos 0.95, log 1.39.
MAX_ULP = {
    "expf": 1.05,
    "expf_nonpos": 1.05,  # above the documented flush to 0 below log(FLT_MIN)
    "logf": 1.5,
    "exp": 1.3,
    "exp_nonpos": 1.3,
    "log": 2.0,
}

FLAGS = {
    "baseline": [],
    "fma": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx2", "-mfma"],
}
# The AVX-512 forms of fl_math_avx512.h (the rows' exp loops of kernels_avx512.c),
# swept only in the "avx512" build, down through the subnormal range (they do not
# flush).  Measured: 0.90 (float), 0.94 (double).
MAX_ULP_AVX512 = {
    "expf_nonpos_avx512": 1.0,
    "exp_nonpos_avx512": 1.0,
}
# The AVX2 forms of fl_math_avx2.h (kernels_avx2.c), swept in the "fma" and "avx512"
# builds above their flush to 0 (checked below it).  Measured: 0.92 (float; 0.917 over
# every float of [log(FLT_MIN), 0]), 0.94 (double).
MAX_ULP_AVX2 = {
    "expf_nonpos_avx2": 1.0,
    "exp_nonpos_avx2": 1.0,
}
CPU_FLAGS = {"fma": ["avx2", "fma"], "avx512": ["avx512f", "avx512dq", "fma"]}


CROSS_CC = shlex.split(os.environ.get("FASTLOSS_ULP_CC", ""))


@pytest.fixture(scope="module")
def compiler():
    cc = CROSS_CC or [shutil.which("cc") or shutil.which("gcc")]
    if cc[0] is None or not (HEADER_DIR / "fl_math.h").exists():
        pytest.skip("needs the source tree and a C compiler")
    return cc


@pytest.mark.parametrize("isa", list(FLAGS))
def test_ulp_bounds(compiler, isa, tmp_path):
    if CROSS_CC and isa != "baseline":
        pytest.skip("FASTLOSS_ULP_CC: the baseline build only")
    if isa in CPU_FLAGS:
        cpuinfo = pathlib.Path("/proc/cpuinfo")
        text = cpuinfo.read_text() if cpuinfo.exists() else ""
        missing = [f for f in CPU_FLAGS[isa] if f" {f}" not in text]
        if missing:
            pytest.skip(f"CPU without {', '.join(missing)}")
    exe = tmp_path / "ulp_sweep"
    subprocess.run(
        [*compiler, "-O2", "-fno-trapping-math", "-fno-math-errno", *FLAGS[isa],
         f"-I{HEADER_DIR}", str(ROOT / "tests" / "ulp_sweep.c"), "-o", str(exe), "-lm"],
        check=True)
    lines = subprocess.run([str(exe), "61"], check=True, capture_output=True,
                           text=True).stdout.split("\n")
    results = {name: (float(err), ok == "1")
               for name, err, ok in (line.split() for line in lines if line)}
    bounds = {**MAX_ULP, **(MAX_ULP_AVX512 if isa == "avx512" else {}),
              **(MAX_ULP_AVX2 if isa in ("fma", "avx512") else {})}
    assert set(results) == set(bounds)
    for name, (err, specials_ok) in results.items():
        assert specials_ok, f"{name}: wrong result for inf, NaN, 0 or a flushed input"
        assert err <= bounds[name], f"{name}: {err} ulp > {bounds[name]} ({isa})"
