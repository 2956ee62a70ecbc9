"""linear_cross_entropy (loss and the three gradients) beside PyTorch, time and memory.

    python benchmarks/linear_cross_entropy.py [--shape 4096,1024,32000] [--dtype float32]
                                              [--repeats 3] [--peers fastloss,torch,torch-lce]

Contenders, each in its own subprocess so that its peak resident memory is its own:

* ``fastloss``: ``fastloss.linear_cross_entropy`` (chunked, ``chunk_size="auto"``).
* ``fallback``: ``fastloss.fallback.linear_cross_entropy`` (the whole logits; opt-in,
  it needs several N x V arrays).
* ``torch``: ``F.linear`` + ``F.cross_entropy``, ``backward()`` for the three gradients.
* ``torch-lce``: ``F.linear_cross_entropy`` with ``backward()`` (when this torch has it).

Reported per contender: the median wall time of ``--repeats`` calls (after one warm-up),
the peak resident set size of the process (``getrusage`` maxrss) minus its size once
the inputs exist, and for the NumPy contenders tracemalloc's peak of one call (what
NumPy allocates). Inputs: standard normal hidden states, weights scaled by 1/sqrt(H),
uniform labels. Timings are only meaningful on an otherwise idle machine.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

PEERS = ("fastloss", "fallback", "torch", "torch-lce")


def _maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def _inputs(n, h, v, dtype):
    import numpy as np

    # Drawn in their own dtype, scaled in place: no float64 temporaries raise the
    # resident high-water mark before the baseline is taken.
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((n, h), dtype=dtype)
    weight = rng.standard_normal((v, h), dtype=dtype)
    weight *= weight.dtype.type(1 / np.sqrt(h))
    bias = np.zeros(v, dtype)
    target = rng.integers(0, v, n)
    return hidden, weight, bias, target


def _step(peer, hidden, weight, bias, target):
    """One call of ``peer``: a function computing the loss and the three gradients."""
    if peer in ("fastloss", "fallback"):
        import fastloss

        f = fastloss.linear_cross_entropy if peer == "fastloss" \
            else fastloss.fallback.linear_cross_entropy
        return lambda: f(hidden, weight, target, bias=bias)
    import torch
    import torch.nn.functional as F

    h = torch.from_numpy(hidden).requires_grad_()
    w = torch.from_numpy(weight).requires_grad_()
    b = torch.from_numpy(bias).requires_grad_()
    t = torch.from_numpy(target)
    if peer == "torch-lce" and not hasattr(F, "linear_cross_entropy"):
        return None

    def run():
        h.grad = w.grad = b.grad = None
        if peer == "torch":
            loss = F.cross_entropy(F.linear(h, w, b), t)
        else:
            loss = F.linear_cross_entropy(h, w, t, linear_bias=b)
        loss.backward()
        return loss

    return run


def worker(peer, n, h, v, dtype, repeats):
    hidden, weight, bias, target = _inputs(n, h, v, dtype)
    step = _step(peer, hidden, weight, bias, target)
    if step is None:
        return {"peer": peer, "skipped": "not available"}
    baseline = _maxrss_bytes()
    step()                                             # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result = {"peer": peer, "median_s": statistics.median(times),
              "extra_maxrss_bytes": _maxrss_bytes() - baseline}
    if peer in ("fastloss", "fallback"):
        tracemalloc.start()
        step()
        result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4096,1024,32000", help="N,H,V")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peers", default="fastloss,torch,torch-lce",
                        help=f"comma-separated among {','.join(PEERS)}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n, h, v = (int(x) for x in args.shape.split(","))
    if args.worker:
        print(json.dumps(worker(args.worker, n, h, v, args.dtype, args.repeats)))
        return
    print(f"N={n} H={h} V={v} {args.dtype}; the logits alone: "
          f"{n * v * (4 if args.dtype == 'float32' else 8) / 2**20:.0f} MiB; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'peer':<10} {'median':>10} {'extra maxrss':>14} {'tracemalloc peak':>17}")
    for peer in args.peers.split(","):
        if peer not in PEERS:
            parser.error(f"unknown peer {peer!r}")
        proc = subprocess.run([sys.executable, __file__, "--worker", peer, "--shape", args.shape,
                               "--dtype", args.dtype, "--repeats", str(args.repeats)],
                              capture_output=True, text=True)
        if proc.returncode:
            print(f"{peer:<10} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        if "skipped" in r:
            print(f"{peer:<10} {r['skipped']}")
            continue
        peak = r.get("tracemalloc_peak_bytes")
        print(f"{peer:<10} {r['median_s'] * 1e3:>8.1f} ms {r['extra_maxrss_bytes'] / 2**20:>10.0f} MiB"
              f" {'' if peak is None else f'{peak / 2**20:>13.0f} MiB'}")


if __name__ == "__main__":
    main()
