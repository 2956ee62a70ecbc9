"""The bad-input matrix: every public function x every kind of bad argument.

The contract: bad input raises ``TypeError`` / ``ValueError`` / ``IndexError`` with a
message that names the argument (for class labels: the offending value and its
position), under both backends, and writes nothing -- neither into ``out=`` nor into an
input. Each function is described once by a valid call (``CALLS``); the faults are
generated from its signature, so a new parameter or a new function is covered by adding
one line, and ``test_every_public_function_is_in_the_matrix`` fails until it is.
"""
import inspect
from dataclasses import dataclass, field

import numpy as np
import pytest

import fastloss

N, C = 5, 4
_rng = np.random.default_rng(7)
X = _rng.standard_normal((N, C))
LABELS = np.array([0, 3, 1, 2, 0])
PROBS = fastloss.fallback.softmax(_rng.standard_normal((N, C)))
UNIT = 1 / (1 + np.exp(-_rng.standard_normal((N, C))))   # values in (0, 1)
LOG_PROBS = np.log(PROBS)


@dataclass
class Call:
    """A valid call: positional arrays (name -> value), keyword options, and the
    shape of the array result ``out=`` takes (``None``: no ``out=``)."""
    arrays: dict
    options: dict = field(default_factory=dict)
    out_shape: tuple = None
    index_target: bool = False    # ``target`` holds class indices into axis -1
    bad_shapes: dict = field(default_factory=dict)   # arg -> a wrong shape (default a[:-1])

    def run(self, name, arrays=None, **options):
        arrays = dict(self.arrays, **(arrays or {}))
        return getattr(fastloss, name)(*arrays.values(), **dict(self.options, **options))


_CE_OPTIONS = dict(weight=np.ones(C), sample_weight=np.ones(N), label_smoothing=0.1)
HIDDEN, LINEAR_W = _rng.standard_normal((N, 3)), _rng.standard_normal((C, 3))
_LCE_OPTIONS = dict(bias=np.ones(C), class_weight=np.ones(C), sample_weight=np.ones(N),
                    label_smoothing=0.1, softcap=30.0, z_loss=1e-4, chunk_size=2,
                    extras=("accuracy",))

CALLS = {
    "softmax": Call({"x": X}, out_shape=(N, C)),
    "log_softmax": Call({"x": X}, out_shape=(N, C)),
    "logsumexp": Call({"x": X}, out_shape=(N,)),
    "softmax_backward": Call({"grad": X, "y": PROBS}, out_shape=(N, C)),
    "log_softmax_backward": Call({"grad": X, "y": LOG_PROBS}, out_shape=(N, C)),
    "cross_entropy": Call({"logits": X, "target": LABELS}, _CE_OPTIONS, index_target=True),
    "cross_entropy_with_grad": Call({"logits": X, "target": LABELS}, _CE_OPTIONS,
                                    out_shape=(N, C), index_target=True),
    "cross_entropy_backward": Call({"logits": X, "target": LABELS}, _CE_OPTIONS,
                                   out_shape=(N, C), index_target=True),
    # weight[:-1] drops a class (still a valid layer): its bad shape is a hidden size
    # that does not match hidden's.
    "linear_cross_entropy": Call({"hidden": HIDDEN, "weight": LINEAR_W, "target": LABELS},
                                 _LCE_OPTIONS, index_target=True,
                                 bad_shapes={"weight": lambda a: a[:, :-1]}),
    "nll_loss": Call({"log_probs": LOG_PROBS, "target": LABELS}, {"weight": np.ones(C)},
                     index_target=True),
    "nll_loss_with_grad": Call({"log_probs": LOG_PROBS, "target": LABELS},
                               {"weight": np.ones(C)}, index_target=True),
    "multi_margin_loss": Call({"input": X, "target": LABELS}, {"weight": np.ones(C)},
                              index_target=True),
    "multi_margin_loss_with_grad": Call({"input": X, "target": LABELS}, {"weight": np.ones(C)},
                                        index_target=True),
    "binary_cross_entropy": Call({"probs": UNIT, "target": PROBS}, {"weight": np.ones(C)}),
    "binary_cross_entropy_with_grad": Call({"probs": UNIT, "target": PROBS},
                                           {"weight": np.ones(C)}),
    "binary_cross_entropy_with_logits": Call({"logits": X, "target": PROBS},
                                             {"weight": np.ones(C), "pos_weight": np.ones(C)}),
    "binary_cross_entropy_with_logits_with_grad": Call(
        {"logits": X, "target": PROBS}, {"weight": np.ones(C), "pos_weight": np.ones(C)}),
    "kl_div": Call({"input": LOG_PROBS, "target": PROBS}),
    "kl_div_with_grad": Call({"input": LOG_PROBS, "target": PROBS}),
    "mse_loss": Call({"input": X, "target": PROBS}),
    "mse_loss_with_grad": Call({"input": X, "target": PROBS}),
    "smooth_l1_loss": Call({"input": X, "target": PROBS}),
    "smooth_l1_loss_with_grad": Call({"input": X, "target": PROBS}),
    "huber_loss": Call({"input": X, "target": PROBS}),
    "huber_loss_with_grad": Call({"input": X, "target": PROBS}),
    "sigmoid": Call({"x": X}, out_shape=(N, C)),
    "sigmoid_backward": Call({"grad": X, "y": UNIT}, out_shape=(N, C)),
    "tanh": Call({"x": X}, out_shape=(N, C)),
    "tanh_backward": Call({"grad": X, "y": UNIT}, out_shape=(N, C)),
    "relu": Call({"x": X}, out_shape=(N, C)),
    "relu_backward": Call({"grad": X, "x": X}, out_shape=(N, C)),
    "leaky_relu": Call({"x": X}, out_shape=(N, C)),
    "leaky_relu_backward": Call({"grad": X, "x": X}, out_shape=(N, C)),
    "softplus": Call({"x": X}, out_shape=(N, C)),
    "softplus_backward": Call({"grad": X, "x": X}, out_shape=(N, C)),
}

