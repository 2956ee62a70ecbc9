"""Cross-entropy of a Dask array larger than memory, and the Dask path's overhead.

    python benchmarks/dask_cross_entropy.py [--part big,overhead] [--rows 262144]
                                            [--classes 32000] [--row-chunk 2048]
                                            [--memory-limit 4GiB] [--json FILE]

``big``: ``fastloss.cross_entropy`` (``"mean"``) of float32 logits of shape
``(rows, classes)`` -- at the defaults 262144 x 32000, 33.6 GB -- generated block by block
on a ``LocalCluster`` of 2 worker processes x 1 thread (each with ``--memory-limit``):
standard normal logits from a generator seeded by the block's index, uniform labels,
never the whole array in memory.  In the same graph, the float64 reference of every
block (plain NumPy: ``m + log(sum(exp(x - m))) - x_t`` in float64) is summed, so both
see the same generated blocks.  Reported: the wall time of the compute, the peak
resident set size of each worker process (``getrusage`` maxrss), the loss, the
reference and their relative difference.

``overhead``: the same call on an in-memory ``(2048, classes)`` float32 array, NumPy in
and out, against ``da.from_array`` of it (row chunks of ``--overhead-chunk``) computed
with Dask's threaded scheduler; the median of ``--repeats`` calls of each.  The ratio is
Dask time / NumPy time.  Timings are only meaningful on an otherwise idle machine.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np

import fastloss

SEED = 20261207


def _cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown"


def _maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def logits_block(classes, block_id=None, block_info=None):
    """The block's logits: float32 standard normal, seeded by the block's index."""
    rows = block_info[None]["chunk-shape"][0]
    rng = np.random.default_rng((SEED, block_id[0]))
    return rng.standard_normal((rows, classes), dtype=np.float32)


def labels_block(classes, block_id=None, block_info=None):
    rows = block_info[None]["chunk-shape"][0]
    return np.random.default_rng((SEED, block_id[0], 1)).integers(0, classes, rows)


def reference_sum(x, t):
    """Float64 summed cross-entropy of one block, plain NumPy, as a (1, 1) cell;
    ``t``: the block's labels as a column."""
    x64 = x.astype(np.float64)
    m = x64.max(axis=1, keepdims=True)
    x64 -= m
    picked = np.take_along_axis(x64, t, axis=1)[:, 0]
    np.exp(x64, out=x64)
    loss = np.log(x64.sum(axis=1)) - picked
    return np.full((1, 1), loss.sum())


def big(args):
    import dask
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    chunks = (tuple(min(args.row_chunk, args.rows - i)
                    for i in range(0, args.rows, args.row_chunk)),)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      memory_limit=args.memory_limit, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        logits = da.map_blocks(logits_block, args.classes, dtype=np.float32,
                               chunks=chunks + ((args.classes,),))
        labels = da.map_blocks(labels_block, args.classes, dtype=np.int64, chunks=chunks)
        loss = fastloss.cross_entropy(logits, labels)
        cells = da.map_blocks(reference_sum, logits, labels[:, None], dtype=np.float64,
                              chunks=(tuple(1 for _ in chunks[0]), (1,)))
        reference = cells.sum() / args.rows
        start = time.perf_counter()
        loss, reference = dask.compute(loss, reference)
        seconds = time.perf_counter() - start
        peaks = client.run(_maxrss_bytes)
    return {
        "shape": [args.rows, args.classes], "dtype": "float32",
        "bytes": args.rows * args.classes * 4, "row_chunk": args.row_chunk,
        "memory_limit": args.memory_limit, "seconds": seconds,
        "peak_rss_per_worker_bytes": sorted(peaks.values()),
        "loss": float(loss), "reference_float64": float(reference),
        "relative_difference": abs(float(loss) - float(reference)) / abs(float(reference)),
    }


def overhead(args):
    import dask.array as da

    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((2048, args.classes), dtype=np.float32)
    t = rng.integers(0, args.classes, 2048)
    lazy = fastloss.cross_entropy(da.from_array(x, chunks=(args.overhead_chunk, -1)), t)

    def median_time(f):
        f()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    numpy_s = median_time(lambda: fastloss.cross_entropy(x, t))
    dask_s = median_time(lambda: lazy.compute(scheduler="threads"))
    return {"shape": [2048, args.classes], "dtype": "float32",
            "row_chunk": args.overhead_chunk, "repeats": args.repeats,
            "numpy_seconds": numpy_s, "dask_seconds": dask_s, "ratio": dask_s / numpy_s}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="big,overhead")
    parser.add_argument("--rows", type=int, default=262144)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--row-chunk", type=int, default=2048)
    parser.add_argument("--memory-limit", default="4GiB")
    parser.add_argument("--overhead-chunk", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    results = {"cpu": _cpu_model(),
               "fastloss_threads": fastloss.get_num_threads()}
    for part in args.part.split(","):
        results[part] = {"big": big, "overhead": overhead}[part](args)
        print(part, json.dumps(results[part], indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
