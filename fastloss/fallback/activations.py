"""Elementwise activations and their backward passes in plain NumPy.

Semantics follow PyTorch: ``sigmoid_backward`` and ``tanh_backward`` take the forward
output ``y``; ``relu_backward``, ``leaky_relu_backward`` and ``softplus_backward`` take
the forward input ``x``.  Sigmoid and softplus are written so that no ``exp`` ever sees
a positive argument: they stay finite and accurate for any ``|x|``.
"""
from __future__ import annotations

import numpy as np

from fastloss._loss_validation import check_real, check_same_shape, common_float_dtype
from fastloss._validation import as_float_array, check_out, finish_float

__all__ = [
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "softplus",
    "softplus_backward",
]


# -- stable building blocks (also used by the losses) -------------------------------

def stable_sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow: ``exp`` only ever sees ``-|x|``."""
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))                     # in (0, 1]
        # x >= 0: 1 / (1 + e^-x);  x < 0: e^x / (1 + e^x), the same value rewritten.
        return np.where(x >= 0, 1, e) / (1 + e)


def stable_softplus(x):
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``."""
    with np.errstate(all="ignore"):
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


# -- helpers -------------------------------------------------------------------------

def _unary(x, out, name="x"):
    arr, res_dtype = as_float_array(x, name)
    if out is not None:
        check_out(out, arr.shape, res_dtype)
    return arr, res_dtype


def _binary(grad, other, other_name, out):
    g, g_dtype = as_float_array(grad, "grad")
    o, o_dtype = as_float_array(other, other_name)
    check_same_shape(g, o, "grad", other_name)
    # The computation runs in NumPy's promotion of the two (float16 arrays were already
    # made float32 by as_float_array); the result has the promoted result dtype.
    _, res_dtype = common_float_dtype(g_dtype, o_dtype)
    if out is not None:
        check_out(out, g.shape, res_dtype)
    return g, o, res_dtype


# -- sigmoid ---------------------------------------------------------------------------

def sigmoid(x, *, out=None):
    """The NumPy implementation of :func:`fastloss.sigmoid`."""
    arr, res_dtype = _unary(x, out)
    return finish_float(stable_sigmoid(arr), res_dtype, out)


def sigmoid_backward(grad, y, *, out=None):
    """The NumPy implementation of :func:`fastloss.sigmoid_backward`."""
    g, yy, res_dtype = _binary(grad, y, "y", out)
    with np.errstate(all="ignore"):
        return finish_float(g * (yy * (1 - yy)), res_dtype, out)


# -- tanh ------------------------------------------------------------------------------

def tanh(x, *, out=None):
    """The NumPy implementation of :func:`fastloss.tanh`."""
    arr, res_dtype = _unary(x, out)
    return finish_float(np.tanh(arr), res_dtype, out)


def tanh_backward(grad, y, *, out=None):
    """The NumPy implementation of :func:`fastloss.tanh_backward`."""
    g, yy, res_dtype = _binary(grad, y, "y", out)
    with np.errstate(all="ignore"):
        return finish_float(g * (1 - yy * yy), res_dtype, out)


# -- relu and leaky relu ---------------------------------------------------------------

def relu(x, *, out=None):
    """The NumPy implementation of :func:`fastloss.relu`."""
    arr, res_dtype = _unary(x, out)
    return finish_float(np.maximum(arr, 0), res_dtype, out)


def relu_backward(grad, x, *, out=None):
    """The NumPy implementation of :func:`fastloss.relu_backward`."""
    g, xx, res_dtype = _binary(grad, x, "x", out)
    return finish_float(np.where(xx <= 0, 0, g), res_dtype, out)


def leaky_relu(x, negative_slope=0.01, *, out=None):
    """The NumPy implementation of :func:`fastloss.leaky_relu`."""
    slope = check_real(negative_slope, "negative_slope")
    arr, res_dtype = _unary(x, out)
    with np.errstate(all="ignore"):
        return finish_float(np.where(arr > 0, arr, arr * slope), res_dtype, out)


def leaky_relu_backward(grad, x, negative_slope=0.01, *, out=None):
    """The NumPy implementation of :func:`fastloss.leaky_relu_backward`."""
    slope = check_real(negative_slope, "negative_slope")
    g, xx, res_dtype = _binary(grad, x, "x", out)
    with np.errstate(all="ignore"):
        return finish_float(np.where(xx > 0, g, g * slope), res_dtype, out)


# -- softplus --------------------------------------------------------------------------

def _softplus_options(beta, threshold):
    beta = check_real(beta, "beta")
    if beta == 0:
        raise ValueError("beta must be nonzero (softplus divides by it)")
    return beta, check_real(threshold, "threshold")


def softplus(x, beta=1.0, threshold=20.0, *, out=None):
    """The NumPy implementation of :func:`fastloss.softplus`."""
    beta, threshold = _softplus_options(beta, threshold)
    arr, res_dtype = _unary(x, out)
    with np.errstate(all="ignore"):
        bx = arr * beta
        result = np.where(bx > threshold, arr, stable_softplus(bx) / beta)
    return finish_float(result, res_dtype, out)


def softplus_backward(grad, x, beta=1.0, threshold=20.0, *, out=None):
    """The NumPy implementation of :func:`fastloss.softplus_backward`."""
    beta, threshold = _softplus_options(beta, threshold)
    g, xx, res_dtype = _binary(grad, x, "x", out)
    with np.errstate(all="ignore"):
        bx = xx * beta
        # d/dx log(1 + exp(beta x)) / beta = sigmoid(beta x).
        result = np.where(bx > threshold, g, g * stable_sigmoid(bx))
    return finish_float(result, res_dtype, out)
