"""Benchmark of fastloss against its NumPy fallback and, when installed, its peers.

    python -m fastloss.bench                  # the default table (several minutes)
    python -m fastloss.bench --quick          # a smaller table in under a minute
    python -m fastloss.bench --functions softmax,cross_entropy --shapes 1024x100 \\
        --dtypes float32 --threads 1,2 --repeats 9 --json bench.json

or, from Python, ``fastloss.bench.bench()``, which prints the same table.

How it is built (one job per layer):

  Spec        one function of the API: how to build its inputs (deterministic RNG,
              shared between the functions of one shape and dtype), how fastloss and
              its fallback are called (one calling convention: the fallback has the
              same signature), its variants (``fresh`` output allocated by every call,
              ``out=`` a preallocated output reused, ``out=logits`` in place), its
              peers (SciPy, PyTorch eager and torch.compile, JAX, scikit-learn) and the
              bytes a call must move through memory.
  SPECS       the registry, in the order of the table.  A function that ``fastloss``
              does not have (yet) is skipped with a note, so the benchmark runs while
              the library grows.
  measure()   times the contenders of one row round-robin (A, B, C, A, B, C, ...),
              after one warm-up call each, and keeps the medians.
  Yardsticks  the copy and read yardsticks (memory-bound calls on two 256 MiB arrays):
              timed back to back at the start, and inside the round-robin of every
              DRAM-sized row (IN_ROW_YARDSTICK_DIVISOR), whose %s then use them.
  run()       the bandwidths per thread count, then every case; returns a dict
              that is also what ``--json`` writes (schema in benchmarks/README.md).
  format_table(), bench(), main()    the report.

Every contender runs at the same thread count: ``fastloss.set_num_threads`` and, for
PyTorch, ``torch.set_num_threads`` (torch.compile compiles once per thread count;
scikit-learn gets ``n_threads``).  NumPy, SciPy and so the fallback are
single-threaded; JAX's thread pool is fixed when it starts.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["bench", "main", "run", "format_table", "SPECS", "function_names"]

SCHEMA = "fastloss-bench/1"

# ---------------------------------------------------------------------------------------
# Default grid
# ---------------------------------------------------------------------------------------
# (rows, classes): many tiny rows (MNIST-like), ImageNet-like, a 32k vocabulary, and for
# the cross-entropy family a 128k vocabulary (Llama 3), all well past the caches.
SOFTMAX_SHAPES = ((65536, 10), (8192, 1000), (2048, 32000))
CROSS_ENTROPY_SHAPES = SOFTMAX_SHAPES + ((512, 128256),)
OTHER_SHAPES = ((4096, 4096),)
CORE_DTYPES = ("float32", "float64")
OTHER_DTYPES = ("float32",)

# --quick: 16 MB at float32, clear of glibc's 32 MiB mmap threshold (whose allocation
# noise needs more repeats than --quick has), and cache-sized elementwise arrays.
QUICK_SOFTMAX_SHAPES = ((4096, 1000),)
QUICK_CROSS_ENTROPY_SHAPES = ((4096, 1000),)
QUICK_OTHER_SHAPES = ((512, 1024),)
QUICK_DTYPES = ("float32",)

REPEATS = 15
QUICK_REPEATS = 5
# A timed sample runs a call often enough to last at least this long, so that timer
# resolution and call overhead do not dominate tiny shapes.
MIN_SAMPLE_SECONDS = 0.005
QUICK_MIN_SAMPLE_SECONDS = 0.002
# Per row: when one round over the contenders would make the row longer than this, the
# row runs fewer repeats (never fewer than MIN_REPEATS).
ROW_BUDGET_SECONDS = 8.0
QUICK_ROW_BUDGET_SECONDS = 0.4
MIN_REPEATS = 3
MAX_CALLS_PER_SAMPLE = 10_000
# Pause before each timed sample: the previous contender's thread pool spin-waits after
# its call (libgomp spins ~300k iterations by default, XLA's pool spins too) and would
# take a core from the next contender's threads on a 2-core machine.
SETTLE_SECONDS = 0.001
# XLA's pool keeps spinning much longer: measured on this machine, a 2-thread fastloss
# call right after a JAX call ran 1.5x slower with a 1 ms or 10 ms pause, and at full
# speed after 50 ms.  So the pause after a JAX sample is this long.
JAX_SETTLE_SECONDS = 0.05
# A warm-up call this many times longer than MIN_SAMPLE_SECONDS settles the sample size
# (one call) by itself: no second calibration call for the large shapes.
SLOW_CALL_SAMPLES = 20
# A time whose samples' interquartile range exceeds this fraction of their median is
# marked noisy ("~" in the table): on 2 shared cores another process can take a core
# from an OpenMP team for a whole scheduler time slice.
NOISY_IQR = 0.25

# The copy yardstick: two arrays of this size, 8x a 32 MiB L3, so the copy streams from
# and to DRAM.  Bytes moved per copy = 2 x this (read + write), the STREAM convention.
COPY_BYTES = 256 * 2**20
COPY_REPEATS = 7
# Rows whose N x C data is at least copy_bytes / IN_ROW_YARDSTICK_DIVISOR (64 MiB by
# default: past the caches, bound by DRAM) time the copy yardstick, and the read
# yardstick for read-only functions, inside their own round-robin, right after fastloss,
# and their %copy / %read use those figures.  Why: a call right after a PyTorch call
# (which leaves hundreds of MB of dirty cache lines and freed pages) runs ~5-7% slower
# whoever makes it, the yardsticks included (Intel Xeon, 1 thread, (512, 128256) float32:
# read 16.6 -> 15.9 GB/s, copy 24.9 -> 23.4, cross_entropy 14.0 -> 13.3, in place with
# grad 21.9 -> 20.4), and the host's bandwidth drifts over a run; yardsticks timed once
# at the start, back to back, compared a call in one context against a copy in another.
# Right after fastloss, a yardstick never sees a worse context than fastloss's own (the
# previous round's last peer).
IN_ROW_YARDSTICK_DIVISOR = 4

TARGET_ITEMSIZE = np.dtype(np.int64).itemsize  # class-index targets are int64

# "torch.compile" is PyTorch's Inductor (CPU) on the same calls: a peer of its own, so a
# run can leave out its compile time (--peers scipy,torch,jax,sklearn).
PEER_NAMES = ("scipy", "torch", "torch.compile", "jax", "sklearn")


# --simd LEVEL: fastloss's level (set_simd_level) and what the peers are told, through
# the variables they read when they start (so set before torch and jax are imported):
# PyTorch's ATEN_CPU_CAPABILITY (its kernels' dispatch, and Inductor's vector ISA) and
# XLA's --xla_cpu_max_isa.  On an AVX-512 host, --simd avx2 compares every side's AVX2
# build.
SIMD_LEVELS = ("baseline", "avx2", "avx512")
ATEN_CPU_CAPABILITY = {"baseline": "default", "avx2": "avx2", "avx512": "avx512"}
XLA_CPU_MAX_ISA = {"baseline": "SSE4_2", "avx2": "AVX2", "avx512": "AVX512"}


def _cores():
    """Cores this process may run on (the affinity mask, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------
# Inputs: one pool per (shape, dtype), every array built once, deterministically
# ---------------------------------------------------------------------------------------
def _seed(kind, shape, dtype):
    return zlib.crc32(f"fastloss-bench:{kind}:{shape}:{dtype}".encode())


def _rows(shape):
    return math.prod(shape[:-1]), shape[-1]


def _softmax_np(x):
    y = x - x.max(axis=-1, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=-1, keepdims=True)
    return y


def _log_softmax_np(x):
    y = x - x.max(axis=-1, keepdims=True)
    y -= np.log(np.exp(y).sum(axis=-1, keepdims=True))
    return y


class InputPool:
    """The arrays of one (shape, dtype), built on first use and shared by every case.

    Cases never write into these arrays: in-place variants work on their own copies.
    """

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._arrays = {}

    def rng(self, kind):
        return np.random.default_rng(_seed(kind, self.shape, self.dtype.name))

    def __getitem__(self, kind):
        if kind not in self._arrays:
            self._arrays[kind] = self._build(kind)
        return self._arrays[kind]

    def _normal(self, kind, scale):
        a = self.rng(kind).standard_normal(self.shape, dtype=self.dtype)
        a *= self.dtype.type(scale)
        return a

    def _build(self, kind):
        n, c = _rows(self.shape)
        if kind == "logits":
            return self._normal(kind, 3.0)
        if kind in ("grad", "other"):
            return self._normal(kind, 1.0)
        if kind == "target":  # class indices over the last axis
            return self.rng(kind).integers(0, c, size=self.shape[:-1], dtype=np.int64)
        if kind == "softmax_y":
            return _softmax_np(self["logits"])
        if kind == "log_softmax_y":
            return _log_softmax_np(self["logits"])
        if kind == "sigmoid_y":
            return (1.0 / (1.0 + np.exp(-self["logits"]))).astype(self.dtype, copy=False)
        if kind == "tanh_y":
            return np.tanh(self["logits"])
        if kind == "probs":  # probabilities strictly inside (0, 1)
            return self.rng(kind).uniform(0.01, 0.99, size=self.shape).astype(self.dtype)
        if kind == "binary":  # 0/1 targets as floats
            return self.rng(kind).integers(0, 2, size=self.shape).astype(self.dtype)
        raise KeyError(kind)

    def target_as(self, dtype):
        """The class-index target as floats (scikit-learn's ``y_true``)."""
        key = f"target:{np.dtype(dtype).name}"
        if key not in self._arrays:
            self._arrays[key] = self["target"].astype(dtype)
        return self._arrays[key]


# ---------------------------------------------------------------------------------------
# Peers: imported lazily, each inside a try
# ---------------------------------------------------------------------------------------
class Peers:
    """The peer libraries that are installed and asked for."""

    def __init__(self, wanted=PEER_NAMES):
        self.modules = {}
        self.versions = {}
        self.missing = {}
        for name in wanted:
            try:
                self.modules[name] = getattr(self, f"_load_{name.replace('.', '_')}")()
                self.versions[name] = self.modules[name]["version"]
            except Exception as exc:  # noqa: BLE001 - any failure means "not available"
                self.missing[name] = f"{type(exc).__name__}: {exc}"

    def __contains__(self, name):
        return name in self.modules

    def __getitem__(self, name):
        return self.modules[name]

    @staticmethod
    def _load_scipy():
        import scipy
        import scipy.special

        return {"version": scipy.__version__, "special": scipy.special}

    @staticmethod
    def _load_torch():
        import torch
        import torch.nn.functional as F

        return {"version": torch.__version__, "torch": torch, "F": F}

    @staticmethod
    def _load_torch_compile():
        import torch
        import torch.nn.functional as F

        if not hasattr(torch, "compile"):
            raise RuntimeError(f"torch {torch.__version__} has no torch.compile")
        # Inductor CPU builds C++: no compiler, no peer (a compile failing for another
        # reason drops the peer later, with a note: see _torch_compile_builder).
        with contextlib.suppress(ImportError, AttributeError):
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        return {"version": torch.__version__, "torch": torch, "F": F,
                "sources": _torch_compile_sources(torch, F),
                "compiled": {},  # (function, shape, dtype, threads) -> (fn, compile s)
                "failed": None, "isa": None}

    @staticmethod
    def _load_jax():
        import jax

        # float64 rows need x64 mode; it only widens what JAX accepts.
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return {"version": jax.__version__, "jax": jax, "jnp": jnp}

    @staticmethod
    def _load_sklearn():
        import sklearn
        from sklearn._loss.loss import HalfMultinomialLoss

        return {"version": sklearn.__version__, "HalfMultinomialLoss": HalfMultinomialLoss}

    def set_num_threads(self, n):
        for name in ("torch", "torch.compile"):
            if name in self.modules:
                self.modules[name]["torch"].set_num_threads(n)


@dataclass
class Contender:
    """One timed callable of a row."""

    name: str  # "fastloss", "fallback", or a peer name
    fn: Callable[[], object]
    allocates: bool  # the call allocates its (large) output every time
    note: str = ""
    settle: float = SETTLE_SECONDS  # untimed pause after its samples (its threads spin)


@dataclass
class Ctx:
    """What peer builders need besides the arrays."""

    peers: Peers
    threads: int = 1
    progress: Callable[[str], None] | None = None  # one line per slow step (a compile)


# --- peer builders: (name, pool, variant, ctx, input kinds) -> Contender or None ------
def _peer(name, fn, allocates, note="", settle=SETTLE_SECONDS):
    return Contender(name, fn, allocates, note, settle)


def _torch_t(ctx, a):
    return ctx.peers["torch"]["torch"].from_numpy(a)


def _torch_autograd(ctx, loss, x, *rest, note="forward + backward through autograd"):
    """``loss(X, *rest)`` and its gradient w.r.t. ``X``; the gradient is a fresh tensor."""
    torch = ctx.peers["torch"]["torch"]
    X = torch.from_numpy(x).requires_grad_(True)  # shares x's memory; autograd never writes it
    rest = [torch.from_numpy(r) if isinstance(r, np.ndarray) else r for r in rest]

    def call():
        out = loss(X, *rest)
        (g,) = torch.autograd.grad(out, X)
        return out, g

    return _peer("torch", call, True, note)


def _torch_unary(fresh, out_fn):
    """Peer builder for ``f(x)`` with an out= form ``out_fn(X, out=Y)``."""

    def build(pool, variant, ctx, kinds):
        X = _torch_t(ctx, pool[kinds[0]])
        rest = [_torch_t(ctx, pool[k]) for k in kinds[1:]]
        F, torch = ctx.peers["torch"]["F"], ctx.peers["torch"]["torch"]
        if variant == "fresh":
            return _peer("torch", lambda: fresh(torch, F, X, *rest), True)
        Y = torch.empty_like(X)
        return _peer("torch", lambda: out_fn(torch, F, X, *rest, Y), False)

    return build


TORCH_BUILDERS = {
    "softmax": _torch_unary(
        lambda t, F, X: t.softmax(X, -1), lambda t, F, X, Y: t.softmax(X, -1, out=Y)),
    "log_softmax": _torch_unary(
        lambda t, F, X: t.log_softmax(X, -1), lambda t, F, X, Y: t.log_softmax(X, -1, out=Y)),
    "softmax_backward": _torch_unary(
        lambda t, F, G, Yv: t._softmax_backward_data(G, Yv, -1, G.dtype),
        lambda t, F, G, Yv, GI: t.ops.aten._softmax_backward_data.out(
            G, Yv, -1, G.dtype, grad_input=GI)),
    "log_softmax_backward": _torch_unary(
        lambda t, F, G, Yv: t._log_softmax_backward_data(G, Yv, -1, G.dtype),
        lambda t, F, G, Yv, GI: t.ops.aten._log_softmax_backward_data.out(
            G, Yv, -1, G.dtype, out=GI)),
    "sigmoid": _torch_unary(
        lambda t, F, X: t.sigmoid(X), lambda t, F, X, Y: t.sigmoid(X, out=Y)),
    "tanh": _torch_unary(lambda t, F, X: t.tanh(X), lambda t, F, X, Y: t.tanh(X, out=Y)),
    # torch.relu has no out=; clamp_min(x, 0) is the same function with one.
    "relu": _torch_unary(lambda t, F, X: t.relu(X), lambda t, F, X, Y: t.clamp_min(X, 0, out=Y)),
    "leaky_relu": _torch_unary(
        lambda t, F, X: F.leaky_relu(X, 0.01),
        lambda t, F, X, Y: t._C._nn.leaky_relu(X, 0.01, out=Y)),
    "softplus": _torch_unary(
        lambda t, F, X: F.softplus(X, 1.0, 20.0),
        lambda t, F, X, Y: t._C._nn.softplus(X, 1.0, 20.0, out=Y)),
    "sigmoid_backward": _torch_unary(
        lambda t, F, G, Yv: t.ops.aten.sigmoid_backward(G, Yv),
        lambda t, F, G, Yv, GI: t.ops.aten.sigmoid_backward.grad_input(G, Yv, grad_input=GI)),
    "tanh_backward": _torch_unary(
        lambda t, F, G, Yv: t.ops.aten.tanh_backward(G, Yv),
        lambda t, F, G, Yv, GI: t.ops.aten.tanh_backward.grad_input(G, Yv, grad_input=GI)),
    "relu_backward": _torch_unary(
        lambda t, F, G, X: t.ops.aten.threshold_backward(G, X, 0),
        lambda t, F, G, X, GI: t.ops.aten.threshold_backward.grad_input(G, X, 0, grad_input=GI)),
    "leaky_relu_backward": _torch_unary(
        lambda t, F, G, X: t.ops.aten.leaky_relu_backward(G, X, 0.01, False),
        lambda t, F, G, X, GI: t.ops.aten.leaky_relu_backward.grad_input(
            G, X, 0.01, False, grad_input=GI)),
    "softplus_backward": _torch_unary(
        lambda t, F, G, X: t.ops.aten.softplus_backward(G, X, 1.0, 20.0),
        lambda t, F, G, X, GI: t.ops.aten.softplus_backward.grad_input(
            G, X, 1.0, 20.0, grad_input=GI)),
}


def _torch_builder(name, pool, variant, ctx, kinds):
    torch, F = ctx.peers["torch"]["torch"], ctx.peers["torch"]["F"]
    if name in TORCH_BUILDERS:
        return TORCH_BUILDERS[name](pool, variant, ctx, kinds)
    if name == "logsumexp":
        X = _torch_t(ctx, pool["logits"])
        return _peer("torch", lambda: torch.logsumexp(X, -1), False)
    if name in ("cross_entropy", "nll_loss"):
        X, T = _torch_t(ctx, pool[kinds[0]]), _torch_t(ctx, pool["target"])
        f = F.cross_entropy if name == "cross_entropy" else F.nll_loss
        return _peer("torch", lambda: f(X, T), False)
    losses = {
        "cross_entropy_with_grad": F.cross_entropy,
        "nll_loss_with_grad": F.nll_loss,
        "binary_cross_entropy_with_grad": F.binary_cross_entropy,
        "binary_cross_entropy_with_logits_with_grad": F.binary_cross_entropy_with_logits,
        "kl_div_with_grad": lambda x, t: F.kl_div(x, t, reduction="mean"),
        "mse_loss_with_grad": F.mse_loss,
        "smooth_l1_loss_with_grad": F.smooth_l1_loss,
        "huber_loss_with_grad": F.huber_loss,
        "multi_margin_loss_with_grad": F.multi_margin_loss,
    }
    if name in losses:
        return _torch_autograd(ctx, losses[name], *(pool[k] for k in kinds))
    return None


def _scipy_builder(name, pool, variant, ctx, kinds):
    special = ctx.peers["scipy"]["special"]
    x = pool["logits"]
    if name == "softmax":
        return _peer("scipy", lambda: special.softmax(x, axis=-1), True)
    if name == "log_softmax":
        return _peer("scipy", lambda: special.log_softmax(x, axis=-1), True)
    if name == "logsumexp":
        return _peer("scipy", lambda: special.logsumexp(x, axis=-1), False)
    return None


def _jax_functions(jax, jnp):
    def ce(x, t):
        lp = jax.nn.log_softmax(x, axis=-1)
        return -jnp.mean(jnp.take_along_axis(lp, t[:, None], axis=-1))

    return {
        "softmax": jax.jit(lambda x: jax.nn.softmax(x, axis=-1)),
        "log_softmax": jax.jit(lambda x: jax.nn.log_softmax(x, axis=-1)),
        "logsumexp": jax.jit(lambda x: jax.nn.logsumexp(x, axis=-1)),
        "cross_entropy": jax.jit(ce),
        "cross_entropy_with_grad": jax.jit(jax.value_and_grad(ce)),
    }


def _jax_builder(name, pool, variant, ctx, kinds):
    jax, jnp = ctx.peers["jax"]["jax"], ctx.peers["jax"]["jnp"]
    # one jitted function per name for the whole run: JAX compiles once per shape/dtype
    jitted = ctx.peers["jax"].setdefault("jitted", None) or _jax_functions(jax, jnp)
    ctx.peers["jax"]["jitted"] = jitted
    if name not in jitted:
        return None
    if name.startswith("cross_entropy") and len(pool.shape) != 2:
        return None
    f = jitted[name]
    args = [jax.device_put(pool["logits"])]  # one copy into JAX's memory, made here
    if name.startswith("cross_entropy"):
        args.append(jax.device_put(pool["target"]))
    allocates = name in ("softmax", "log_softmax", "cross_entropy_with_grad")
    return _peer("jax", lambda: jax.block_until_ready(f(*args)), allocates,
                 "jax.jit; its thread pool is XLA's own (all cores), not set per row",
                 settle=JAX_SETTLE_SECONDS)


# --- torch.compile (Inductor CPU) -------------------------------------------------------
# What is compiled, per function.  cross_entropy_with_grad compiles the forward only:
# AOTAutograd then compiles its backward too (at the first backward call), and
# torch.autograd.grad runs it, the way a compiled training step does.
def _torch_compile_sources(torch, F):
    return {
        "softmax": lambda x: torch.softmax(x, -1),
        "log_softmax": lambda x: torch.log_softmax(x, -1),
        "cross_entropy": lambda x, t: F.cross_entropy(x, t),
        "cross_entropy_with_grad": lambda x, t: F.cross_entropy(x, t),
    }


TORCH_COMPILE_NOTES = {
    "softmax": "torch.softmax(x, -1)",
    "log_softmax": "torch.log_softmax(x, -1)",
    "cross_entropy": "F.cross_entropy(x, t)",
    "cross_entropy_with_grad": "F.cross_entropy(x, t) forward (AOTAutograd compiles its "
                               "backward) + torch.autograd.grad: fresh gradient",
}


def _own_code(fn, tag):
    """A copy of ``fn`` with a code object of its own.  Dynamo keeps its compiled entries
    on the code object, one per guard set (shape, dtype, and the thread count, which
    Inductor bakes into its C++ as ``omp parallel num_threads(T)``), and past
    ``recompile_limit`` (8) entries it runs the function eagerly.  A copy per
    (function, shape, dtype, threads) holds one entry: compiled once, never evicted."""
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{tag}")
    return type(fn)(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def _torch_compile_call(tc, name, f, pool):
    """The timed call of the compiled ``f`` on the pool's arrays (shared memory)."""
    torch = tc["torch"]
    X = torch.from_numpy(pool["logits"])
    if name == "cross_entropy_with_grad":
        X.requires_grad_(True)  # autograd never writes X, so it may share the pool's array
    args = [X] + ([torch.from_numpy(pool["target"])] if name.startswith("cross") else [])
    if name != "cross_entropy_with_grad":
        return lambda: f(*args)

    def call():
        loss = f(*args)
        (g,) = torch.autograd.grad(loss, X)
        return loss, g

    return call


def _torch_compile_builder(name, pool, variant, ctx, kinds):
    tc = ctx.peers["torch.compile"]
    torch = tc["torch"]
    if name not in TORCH_COMPILE_NOTES:
        return None
    if name.startswith("cross_entropy") and len(pool.shape) != 2:
        return None
    if tc["failed"]:  # one failed compile (a broken compiler or install) is enough
        raise RuntimeError(f"compile failed: {tc['failed']}")
    key = (name, pool.shape, pool.dtype.name, ctx.threads)
    if key not in tc["compiled"]:
        # Compiled here, outside measure(): its warm-up would otherwise time the compile
        # and size the row's samples by it.
        tag = f"{'x'.join(map(str, pool.shape))}_{pool.dtype.name}_t{ctx.threads}"
        f = torch.compile(_own_code(tc["sources"][name], tag), dynamic=False, fullgraph=True)
        t0 = time.perf_counter()
        try:
            _torch_compile_call(tc, name, f, pool)()
        except Exception as exc:  # noqa: BLE001 - the peer is dropped for the run
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            tc["failed"] = f"{type(exc).__name__}: {first}"
            raise RuntimeError(f"compile failed: {tc['failed']}") from None
        tc["compiled"][key] = (f, time.perf_counter() - t0)
        tc["isa"] = tc["isa"] or _inductor_isa(torch)
        if ctx.progress:
            ctx.progress(f"torch.compile {name} {tag}: compiled in "
                         f"{tc['compiled'][key][1]:.1f} s (not timed)")
    f, seconds = tc["compiled"][key]
    note = (f"torch.compile(dynamic=False, fullgraph=True) of {TORCH_COMPILE_NOTES[name]};"
            f" Inductor C++ ({tc['isa']}), compiled in {seconds:.1f} s before"
            " the timing")
    return _peer("torch.compile", _torch_compile_call(tc, name, f, pool),
                 name != "cross_entropy", note)


def _inductor_isa(torch):
    """The vector ISA Inductor's C++ is built for (it follows ATEN_CPU_CAPABILITY)."""
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        isa = pick_vec_isa()
        return f"vec ISA {isa}" if isa else "no vec ISA: scalar code"
    except Exception:  # noqa: BLE001 - a private API: say so rather than fail
        return "vec ISA unknown"


def _sklearn_builder(name, pool, variant, ctx, kinds):
    if name not in ("cross_entropy", "cross_entropy_with_grad") or len(pool.shape) != 2:
        return None
    n, c = pool.shape
    loss = ctx.peers["sklearn"]["HalfMultinomialLoss"](n_classes=c)
    x = pool["logits"]
    y = pool.target_as(x.dtype)  # sklearn wants y_true in the dtype of raw_prediction
    if name == "cross_entropy":
        return _peer("sklearn", lambda: loss(y, x, n_threads=ctx.threads), False,
                     "HalfMultinomialLoss.__call__")
    note = "HalfMultinomialLoss.loss_gradient (per-row losses, unscaled gradient)"
    if variant == "fresh":
        return _peer("sklearn", lambda: loss.loss_gradient(y, x, n_threads=ctx.threads),
                     True, note)
    loss_out = np.empty(n, dtype=x.dtype)
    grad_out = np.empty_like(x)  # its own reused buffer (sklearn has no in-place form)
    return _peer(
        "sklearn",
        lambda: loss.loss_gradient(
            y, x, loss_out=loss_out, gradient_out=grad_out, n_threads=ctx.threads),
        False, note + "; gradient_out reused")


PEER_BUILDERS = {
    "scipy": _scipy_builder,
    "torch": _torch_builder,
    "torch.compile": _torch_compile_builder,
    "jax": _jax_builder,
    "sklearn": _sklearn_builder,
}


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """How to benchmark one function.

    ``inputs`` names pool arrays passed positionally; ``kwargs`` are extra keyword
    arguments; ``variants`` lists "fresh", "out=" (a reused output buffer of the shape
    of ``out_like``) and "out=<input>" (in place over that input); ``bytes`` gives the
    bytes one call must move as ``bytes(n_rows, n_classes, itemsize)``.
    """

    name: str
    family: str  # "softmax", "cross_entropy" or "other": picks the default shapes
    inputs: tuple
    bytes: Callable[[int, int, int], int]
    bytes_doc: str
    variants: tuple = ("fresh",)
    out_like: str = ""
    kwargs: dict = field(default_factory=dict)
    peers: tuple = ()
    read_only: bool = False  # writes no N x C array: the read bandwidth is its bound


def _rw(reads_nc, writes_nc, reads_n_targets=0, reads_n=0, writes_n=0):
    """Bytes of a call that reads/writes whole N x C arrays, N targets and N-vectors."""

    def count(n, c, itemsize):
        return ((reads_nc + writes_nc) * n * c + (reads_n + writes_n) * n) * itemsize + (
            reads_n_targets * n * TARGET_ITEMSIZE)

    return count


def _doc(reads_nc=0, writes_nc=0, targets=0, reads_n=0, writes_n=0):
    parts = []
    if reads_nc:
        parts.append(f"reads {reads_nc} x N*C")
    if reads_n:
        parts.append(f"reads {reads_n} x N")
    if targets:
        parts.append("reads N int64 targets")
    if writes_nc:
        parts.append(f"writes {writes_nc} x N*C")
    if writes_n:
        parts.append(f"writes {writes_n} x N")
    return ", ".join(parts) or "none"


def _spec(name, family, inputs, *, reads_nc=0, writes_nc=0, targets=0, reads_n=0,
          writes_n=0, **kw):
    return Spec(name, family, tuple(inputs),
                _rw(reads_nc, writes_nc, targets, reads_n, writes_n),
                _doc(reads_nc, writes_nc, targets, reads_n, writes_n),
                read_only=writes_nc == 0, **kw)


FRESH_OUT = ("fresh", "out=")
SPECS = (
    # --- softmax family ---------------------------------------------------------------
    _spec("softmax", "softmax", ["logits"], reads_nc=1, writes_nc=1,
          variants=FRESH_OUT, out_like="logits", kwargs={"axis": -1},
          peers=("scipy", "torch", "torch.compile", "jax")),
    _spec("log_softmax", "softmax", ["logits"], reads_nc=1, writes_nc=1,
          variants=FRESH_OUT, out_like="logits", kwargs={"axis": -1},
          peers=("scipy", "torch", "torch.compile", "jax")),
    # The output is one value per row: reusing it changes nothing worth a row.
    _spec("logsumexp", "softmax", ["logits"], reads_nc=1, writes_n=1, kwargs={"axis": -1},
          peers=("scipy", "torch", "jax")),
    _spec("softmax_backward", "softmax", ["grad", "softmax_y"], reads_nc=2, writes_nc=1,
          variants=FRESH_OUT, out_like="grad", kwargs={"axis": -1}, peers=("torch",)),
    _spec("log_softmax_backward", "softmax", ["grad", "log_softmax_y"], reads_nc=2,
          writes_nc=1, variants=FRESH_OUT, out_like="grad", kwargs={"axis": -1},
          peers=("torch",)),
    # --- cross-entropy family ---------------------------------------------------------
    _spec("cross_entropy", "cross_entropy", ["logits", "target"], reads_nc=1, targets=1,
          peers=("torch", "torch.compile", "jax", "sklearn")),
    _spec("cross_entropy_with_grad", "cross_entropy", ["logits", "target"], reads_nc=1,
          targets=1, writes_nc=1, variants=("fresh", "out=logits"),
          peers=("torch", "torch.compile", "jax", "sklearn")),
    _spec("cross_entropy_backward", "cross_entropy", ["logits", "target"], reads_nc=1,
          targets=1, writes_nc=1, variants=FRESH_OUT, out_like="logits"),
    # nll_loss reads one log-probability per row (any floats serve as log-probabilities).
    _spec("nll_loss", "cross_entropy", ["logits", "target"], reads_n=1, targets=1,
          peers=("torch",)),
    _spec("nll_loss_with_grad", "cross_entropy", ["logits", "target"], reads_n=1, targets=1,
          writes_nc=1, peers=("torch",)),
    # --- the other losses, with their gradients ----------------------------------------
    _spec("binary_cross_entropy_with_grad", "other", ["probs", "binary"], reads_nc=2,
          writes_nc=1, peers=("torch",)),
    _spec("binary_cross_entropy_with_logits_with_grad", "other", ["logits", "binary"],
          reads_nc=2, writes_nc=1, peers=("torch",)),
    _spec("kl_div_with_grad", "other", ["log_softmax_y", "softmax_y"], reads_nc=2,
          writes_nc=1, peers=("torch",)),
    _spec("mse_loss_with_grad", "other", ["logits", "other"], reads_nc=2, writes_nc=1,
          peers=("torch",)),
    _spec("smooth_l1_loss_with_grad", "other", ["logits", "other"], reads_nc=2, writes_nc=1,
          peers=("torch",)),
    _spec("huber_loss_with_grad", "other", ["logits", "other"], reads_nc=2, writes_nc=1,
          peers=("torch",)),
    _spec("multi_margin_loss_with_grad", "other", ["logits", "target"], reads_nc=1,
          targets=1, writes_nc=1, peers=("torch",)),
    # --- activations ------------------------------------------------------------------
    *(
        _spec(act, "other", ["logits"], reads_nc=1, writes_nc=1, variants=FRESH_OUT,
              out_like="logits", peers=("torch",))
        for act in ("sigmoid", "tanh", "relu", "leaky_relu", "softplus")
    ),
    _spec("sigmoid_backward", "other", ["grad", "sigmoid_y"], reads_nc=2, writes_nc=1,
          variants=FRESH_OUT, out_like="grad", peers=("torch",)),
    _spec("tanh_backward", "other", ["grad", "tanh_y"], reads_nc=2, writes_nc=1,
          variants=FRESH_OUT, out_like="grad", peers=("torch",)),
    *(
        _spec(f"{act}_backward", "other", ["grad", "logits"], reads_nc=2, writes_nc=1,
              variants=FRESH_OUT, out_like="grad", peers=("torch",))
        for act in ("relu", "leaky_relu", "softplus")
    ),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}


def function_names():
    """Every function the benchmark knows, in table order."""
    return [s.name for s in SPECS]


def _default_shapes(spec, quick):
    if spec.family == "softmax":
        return QUICK_SOFTMAX_SHAPES if quick else SOFTMAX_SHAPES
    if spec.family == "cross_entropy":
        return QUICK_CROSS_ENTROPY_SHAPES if quick else CROSS_ENTROPY_SHAPES
    return QUICK_OTHER_SHAPES if quick else OTHER_SHAPES


def _default_dtypes(spec, quick):
    if quick:
        return QUICK_DTYPES
    return OTHER_DTYPES if spec.family == "other" else CORE_DTYPES


# ---------------------------------------------------------------------------------------
# Contenders of one row
# ---------------------------------------------------------------------------------------
def _accepts(fn, param):
    """True/False when ``fn``'s signature tells, None when it has none (a builtin)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return param in sig.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def _own_call(name, fn, spec, pool, variant, allow_out):
    """fastloss or fallback: the same calling convention, own buffers for out= variants."""
    args = [pool[k] for k in spec.inputs]
    kw = dict(spec.kwargs)
    if variant == "fresh" or not allow_out:
        note = "" if variant == "fresh" else "no out= in its signature: allocates"
        return Contender(name, lambda: fn(*args, **kw), True, note)
    if variant == "out=":
        kw["out"] = np.empty_like(pool[spec.out_like])
        return Contender(name, lambda: fn(*args, **kw), False)
    # in place: "out=<input>" writes over (its own copy of) that input; repeated calls
    # keep running on the values the previous call left there (finite, same cost).
    key = variant[len("out="):]
    i = spec.inputs.index(key)
    args[i] = args[i].copy()
    kw["out"] = args[i]
    return Contender(name, lambda: fn(*args, **kw), False, "in place")


def build_contenders(spec, pool, variant, ctx, fastloss_fn, fallback_fn, notes):
    """fastloss first, then the fallback, then the peers that can run this row."""
    out = [_own_call("fastloss", fastloss_fn, spec, pool, variant, True)]
    if fallback_fn is None:
        notes.append("fastloss.fallback has no such function")
    else:
        allow = variant == "fresh" or _accepts(fallback_fn, "out") is not False
        out.append(_own_call("fallback", fallback_fn, spec, pool, variant, allow))
    for peer in spec.peers:
        if peer not in ctx.peers:
            continue
        try:
            c = PEER_BUILDERS[peer](spec.name, pool, variant, ctx, spec.inputs)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is dropped
            notes.append(f"{peer} dropped: {type(exc).__name__}: {exc}")
            continue
        if c is not None:
            out.append(c)
    return out


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------
def _time_calls(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def measure(contenders, repeats, min_sample=MIN_SAMPLE_SECONDS, budget=ROW_BUDGET_SECONDS,
            notes=None):
    """Time the contenders round-robin; returns ``(kept contenders, stats, repeats)``.

    Each contender gets one warm-up call (JIT compilation, first-touch of out buffers),
    then one timed call that sets how many calls make a sample (at least ``min_sample``
    seconds; a slow warm-up call decides that alone).  Then ``repeats`` rounds of
    A, B, C, ...: every contender sees the same noise.  Each sample starts after an
    untimed pause, the previous contender's ``settle`` (SETTLE_SECONDS, longer after
    JAX), so the previous contender's threads are idle.
    A contender whose warm-up raises is dropped (noted), unless it is the first
    (fastloss), whose error propagates.
    ``stats[name]`` has the per-call median, quartiles, minimum and every sample, in
    seconds.
    """
    notes = [] if notes is None else notes
    kept, numbers, per_round = [], [], 0.0
    for i, c in enumerate(contenders):
        try:
            t = _time_calls(c.fn, 1)  # warm-up
            if t < SLOW_CALL_SAMPLES * min_sample:  # else one call per sample anyway
                t = _time_calls(c.fn, 1)
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
                samples[j].append(_time_calls(c.fn, numbers[j]))
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


# ---------------------------------------------------------------------------------------
# Copy bandwidth
# ---------------------------------------------------------------------------------------
def _stream_copy():
    """``copy(dst, src, n_threads)`` from the extension's ``stream_copy``, or None.

    The helper may take byte views (``char[::1]``) or the arrays themselves, and the
    thread count as a third argument or from OpenMP's setting: the first form that
    works on a small array is kept.
    """
    try:
        from fastloss._lib import kernels
    except Exception:  # noqa: BLE001 - no extension: NumPy's copy
        return None
    fn = getattr(kernels, "stream_copy", None)
    if fn is None:
        return None
    forms = (
        lambda d, s, t: fn(d.view(np.int8), s.view(np.int8), t),
        lambda d, s, t: fn(d, s, t),
        lambda d, s, t: fn(d.view(np.int8), s.view(np.int8)),
        lambda d, s, t: fn(d, s),
    )
    src = np.arange(1024, dtype=np.float64)
    for form in forms:
        dst = np.zeros_like(src)
        try:
            form(dst, src, 1)
        except (TypeError, ValueError):
            continue
        if np.array_equal(dst, src):
            return form
    return None


def _stream_read():
    """``read(src, n_threads)`` from the extension's ``stream_read``, or None."""
    try:
        from fastloss._lib import kernels
    except Exception:  # noqa: BLE001 - no extension: NumPy's sum
        return None
    return getattr(kernels, "stream_read", None)


class Yardsticks:
    """The copy and read yardsticks: two arrays of ``nbytes``, written once (so no timed
    call sees a page fault), and the calls that stream them.

    copy: ``fastloss._lib.kernels.stream_copy`` (OpenMP threads) when the extension has
    it, else ``np.copyto``, single-threaded; 2 x nbytes move per call (read + write).
    read: the yardstick of calls that only read the N x C array (cross_entropy,
    logsumexp): ``fastloss._lib.kernels.stream_read`` sums the float64 array with OpenMP
    threads, else ``np.sum``, single-threaded; nbytes per call.
    """

    def __init__(self, nbytes=COPY_BYTES):
        self.src = np.ones(nbytes // 8)
        self.dst = np.zeros_like(self.src)
        self._copy, self._read = _stream_copy(), _stream_read()

    def call(self, what, threads):
        """``(fn, method, threads_used, bytes per call)`` of one yardstick."""
        src, dst = self.src, self.dst
        if what == "copy":
            nbytes = 2 * src.nbytes
            if self._copy is not None:
                return ((lambda: self._copy(dst, src, threads)),
                        "fastloss._lib.kernels.stream_copy", threads, nbytes)
            plain, name = (lambda: np.copyto(dst, src)), "numpy.copyto"
        else:
            nbytes = src.nbytes
            if self._read is not None:
                return ((lambda: self._read(src, threads)),
                        "fastloss._lib.kernels.stream_read", threads, nbytes)
            plain, name = (lambda: np.sum(src)), "numpy.sum"
        return plain, name + (" (single-threaded)" if threads > 1 else ""), 1, nbytes


def _yardstick(what, threads_list, yardsticks, repeats, progress):
    """Median GB/s of one yardstick call (``what``: "copy" or "read") at each thread
    count, timed back to back.  Without the extension the NumPy stand-in runs on one
    thread, and its figure at more threads is the one-thread figure, marked so."""
    import fastloss

    bytes_key = {"copy": "bytes_per_copy", "read": "bytes_per_read"}[what]
    saved = fastloss.get_num_threads()
    out = []
    try:
        for t in threads_list:
            fastloss.set_num_threads(t)
            fn, method, used, nbytes = yardsticks.call(what, t)
            fn()
            times = [_time_calls(fn, 1) for _ in range(repeats)]
            row = {
                "threads": t, "method": method, "threads_used": used, bytes_key: nbytes,
                "gb_per_s": nbytes / statistics.median(times) / 1e9,
                "best_gb_per_s": nbytes / min(times) / 1e9,
            }
            out.append(row)
            if progress:
                progress(f"{what} bandwidth, {t} thread(s): {row['gb_per_s']:.1f} GB/s ({method})")
    finally:
        fastloss.set_num_threads(saved)
    return out


# ---------------------------------------------------------------------------------------
# SIMD level of every side
# ---------------------------------------------------------------------------------------
def simd_environment(level, environ=None):
    """The environment variables ``--simd LEVEL`` sets: ``{name: value}``.  XLA_FLAGS
    keeps its other flags and gets ``--xla_cpu_max_isa`` (replaced if there)."""
    environ = os.environ if environ is None else environ
    xla = [f for f in environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_cpu_max_isa")]
    return {"ATEN_CPU_CAPABILITY": ATEN_CPU_CAPABILITY[level],
            "XLA_FLAGS": " ".join([*xla, f"--xla_cpu_max_isa={XLA_CPU_MAX_ISA[level]}"])}


def apply_simd(level, environ=None):
    """Set the peers' environment variables (before torch or jax is imported) and
    fastloss's SIMD level; returns warnings (a list of str) for what could not take
    effect.  A level the CPU lacks raises ``ValueError`` (from fastloss)."""
    import fastloss

    environ = os.environ if environ is None else environ
    if level not in SIMD_LEVELS:
        raise ValueError(f"SIMD level must be one of {SIMD_LEVELS}; got {level!r}")
    warns = [f"{mod} was imported before --simd: its {var} may not take effect"
             for mod, var in (("torch", "ATEN_CPU_CAPABILITY"), ("jax", "XLA_FLAGS"))
             if mod in sys.modules]
    environ.update(simd_environment(level, environ))
    try:
        fastloss.set_simd_level(level)
    except RuntimeError as exc:  # no compiled extension: the peers are still set
        warns.append(f"fastloss: {exc}")
    return warns


def simd_levels(requested, peers, environ=None):
    """What each side runs at (the JSON's ``machine.simd_levels``): fastloss's level,
    what torch reports (``torch.backends.cpu.get_cpu_capability()``), and the
    environment variables that set them (the user's own, without ``--simd``)."""
    import fastloss

    environ = os.environ if environ is None else environ
    info = {"requested": requested, "fastloss": fastloss.get_simd_level(),
            "FASTLOSS_SIMD": environ.get("FASTLOSS_SIMD")}
    torch = next((peers[n]["torch"] for n in ("torch", "torch.compile") if n in peers), None)
    if torch is not None:
        with contextlib.suppress(Exception):
            info["torch"] = torch.backends.cpu.get_cpu_capability()
    info["ATEN_CPU_CAPABILITY"] = environ.get("ATEN_CPU_CAPABILITY")
    info["XLA_FLAGS"] = environ.get("XLA_FLAGS")
    if "jax" in peers:  # XLA has no call that reports its ISA: the flag it was given
        isa = [f for f in (info["XLA_FLAGS"] or "").split() if "xla_cpu_max_isa" in f]
        info["jax"] = isa[-1].partition("=")[2] if isa else "best"
    return info


def _simd_line(info):
    """The header's line: ``fastloss avx2; torch AVX2 (ATEN_CPU_CAPABILITY=avx2); ...``."""
    if not info:
        return None
    env = info.get("FASTLOSS_SIMD")
    parts = [f"fastloss {info.get('fastloss') or 'none (no extension)'}"
             + (f" (FASTLOSS_SIMD={env})" if env and not info.get("requested") else "")]
    aten = info.get("ATEN_CPU_CAPABILITY")
    if info.get("torch") or aten:
        parts.append(f"torch {info.get('torch') or '?'}"
                     + (f" (ATEN_CPU_CAPABILITY={aten})" if aten else ""))
    if info.get("inductor"):
        parts.append(f"torch.compile {info['inductor']}")
    if info.get("jax"):
        parts.append(f"jax {info['jax']}" + (" (XLA_FLAGS --xla_cpu_max_isa)"
                                             if info["jax"] != "best" else ""))
    where = f" (--simd {info['requested']})" if info.get("requested") else ""
    return f"  SIMD{where}: " + "; ".join(parts)


# ---------------------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------------------
def machine_info():
    info = {"cpu_model": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "simd_flags": [], "memory_gb": None,
            "platform": platform.platform()}
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    info["cpu_model"] = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    info["simd_flags"] = sorted(
                        f for f in flags
                        if f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                 "avx512vl", "avx512dq"))
                    break
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    return info


def _fastloss_config():
    import fastloss

    cfg = getattr(fastloss, "config", None)
    if cfg is None:
        from fastloss._runtime import config as cfg
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
            for k, v in cfg().items()}


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
@dataclass
class Settings:
    functions: tuple | None = None  # None: every function in SPECS
    shapes: tuple | None = None  # None: each family's defaults
    dtypes: tuple | None = None  # None: each family's defaults
    threads: tuple | None = None  # None: 1 and the core count
    repeats: int | None = None
    quick: bool = False
    peers: tuple = PEER_NAMES
    budget: float | None = None  # seconds per row; 0 = no limit
    min_sample: float | None = None
    copy_bytes: int = COPY_BYTES
    backend: str | None = None
    simd: str | None = None  # "baseline", "avx2", "avx512": every side (see apply_simd)
    # Per-family defaults used where ``shapes``/``dtypes`` are None, e.g.
    # ``{"softmax": (((64, 10), (8192, 1000)), ("float32", "float64")), ...}``
    # (benchmarks/run_suite.py's grid).  A family missing here keeps the built-in defaults.
    grid: dict | None = None

    def resolved(self):
        s = Settings(**self.__dict__)
        if s.threads is None:
            s.threads = tuple(sorted({1, _cores()}))
        if s.repeats is None:
            s.repeats = QUICK_REPEATS if s.quick else REPEATS
        if s.budget is None:
            s.budget = QUICK_ROW_BUDGET_SECONDS if s.quick else ROW_BUDGET_SECONDS
        if s.min_sample is None:
            s.min_sample = QUICK_MIN_SAMPLE_SECONDS if s.quick else MIN_SAMPLE_SECONDS
        if s.functions is None:
            s.functions = tuple(function_names())
        return s


def plan(settings):
    """The cases to run: ``[(shape, dtype, [spec, ...])]``, grouped so that each input
    pool is built once.  Functions missing from ``fastloss`` are returned apart."""
    import fastloss

    groups, skipped = {}, []
    for name in settings.functions:
        spec = SPEC_BY_NAME[name]
        if getattr(fastloss, name, None) is None:
            skipped.append({"function": name, "reason": "not in fastloss (yet)"})
            continue
        grid_shapes, grid_dtypes = (settings.grid or {}).get(spec.family, (None, None))
        shapes = settings.shapes or grid_shapes or _default_shapes(spec, settings.quick)
        dtypes = settings.dtypes or grid_dtypes or _default_dtypes(spec, settings.quick)
        for shape in shapes:
            for dtype in dtypes:
                groups.setdefault((tuple(shape), np.dtype(dtype).name), []).append(spec)
    return list(groups.items()), skipped


def _fallback_module():
    try:
        return importlib.import_module("fastloss.fallback")
    except Exception:  # noqa: BLE001 - reported as a note on every row
        return None


def run(settings=None, progress=None, **kwargs):
    """Run the benchmark; returns the result dict (what ``--json`` writes).

    ``settings`` is a :class:`Settings`, or give its fields as keyword arguments.
    ``progress`` is called with one line of text per step (``main`` sends it to stderr).
    """
    import fastloss

    settings = (settings or Settings(**kwargs)).resolved()
    say = progress or (lambda msg: None)
    if settings.backend:
        fastloss.set_backend(settings.backend)
    saved_simd = fastloss.get_simd_level()
    if settings.simd:
        for w in apply_simd(settings.simd):  # before Peers imports torch and jax
            say(f"warning: {w}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        say(f"note: load average {load:.2f} before the run: other processes share the "
            "cores, expect noisy times (marked ~)")
    peers = Peers(settings.peers)
    for name, why in peers.missing.items():
        say(f"peer {name} not available ({why.splitlines()[0][:100]})")
    simd = simd_levels(settings.simd, peers)
    if (settings.simd and simd.get("torch")
            and simd["torch"].lower() != ATEN_CPU_CAPABILITY[settings.simd]):
        say(f"warning: torch runs at {simd['torch']}, not {settings.simd}")
    fallback = _fallback_module()
    groups, skipped = plan(settings)
    for s in skipped:
        say(f"skipping {s['function']}: {s['reason']}")

    result = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "settings": {
            "functions": list(settings.functions), "threads": list(settings.threads),
            "repeats": settings.repeats, "quick": settings.quick,
            "row_budget_seconds": settings.budget, "min_sample_seconds": settings.min_sample,
            "peers_requested": list(settings.peers), "simd": settings.simd,
            "shapes": None if settings.shapes is None else [list(s) for s in settings.shapes],
            "dtypes": None if settings.dtypes is None else list(settings.dtypes),
            "grid": None if settings.grid is None else {
                fam: {"shapes": [list(s) for s in sh], "dtypes": list(dt)}
                for fam, (sh, dt) in settings.grid.items()},
        },
        "machine": {**machine_info(), "simd_levels": simd},
        "fastloss_config": _fastloss_config(),
        "versions": {"numpy": np.__version__, **peers.versions},
        "peers_missing": peers.missing,
        "copy_bandwidth": [],
        "read_bandwidth": [],
        "results": [],
        "skipped": skipped,
        "interrupted": False,
    }
    if fallback is None:
        say("fastloss.fallback cannot be imported: no fallback column")

    saved_threads = fastloss.get_num_threads()
    ctx = Ctx(peers, progress=say)
    n_rows = sum(
        len(spec.variants) * len(settings.threads) for _, specs in groups for spec in specs)
    row_no = 0
    try:
        yardsticks = Yardsticks(settings.copy_bytes)
        for what in ("copy", "read"):
            result[f"{what}_bandwidth"] = _yardstick(what, settings.threads, yardsticks,
                                                     COPY_REPEATS, say)
        bandwidth = {b["threads"]: b["gb_per_s"] for b in result["copy_bandwidth"]}
        bandwidth.update({("read", b["threads"]): b["gb_per_s"]
                          for b in result["read_bandwidth"]})
        for (shape, dtype), specs in groups:
            say(f"inputs {'x'.join(map(str, shape))} {dtype}")
            t_group = time.perf_counter()
            pool = InputPool(shape, dtype)
            for spec in specs:
                fl_fn = getattr(fastloss, spec.name)
                fb_fn = getattr(fallback, spec.name, None) if fallback else None
                for variant in spec.variants:
                    if variant != "fresh" and _accepts(fl_fn, "out") is False:
                        row_no += len(settings.threads)
                        result["skipped"].append({
                            "function": spec.name, "variant": variant,
                            "shape": list(shape), "dtype": dtype,
                            "reason": "fastloss function has no out= parameter"})
                        continue
                    for threads in settings.threads:
                        row_no += 1
                        label = (f"[{row_no}/{n_rows}] {spec.name} {variant} "
                                 f"{'x'.join(map(str, shape))} {dtype} threads={threads}")
                        t0 = time.perf_counter()
                        row = _run_row(spec, pool, variant, threads, ctx, fl_fn, fb_fn,
                                       settings, bandwidth, yardsticks, label, say)
                        if isinstance(row, dict):
                            row["wall_seconds"] = time.perf_counter() - t0
                            result["results"].append(row)
                        else:
                            result["skipped"].append({
                                "function": spec.name, "variant": variant,
                                "shape": list(shape), "dtype": dtype, "threads": threads,
                                "reason": f"fastloss call failed: {row}"})
            say(f"{'x'.join(map(str, shape))} {dtype} done in "
                f"{time.perf_counter() - t_group:.1f} s")
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


