"""The full benchmark grid: every function x shapes x dtypes x thread counts, with peers.

    python benchmarks/run_suite.py                          # everything (tens of minutes)
    python benchmarks/run_suite.py --out suite.json --plot suite.png
    python benchmarks/run_suite.py --quick                  # the grid's smallest shapes only

All the machinery (cases, timing, bandwidth yardstick, JSON) is ``fastloss.bench``'s;
this script only chooses a larger grid than ``python -m fastloss.bench`` and writes the
JSON (and, with ``--plot``, the PNG of benchmarks/plot.py).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

try:
    import fastloss  # noqa: F401
except ImportError:  # run from a checkout without installing: use the repository's copy
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastloss import bench  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# Rows x classes.  Small batches show the per-call overhead (and that OpenMP must not
# start for them); the large ones are far past the caches and show memory bandwidth.
ROW_SHAPES = (
    (64, 10),          # a tiny batch: overhead only
    (4096, 100),       # 1.6 MB (float32): cache-resident
    (65536, 10),       # many short rows: the layout that needs several rows per vector
    (8192, 1000),      # ImageNet-like, 32 MB at float32: right at the L3/mmap threshold
    (2048, 32000),     # a 32k vocabulary, 262 MB at float32
    (512, 128256),     # a 128k vocabulary (Llama 3)
)
ELEMENTWISE_SHAPES = ((256, 256), (4096, 4096))
DTYPES = ("float32", "float64")

GRID = {
    "softmax": (ROW_SHAPES, DTYPES),
    "cross_entropy": (ROW_SHAPES, DTYPES),
    "other": (ELEMENTWISE_SHAPES, DTYPES),
}
QUICK_GRID = {
    "softmax": (((64, 10), (4096, 100)), ("float32",)),
    "cross_entropy": (((64, 10), (4096, 100)), ("float32",)),
    "other": (((256, 256),), ("float32",)),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="JSON file (default ./bench-suite-<time>.json)")
    p.add_argument("--plot", metavar="PNG", help="also draw the plot (benchmarks/plot.py)")
    p.add_argument("--quick", action="store_true", help="the grid's smallest shapes only")
    p.add_argument("--functions", type=bench._functions, metavar="NAMES")
    p.add_argument("--threads", type=bench._threads, metavar="N,...",
                   help=f"thread counts (default: 1 .. {bench._cores()})")
    p.add_argument("--repeats", type=bench._positive_int, metavar="R")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="time budget per row (see python -m fastloss.bench --help)")
    p.add_argument("--peers", type=bench._peers, default=bench.PEER_NAMES, metavar="NAMES")
    p.add_argument("--backend", choices=("cython", "numpy"))
    args = p.parse_args(argv)

    out = args.out
    if out is None:  # bench*.json at the repository root is git-ignored
        out = f"bench-suite-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    threads = args.threads or tuple(range(1, bench._cores() + 1))
    settings = bench.Settings(
        functions=args.functions, threads=threads, repeats=args.repeats,
        quick=args.quick, peers=args.peers, budget=args.budget, backend=args.backend,
        grid=QUICK_GRID if args.quick else GRID)

    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    result = bench.run(settings, progress=progress)
    result["suite"] = "benchmarks/run_suite.py" + (" --quick" if args.quick else "")
    bench.write_json(result, out)
    print(bench.format_table(result), flush=True)
    progress(f"wrote {out}")
    if args.plot:
        sys.path.insert(0, HERE)
        import plot

        plot.main([out, "-o", args.plot])
    return 130 if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