RUNTIME = {"available_simd_levels", "get_backend", "get_num_threads", "get_simd_level",
           "set_backend", "set_num_threads", "set_simd_level", "show_config"}

# Scalar options and a value of the right type but outside the domain (ValueError),
# then one of the wrong type (TypeError). Every such parameter of a public function
# must appear here (test_every_scalar_option_has_bad_values).
BAD_SCALARS = {
    "axis": [(2, ValueError), ("1", TypeError), (1.0, TypeError)],
    "reduction": [("average", ValueError), (None, ValueError)],
    "ignore_index": [(1.5, TypeError), ("x", TypeError)],
    "label_smoothing": [(1.5, ValueError), (-0.1, ValueError), (np.nan, ValueError),
                        ("0.1", TypeError)],
    "grad_output": [("1", TypeError), (np.ones(N + 1), ValueError)],
    "p": [(3, ValueError), ("1", ValueError)],
    "margin": [(np.nan, ValueError), ("1", TypeError)],
    # smooth_l1_loss's beta must be >= 0; softplus takes any nonzero beta (PyTorch too).
    "beta": [(np.nan, ValueError), ("1", TypeError)],
    "delta": [(0.0, ValueError), (np.nan, ValueError), ("1", TypeError)],
    "threshold": [(np.nan, ValueError), ("20", TypeError)],
    "negative_slope": [(np.nan, ValueError), ("0.01", TypeError)],
    "log_target": [("yes", TypeError), (1, TypeError)],
    "keepdims": [("yes", TypeError)],
    "return_sign": [("yes", TypeError), (1, TypeError)],
    "softcap": [(0.0, ValueError), (-1.0, ValueError), (np.inf, ValueError),
                ("30", TypeError)],
    "logit_scale": [(np.nan, ValueError), (np.inf, ValueError), ("1", TypeError)],
    "z_loss": [(-1e-4, ValueError), (np.nan, ValueError), ("0", TypeError)],
    "normalize_by": [(0.0, ValueError), (np.nan, ValueError), ("8", TypeError)],
    "chunk_size": [(0, ValueError), ("big", ValueError), (2.5, TypeError),
                   (True, TypeError)],
    "return_grad": [("yes", TypeError), (1, TypeError)],
    "extras": [(("accuracy", "recall"), ValueError), ("accuracy", TypeError)],
}

# Array-valued options: the wrong length (ValueError) and complex values (TypeError).
ARRAY_OPTIONS = {
    "weight": lambda a: a[:-1],
    "sample_weight": lambda a: a[:-1],
    "pos_weight": lambda a: np.ones(C + 1),
    "b": lambda a: a[:-1],          # logsumexp's weights: (C - 1,) does not broadcast
    "bias": lambda a: a[:-1],
    "class_weight": lambda a: a[:-1],
}


