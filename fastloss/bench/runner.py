"""The run: settings, the plan of rows, and the loop that times them into a result dict.

run() resolves the settings (the grid's defaults for whatever was not given), measures
the yardsticks' bandwidth at each thread count, then, for each (shape, dtype) input
pool, each function, output mode and thread count, times one row: fastloss, the
yardsticks for DRAM-sized rows, and the peers.  The dict it returns is what --json
writes (schema in benchmarks/README.md) and what report.format_table prints.
"""
from __future__ import annotations

import gc
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from fastloss.bench import machine
from fastloss.bench.cases import (GRIDS, MAIN_FUNCTIONS, SPEC_BY_NAME, InputPool,
                                  function_names, rows_classes)
from fastloss.bench.peers import (DEFAULT_PEERS, PEER_NAMES, Ctx, Peers, accepts,
                                  build_contenders)
from fastloss.bench.timing import measure
from fastloss.bench.yardsticks import COPY_BYTES, Yardsticks, bandwidth, in_row_contenders

SCHEMA = "fastloss-bench/2"

# Per grid: what a run uses for every setting not given.  The default grid keeps two
# minutes on two cores: the main functions, one output mode each, PyTorch as the peer,
# fewer repeats and a tighter per-row budget than --full.
GRID_DEFAULTS = {
    "default": {"functions": MAIN_FUNCTIONS, "peers": DEFAULT_PEERS, "all_variants": False,
                "repeats": 9, "budget": 2.0, "min_sample": 0.005},
    "quick": {"functions": MAIN_FUNCTIONS, "peers": DEFAULT_PEERS, "all_variants": False,
              "repeats": 5, "budget": 0.4, "min_sample": 0.002},
    "full": {"functions": tuple(function_names()), "peers": PEER_NAMES, "all_variants": True,
             "repeats": 15, "budget": 8.0, "min_sample": 0.005},
}


@dataclass
class Settings:
    """What to run.  None means: the grid's default (GRID_DEFAULTS, cases.GRIDS)."""

    grid: str = "default"  # "default", "quick" or "full"
    functions: tuple | None = None
    shapes: tuple | None = None  # for every function; None: each family's grid shapes
    dtypes: tuple | None = None  # for every function; None: each family's grid dtypes
    threads: tuple | None = None  # None: 1 and the core count
    all_variants: bool | None = None  # every output mode, or only Spec.main_variant
    peers: tuple | None = None
    repeats: int | None = None
    budget: float | None = None  # seconds per row; 0 = no limit
    min_sample: float | None = None
    copy_bytes: int = COPY_BYTES
    backend: str | None = None
    simd: str | None = None  # "baseline", "avx2", "avx512": every side (machine.apply_simd)

    def resolved(self):
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {tuple(GRIDS)}; got {self.grid!r}")
        s = Settings(**self.__dict__)
        for key, value in GRID_DEFAULTS[s.grid].items():
            if getattr(s, key) is None:
                setattr(s, key, value)
        if s.threads is None:
            s.threads = tuple(sorted({1, machine.cores()}))
        return s

    def as_json(self):
        return {
            "grid": self.grid, "functions": list(self.functions),
            "threads": list(self.threads), "all_variants": self.all_variants,
            "repeats": self.repeats, "row_budget_seconds": self.budget,
            "min_sample_seconds": self.min_sample, "peers_requested": list(self.peers),
            "simd": self.simd, "copy_bytes": self.copy_bytes,
            "shapes": None if self.shapes is None else [list(s) for s in self.shapes],
            "dtypes": None if self.dtypes is None else list(self.dtypes),
        }


def plan(settings):
    """The rows to run, grouped so that each input pool is built once:
    ``([((shape, dtype), [(spec, variant), ...]), ...], skipped)``.  Functions missing
    from ``fastloss`` are returned apart, in ``skipped``."""
    import fastloss

    groups, skipped = {}, []
    grid = GRIDS[settings.grid]
    for name in settings.functions:
        spec = SPEC_BY_NAME[name]
        if getattr(fastloss, name, None) is None:
            skipped.append({"function": name, "reason": "not in fastloss (yet)"})
            continue
        shapes = settings.shapes or grid[spec.family][0]
        dtypes = settings.dtypes or grid[spec.family][1]
        variants = spec.variants if settings.all_variants else (spec.main_variant,)
        for shape in shapes:
            for dtype in dtypes:
                key = (tuple(shape), np.dtype(dtype).name)
                groups.setdefault(key, []).extend((spec, v) for v in variants)
    return list(groups.items()), skipped


