"""The report of a run: the table (at most WIDTH columns), the JSON file and the plot.

format_table()  a header that says what every number means, then one line per row:
                function, output mode, shape, dtype, threads, fastloss ms, the fastest
                peer of the row and its ms, their ratio, and %copy.
write_json()    every figure of the result dict (schema in benchmarks/README.md).
plot()          a PNG per shape: best peer ms / fastloss ms and %copy, per function;
                needs matplotlib (an optional dependency: a clear error without it).
"""
from __future__ import annotations

import json
import math
import textwrap

from fastloss.bench.cases import function_names
from fastloss.bench.machine import simd_line
from fastloss.bench.timing import NOISY_IQR

WIDTH = 120
FUNCTION_COLUMN = 24  # longer names get a line of their own above their row
HEADER = ["function", "output", "shape", "dtype", "thr", "fastloss ms", "best peer",
          "peer ms", "peer/fastloss", "%copy"]
LEFT = {0, 1, 2, 3, 6}  # left-aligned columns: the names


def fmt_ms(ms):
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3g}"


def _wrap(text, indent="  ", more="    "):
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=more,
                         break_on_hyphens=False) or [indent]


def _header_lines(result, rows):
    cfg = result.get("fastloss_config", {})
    m = result.get("machine", {})
    lines = ["fastloss benchmark"]
    commit = m.get("fastloss_commit")
    lines += _wrap(f"fastloss {cfg.get('fastloss', '?')}, backend {cfg.get('backend', '?')}"
                   f" (extension: {cfg.get('extension', '?')})"
                   + (f", commit {commit[:12]}{'-dirty' if commit.endswith('-dirty') else ''}"
                      if commit else "")
                   + f"; {m.get('date', result.get('created', ''))}")
    family = (f" (family {m['cpu_family']}, model {m['cpu_model_number']})"
              if "cpu_family" in m and "cpu_model_number" in m else "")
    lines += _wrap(f"CPU: {m.get('cpu_model', '?')}{family}, {m.get('cpu_count', '?')} cores"
                   f" ({' '.join(m.get('simd_flags', []))})")
    line = simd_line(m.get("simd_levels"))
    if line:
        lines += _wrap(line.strip())
    versions = ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items())
    if versions:
        lines += _wrap(f"versions: {versions}")
    if "loadavg_start" in m:
        end = m.get("loadavg_end")
        lines += _wrap(f"load average (1 min): {m['loadavg_start'][0]:.2f} at the start"
                       + (f", {end[0]:.2f} at the end" if end else "")
                       + " (the run itself adds about 1 per thread)")
    for what in ("copy", "read"):
        figures = result.get(f"{what}_bandwidth", [])
        if figures:
            lines += _wrap(f"{what} yardstick: " + ", ".join(
                f"{b['gb_per_s']:.1f} GB/s at {b['threads']} thread(s)" for b in figures)
                + f" ({figures[0]['method']})")
    if result.get("yardstick_note"):
        lines += _wrap(f"NOTE: {result['yardstick_note']}")
    ran = sorted({p for r in rows for p in r["times_ms"] if p != "fastloss"})
    lines += _wrap(
        "ms = median time of one call over interleaved repeats (the contenders take turns).")
    lines += _wrap(
        f"best peer = the fastest other contender (run: {', '.join(ran) or 'none'}); "
        "* = it allocates its output where fastloss reuses one.")
    lines += _wrap(
        "peer/fastloss = best peer ms / fastloss ms: >1 = fastloss is that many times faster, "
        "<1 = slower.")
    lines += _wrap(
        "%copy = bytes the call must move / fastloss time, as % of the copy yardstick's GB/s "
        "at the same thread count.")
    lines += _wrap(
        "output: fresh = allocated by every call; out= = preallocated, reused; "
        "out=logits = gradient written over the logits.")
    lines += _wrap(
        f"~ = noisy: the samples' interquartile range exceeds {NOISY_IQR:.0%} of their median.")
    if result.get("interrupted"):
        lines.append("  INTERRUPTED: partial results.")
    return lines


def _cells(r):
    stats = r.get("stats_ms", {})

    def ms(name):
        mark = "~" if stats.get(name, {}).get("noisy") else ""
        return fmt_ms(r["times_ms"].get(name)) + mark

    best = r.get("best_peer")
    if best:
        star = "*" if r["allocates"].get(best) and not r["allocates"].get("fastloss") else ""
        peer = [best, ms(best) + star, f"{r['speedup'][best]:.2f}"]
    else:
        peer = ["-", "-", "-"]
    pct = r.get("pct_copy_bandwidth")
    return [r["function"], r["variant"], "x".join(map(str, r["shape"])), r["dtype"],
            str(r["threads"]), ms("fastloss"), *peer,
            "-" if pct is None else f"{pct:.0f}%"]