def _faults():
    """(function, fault id, overrides for Call.run, expected exception, text the
    message must contain)."""
    for name, call in CALLS.items():
        params = inspect.signature(getattr(fastloss, name)).parameters
        for i, (arg, value) in enumerate(call.arrays.items()):
            for kind, bad in (("complex", value.astype(complex)),
                              ("object", value.astype(object)),
                              ("string", value.astype(str))):
                yield name, f"{arg}-{kind}", {"arrays": {arg: bad}}, TypeError, arg
            if i > 0 and not (call.index_target and arg == "target"):
                bad = call.bad_shapes.get(arg, lambda a: a[:-1])(value)
                yield (name, f"{arg}-shape", {"arrays": {arg: bad}}, ValueError, arg)
        if call.index_target:
            for label, position in ((C, 3), (-2, 1), (10**12, 4)):
                bad = LABELS.copy()
                bad[position] = label
                yield (name, f"label-{label}", {"arrays": {"target": bad}}, IndexError,
                       f"{label}")
            yield (name, "target-shape", {"arrays": {"target": LABELS[:-1]}}, ValueError,
                   "target")
            yield (name, "target-float-index-shape",
                   {"arrays": {"target": LABELS.astype(float)}}, (TypeError, ValueError),
                   "target")
        for option, values in BAD_SCALARS.items():
            if option in params:
                for value, exc in values:
                    yield name, f"{option}={value!r}", {option: value}, exc, option
        for option, make_bad in ARRAY_OPTIONS.items():
            if option in params and option not in call.arrays:
                good = call.options.get(option, np.ones(N if option == "sample_weight" else C))
                yield name, f"{option}-length", {option: make_bad(good)}, ValueError, option
                yield (name, f"{option}-complex", {option: good.astype(complex)}, TypeError,
                       option)
        if call.out_shape is not None:
            shape = call.out_shape
            read_only = np.zeros(shape)
            read_only.flags.writeable = False
            for kind, out, exc in (("shape", np.zeros(shape[:-1] + (shape[-1] + 1,)), ValueError),
                                   ("dtype", np.zeros(shape, np.float32), ValueError),
                                   ("read-only", read_only, ValueError),
                                   ("list", np.zeros(shape).tolist(), TypeError)):
                yield name, f"out-{kind}", {"out": out}, exc, "out"


FAULTS = list(_faults())


def test_every_public_function_is_in_the_matrix():
    public = {n for n in fastloss.__all__ if callable(getattr(fastloss, n)) and n not in RUNTIME}
    assert public == set(CALLS)


def test_every_scalar_option_has_bad_values():
    covered = set(BAD_SCALARS) | set(ARRAY_OPTIONS) | {"out"}
    for name, call in CALLS.items():
        params = inspect.signature(getattr(fastloss, name)).parameters
        options = {p for p, v in params.items() if v.kind is not v.POSITIONAL_ONLY
                   and p not in call.arrays}
        assert options <= covered, (name, options - covered)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_valid_calls_are_valid(backend, name):
    """Every fault below is one change away from a call that works."""
    CALLS[name].run(name)
    if CALLS[name].out_shape is not None:
        CALLS[name].run(name, out=np.zeros(CALLS[name].out_shape))


def _snapshot(arrays):
    return {k: np.array(v, copy=True) for k, v in arrays.items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize("name, fault, overrides, exc, needle",
                         FAULTS, ids=[f"{f[0]}-{f[1]}" for f in FAULTS])
def test_bad_input_raises_names_it_and_writes_nothing(backend, name, fault, overrides,
                                                      exc, needle):
    call = CALLS[name]
    overrides = dict(overrides)
    arrays = dict(call.arrays, **overrides.pop("arrays", {}))
    arrays = {k: np.array(v, copy=True) for k, v in arrays.items()}
    sentinel = None
    if call.out_shape is not None and "out" not in overrides:
        sentinel = np.full(call.out_shape, 123.0)
        overrides["out"] = sentinel
    before = _snapshot(arrays)
    with pytest.raises(exc) as info:
        call.run(name, arrays=arrays, **overrides)
    assert needle in str(info.value), f"{type(info.value).__name__}: {info.value}"
    for key, value in before.items():
        numeric = value.dtype.kind in "fc"
        assert np.array_equal(arrays[key], value, equal_nan=numeric), f"{key} was written"
    if sentinel is not None:
        assert (sentinel == 123.0).all(), "out was written"
    out = overrides.get("out")
    if isinstance(out, np.ndarray) and out is not sentinel:
        assert not out.any(), "a rejected out was written"


@pytest.mark.parametrize("name", sorted(n for n, c in CALLS.items() if c.index_target))
def test_bad_label_in_nd_target_names_its_index_tuple(backend, name):
    call = CALLS[name]
    arrays = dict(call.arrays)
    first = next(iter(arrays))
    arrays[first] = np.repeat(arrays[first][None], 2, axis=0)   # (2, N, C)
    target = np.repeat(LABELS[None], 2, axis=0)
    target[1, 3] = C + 5
    arrays["target"] = target
    options = {k: v for k, v in call.options.items() if k != "sample_weight"}
    with pytest.raises(IndexError, match=rf"{C + 5}.*\(1, 3\)"):
        getattr(fastloss, name)(*arrays.values(), **options)


@pytest.mark.parametrize("name", ["cross_entropy_with_grad", "cross_entropy_backward"])
def test_bad_label_with_out_over_the_logits_leaves_them(backend, name):
    logits = X.copy()
    target = LABELS.copy()
    target[2] = C
    with pytest.raises(IndexError, match=r"\b2\b"):
        getattr(fastloss, name)(logits, target, out=logits)
    assert np.array_equal(logits, X)
