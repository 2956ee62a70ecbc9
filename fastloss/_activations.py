"""Public activations and their backward passes: validate, allocate, flatten, dispatch.

Each function checks its arguments (dtypes, shapes, options, ``out``) *before*
anything is written, lays its arrays out flat (``fastloss._flat``) and hands them to
the elementwise kernel, or -- with the numpy backend -- calls its twin in
``fastloss.fallback``.  No math here.

Conventions (PyTorch's): ``sigmoid_backward`` and ``tanh_backward`` take the forward
*output* ``y``; ``relu_backward``, ``leaky_relu_backward`` and ``softplus_backward``
take the forward *input* ``x``.  Every ``out`` may be one of the inputs (in place).
"""
from __future__ import annotations

from fastloss import _runtime
from fastloss._dispatch import with_fallback
from fastloss import fallback as _fallback
from fastloss._flat import as_flat, flat_order, write_target
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

# The kernels' operation codes (src/csrc/fl_kernels.h, FL_ACT_*).
SIGMOID, TANH, RELU, LEAKY_RELU, SOFTPLUS = range(5)


def _forward(x, out, op, p0=0.0, p1=0.0):
    arr, res_dtype = as_float_array(x, "x")
    if out is not None:
        check_out(out, arr.shape, res_dtype)
    order = flat_order(out if out is not None and out.dtype == arr.dtype else None, arr)
    xf = as_flat(arr, order, arr.dtype)
    result, yf = write_target(out, arr.shape, arr.dtype, order, (xf,))
    _runtime.kernels().activation(xf, yf, op, p0, p1, _runtime.get_num_threads())
    return finish_float(result, res_dtype, out)


def _backward(grad, other, other_name, out, op, p0=0.0, p1=0.0):
    g, g_dtype = as_float_array(grad, "grad")
    z, z_dtype = as_float_array(other, other_name)
    check_same_shape(g, z, "grad", other_name)
    compute, res_dtype = common_float_dtype(g_dtype, z_dtype)
    if out is not None:
        check_out(out, g.shape, res_dtype)
    order = flat_order(out if out is not None and out.dtype == compute else None, g, z)
    gf = as_flat(g, order, compute)
    zf = as_flat(z, order, compute)
    result, of = write_target(out, g.shape, compute, order, (gf, zf))
    _runtime.kernels().activation_backward(gf, zf, of, op, p0, p1, _runtime.get_num_threads())
    return finish_float(result, res_dtype, out)


def _softplus_options(beta, threshold):
    beta = check_real(beta, "beta")
    if beta == 0:
        raise ValueError("beta must be nonzero (softplus divides by it)")
    return beta, check_real(threshold, "threshold")


# -- sigmoid -------------------------------------------------------------------------------

@with_fallback(_fallback.sigmoid)
def sigmoid(x, *, out=None):
    return _forward(x, out, SIGMOID)


@with_fallback(_fallback.sigmoid_backward)
def sigmoid_backward(grad, y, *, out=None):
    return _backward(grad, y, "y", out, SIGMOID)


# -- tanh ------------------------------------------------------------------------------------

@with_fallback(_fallback.tanh)
def tanh(x, *, out=None):
    return _forward(x, out, TANH)


@with_fallback(_fallback.tanh_backward)
def tanh_backward(grad, y, *, out=None):
    return _backward(grad, y, "y", out, TANH)


# -- relu and leaky relu -------------------------------------------------------------------

@with_fallback(_fallback.relu)
def relu(x, *, out=None):
    return _forward(x, out, RELU)


@with_fallback(_fallback.relu_backward)
def relu_backward(grad, x, *, out=None):
    return _backward(grad, x, "x", out, RELU)


@with_fallback(_fallback.leaky_relu)
def leaky_relu(x, negative_slope=0.01, *, out=None):
    slope = check_real(negative_slope, "negative_slope")
    return _forward(x, out, LEAKY_RELU, slope)


@with_fallback(_fallback.leaky_relu_backward)
def leaky_relu_backward(grad, x, negative_slope=0.01, *, out=None):
    slope = check_real(negative_slope, "negative_slope")
    return _backward(grad, x, "x", out, LEAKY_RELU, slope)


# -- softplus ------------------------------------------------------------------------------

@with_fallback(_fallback.softplus)
def softplus(x, beta=1.0, threshold=20.0, *, out=None):
    beta, threshold = _softplus_options(beta, threshold)
    return _forward(x, out, SOFTPLUS, beta, threshold)


@with_fallback(_fallback.softplus_backward)
def softplus_backward(grad, x, beta=1.0, threshold=20.0, *, out=None):
    beta, threshold = _softplus_options(beta, threshold)
    return _backward(grad, x, "x", out, SOFTPLUS, beta, threshold)