def _in_row_yardsticks(spec, pool, threads, yardsticks, settings):
    """The yardstick contenders a DRAM-sized row times in its round-robin (see
    IN_ROW_YARDSTICK_DIVISOR): ``{contender name: (what, bytes per call)}`` and the
    contenders; none for smaller rows."""
    data_bytes = math.prod(pool.shape) * pool.dtype.itemsize
    if yardsticks is None or data_bytes < settings.copy_bytes // IN_ROW_YARDSTICK_DIVISOR:
        return {}, []
    wanted = ("copy", "read") if spec.read_only else ("copy",)
    names, contenders = {}, []
    for what in wanted:
        fn, _method, _used, nbytes = yardsticks.call(what, threads)
        name = f"{what} yardstick"
        names[name] = (what, nbytes)
        contenders.append(Contender(name, fn, False))
    return names, contenders


def _run_row(spec, pool, variant, threads, ctx, fl_fn, fb_fn, settings, bandwidth, yardsticks,
             label, say):
    """One row: the result dict, or the error's text when the fastloss call fails."""
    import fastloss

    fastloss.set_num_threads(threads)
    ctx.peers.set_num_threads(threads)
    ctx.threads = threads
    notes = []
    try:
        contenders = build_contenders(spec, pool, variant, ctx, fl_fn, fb_fn, notes)
        ystick_names, ystick_contenders = _in_row_yardsticks(spec, pool, threads, yardsticks,
                                                             settings)
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
    n, c = _rows(pool.shape)
    nbytes = spec.bytes(n, c, pool.dtype.itemsize)
    fl = stats["fastloss"]["median"]
    gbps = nbytes / fl / 1e9
    bw = in_row.get("copy", bandwidth.get(threads))
    bw_read = in_row.get("read", bandwidth.get(("read", threads)))
    times_ms = {name: s["median"] * 1e3 for name, s in stats.items()}
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
        "speedup": {name: s["median"] / fl for name, s in stats.items() if name != "fastloss"},
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
        # start-of-run figures: rows smaller than copy_bytes / IN_ROW_YARDSTICK_DIVISOR)
        "in_row_bandwidth": in_row,
        "notes": notes,
    }
    fb = times_ms.get("fallback")
    say(f"{label}: fastloss {times_ms['fastloss']:.3f} ms"
        + (f", fallback {fb:.3f} ms, speed-up {fb / times_ms['fastloss']:.2f}" if fb else "")
        + "".join(f"; {n}" for n in notes))
    return row


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------
def _fmt_ms(ms):
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3g}"


