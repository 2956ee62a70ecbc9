"""Plot a benchmark JSON (``python -m fastloss.bench --json`` or run_suite.py) to a PNG.

    python benchmarks/plot.py bench.json -o bench.png [--against torch] [--threads 1]

One row of panels per shape.  Left: speed-up of fastloss over the baseline
(``--against``, default the NumPy fallback; >1 means fastloss is faster, log scale).
Right: fastloss's effective bandwidth as % of the measured bandwidth at the same
thread count: the copy bandwidth, or the read bandwidth for calls that write no N x C
array (cross_entropy, logsumexp).  Bars: one per (dtype, threads) for each function and output mode.
Needs matplotlib; without it the script says so and exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import math
import sys


def _label(r):
    return r["function"] if r["variant"] == "fresh" else f"{r['function']} {r['variant']}"


def _series_key(r):
    return (r["dtype"], r["threads"])


def _pct_bandwidth(r):
    """% of the row's yardstick: read bandwidth for read-only calls, else copy bandwidth."""
    pct_read = r.get("pct_read_bandwidth")
    return pct_read if pct_read is not None else r.get("pct_copy_bandwidth")


def collect(result, against="fallback", threads=None, dtypes=None):
    """``{shape: {"labels": [...], "series": {(dtype, thr): {label: (speedup, pct)}}}}``."""
    shapes = {}
    for r in result["results"]:
        if threads and r["threads"] not in threads:
            continue
        if dtypes and r["dtype"] not in dtypes:
            continue
        shape = tuple(r["shape"])
        entry = shapes.setdefault(shape, {"labels": [], "series": {}})
        label = _label(r)
        if label not in entry["labels"]:
            entry["labels"].append(label)
        x = r["speedup"].get(against)
        entry["series"].setdefault(_series_key(r), {})[label] = (x, _pct_bandwidth(r))
    # smallest arrays first
    return dict(sorted(shapes.items(), key=lambda kv: (math.prod(kv[0]), kv[0])))


def draw(result, path, against="fallback", threads=None, dtypes=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    data = collect(result, against, threads, dtypes)
    if not data:
        raise SystemExit("no rows to plot (none measured, or all filtered out)")
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
            speed = [values.get(lab, (None, None))[0] for lab in labels]
            pct = [values.get(lab, (None, None))[1] for lab in labels]
            name = f"{key[0]}, {key[1]} thread{'s' if key[1] > 1 else ''}"
            # bars start at 1 (no difference): up when fastloss is faster, down when slower
            ax_x.bar([x for x, v in zip(xs, speed) if v], [v - 1.0 for v in speed if v], width,
                     bottom=1.0, color=colors[j % len(colors)], label=name)
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
        ax_x.set_ylabel(f"{against} ms / fastloss ms")
        ax_x.set_title(f"{title}: speed-up over {against} (>1: fastloss faster)")
        ax_bw.axhline(100.0, color="black", linewidth=0.8)
        ax_bw.set_ylabel("% of bandwidth (copy; read for read-only calls)")
        ax_bw.set_title(f"{title}: fastloss GB/s as % of memory bandwidth")
        for ax in (ax_x, ax_bw):
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
        ax_x.legend(fontsize=7, loc="best")
    cfg = result.get("fastloss_config", {})
    bw = ", ".join(f"{b['threads']} thr {b['gb_per_s']:.1f} GB/s" for b in
                   result.get("copy_bandwidth", []))
    fig.suptitle(f"fastloss {cfg.get('fastloss', '?')} ({cfg.get('backend', '?')} backend) on "
                 f"{result.get('machine', {}).get('cpu_model', '?')}; copy bandwidth: {bw}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", help="benchmark JSON file")
    p.add_argument("-o", "--output", help="PNG file (default: the JSON's name with .png)")
    p.add_argument("--against", default="fallback",
                   help="baseline of the speed-up: fallback (default), scipy, torch, jax, sklearn")
    p.add_argument("--threads", type=lambda v: {int(t) for t in v.split(",")},
                   help="only these thread counts, e.g. 1,2")
    p.add_argument("--dtypes", type=lambda v: set(v.split(",")), help="e.g. float32")
    args = p.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot.py: matplotlib is not installed (pip install matplotlib); no plot drawn. "
              f"The figures are all in {args.json}.", file=sys.stderr)
        return 1
    with open(args.json) as f:
        result = json.load(f)
    out = args.output or (args.json[:-5] if args.json.endswith(".json") else args.json) + ".png"
    draw(result, out, args.against, args.threads, args.dtypes)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
