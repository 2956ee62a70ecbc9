"""What the benchmark times: the functions (SPECS), their grids and their input arrays.

A Spec describes one function of fastloss's API: the input arrays it takes, its output
modes ("fresh": every call allocates its output; "out=": a preallocated output reused;
"out=<input>": written over that input), the peers that have the same function, and the
bytes one call must move through memory (the numerator of the table's "%copy").

The grids say which shapes and dtypes each family of functions runs at:
  DEFAULT_GRID   the story in under two minutes on two cores: float32, many short rows,
                 ImageNet-like rows and one long-row vocabulary, the main functions.
  QUICK_GRID     one cache-friendly shape: a smoke test (CI).
  FULL_GRID      every function at the sizes a user meets (--full).
Inputs come from InputPool, built deterministically once per (shape, dtype) and shared
by every function of that shape and dtype.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

TARGET_ITEMSIZE = np.dtype(np.int64).itemsize  # class-index targets are int64

# The functions of the default and quick runs: the library's reason to exist.
MAIN_FUNCTIONS = ("softmax", "log_softmax", "cross_entropy", "cross_entropy_with_grad")

# family -> (shapes, dtypes).  Shapes are (rows, classes): many tiny rows (MNIST-like),
# ImageNet-like, a 32k vocabulary and, for the cross-entropy family of the full grid, a
# 128k vocabulary (Llama 3); all but the first are past a 32 MiB L3 at float32.
FULL_GRID = {
    "softmax": (((65536, 10), (8192, 1000), (2048, 32000)), ("float32", "float64")),
    "cross_entropy": (((65536, 10), (8192, 1000), (2048, 32000), (512, 128256)),
                      ("float32", "float64")),
    "other": (((4096, 4096),), ("float32",)),
}
DEFAULT_GRID = {
    "softmax": (((65536, 10), (8192, 1000), (2048, 32000)), ("float32",)),
    "cross_entropy": (((65536, 10), (8192, 1000), (2048, 32000)), ("float32",)),
    "other": (((4096, 4096),), ("float32",)),
}
# 16 MB at float32: clear of glibc's 32 MiB mmap threshold, whose allocation noise needs
# more repeats than a quick run has.
QUICK_GRID = {
    "softmax": (((4096, 1000),), ("float32",)),
    "cross_entropy": (((4096, 1000),), ("float32",)),
    "other": (((512, 1024),), ("float32",)),
}
GRIDS = {"default": DEFAULT_GRID, "quick": QUICK_GRID, "full": FULL_GRID}


def seed(kind, shape, dtype):
    return zlib.crc32(f"fastloss-bench:{kind}:{shape}:{dtype}".encode())


def rows_classes(shape):
    """(rows, classes) of an N-D shape whose last axis holds the classes."""
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
        return np.random.default_rng(seed(kind, self.shape, self.dtype.name))

    def __getitem__(self, kind):
        if kind not in self._arrays:
            self._arrays[kind] = self._build(kind)
        return self._arrays[kind]

    def _normal(self, kind, scale):
        a = self.rng(kind).standard_normal(self.shape, dtype=self.dtype)
        a *= self.dtype.type(scale)
        return a

    def _build(self, kind):
        _, c = rows_classes(self.shape)
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


@dataclass(frozen=True)
class Spec:
    """How to benchmark one function.

    ``inputs`` names pool arrays passed positionally; ``kwargs`` are extra keyword
    arguments; ``variants`` lists "fresh", "out=" (a reused output buffer of the shape
    of ``out_like``) and "out=<input>" (in place over that input), the reused-output
    one last (``main_variant``: the kernel's own speed, what the default grid times);
    ``bytes`` gives the bytes one call must move as ``bytes(n_rows, n_classes,
    itemsize)``.
    """

    name: str
    family: str  # "softmax", "cross_entropy" or "other": picks the grid's shapes
    inputs: tuple
    bytes: Callable[[int, int, int], int]
    bytes_doc: str
    variants: tuple = ("fresh",)
    out_like: str = ""
    kwargs: dict = field(default_factory=dict)
    peers: tuple = ()
    read_only: bool = False  # writes no N x C array: the read bandwidth is its bound

    @property
    def main_variant(self):
        return self.variants[-1]


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
ALL_PEERS = ("fallback", "scipy", "torch", "torch.compile", "jax")
SPECS = (
    # --- softmax family ---------------------------------------------------------------
    _spec("softmax", "softmax", ["logits"], reads_nc=1, writes_nc=1,
          variants=FRESH_OUT, out_like="logits", kwargs={"axis": -1}, peers=ALL_PEERS),
    _spec("log_softmax", "softmax", ["logits"], reads_nc=1, writes_nc=1,
          variants=FRESH_OUT, out_like="logits", kwargs={"axis": -1}, peers=ALL_PEERS),
    # The output is one value per row: reusing it changes nothing worth a row.
    _spec("logsumexp", "softmax", ["logits"], reads_nc=1, writes_n=1, kwargs={"axis": -1},
          peers=("fallback", "scipy", "torch", "jax")),
    _spec("softmax_backward", "softmax", ["grad", "softmax_y"], reads_nc=2, writes_nc=1,
          variants=FRESH_OUT, out_like="grad", kwargs={"axis": -1},
          peers=("fallback", "torch")),
    _spec("log_softmax_backward", "softmax", ["grad", "log_softmax_y"], reads_nc=2,
          writes_nc=1, variants=FRESH_OUT, out_like="grad", kwargs={"axis": -1},
          peers=("fallback", "torch")),
    # --- cross-entropy family ---------------------------------------------------------
    _spec("cross_entropy", "cross_entropy", ["logits", "target"], reads_nc=1, targets=1,
          peers=("fallback", "torch", "torch.compile", "jax", "sklearn")),
    _spec("cross_entropy_with_grad", "cross_entropy", ["logits", "target"], reads_nc=1,
          targets=1, writes_nc=1, variants=("fresh", "out=logits"),
          peers=("fallback", "torch", "torch.compile", "jax", "sklearn")),
    _spec("cross_entropy_backward", "cross_entropy", ["logits", "target"], reads_nc=1,
          targets=1, writes_nc=1, variants=FRESH_OUT, out_like="logits",
          peers=("fallback",)),
    # nll_loss reads one log-probability per row (any floats serve as log-probabilities).
    _spec("nll_loss", "cross_entropy", ["logits", "target"], reads_n=1, targets=1,
          peers=("fallback", "torch")),
    _spec("nll_loss_with_grad", "cross_entropy", ["logits", "target"], reads_n=1, targets=1,
          writes_nc=1, peers=("fallback", "torch")),
    # --- the other losses, with their gradients ----------------------------------------
    _spec("binary_cross_entropy_with_grad", "other", ["probs", "binary"], reads_nc=2,
          writes_nc=1, peers=("fallback", "torch")),
    _spec("binary_cross_entropy_with_logits_with_grad", "other", ["logits", "binary"],
          reads_nc=2, writes_nc=1, peers=("fallback", "torch")),
    _spec("kl_div_with_grad", "other", ["log_softmax_y", "softmax_y"], reads_nc=2,
          writes_nc=1, peers=("fallback", "torch")),
    _spec("mse_loss_with_grad", "other", ["logits", "other"], reads_nc=2, writes_nc=1,
          peers=("fallback", "torch")),
    _spec("smooth_l1_loss_with_grad", "other", ["logits", "other"], reads_nc=2, writes_nc=1,
          peers=("fallback", "torch")),
    _spec("huber_loss_with_grad", "other", ["logits", "other"], reads_nc=2, writes_nc=1,
          peers=("fallback", "torch")),
    _spec("multi_margin_loss_with_grad", "other", ["logits", "target"], reads_nc=1,
          targets=1, writes_nc=1, peers=("fallback", "torch")),
    # --- activations ------------------------------------------------------------------
    *(
        _spec(act, "other", ["logits"], reads_nc=1, writes_nc=1, variants=FRESH_OUT,
              out_like="logits", peers=("fallback", "torch"))
        for act in ("sigmoid", "tanh", "relu", "leaky_relu", "softplus")
    ),
    _spec("sigmoid_backward", "other", ["grad", "sigmoid_y"], reads_nc=2, writes_nc=1,
          variants=FRESH_OUT, out_like="grad", peers=("fallback", "torch")),
    _spec("tanh_backward", "other", ["grad", "tanh_y"], reads_nc=2, writes_nc=1,
          variants=FRESH_OUT, out_like="grad", peers=("fallback", "torch")),
    *(
        _spec(f"{act}_backward", "other", ["grad", "logits"], reads_nc=2, writes_nc=1,
              variants=FRESH_OUT, out_like="grad", peers=("fallback", "torch"))
        for act in ("relu", "leaky_relu", "softplus")
    ),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}


def function_names():
    """Every function the benchmark knows, in table order."""
    return [s.name for s in SPECS]