def run(settings=None, progress=None, **kwargs):
    """Run the benchmark; returns the result dict (what ``--json`` writes).

    ``settings`` is a :class:`Settings`, or give its fields as keyword arguments.
    ``progress`` is called with one line of text per step (the CLI sends it to stderr).
    """
    import fastloss

    settings = (settings or Settings(**kwargs)).resolved()
    say = progress or (lambda msg: None)
    if settings.backend:
        fastloss.set_backend(settings.backend)
    saved_simd = fastloss.get_simd_level()
    if settings.simd:
        for w in machine.apply_simd(settings.simd):  # before Peers imports torch and jax
            say(f"warning: {w}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        say(f"note: load average {load:.2f} before the run: other processes share the "
            "cores, expect noisy times (marked ~)")
    peers = Peers(settings.peers)
    for name, why in peers.missing.items():
        say(f"peer {name} not available ({why.splitlines()[0][:100]})")
    if tuple(settings.peers) == DEFAULT_PEERS and not any(p in peers for p in DEFAULT_PEERS):
        # A fresh `pip install ".[bench]"` has no PyTorch: the default run still compares,
        # against fastloss's own NumPy fallback.
        say("the default peers are not installed: comparing against the NumPy fallback")
        peers = Peers(DEFAULT_PEERS + ("fallback",))
    simd = machine.simd_levels(settings.simd, peers)
    if (settings.simd and simd.get("torch")
            and simd["torch"].lower() != machine.ATEN_CPU_CAPABILITY[settings.simd]):
        say(f"warning: torch runs at {simd['torch']}, not {settings.simd}")
    groups, skipped = plan(settings)
    for s in skipped:
        say(f"skipping {s['function']}: {s['reason']}")

    result = {
        "schema": SCHEMA,
        "created": None,  # set below, with the machine facts
        "argv": list(sys.argv),
        "settings": settings.as_json(),
        "machine": {**machine.machine_info(), "simd_levels": simd},
        "fastloss_config": machine.fastloss_config(),
        "versions": {"numpy": np.__version__, **peers.versions},
        "peers_missing": peers.missing,
        "yardstick_note": None,
        "copy_bandwidth": [],
        "read_bandwidth": [],
        "results": [],
        "skipped": skipped,
        "interrupted": False,
    }
    result["created"] = result["machine"]["date"]

    saved_threads = fastloss.get_num_threads()
    ctx = Ctx(peers, progress=say)
    n_rows = sum(len(rows) for _, rows in groups) * len(settings.threads)
    row_no = 0
    try:
        yardsticks = Yardsticks(settings.copy_bytes)
        result["yardstick_note"] = yardsticks.note
        if yardsticks.note:
            say(f"note: {yardsticks.note}")
        for what in ("copy", "read"):
            result[f"{what}_bandwidth"] = bandwidth(what, settings.threads, yardsticks,
                                                    progress=say)
        start_bw = {(b["threads"], what): b["gb_per_s"]
                    for what in ("copy", "read") for b in result[f"{what}_bandwidth"]}
        for (shape, dtype), rows in groups:
            pool = InputPool(shape, dtype)
            for spec, variant in rows:
                fl_fn = getattr(fastloss, spec.name)
                for threads in settings.threads:
                    row_no += 1
                    where = {"function": spec.name, "variant": variant, "shape": list(shape),
                             "dtype": dtype, "threads": threads}
                    label = (f"[{row_no}/{n_rows}] {spec.name} {variant} "
                             f"{'x'.join(map(str, shape))} {dtype} {threads}t")
                    if variant != "fresh" and accepts(fl_fn, "out") is False:
                        skipped.append({**where,
                                        "reason": "fastloss function has no out= parameter"})
                        continue
                    t0 = time.perf_counter()
                    row = run_row(spec, pool, variant, threads, ctx, fl_fn, settings,
                                  start_bw, yardsticks, label, say)
                    if isinstance(row, dict):
                        row["wall_seconds"] = time.perf_counter() - t0
                        result["results"].append(row)
                    else:
                        skipped.append({**where, "reason": f"fastloss call failed: {row}"})
            del pool
            gc.collect()
    except KeyboardInterrupt:
        result["interrupted"] = True
        say("interrupted: reporting the rows measured so far")
    finally:
        fastloss.set_num_threads(saved_threads)
        if settings.simd and saved_simd:
            fastloss.set_simd_level(saved_simd)
    if "torch.compile" in peers and peers["torch.compile"]["isa"]:
        simd["inductor"] = peers["torch.compile"]["isa"]
    if hasattr(os, "getloadavg"):
        result["machine"]["loadavg_end"] = list(os.getloadavg())
    return result