def format_table(result):
    """The table (a str, no line wider than WIDTH) with the header that says what every
    number means."""
    rows = result["results"]
    lines = _header_lines(result, rows)
    order = {name: i for i, name in enumerate(function_names())}
    body = [_cells(r) for r in sorted(rows, key=lambda r: (
        order.get(r["function"], 1e9), r["function"], r["variant"] != "fresh", r["variant"],
        r["shape"][-1], r["shape"], r["dtype"], r["threads"]))]
    if not body:
        lines += ["", "(no rows: no benchmarked function exists in fastloss yet)"]
    else:
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(HEADER)]
        widths[0] = min(widths[0], FUNCTION_COLUMN)

        def fmt(cells):
            return "  ".join(c.ljust(w) if i in LEFT else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        lines += ["", fmt(HEADER), fmt(["-" * w for w in widths])]
        for cells in body:
            if len(cells[0]) > widths[0]:
                lines.append(cells[0])
                cells = ["", *cells[1:]]
            lines.append(fmt(cells))
    notes = sorted({(r["function"], n) for r in rows for n in r["notes"]})
    skipped = result.get("skipped", [])
    if notes or skipped:
        lines.append("")
    for fn, n in notes:
        lines += _wrap(f"note: {fn}: {n}")
    for s in skipped:
        where = f" {s['variant']}" if "variant" in s else ""
        if "shape" in s:
            where += f" {'x'.join(map(str, s['shape']))} {s['dtype']}"
        if "threads" in s:
            where += f" threads={s['threads']}"
        lines += _wrap(f"skipped: {s['function']}{where}: {s['reason']}")
    return "\n".join(lines)


def write_json(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
        f.write("\n")


def _label(r):
    return r["function"] if r["variant"] == "fresh" else f"{r['function']} {r['variant']}"


def collect(result):
    """``{shape: {"labels": [...], "series": {(dtype, thr): {label: (ratio, pct)}}}}``,
    smallest arrays first; ratio = best peer ms / fastloss ms (None without a peer)."""
    shapes = {}
    for r in result["results"]:
        entry = shapes.setdefault(tuple(r["shape"]), {"labels": [], "series": {}})
        label = _label(r)
        if label not in entry["labels"]:
            entry["labels"].append(label)
        ratio = r["speedup"].get(r.get("best_peer"))
        entry["series"].setdefault((r["dtype"], r["threads"]), {})[label] = (
            ratio, r.get("pct_copy_bandwidth"))
    return dict(sorted(shapes.items(), key=lambda kv: (math.prod(kv[0]), kv[0])))


def plot(result, path):
    """Draw the result to ``path`` (PNG).  Raises RuntimeError without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib (pip install matplotlib); the figures "
                           "are all in the table and in --json") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    data = collect(result)
    if not data:
        raise RuntimeError("no rows to plot")
    series = sorted({k for d in data.values() for k in d["series"]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    most = max(len(d["labels"]) for d in data.values())
    fig, axes = plt.subplots(len(data), 2, squeeze=False,
                             figsize=(max(12, 1.1 * most * 2), 3.6 * len(data)))
    width = 0.8 / max(1, len(series))
    for (shape, d), (ax_x, ax_bw) in zip(data.items(), axes):
        labels = d["labels"]
        for j, key in enumerate(series):
            values = d["series"].get(key, {})
            xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
            ratio = [values.get(lab, (None, None))[0] for lab in labels]
            pct = [values.get(lab, (None, None))[1] for lab in labels]
            name = f"{key[0]}, {key[1]} thread{'s' if key[1] > 1 else ''}"
            # bars start at 1 (no difference): up when fastloss is faster, down when slower
            ax_x.bar([x for x, v in zip(xs, ratio) if v], [v - 1.0 for v in ratio if v],
                     width, bottom=1.0, color=colors[j % len(colors)], label=name)
            ax_bw.bar([x for x, v in zip(xs, pct) if v is not None],
                      [v for v in pct if v is not None], width,
                      color=colors[j % len(colors)], label=name)
        title = "x".join(map(str, shape))
        ax_x.set_yscale("log")
        lo, hi = ax_x.get_ylim()
        ax_x.set_ylim(min(lo, 0.8), max(hi, 1.25))
        ax_x.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax_x.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax_x.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax_x.axhline(1.0, color="black", linewidth=0.8)
        ax_x.set_ylabel("best peer ms / fastloss ms")
        ax_x.set_title(f"{title}: best peer / fastloss (>1: fastloss faster)")
        ax_bw.axhline(100.0, color="black", linewidth=0.8)
        ax_bw.set_ylabel("% of copy bandwidth")
        ax_bw.set_title(f"{title}: fastloss, % of copy bandwidth")
        for ax in (ax_x, ax_bw):
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
        ax_x.legend(fontsize=7, loc="best")
    m = result.get("machine", {})
    simd = (m.get("simd_levels") or {}).get("fastloss") or "no extension"
    peers = ", ".join(sorted({p for r in result["results"] for p in r["times_ms"]} - {"fastloss"}))
    fig.suptitle(f"fastloss {result.get('fastloss_config', {}).get('fastloss', '?')} ({simd}) "
                 f"on {m.get('cpu_model', '?')}, {m.get('date', '')}; peers: {peers or 'none'}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)
