"""Measured accuracy of softmax, log_softmax, logsumexp and cross_entropy: fastloss
beside NumPy/SciPy, PyTorch and JAX (each when installed), against an exact reference.

    python benchmarks/accuracy.py [--classes 10,1000,32000,128256] [--rows 64]

The reference is computed in ``np.longdouble`` (80-bit extended on x86-64: 64-bit
mantissa) from the same float32 or float64 inputs, so it is exact to well below the
errors measured. Inputs: standard normal logits times 4 (a trained network's spread),
every library at its default SIMD level on this CPU. The figure is the maximum relative
error over all elements, ``|got - ref| / max(|ref|, tiny)``, where tiny is 1e-6 for
float32 and 1e-12 for float64 (the contract's absolute floor near 0). docs/tolerance.md
shows the table and what the contract promises.
"""
import argparse
import platform

import numpy as np

import fastloss


def _reference(x, target):
    """softmax, log_softmax, logsumexp and the per-row loss, in long double."""
    xl = x.astype(np.longdouble)
    m = xl.max(axis=-1, keepdims=True)
    s = np.exp(xl - m).sum(axis=-1, keepdims=True)
    lse = m + np.log(s)
    log_p = xl - lse
    loss = -np.take_along_axis(log_p, target[:, None], axis=-1)[:, 0]
    return {"softmax": np.exp(log_p), "log_softmax": log_p, "logsumexp": lse[:, 0],
            "cross_entropy": loss}


def _peers():
    """name -> function(x, target) -> dict of the four results, as float64 arrays."""
    peers = {"fastloss": lambda x, t: {
        "softmax": fastloss.softmax(x), "log_softmax": fastloss.log_softmax(x),
        "logsumexp": fastloss.logsumexp(x),
        "cross_entropy": fastloss.cross_entropy(x, t, reduction="none")}}
    try:
        import scipy.special as sp
        peers["NumPy/SciPy"] = lambda x, t: {
            "softmax": sp.softmax(x, axis=-1), "log_softmax": sp.log_softmax(x, axis=-1),
            "logsumexp": sp.logsumexp(x, axis=-1),
            "cross_entropy": -np.take_along_axis(sp.log_softmax(x, axis=-1), t[:, None],
                                                 axis=-1)[:, 0]}
    except ImportError:
        pass
    try:
        import torch
        import torch.nn.functional as F

        def run_torch(x, t):
            xt = torch.from_numpy(x)
            return {"softmax": torch.softmax(xt, -1).numpy(),
                    "log_softmax": torch.log_softmax(xt, -1).numpy(),
                    "logsumexp": torch.logsumexp(xt, -1).numpy(),
                    "cross_entropy": F.cross_entropy(xt, torch.from_numpy(t),
                                                     reduction="none").numpy()}
        peers["PyTorch"] = run_torch
    except ImportError:
        pass
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
    except ImportError:
        jax = None
    if jax is not None:
        def run_jax(x, t):
            xj = jnp.asarray(x)
            ls = jax.nn.log_softmax(xj, axis=-1)
            return {"softmax": np.asarray(jax.nn.softmax(xj, axis=-1)),
                    "log_softmax": np.asarray(ls),
                    "logsumexp": np.asarray(jax.nn.logsumexp(xj, axis=-1)),
                    "cross_entropy": -np.take_along_axis(np.asarray(ls), t[:, None],
                                                         axis=-1)[:, 0]}
        peers["JAX"] = run_jax
    return peers


def max_rel_error(got, ref, floor):
    got = np.asarray(got, np.longdouble)
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), floor)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", default="10,1000,32000,128256")
    p.add_argument("--rows", type=int, default=64)
    args = p.parse_args(argv)
    classes = [int(c) for c in args.classes.split(",")]
    peers = _peers()
    print(f"# {platform.processor() or platform.machine()}, fastloss SIMD "
          f"{fastloss.get_simd_level()}, rows {args.rows}, logits 4 * N(0, 1)")
    print("| dtype | function | C | " + " | ".join(peers) + " |")
    print("|---|---|---|" + "---|" * len(peers))
    rng = np.random.default_rng(0)
    for dtype, floor in ((np.float32, 1e-6), (np.float64, 1e-12)):
        for c in classes:
            x = (rng.standard_normal((args.rows, c)) * 4).astype(dtype)
            t = rng.integers(0, c, args.rows)
            ref = _reference(x, t)
            results = {name: run(x, t) for name, run in peers.items()}
            for fn in ref:
                cells = [f"{max_rel_error(results[n][fn], ref[fn], floor):.1e}" for n in peers]
                print(f"| {np.dtype(dtype).name} | {fn} | {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
