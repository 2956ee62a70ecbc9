"""The peers fastloss is timed against, and the contenders of one row.

Each peer is imported lazily, inside a try: a peer that is not installed (or fails to
load) is reported and left out, never an error.  The peers:

  fallback        fastloss.fallback, the NumPy implementation of the same API: the same
                  call, with out= when its signature has it
  scipy           scipy.special.softmax / log_softmax / logsumexp (always allocating)
  torch           PyTorch eager on CPU tensors that share the arrays' memory
  torch.compile   Inductor's C++ of the same calls, compiled once per (function, shape,
                  dtype, threads) before the timing
  jax             jax.jit of the same functions; its thread pool is XLA's own
  sklearn         HalfMultinomialLoss (cross-entropy and its gradient)

Every peer runs at the row's thread count where it can be set: torch.set_num_threads
(torch.compile too), sklearn's n_threads.  NumPy, SciPy and so the fallback are
single-threaded; JAX's pool is fixed when it starts.

build_contenders() returns fastloss first, then the peers that have the row's function.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fastloss.bench.cases import SPEC_BY_NAME
from fastloss.bench.timing import JAX_SETTLE_SECONDS, SETTLE_SECONDS, Contender

PEER_NAMES = ("fallback", "scipy", "torch", "torch.compile", "jax", "sklearn")
# The default run's peers: PyTorch eager is the reference a user compares against, and
# the cheapest to run.  torch.compile's compiles (seconds each, per shape and thread
# count), JAX's spinning thread pool and the single-threaded NumPy/SciPy calls would
# each cost more than the rest of the run: --peers all (or --full) adds them. Where
# PyTorch is not installed, the default run compares against the NumPy fallback.
DEFAULT_PEERS = ("torch",)


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
    def _load_fallback():
        module = importlib.import_module("fastloss.fallback")
        return {"version": "numpy " + np.__version__, "module": module}

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


def _fallback_builder(name, pool, variant, ctx, kinds):
    fn = getattr(ctx.peers["fallback"]["module"], name, None)
    if fn is None:
        raise LookupError("fastloss.fallback has no such function")
    allow = variant == "fresh" or accepts(fn, "out") is not False
    return own_call("fallback", fn, SPEC_BY_NAME[name], pool, variant, allow)


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
    "fallback": _fallback_builder,
    "scipy": _scipy_builder,
    "torch": _torch_builder,
    "torch.compile": _torch_compile_builder,
    "jax": _jax_builder,
    "sklearn": _sklearn_builder,
}


def accepts(fn, param):
    """True/False when ``fn``'s signature tells, None when it has none (a builtin)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return param in sig.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def own_call(name, fn, spec, pool, variant, allow_out=True):
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
    i = spec.inputs.index(variant[len("out="):])
    args[i] = args[i].copy()
    kw["out"] = args[i]
    return Contender(name, lambda: fn(*args, **kw), False, "in place")


def build_contenders(spec, pool, variant, ctx, fastloss_fn, notes):
    """fastloss first, then the peers asked for that can run this row."""
    out = [own_call("fastloss", fastloss_fn, spec, pool, variant)]
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
