"""Kernel harness: time the C kernel tables in ns per element beside a plain reference loop.

    python benchmarks/kernel_bench.py [--shapes 64x16384,2048x32000] [--dtypes float32]
        [--simd avx2,avx512] [--kernels logsumexp,ce_grad_inplace] [--repeats N]
        [--min-ms MS]

Compiles benchmarks/kernel_bench.c with src/csrc/dispatch.c and kernels_<isa>.c (the
flags setup.py gives the kernel sources) into build/kernel_bench/, recompiling only the
objects whose inputs changed (a hash of the source, every header of src/csrc, the
compiler and the flags), then runs it and prints its table.  What the harness measures
and how: the comment at the top of kernel_bench.c; the columns: benchmarks/README.md.
"""
import argparse
import concurrent.futures
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "src" / "csrc"
HARNESS = ROOT / "benchmarks" / "kernel_bench.c"
BUILD = ROOT / "build" / "kernel_bench"
# Largest first: the kernel files take minutes each, the other two seconds.
SOURCES = [CSRC / "kernels_avx512.c", CSRC / "kernels_avx2.c", CSRC / "kernels_baseline.c",
           CSRC / "dispatch.c", HARNESS]
# setup.py's flags for src/csrc/*.c (-fno-wrapv comes after Python's -fwrapv there;
# nothing adds -fwrapv here, but it is kept so the command lines match).
CFLAGS = ["-O3", "-fno-trapping-math", "-fno-math-errno", "-fno-wrapv", "-fopenmp",
          f"-I{ROOT / 'src'}", f"-I{CSRC}"]
LDFLAGS = ["-fopenmp", "-lm"]


def compiler():
    """The C compiler: $CC, else cc or gcc on PATH; None without one."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return cc.split() if cc else None


def _key(cc, src, headers):
    h = hashlib.sha256(" ".join(cc + CFLAGS).encode())
    for path in [src, *headers]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build(verbose=True):
    """Compile what changed (in parallel) and link; the path of the executable."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC)")
    BUILD.mkdir(parents=True, exist_ok=True)
    headers = sorted(CSRC.glob("*.h"))
    exe = BUILD / "kernel_bench"
    todo, objects = [], []
    for src in SOURCES:
        obj = BUILD / (src.stem + ".o")
        stamp = obj.with_suffix(".key")
        key = _key(cc, src, headers)
        objects.append(obj)
        if not (obj.exists() and stamp.exists() and stamp.read_text() == key):
            todo.append((src, obj, stamp, key))

    def compile_one(job):
        src, obj, stamp, key = job
        if verbose:
            print(f"kernel_bench: compiling {src.relative_to(ROOT)}", file=sys.stderr)
        stamp.unlink(missing_ok=True)
        subprocess.run(cc + CFLAGS + ["-c", str(src), "-o", str(obj)], check=True)
        stamp.write_text(key)

    jobs = int(os.environ.get("FASTLOSS_BUILD_JOBS", "0")) or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(compile_one, todo))   # list() re-raises a failed compile
    if todo or not exe.exists():
        subprocess.run(cc + [*map(str, objects), "-o", str(exe)] + LDFLAGS, check=True)
    return exe


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Time the C kernels (ns per element) beside a plain AVX2 reference loop.")
    parser.add_argument("--shapes", help="ROWSxCLASSES,... (classes a multiple of 16); "
                        "default 64x16384,8x16384,2048x32000,512x128256")
    parser.add_argument("--dtypes", help="float32,float64 (default both)")
    parser.add_argument("--simd", help="baseline,avx2,avx512 (default: all; levels this "
                        "CPU lacks are skipped)")
    parser.add_argument("--kernels", help="logsumexp,softmax_out,log_softmax_out,ce_fwd,"
                        "ce_grad_inplace (default all)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 9)")
    parser.add_argument("--min-ms", type=float, help="least duration of one sample "
                        "(default 20)")
    parser.add_argument("--build-only", action="store_true", help="compile, do not run")
    args = parser.parse_args(argv)
    try:
        exe = build()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"kernel_bench: build failed: {exc}", file=sys.stderr)
        return 1
    if args.build_only:
        print(exe)
        return 0
    cmd = [str(exe)]
    for name in ("shapes", "dtypes", "simd", "kernels", "repeats", "min_ms"):
        value = getattr(args, name)
        if value is not None:
            cmd += ["--" + name.replace("_", "-"), str(value)]
    sys.stdout.flush()
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
