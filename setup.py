"""Build the compiled code: two Cython extensions.

  fastloss._lib.kernels        the library.  Sources: src/kernels.pyx (OpenMP loops,
                               Cython) and src/csrc/*.c (SIMD kernels, compiled once
                               per instruction set and chosen at run time by dispatch.c).
  fastloss.bench._yardsticks   benchmark only: the memory copy/read yardsticks of
                               fastloss-bench (src/_yardsticks.pyx), with the same flags
                               and OpenMP choice as the kernels' baseline build.  The
                               library never imports it; without it the benchmark falls
                               back to NumPy copies and says so.

Flags and why:
  -O3                          vectorize the kernel loops
  -fno-trapping-math           lets gcc turn the clamps/selects of the exp polynomial
  -fno-math-errno              into vector blends; changes no inf/NaN result
  (never -ffast-math: it would break inf/NaN handling and the exp rounding trick;
   never -march=native: wheels must run on any x86-64 -- see src/csrc/dispatch.c)
  -fno-wrapv                   src/csrc/*.c only, after Python's own CFLAGS, which carry
                               -fwrapv (CPython's C relies on wrapping signed integers;
                               Cython's output keeps it, the kernels do not need it).
                               With -fwrapv gcc schedules the one-read block loop
                               (fl_online_run_*, src/csrc/fl_math_avx512.h) worse.
                               (The short rows' setup loop is written to vectorize
                               under either flag: fl_ce_lanes_setup in
                               src/csrc/cross_entropy_impl.h.)
  -fopenmp                     if a probe program compiles and links with it; else the
                               build continues single-threaded (-fopenmp-simd keeps the
                               `#pragma omp simd` vectorization hints)

Environment:
  FASTLOSS_DISABLE_OPENMP=1    build without OpenMP even where it is available
  FASTLOSS_BUILD_JOBS=N        compile the C sources N at a time (default: CPU count).
                               Each kernels_<isa>.c takes ~1-2 minutes (every template
                               instantiated for one instruction set); run side by side
                               they no longer add up.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def _compiler_accepts(compiler, code, compile_args, link_args):
    """Compile and link `code` with the given flags in a scratch directory."""
    tmp = tempfile.mkdtemp(prefix="fastloss-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        objects = compiler.compile([src], output_dir=tmp, extra_postargs=compile_args)
        compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


C_KERNEL_ARGS = ["-fno-wrapv"]   # see the module docstring


def _is_kernel_source(src):
    """The SIMD kernels' C sources (src/csrc/*.c), not Cython's output."""
    return os.path.basename(os.path.dirname(os.path.abspath(src))) == "csrc"


def _parallel_compile(self, sources, output_dir=None, macros=None, include_dirs=None,
                      debug=0, extra_preargs=None, extra_postargs=None, depends=None):
    """CCompiler.compile, but the objects are compiled concurrently, largest first."""
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def compile_one(obj):
        src, ext = build[obj]
        post = extra_postargs + (C_KERNEL_ARGS if _is_kernel_source(src) else [])
        self._compile(obj, src, ext, cc_args, post, pp_opts)

    jobs = int(os.environ.get("FASTLOSS_BUILD_JOBS", "0")) or os.cpu_count() or 1
    by_cost = sorted(objects, key=lambda obj: "kernels_" not in build[obj][0])
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(compile_one, by_cost))   # list() re-raises a failed compile
    return objects


class BuildExt(build_ext):
    def build_extensions(self):
        compiler = self.compiler
        if compiler.compiler_type == "unix":
            compiler.compile = _parallel_compile.__get__(compiler)
        unix = compiler.compiler_type == "unix"
        compile_args = ["-O3", "-fno-trapping-math", "-fno-math-errno"] if unix else ["/O2"]
        link_args = []
        want_openmp = os.environ.get("FASTLOSS_DISABLE_OPENMP", "") not in ("1", "true", "yes")
        omp_compile = ["-fopenmp"] if unix else ["/openmp"]
        omp_link = ["-fopenmp"] if unix else []
        if want_openmp and _compiler_accepts(compiler, OPENMP_PROBE, omp_compile, omp_link):
            compile_args += omp_compile
            link_args += omp_link
            print("fastloss: building with OpenMP", file=sys.stderr)
        else:
            reason = "disabled by FASTLOSS_DISABLE_OPENMP" if not want_openmp else "the probe failed"
            print(f"fastloss: building WITHOUT OpenMP ({reason}): single-threaded",
                  file=sys.stderr)
            if unix:
                compile_args += ["-fopenmp-simd", "-Wno-unknown-pragmas"]
        for ext in self.extensions:
            ext.extra_compile_args = compile_args + list(ext.extra_compile_args)
            ext.extra_link_args = link_args + list(ext.extra_link_args)
        super().build_extensions()


C_SOURCES = [
    "src/csrc/dispatch.c",
    "src/csrc/kernels_baseline.c",
    "src/csrc/kernels_avx2.c",
    "src/csrc/kernels_avx512.c",
]

extensions = [
    Extension(
        "fastloss._lib.kernels",
        sources=["src/kernels.pyx"] + C_SOURCES,
        include_dirs=["src", "src/csrc"],
        libraries=["m"] if os.name == "posix" else [],
        depends=[os.path.join("src/csrc", f) for f in os.listdir("src/csrc") if f.endswith(".h")]
        + ["src/softmax.pxi", "src/cross_entropy.pxi", "src/elementwise.pxi", "src/fl_kernels.pxd"],
    ),
    Extension("fastloss.bench._yardsticks", sources=["src/_yardsticks.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={"language_level": 3},
    ),
    cmdclass={"build_ext": BuildExt},
)
