"""The command line (``fastloss-bench``, ``python -m fastloss.bench``) and ``bench()``.

Parses the flags into runner.Settings, runs, prints the table to stdout (progress and
warnings go to stderr), and writes --json / --plot.  bench() is the same from Python.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

from fastloss.bench import machine, report
from fastloss.bench.cases import SPEC_BY_NAME, SPECS, function_names
from fastloss.bench.peers import DEFAULT_PEERS, PEER_NAMES, Peers
from fastloss.bench.runner import GRID_DEFAULTS, Settings, run
from fastloss.bench.yardsticks import COPY_BYTES


def _csv(value):
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse_shapes(value):
    """``"1024x100,64x10"`` -> ``((1024, 100), (64, 10))``."""
    shapes = []
    for item in _csv(value):
        try:
            shape = tuple(int(d) for d in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad shape {item!r}: use e.g. 1024x100") from None
        if len(shape) < 1 or any(d < 1 for d in shape):
            raise argparse.ArgumentTypeError(f"bad shape {item!r}: dimensions must be >= 1")
        shapes.append(shape)
    return tuple(shapes)


def _functions(value):
    names = _csv(value)
    unknown = [n for n in names if n not in SPEC_BY_NAME]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown function(s) {', '.join(unknown)}; known: {', '.join(function_names())}")
    return names


def _dtypes(value):
    names = _csv(value)
    bad = [n for n in names if n not in ("float32", "float64")]
    if bad:
        raise argparse.ArgumentTypeError(f"dtypes are float32 and float64; got {bad}")
    return names


def _threads(value):
    try:
        threads = tuple(int(t) for t in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad thread list {value!r}: use e.g. 1,2") from None
    if not threads or any(t < 1 for t in threads):
        raise argparse.ArgumentTypeError("thread counts must be >= 1")
    return threads


def _peers(value):
    if value.strip().lower() in ("", "none"):
        return ()
    if value.strip().lower() == "all":
        return PEER_NAMES
    names = _csv(value)
    bad = [n for n in names if n not in PEER_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(f"peers are {', '.join(PEER_NAMES)} (or none/all)")
    return names


def _positive_int(value):
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def make_parser():
    d, q, f = GRID_DEFAULTS["default"], GRID_DEFAULTS["quick"], GRID_DEFAULTS["full"]
    p = argparse.ArgumentParser(
        prog="fastloss-bench",
        description="Time fastloss against its peers (PyTorch by default; --peers all adds "
                    "torch.compile, JAX, SciPy, scikit-learn and fastloss's NumPy "
                    "fallback) and against the memory's copy bandwidth.  The default run "
                    f"({', '.join(d['functions'])}; float32; 1 and all threads) takes about "
                    "two minutes on two cores.  The table goes to stdout, progress to stderr.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="one small shape, fewer repeats: a smoke test in seconds")
    size.add_argument("--full", action="store_true",
                      help="every function, output mode and peer, float32 and float64, "
                           "long rows up to 128k classes: most of an hour")
    p.add_argument("--functions", type=_functions, metavar="NAMES",
                   help="comma-separated function names (default: the main four; "
                        "--full: all; see --list)")
    p.add_argument("--shapes", type=parse_shapes, metavar="SHAPES",
                   help='shapes for every function, e.g. "1024x100,64x10" '
                        "(default: each family's own)")
    p.add_argument("--dtypes", type=_dtypes, metavar="DTYPES",
                   help="float32,float64 (default: float32; --full: both for the softmax "
                        "and cross-entropy families)")
    p.add_argument("--threads", type=_threads, metavar="N,...",
                   help=f"thread counts (default: 1,{machine.cores()})")
    p.add_argument("--all-outputs", action="store_true", default=None,
                   help="time every output mode (fresh, out=, in place); default: the "
                        "reused output only (fresh where there is none); on with --full")
    p.add_argument("--peers", type=_peers, metavar="NAMES",
                   help=f"peers to include when installed: {','.join(PEER_NAMES)}, all, none "
                        f"(default: {','.join(DEFAULT_PEERS)}; --full: all)")
    p.add_argument("--repeats", type=_positive_int, metavar="R",
                   help=f"interleaved repeats per row (default {d['repeats']}, "
                        f"{q['repeats']} with --quick, {f['repeats']} with --full)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help=f"time budget per row: rows whose repeats would take longer run "
                        f"fewer (at least 3); 0 = no limit (default {d['budget']}, "
                        f"{q['budget']} with --quick, {f['budget']} with --full)")
    p.add_argument("--min-sample", type=float, metavar="SECONDS",
                   help=f"minimum duration of one timed sample: the call repeats inside it "
                        f"(default {d['min_sample']}, {q['min_sample']} with --quick)")
    p.add_argument("--backend", choices=("cython", "numpy"),
                   help="fastloss backend to time (default: the active one)")
    p.add_argument("--simd", choices=machine.SIMD_LEVELS, metavar="LEVEL",
                   help="SIMD level of every side: fastloss's, PyTorch's "
                        "ATEN_CPU_CAPABILITY (default/avx2/avx512) and JAX's "
                        "--xla_cpu_max_isa (SSE4_2/AVX2/AVX512); one of "
                        f"{', '.join(machine.SIMD_LEVELS)} (default: each side's best)")
    p.add_argument("--copy-mb", type=_positive_int, default=COPY_BYTES // 2**20, metavar="MB",
                   help=f"size of each array of the bandwidth yardsticks "
                        f"(default {COPY_BYTES // 2**20})")
    p.add_argument("--json", metavar="FILE", help="write every figure and the machine facts "
                                                  "as JSON to FILE")
    p.add_argument("--plot", metavar="FILE.png", help="draw the results to FILE.png "
                                                      "(needs matplotlib)")
    p.add_argument("--from-json", metavar="FILE",
                   help="run nothing: print the table of a saved --json run (and draw it "
                        "with --plot)")
    p.add_argument("--list", action="store_true",
                   help="list the functions (present in fastloss or not) and peers, and exit")
    return p


def _list(file):
    import fastloss

    peers = Peers()
    fallback = peers["fallback"]["module"] if "fallback" in peers else None
    print(f"{'function':<45}{'fastloss':<10}{'fallback':<10}family", file=file)
    for s in SPECS:
        have = "yes" if getattr(fastloss, s.name, None) is not None else "no"
        fb = "yes" if getattr(fallback, s.name, None) is not None else "no"
        print(f"{s.name:<45}{have:<10}{fb:<10}{s.family}", file=file)
    for name in PEER_NAMES:
        print(f"peer {name}: {peers.versions.get(name) or 'not available'}", file=file)


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def _warn_if_extension_missing(progress):
    """Say loudly when the compiled kernels are absent: the table would then time the
    NumPy fallback.  The usual cause is running ``python -m fastloss.bench`` from the
    source tree without an in-place build, which puts the uncompiled ``fastloss/``
    first on sys.path; the installed ``fastloss-bench`` command does not."""
    import fastloss
    from fastloss import _runtime

    if _runtime._kernels is None:
        progress(
            "WARNING: fastloss's compiled extension is not loaded (imported from "
            f"{os.path.dirname(fastloss.__file__)}): 'fastloss' rows time the NumPy fallback. "
            "Install the package and run `fastloss-bench`, or `python -m fastloss.bench` "
            "from outside the source tree.")


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.list:
        _list(sys.stdout)
        return 0
    if args.simd:
        import fastloss

        available = fastloss.available_simd_levels()
        if available and args.simd not in available:
            parser.error(f"--simd {args.simd}: this CPU has {', '.join(available)}")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib (pip install matplotlib)")
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
        print(report.format_table(result), flush=True)
        if args.plot:
            report.plot(result, args.plot)
            _stderr(f"wrote {args.plot}")
        return 0

    _warn_if_extension_missing(_stderr)
    settings = Settings(
        grid="quick" if args.quick else "full" if args.full else "default",
        functions=args.functions, shapes=args.shapes, dtypes=args.dtypes,
        threads=args.threads, all_variants=args.all_outputs, peers=args.peers,
        repeats=args.repeats, budget=args.budget, min_sample=args.min_sample,
        copy_bytes=args.copy_mb * 2**20, backend=args.backend, simd=args.simd)
    result = run(settings, progress=_stderr)
    print(report.format_table(result), flush=True)
    if args.json:
        report.write_json(result, args.json)
        _stderr(f"wrote {args.json}")
    if args.plot:
        report.plot(result, args.plot)
        _stderr(f"wrote {args.plot}")
    return 130 if result["interrupted"] else 0


def bench(functions=None, shapes=None, dtypes=None, threads=None, repeats=None, grid="default",
          peers=None, all_outputs=None, json_file=None, file=None, progress=None, simd=None):
    """Run the benchmark and print the table (to ``file``, default stdout).

    Parameters
    ----------
    functions, shapes, dtypes, threads, repeats, peers, simd
        As the command line's flags (``fastloss-bench --help``); None: the grid's default.
    grid : str
        ``"default"``, ``"quick"`` or ``"full"``.
    all_outputs : bool, optional
        Every output mode (fresh, out=, in place), not only the reused output.
    json_file : str, optional
        Also write every figure as JSON there.
    file : file-like, optional
        Where the table goes (default stdout).
    progress : callable or False, optional
        Called with one line per step; default: print to stderr; False: silent.

    Returns
    -------
    dict
        The results, as written to ``json_file``.
    """
    result = run(Settings(
        grid=grid,
        functions=None if functions is None else tuple(functions),
        shapes=None if shapes is None else tuple(tuple(s) for s in shapes),
        dtypes=None if dtypes is None else tuple(dtypes),
        threads=None if threads is None else tuple(threads),
        all_variants=all_outputs, repeats=repeats,
        peers=None if peers is None else tuple(peers), simd=simd),
        progress=_stderr if progress is None else (progress or None))
    print(report.format_table(result), file=file or sys.stdout)
    if json_file:
        report.write_json(result, json_file)
    return result
