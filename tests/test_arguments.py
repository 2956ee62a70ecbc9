"""Arguments that must not be guessed: a bool is not an axis and a flag is not a
truthy value.

``operator.index(True)`` is 1, so ``axis=True`` used to mean axis 1 (NumPy 2 raises
``TypeError``), and ``kl_div(log_target="yes")`` chose the formula by truthiness.
Every public function that takes ``axis`` is called here under both backends, on a
square input and targets for which axis 0 and axis 1 are both valid: accepting the
bool would return an answer instead of raising.
"""
import inspect

import numpy as np
import pytest

import fastloss
from fastloss._validation import normalize_axis

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5], [-2.0, 1.0, 0.25]])
LABELS = np.array([2, 0, 1])
PROBS = np.full((3, 3), 1 / 3)


def _axis_calls():
    """A valid call of every public function with an ``axis`` parameter."""
    y = fastloss.fallback.softmax(X)
    return {
        "softmax": lambda axis: fastloss.softmax(X, axis=axis),
        "log_softmax": lambda axis: fastloss.log_softmax(X, axis=axis),
        "logsumexp": lambda axis: fastloss.logsumexp(X, axis=axis),
        "softmax_backward": lambda axis: fastloss.softmax_backward(X, y, axis=axis),
        "log_softmax_backward": lambda axis: fastloss.log_softmax_backward(X, np.log(y), axis=axis),
        "cross_entropy": lambda axis: fastloss.cross_entropy(X, LABELS, axis=axis),
        "cross_entropy_backward": lambda axis: fastloss.cross_entropy_backward(X, PROBS, axis=axis),
        "cross_entropy_with_grad": lambda axis: fastloss.cross_entropy_with_grad(
            X, LABELS, axis=axis),
        "nll_loss": lambda axis: fastloss.nll_loss(np.log(y), LABELS, axis=axis),
        "nll_loss_with_grad": lambda axis: fastloss.nll_loss_with_grad(np.log(y), LABELS, axis=axis),
        "multi_margin_loss": lambda axis: fastloss.multi_margin_loss(X, LABELS, axis=axis),
        "multi_margin_loss_with_grad": lambda axis: fastloss.multi_margin_loss_with_grad(
            X, LABELS, axis=axis),
    }


AXIS_CALLS = _axis_calls()


def test_every_function_with_an_axis_is_covered():
    with_axis = {name for name in fastloss.__all__
                 if callable(getattr(fastloss, name))
                 and "axis" in inspect.signature(getattr(fastloss, name)).parameters}
    assert with_axis == set(AXIS_CALLS)


@pytest.mark.parametrize("name", sorted(AXIS_CALLS))
def test_calls_are_valid_for_both_int_axes(backend, name):
    """The calls below fail only because of the bool: axis 0 and 1 both work."""
    for axis in (0, 1, -1):
        AXIS_CALLS[name](axis)


@pytest.mark.parametrize("axis", [True, False, np.True_, np.False_], ids=repr)
@pytest.mark.parametrize("name", sorted(AXIS_CALLS))
def test_bool_axis_is_rejected(backend, name, axis):
    with pytest.raises(TypeError, match=r"axis.*bool"):
        AXIS_CALLS[name](axis)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_bool_in_an_axis_tuple_is_rejected(backend, name):
    f = getattr(fastloss, name)
    with pytest.raises(TypeError, match=r"axis.*bool"):
        f(X, axis=(0, True))


def test_normalize_axis_rejects_bools_and_keeps_ints():
    for axis in (True, False, np.True_, (0, True)):
        with pytest.raises(TypeError, match="axis must be an integer, not bool"):
            normalize_axis(axis, 2)
    assert normalize_axis(np.int64(1), 2) == (1,)
    assert normalize_axis((np.intp(-1), 0), 2) == (0, 1)


def test_check_bool():
    from fastloss._loss_validation import check_bool

    assert check_bool(True, "flag") is True
    assert check_bool(np.False_, "flag") is False
    for value in ("yes", "", 1, 0, 0.0, None, [True], np.array(True), np.int8(1)):
        with pytest.raises(TypeError, match="flag must be a bool"):
            check_bool(value, "flag")


@pytest.mark.parametrize("log_target", ["yes", "", 1, 0, None, [True]], ids=repr)
@pytest.mark.parametrize("name", ["kl_div", "kl_div_with_grad"])
def test_kl_div_log_target_must_be_a_bool(backend, name, log_target):
    f = getattr(fastloss, name)
    with pytest.raises(TypeError, match="log_target must be a bool"):
        f(np.log(PROBS), PROBS, log_target=log_target)
    f(np.log(PROBS), PROBS, log_target=np.False_)   # a NumPy bool is a bool
