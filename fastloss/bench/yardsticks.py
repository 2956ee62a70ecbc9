"""Memory-bandwidth yardsticks: what this machine's memory moves, to compare calls with.

A softmax over an array larger than the caches cannot beat the time the memory takes to
read its input and write its output.  The table's "%copy" column is the bytes a call
must move (cases.Spec.bytes) per second, as a percentage of the copy yardstick's.

  copy   stream_copy: a memcpy between two arrays of COPY_BYTES (256 MiB, 8x a 32 MiB
         L3: DRAM), one slice per thread; 2 x COPY_BYTES per call (read + write, the
         STREAM convention).
  read   stream_read: the float64 sum of one such array, one slice per thread; the
         bound of calls that write no N x C array (cross_entropy, logsumexp).

Both come from the benchmark-only extension fastloss.bench._yardsticks (source
src/_yardsticks.pyx; baseline compiler flags, OpenMP threads).  When it is missing the
yardsticks fall back to np.copyto / np.sum, single-threaded, and say so in their
method string (and the run prints a note).  The plain hand-written SIMD loop the
kernels are compared with belongs to the C harness (benchmarks/kernel_bench.c), which
times kernels without Python.

Rows whose N x C data is at least COPY_BYTES / IN_ROW_YARDSTICK_DIVISOR (64 MiB by
default: past the caches, bound by DRAM) also time the yardsticks inside their own
round-robin, right after fastloss, and their %copy uses that figure.  Why: what ran
just before a call changes its speed (a PyTorch call leaves hundreds of MB of dirty
cache lines and freed pages behind), the yardstick's included, and the host's bandwidth
drifts over a run; right after fastloss, a yardstick sees the same context as fastloss.
"""
from __future__ import annotations

import math
import statistics

import numpy as np

from fastloss.bench.timing import Contender, time_calls

COPY_BYTES = 256 * 2**20
COPY_REPEATS = 7
IN_ROW_YARDSTICK_DIVISOR = 4
EXTENSION = "fastloss.bench._yardsticks"


def load_extension():
    """The compiled yardsticks module, or None when it was not built."""
    try:
        from fastloss.bench import _yardsticks
    except ImportError:
        return None
    return _yardsticks


class Yardsticks:
    """The two arrays of ``nbytes`` (written once, so no timed call sees a page fault)
    and the calls that stream them."""

    def __init__(self, nbytes=COPY_BYTES, extension="load"):
        self.src = np.ones(nbytes // 8)
        self.dst = np.zeros_like(self.src)
        self.ext = load_extension() if extension == "load" else extension

    @property
    def note(self):
        """Why the figures may understate the memory (None when they do not)."""
        if self.ext is None:
            return (f"{EXTENSION} is not built: the yardsticks are NumPy's "
                    "single-threaded copy and sum")
        if not self.ext.OPENMP:
            return f"{EXTENSION} was built without OpenMP: single-threaded yardsticks"
        return None

    def call(self, what, threads):
        """``(fn, method, threads_used, bytes per call)`` of one yardstick."""
        src, dst, ext = self.src, self.dst, self.ext
        if what == "copy":
            nbytes = 2 * src.nbytes
            if ext is not None:
                fn = lambda: ext.stream_copy(dst.view(np.int8), src.view(np.int8), threads)
        else:
            nbytes = src.nbytes
            if ext is not None:
                fn = lambda: ext.stream_read(src, threads)
        if ext is not None:
            used = threads if ext.OPENMP else 1
            method = f"{EXTENSION}.stream_{what}"
            return fn, method + ("" if used == threads else " (no OpenMP)"), used, nbytes
        if what == "copy":
            plain, method = (lambda: np.copyto(dst, src)), "numpy.copyto"
        else:
            plain, method = (lambda: np.sum(src)), "numpy.sum"
        return plain, method + (" (single-threaded)" if threads > 1 else ""), 1, nbytes


def bandwidth(what, threads_list, yardsticks, repeats=COPY_REPEATS, progress=None):
    """Median GB/s of one yardstick (``what``: "copy" or "read") at each thread count,
    timed back to back: ``[{threads, method, threads_used, bytes_per_<what>, gb_per_s,
    best_gb_per_s}, ...]``."""
    out = []
    for t in threads_list:
        fn, method, used, nbytes = yardsticks.call(what, t)
        fn()
        times = [time_calls(fn, 1) for _ in range(repeats)]
        row = {
            "threads": t, "method": method, "threads_used": used,
            f"bytes_per_{what}": nbytes,
            "gb_per_s": nbytes / statistics.median(times) / 1e9,
            "best_gb_per_s": nbytes / min(times) / 1e9,
        }
        out.append(row)
        if progress:
            progress(f"{what} bandwidth, {t} thread(s): {row['gb_per_s']:.1f} GB/s ({method})")
    return out


def in_row_contenders(spec, pool, threads, yardsticks):
    """The yardstick contenders a DRAM-sized row times in its round-robin:
    ``({contender name: (what, bytes per call)}, [Contender, ...])``; none for smaller
    rows."""
    data_bytes = math.prod(pool.shape) * pool.dtype.itemsize
    if data_bytes < yardsticks.src.nbytes // IN_ROW_YARDSTICK_DIVISOR:
        return {}, []
    wanted = ("copy", "read") if spec.read_only else ("copy",)
    names, contenders = {}, []
    for what in wanted:
        fn, _method, _used, nbytes = yardsticks.call(what, threads)
        name = f"{what} yardstick"
        names[name] = (what, nbytes)
        contenders.append(Contender(name, fn, False))
    return names, contenders
