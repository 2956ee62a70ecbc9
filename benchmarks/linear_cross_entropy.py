"""linear_cross_entropy (loss and the three gradients) beside PyTorch, time and memory.

    python benchmarks/linear_cross_entropy.py [--shape 4096,1024,32000] [--dtype float32]
                                              [--repeats 3] [--threads 1,2]
                                              [--peers fastloss,gemms,torch,torch-lce]

Contenders, each in its own subprocess so that its peak resident memory is its own:

* ``fastloss``: ``fastloss.linear_cross_entropy`` (chunked, ``chunk_size="auto"``).
* ``gemms``: the yardstick, the three GEMMs alone that fastloss must do, with NumPy's
  matmul: ``hidden @ weight.T`` (the logits), ``d_logits @ weight`` (grad_hidden) and
  ``d_logits.T @ hidden`` (grad_weight), chunk by chunk over the rows with the chunk
  ``chunk_size="auto"`` picks (``fastloss._linear_cross_entropy.auto_chunk_rows``),
  into preallocated buffers: one chunk of logits, grad_hidden and grad_weight.
  ``d_logits`` is one preallocated random chunk, read by every chunk. So it times the
  GEMM work of fastloss's own schedule (the (N, V) logits would not fit: 4.2 GB at
  (8192, 2048, 128256) float32) and nothing else: no cross-entropy kernel, no bias,
  and grad_weight's product overwritten by each chunk where fastloss adds it to a sum
  (NumPy's matmul cannot accumulate into its ``out=``), which counts against fastloss.
  Its memory figures are its buffers, first touched in the warm-up call.
* ``fallback``: ``fastloss.fallback.linear_cross_entropy`` (the whole logits; opt-in,
  it needs several N x V arrays).
* ``torch``: ``F.linear`` + ``F.cross_entropy``, ``backward()`` for the three gradients.
* ``torch-lce``: ``F.linear_cross_entropy`` with ``backward()`` (when this torch has it).

Reported per contender: the median wall time of ``--repeats`` calls (after one warm-up),
the peak resident set size of the process (``getrusage`` maxrss) minus its size once
the inputs exist, and for the NumPy contenders tracemalloc's peak of one call (what
NumPy allocates). Inputs: standard normal hidden states, weights scaled by 1/sqrt(H),
uniform labels. Timings are only meaningful on an otherwise idle machine.

When both ran, ``fastloss / gemms`` is printed: fastloss's median over the yardstick's
(issue 27 asks for at most 1.15).

``--threads 1,2`` runs every contender once per thread count. Each child then gets
``OMP_NUM_THREADS`` in its environment (read when the OpenMP and BLAS runtimes load)
and, once its libraries are imported, ``threadpoolctl.threadpool_limits(N)`` on every
BLAS and OpenMP runtime it loaded, ``fastloss.set_num_threads(N)`` and, for the
PyTorch contenders, ``torch.set_num_threads(N)``. Without it each child keeps the
runtimes' defaults (usually every core).
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

PEERS = ("fastloss", "gemms", "fallback", "torch", "torch-lce")


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


def _gemms(hidden, weight):
    """The yardstick's call: the three GEMMs of ``linear_cross_entropy`` with its
    ``"auto"`` chunk of rows, into buffers preallocated here (see the module docstring)."""
    import numpy as np

    from fastloss._linear_cross_entropy import auto_chunk_rows

    n, v = hidden.shape[0], weight.shape[0]
    rows = auto_chunk_rows(n, v, hidden.itemsize)
    logits = np.empty((rows, v), hidden.dtype)
    # Random, not zeros: the values a GEMM reads must be ordinary floats (no shortcut,
    # no subnormals), like a real gradient of the logits.
    d_logits = np.random.default_rng(1).standard_normal((rows, v), dtype=hidden.dtype)
    grad_hidden = np.empty_like(hidden)
    grad_weight = np.empty_like(weight)

    def run():
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            h_c, dz = hidden[start:stop], d_logits[:stop - start]
            np.matmul(h_c, weight.T, out=logits[:stop - start])
            np.matmul(dz, weight, out=grad_hidden[start:stop])
            np.matmul(dz.T, h_c, out=grad_weight)
        return grad_weight

    return run


def _step(peer, hidden, weight, bias, target):
    """One call of ``peer``: a function computing the loss and the three gradients."""
    if peer == "gemms":
        return _gemms(hidden, weight)
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


def _limit_threads(peer, threads):
    """Every thread pool of this child to ``threads``, once its libraries are loaded
    (threadpoolctl sees only the runtimes loaded when it is called)."""
    from threadpoolctl import threadpool_limits

    # Set, not a context: the limits hold until the child exits.
    threadpool_limits(limits=threads)                # every BLAS and OpenMP runtime
    if peer in ("fastloss", "gemms", "fallback"):
        import fastloss

        fastloss.set_num_threads(threads)
    if peer in ("torch", "torch-lce"):
        import torch

        torch.set_num_threads(threads)


def worker(peer, n, h, v, dtype, repeats, threads=None):
    hidden, weight, bias, target = _inputs(n, h, v, dtype)
    step = _step(peer, hidden, weight, bias, target)
    if step is None:
        return {"peer": peer, "skipped": "not available"}
    if threads is not None:
        _limit_threads(peer, threads)
    baseline = _maxrss_bytes()
    step()                                             # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result = {"peer": peer, "median_s": statistics.median(times),
              "extra_maxrss_bytes": _maxrss_bytes() - baseline, "threads": threads}
    if peer in ("fastloss", "gemms", "fallback"):
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
    parser.add_argument("--peers", default="fastloss,gemms,torch,torch-lce",
                        help=f"comma-separated among {','.join(PEERS)}")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts, one run each (default: the "
                             "runtimes' own defaults)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n, h, v = (int(x) for x in args.shape.split(","))
    peers = args.peers.split(",")
    for peer in peers:
        if peer not in PEERS:
            parser.error(f"unknown peer {peer!r}")
    try:
        thread_counts = [None] if args.threads is None \
            else [int(x) for x in args.threads.split(",")]
    except ValueError:
        parser.error(f"--threads takes positive ints; got {args.threads!r}")
    if any(t is not None and t < 1 for t in thread_counts):
        parser.error(f"--threads takes positive ints; got {args.threads!r}")
    if args.worker:
        print(json.dumps(worker(args.worker, n, h, v, args.dtype, args.repeats,
                                thread_counts[0])))
        return
    print(f"N={n} H={h} V={v} {args.dtype}; the logits alone: "
          f"{n * v * (4 if args.dtype == 'float32' else 8) / 2**20:.0f} MiB; "
          f"load average {os.getloadavg()[0]:.2f}")
    for threads in thread_counts:
        _run_block(args, peers, threads)


def _run_block(args, peers, threads):
    """Every contender at one thread count, each in its own process, and the table."""
    print("\nthreads:", "the runtimes' defaults" if threads is None else threads)
    print(f"{'peer':<10} {'median':>10} {'extra maxrss':>14} {'tracemalloc peak':>17}")
    env = dict(os.environ)
    command = [sys.executable, __file__, "--shape", args.shape, "--dtype", args.dtype,
               "--repeats", str(args.repeats)]
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        command += ["--threads", str(threads)]
    medians = {}
    for peer in peers:
        proc = subprocess.run(command + ["--worker", peer], capture_output=True, text=True,
                              env=env)
        if proc.returncode:
            print(f"{peer:<10} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        if "skipped" in r:
            print(f"{peer:<10} {r['skipped']}")
            continue
        medians[peer] = r["median_s"]
        peak = r.get("tracemalloc_peak_bytes")
        print(f"{peer:<10} {r['median_s'] * 1e3:>8.1f} ms {r['extra_maxrss_bytes'] / 2**20:>10.0f} MiB"
              f" {'' if peak is None else f'{peak / 2**20:>13.0f} MiB'}")
    if "fastloss" in medians and "gemms" in medians:
        print(f"fastloss / gemms = {medians['fastloss'] / medians['gemms']:.2f} "
              "(fastloss's median over its three GEMMs alone; issue 27 asks <= 1.15)")


if __name__ == "__main__":
    main()