def _fmt_x(x):
    return "-" if x is None else f"{x:.2f}"


def format_table(result):
    """The table (a str) with the header that says what every number means."""
    rows = result["results"]
    peers = [p for p in PEER_NAMES if any(p in r["times_ms"] for r in rows)]
    cfg = result.get("fastloss_config", {})
    m = result.get("machine", {})
    versions = ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items())
    lines = [
        "fastloss benchmark",
        f"  fastloss {cfg.get('fastloss', '?')}, backend {cfg.get('backend', '?')}"
        f" (extension: {cfg.get('extension', '?')}); {versions}",
        f"  CPU: {m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} cores"
        f" ({' '.join(m.get('simd_flags', []))})",
    ]
    simd_line = _simd_line(m.get("simd_levels"))
    if simd_line:
        lines.append(simd_line)
    if "loadavg_start" in m:
        end = m.get("loadavg_end")
        lines.append(f"  load average (1 min): {m['loadavg_start'][0]:.2f} at the start"
                     + (f", {end[0]:.2f} at the end" if end else "")
                     + f" (this run adds about 1; more means other work shared the"
                       f" {m.get('cpu_count')} cores)")
    for b in result.get("copy_bandwidth", []):
        lines.append(f"  copy bandwidth at {b['threads']} thread(s): {b['gb_per_s']:.1f} GB/s"
                     f" ({b['method']}; best {b['best_gb_per_s']:.1f})")
    for b in result.get("read_bandwidth", []):
        lines.append(f"  read bandwidth at {b['threads']} thread(s): {b['gb_per_s']:.1f} GB/s"
                     f" ({b['method']}; best {b['best_gb_per_s']:.1f})")
    lines += [
        "  ms = median time of one call over interleaved repeats (contenders round-robin).",
        "  speed-up = fallback ms / fastloss ms; >1 means fastloss is faster, <1 slower"
        " (printed as measured).",
        "  peer columns = the peer's ms and fastloss's speed-up over it (peer ms / fastloss"
        " ms); * = the peer allocates its output on every call where fastloss reuses one.",
        "  output: fresh = each call allocates its output; out= = a preallocated output"
        " reused; out=logits = the gradient overwrites the logits.",
        "  GB/s = bytes the call must move (reads + writes, see --json) / fastloss time;"
        " %copy = that / the copy bandwidth at the same thread count",
        "  (over 100% when the data stays in cache, or when a call reads more than it writes);"
        " %read = GB/s / the read bandwidth, for calls that write no N x C array.",
        "  Rows with at least 1/{} of the copy size in data time the copy (and read)"
        " yardstick in their own round-robin, right after fastloss,".format(
            IN_ROW_YARDSTICK_DIVISOR),
        "  and their %copy / %read use that figure (\"in_row_bandwidth\" in --json);"
        " the other rows use the figures above.",
        f"  ~ = noisy: the samples' interquartile range exceeds {NOISY_IQR:.0%} of their median.",
    ]
    if result.get("interrupted"):
        lines.append("  INTERRUPTED: partial results.")
    header = ["function", "output", "shape", "dtype", "thr", "fastloss ms", "fallback ms",
              "speed-up", *(f"{p} ms (x)" for p in peers), "GB/s", "%copy", "%read"]
    order = {name: i for i, name in enumerate(function_names())}
    body = []
    for r in sorted(rows, key=lambda r: (order.get(r["function"], 1e9), r["function"],
                                         r["variant"] != "fresh", r["variant"],
                                         r["shape"][-1], r["shape"], r["dtype"],
                                         r["threads"])):
        t = r["times_ms"]

        def ms(name, r=r):
            noisy = r.get("stats_ms", {}).get(name, {}).get("noisy")
            return _fmt_ms(r["times_ms"].get(name)) + ("~" if noisy else "")

        cells = [r["function"], r["variant"], "x".join(map(str, r["shape"])), r["dtype"],
                 str(r["threads"]), ms("fastloss"), ms("fallback"),
                 _fmt_x(r["speedup"].get("fallback"))]
        for p in peers:
            if p in t:
                star = "*" if r["allocates"].get(p) and not r["allocates"]["fastloss"] else ""
                cells.append(f"{ms(p)} ({r['speedup'][p]:.2f}{star})")
            else:
                cells.append("-")
        pct, pct_read = r.get("pct_copy_bandwidth"), r.get("pct_read_bandwidth")
        cells += [f"{r['gb_per_s']:.1f}", "-" if pct is None else f"{pct:.0f}%",
                  "-" if pct_read is None else f"{pct_read:.0f}%"]
        body.append(cells)
    if not body:
        lines.append("")
        lines.append("(no rows: no benchmarked function exists in fastloss yet)")
    else:
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
        left = {0, 1, 2, 3}

        def fmt(cells):
            return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        lines += ["", fmt(header), fmt(["-" * w for w in widths])]
        lines += [fmt(b) for b in body]
    notes = sorted({(r["function"], n) for r in rows for n in r["notes"]})
    skipped = result.get("skipped", [])
    if notes or skipped:
        lines.append("")
    for fn, n in notes:
        lines.append(f"  note: {fn}: {n}")
    for s in skipped:
        where = f" {s['variant']}" if "variant" in s else ""
        if "shape" in s:
            where += f" {'x'.join(map(str, s['shape']))} {s['dtype']}"
        if "threads" in s:
            where += f" threads={s['threads']}"
        lines.append(f"  skipped: {s['function']}{where}: {s['reason']}")
    return "\n".join(lines)