def run_row(spec, pool, variant, threads, ctx, fl_fn, settings, start_bw, yardsticks,
            label, say):
    """One row: the result dict, or the error's text when the fastloss call fails."""
    import fastloss

    fastloss.set_num_threads(threads)
    ctx.peers.set_num_threads(threads)
    ctx.threads = threads
    notes = []
    ystick_names = {}
    try:
        contenders = build_contenders(spec, pool, variant, ctx, fl_fn, notes)
        ystick_names, ystick_contenders = in_row_contenders(spec, pool, threads, yardsticks)
        contenders[1:1] = ystick_contenders  # right after fastloss
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kept, stats, repeats = measure(
                contenders, settings.repeats, settings.min_sample, settings.budget, notes)
    except Exception as exc:  # noqa: BLE001 - the row is skipped, the run goes on
        say(f"{label}: fastloss failed: {type(exc).__name__}: {exc}")
        return f"{type(exc).__name__}: {exc}"
    finally:
        contenders = ystick_contenders = None  # free in-place copies and out= buffers now
    in_row = {}  # what -> GB/s of the yardstick timed in this row's round-robin
    for name, (what, ybytes) in ystick_names.items():
        s = stats.pop(name, None)  # None: dropped (noted), the start-of-run figure stands
        if s is not None:
            in_row[what] = ybytes / s["median"] / 1e9
    kept = [k for k in kept if k.name not in ystick_names]
    nbytes = spec.bytes(*rows_classes(pool.shape), pool.dtype.itemsize)
    fl = stats["fastloss"]["median"]
    gbps = nbytes / fl / 1e9
    bw = in_row.get("copy", start_bw.get((threads, "copy")))
    bw_read = in_row.get("read", start_bw.get((threads, "read")))
    times_ms = {name: s["median"] * 1e3 for name, s in stats.items()}
    others = {name: ms for name, ms in times_ms.items() if name != "fastloss"}
    best = min(others, key=others.get) if others else None
    row = {
        "function": spec.name,
        "variant": variant,
        "shape": list(pool.shape),
        "dtype": pool.dtype.name,
        "threads": threads,
        "bytes": nbytes,
        "bytes_model": spec.bytes_doc,
        "repeats": repeats,
        "times_ms": times_ms,
        "speedup": {name: ms / times_ms["fastloss"] for name, ms in others.items()},
        "best_peer": best,
        "allocates": {k.name: k.allocates for k in kept},
        "contender_notes": {k.name: k.note for k in kept if k.note},
        "stats_ms": {
            name: {"q1": s["q1"] * 1e3, "q3": s["q3"] * 1e3, "min": s["min"] * 1e3,
                   "calls_per_sample": s["calls_per_sample"], "noisy": s["noisy"],
                   "samples": [x * 1e3 for x in s["samples"]]}
            for name, s in stats.items()},
        "gb_per_s": gbps,
        "pct_copy_bandwidth": 100.0 * gbps / bw if bw else None,
        "pct_read_bandwidth": 100.0 * gbps / bw_read if spec.read_only and bw_read else None,
        # the yardsticks' GB/s timed in this row's round-robin ({} when the %s use the
        # start-of-run figures: rows below yardsticks.IN_ROW_YARDSTICK_DIVISOR's size)
        "in_row_bandwidth": in_row,
        "notes": notes,
    }
    say(f"{label}: fastloss {times_ms['fastloss']:.3f} ms"
        + (f", {best} {others[best]:.3f} ms" if best else "")
        + "".join(f"; {n}" for n in notes))
    return row
