"""Timing: the contenders of one row, measured in interleaved repeats; medians kept.

measure() times every contender of a row round-robin (A, B, C, A, B, C, ...) after one
warm-up call each, so all of them see the same noise from the machine, and keeps the
median of each one's samples.  A sample repeats the call until it lasts at least
``min_sample`` seconds, so timer resolution and call overhead do not dominate tiny
shapes; a row whose rounds would outlast its budget runs fewer of them.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

MIN_REPEATS = 3
MAX_CALLS_PER_SAMPLE = 10_000
# Pause before each timed sample: the previous contender's thread pool spin-waits after
# its call (libgomp spins ~300k iterations by default, XLA's pool spins too) and would
# take a core from the next contender's threads on a 2-core machine.
SETTLE_SECONDS = 0.001
# XLA's pool keeps spinning much longer: a 2-thread call right after a JAX call ran
# slower after a 1 ms or 10 ms pause and at full speed after 50 ms.
JAX_SETTLE_SECONDS = 0.05
# A warm-up call this many times longer than min_sample settles the sample size (one
# call) by itself: no second calibration call for the large shapes.
SLOW_CALL_SAMPLES = 20
# A time whose samples' interquartile range exceeds this fraction of their median is
# marked noisy ("~" in the table): on 2 shared cores another process can take a core
# from an OpenMP team for a whole scheduler time slice.
NOISY_IQR = 0.25


@dataclass
class Contender:
    """One timed callable of a row."""

    name: str  # "fastloss", "fallback", a peer name, or "<what> yardstick"
    fn: Callable[[], object]
    allocates: bool  # the call allocates its (large) output every time
    note: str = ""
    settle: float = SETTLE_SECONDS  # untimed pause after its samples (its threads spin)


def time_calls(fn, number):
    """Seconds per call of ``number`` calls of ``fn`` in a row."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def measure(contenders, repeats, min_sample, budget, notes=None):
    """Time the contenders round-robin; returns ``(kept contenders, stats, repeats)``.

    Each contender gets one warm-up call (JIT compilation, first-touch of out buffers),
    then one timed call that sets how many calls make a sample (at least ``min_sample``
    seconds; a slow warm-up call decides that alone).  Then ``repeats`` rounds of
    A, B, C, ..., fewer (at least MIN_REPEATS) when they would take longer than
    ``budget`` seconds (0: no limit).  Each sample starts after an untimed pause, the
    previous contender's ``settle``, so the previous contender's threads are idle.
    A contender whose warm-up raises is dropped (noted), unless it is the first
    (fastloss), whose error propagates.
    ``stats[name]`` has the per-call median, quartiles, minimum and every sample, in
    seconds.
    """
    notes = [] if notes is None else notes
    kept, numbers, per_round = [], [], 0.0
    for i, c in enumerate(contenders):
        try:
            t = time_calls(c.fn, 1)  # warm-up
            if t < SLOW_CALL_SAMPLES * min_sample:  # else one call per sample anyway
                t = time_calls(c.fn, 1)
        except Exception as exc:  # noqa: BLE001
            if i == 0:
                raise
            notes.append(f"{c.name} dropped: {type(exc).__name__}: {exc}")
            continue
        number = int(min(MAX_CALLS_PER_SAMPLE, max(1, math.ceil(min_sample / max(t, 1e-9)))))
        kept.append(c)
        numbers.append(number)
        per_round += number * t
    if budget and per_round * repeats > budget:
        repeats = max(min(MIN_REPEATS, repeats), int(budget / per_round))
    samples = [[] for _ in kept]
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for j, c in enumerate(kept):
                time.sleep(max(SETTLE_SECONDS, kept[j - 1].settle))
                samples[j].append(time_calls(c.fn, numbers[j]))
    finally:
        if gc_was_enabled:
            gc.enable()
    stats = {}
    for c, number, s in zip(kept, numbers, samples):
        q = statistics.quantiles(s, n=4) if len(s) > 1 else [s[0]] * 3
        stats[c.name] = {
            "median": statistics.median(s), "q1": q[0], "q3": q[2], "min": min(s),
            "calls_per_sample": number, "samples": s,
            "noisy": (q[2] - q[0]) > NOISY_IQR * statistics.median(s),
        }
    return kept, stats, repeats