def bench(functions=None, shapes=None, dtypes=None, threads=None, repeats=None, quick=False,
          peers=PEER_NAMES, json_file=None, file=None, progress=None, simd=None):
    """Run the benchmark and print the table (to ``file``, default stdout).

    Parameters
    ----------
    functions : sequence of str, optional
        Function names (see :func:`function_names`); default every one.
    shapes : sequence of tuple of int, optional
        Shapes for every function; default each family's own list.
    dtypes : sequence of str, optional
        ``"float32"`` and/or ``"float64"``; default each family's own list.
    threads : sequence of int, optional
        Thread counts; default 1 and the core count.
    repeats : int, optional
        Interleaved repeats per row (default 15, 5 with ``quick``).
    quick : bool
        Fewer shapes and repeats: under a minute.
    peers : sequence of str
        Peers to include when installed, among ``"scipy", "torch", "torch.compile",
        "jax", "sklearn"``.
    json_file : str, optional
        Also write every figure as JSON there.
    file : file-like, optional
        Where the table goes (default stdout).
    progress : callable or False, optional
        Called with one line per step; default: print to stderr; False: silent.
    simd : str, optional
        ``"baseline"``, ``"avx2"`` or ``"avx512"``: fastloss's SIMD level for the run,
        and ATEN_CPU_CAPABILITY / XLA_FLAGS for PyTorch and JAX (which read them when
        imported: call this before importing them).

    Returns
    -------
    dict
        The results, as written by ``json_file``.
    """
    result = run(Settings(
        functions=None if functions is None else tuple(functions),
        shapes=None if shapes is None else tuple(tuple(s) for s in shapes),
        dtypes=None if dtypes is None else tuple(dtypes),
        threads=None if threads is None else tuple(threads),
        repeats=repeats, quick=quick, peers=tuple(peers), simd=simd),
        progress=_stderr if progress is None else (progress or None))
    print(format_table(result), file=file or sys.stdout)
    if json_file:
        write_json(result, json_file)
    return result


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def write_json(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
        f.write("\n")


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def _csv(value):
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse_shapes(value):
    """``"1024x100,64x10"`` -> ``((1024, 100), (64, 10))``."""
    shapes = []
    for item in _csv(value):
        try:
            shape = tuple(int(d) for d in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad shape {item!r}: use e.g. 1024x100") from None
        if len(shape) < 1 or any(d < 1 for d in shape):
            raise argparse.ArgumentTypeError(f"bad shape {item!r}: dimensions must be >= 1")
        shapes.append(shape)
    return tuple(shapes)


def _functions(value):
    names = _csv(value)
    unknown = [n for n in names if n not in SPEC_BY_NAME]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown function(s) {', '.join(unknown)}; known: {', '.join(function_names())}")
    return names


def _dtypes(value):
    names = _csv(value)
    bad = [n for n in names if n not in ("float32", "float64")]
    if bad:
        raise argparse.ArgumentTypeError(f"dtypes are float32 and float64; got {bad}")
    return names


def _threads(value):
    try:
        threads = tuple(int(t) for t in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad thread list {value!r}: use e.g. 1,2") from None
    if not threads or any(t < 1 for t in threads):
        raise argparse.ArgumentTypeError("thread counts must be >= 1")
    return threads


def _peers(value):
    if value.strip().lower() in ("", "none"):
        return ()
    if value.strip().lower() == "all":
        return PEER_NAMES
    names = _csv(value)
    bad = [n for n in names if n not in PEER_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(f"peers are {', '.join(PEER_NAMES)} (or none/all)")
    return names


def _positive_int(value):
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def make_parser():
    p = argparse.ArgumentParser(
        prog="python -m fastloss.bench",
        description="Benchmark fastloss against its NumPy fallback and, when installed, "
                    "SciPy, PyTorch (CPU, eager and torch.compile), JAX and scikit-learn.  "
                    "The table goes to stdout, "
                    "progress to stderr.")
    p.add_argument("--quick", action="store_true",
                   help="fewer shapes and repeats: under a minute")
    p.add_argument("--functions", type=_functions, metavar="NAMES",
                   help="comma-separated function names (default: all; see --list)")
    p.add_argument("--shapes", type=parse_shapes, metavar="SHAPES",
                   help='shapes for every function, e.g. "1024x100,64x10" '
                        "(default: each family's own)")
    p.add_argument("--dtypes", type=_dtypes, metavar="DTYPES",
                   help="float32,float64 (default: both for the softmax and cross-entropy "
                        "families, float32 for the rest)")
    p.add_argument("--threads", type=_threads, metavar="N,...",
                   help=f"thread counts (default: 1,{_cores()})")
    p.add_argument("--repeats", type=_positive_int, metavar="R",
                   help=f"interleaved repeats per row (default {REPEATS}, "
                        f"{QUICK_REPEATS} with --quick)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help=f"time budget per row: rows whose repeats would take longer run "
                        f"fewer (at least {MIN_REPEATS}); 0 = no limit (default "
                        f"{ROW_BUDGET_SECONDS}, {QUICK_ROW_BUDGET_SECONDS} with --quick)")
    p.add_argument("--min-sample", type=float, metavar="SECONDS",
                   help=f"minimum duration of one timed sample: the call repeats inside it "
                        f"(default {MIN_SAMPLE_SECONDS}, {QUICK_MIN_SAMPLE_SECONDS} with --quick)")
    p.add_argument("--peers", type=_peers, default=PEER_NAMES, metavar="NAMES",
                   help="peers to include when installed: scipy,torch,torch.compile,jax,"
                        "sklearn, all, none (default all)")
    p.add_argument("--backend", choices=("cython", "numpy"),
                   help="fastloss backend to time (default: the active one)")
    p.add_argument("--simd", choices=SIMD_LEVELS, metavar="LEVEL",
                   help="SIMD level of every side: fastloss's, PyTorch's "
                        "ATEN_CPU_CAPABILITY (default/avx2/avx512) and JAX's "
                        "--xla_cpu_max_isa (SSE4_2/AVX2/AVX512); one of "
                        f"{', '.join(SIMD_LEVELS)} (default: each side's best)")
    p.add_argument("--copy-mb", type=_positive_int, default=COPY_BYTES // 2**20, metavar="MB",
                   help=f"size of each array of the copy-bandwidth yardstick "
                        f"(default {COPY_BYTES // 2**20})")
    p.add_argument("--json", metavar="FILE", help="write every figure as JSON to FILE")
    p.add_argument("--list", action="store_true",
                   help="list the functions (present in fastloss or not) and peers, and exit")
    return p


def _list(file):
    import fastloss

    fallback = _fallback_module()
    print("function                                     fastloss  fallback  family", file=file)
    for s in SPECS:
        have = "yes" if getattr(fastloss, s.name, None) is not None else "no"
        fb = "yes" if fallback is not None and getattr(fallback, s.name, None) else "no"
        print(f"{s.name:<45}{have:<10}{fb:<10}{s.family}", file=file)
    peers = Peers()
    for name in PEER_NAMES:
        state = peers.versions.get(name) or "not installed"
        print(f"peer {name}: {state}", file=file)


def _warn_if_extension_missing(progress):
    """Say loudly when the compiled kernels are absent: the table would then time the
    NumPy fallback against itself.  The usual cause is running ``python -m
    fastloss.bench`` from the source tree, which puts the uncompiled ``fastloss/``
    first on sys.path; the installed ``fastloss-bench`` command does not."""
    import fastloss
    from fastloss import _runtime

    if _runtime._kernels is None:
        progress(
            "WARNING: fastloss's compiled extension is not loaded (imported from "
            f"{os.path.dirname(fastloss.__file__)}): 'fastloss' rows time the NumPy fallback. "
            "Install the package and run `fastloss-bench`, or `python -m fastloss.bench` "
            "from outside the source tree.")


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.list:
        _list(sys.stdout)
        return 0
    if args.simd:
        import fastloss

        available = fastloss.available_simd_levels()
        if available and args.simd not in available:
            parser.error(f"--simd {args.simd}: this CPU has {', '.join(available)}")

    progress = _stderr
    _warn_if_extension_missing(progress)
    settings = Settings(
        functions=args.functions, shapes=args.shapes, dtypes=args.dtypes,
        threads=args.threads, repeats=args.repeats, quick=args.quick, peers=args.peers,
        budget=args.budget, min_sample=args.min_sample, copy_bytes=args.copy_mb * 2**20,
        backend=args.backend, simd=args.simd)
    result = run(settings, progress=progress)
    print(format_table(result), flush=True)
    if args.json:
        write_json(result, args.json)
        progress(f"wrote {args.json}")
    return 130 if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
