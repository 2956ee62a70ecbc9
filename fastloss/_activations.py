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
from fastloss._typing import ArrayLike, FloatArray
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
def sigmoid(x: ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, stable for any ``|x|``.

    Parameters
    ----------
    x : array_like
        Input data.
    out : ndarray, optional
        A location into which the result is stored; may be ``x`` itself.

    Returns
    -------
    ndarray
        The result in the dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` of complex, object or other non-real data; an ``out`` that is not a NumPy
        array.
    ValueError
        An ``out`` of the wrong shape or dtype, or read-only.
    """
    return _forward(x, out, SIGMOID)


@with_fallback(_fallback.sigmoid_backward)
def sigmoid_backward(grad: ArrayLike, y: ArrayLike, *,
                     out: FloatArray | None = None) -> FloatArray:
    """Gradient of sigmoid given its output ``y``: ``grad * y * (1 - y)``.

    Parameters
    ----------
    grad : array_like
        Gradient with respect to the sigmoid's output.
    y : array_like
        The sigmoid's output, same shape as ``grad``.
    out : ndarray, optional
        A location into which the result is stored; may be ``grad`` or ``y``.

    Returns
    -------
    ndarray
        The gradient with respect to the sigmoid's input.

    Raises
    ------
    TypeError
        ``grad`` or ``y`` of complex, object or other non-real data; an ``out`` that is
        not a NumPy array.
    ValueError
        ``grad`` and ``y`` of different shapes; an ``out`` of the wrong shape or dtype,
        or read-only.
    """
    return _backward(grad, y, "y", out, SIGMOID)


# -- tanh ------------------------------------------------------------------------------------

@with_fallback(_fallback.tanh)
def tanh(x: ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """Hyperbolic tangent.

    Parameters
    ----------
    x : array_like
        Input data.
    out : ndarray, optional
        A location into which the result is stored; may be ``x`` itself.

    Returns
    -------
    ndarray
        The result in the dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` of complex, object or other non-real data; an ``out`` that is not a NumPy
        array.
    ValueError
        An ``out`` of the wrong shape or dtype, or read-only.
    """
    return _forward(x, out, TANH)


@with_fallback(_fallback.tanh_backward)
def tanh_backward(grad: ArrayLike, y: ArrayLike, *,
                  out: FloatArray | None = None) -> FloatArray:
    """Gradient of tanh given its output ``y``: ``grad * (1 - y**2)``.

    Parameters
    ----------
    grad : array_like
        Gradient with respect to tanh's output.
    y : array_like
        The output of tanh, same shape as ``grad``.
    out : ndarray, optional
        A location into which the result is stored; may be ``grad`` or ``y``.

    Returns
    -------
    ndarray
        The gradient with respect to tanh's input.

    Raises
    ------
    TypeError
        ``grad`` or ``y`` of complex, object or other non-real data; an ``out`` that is
        not a NumPy array.
    ValueError
        ``grad`` and ``y`` of different shapes; an ``out`` of the wrong shape or dtype,
        or read-only.
    """
    return _backward(grad, y, "y", out, TANH)


# -- relu and leaky relu -------------------------------------------------------------------

@with_fallback(_fallback.relu)
def relu(x: ArrayLike, *, out: FloatArray | None = None) -> FloatArray:
    """Rectified linear unit ``max(x, 0)`` (NaN stays NaN).

    Parameters
    ----------
    x : array_like
        Input data.
    out : ndarray, optional
        A location into which the result is stored; may be ``x`` itself.

    Returns
    -------
    ndarray
        The result in the dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` of complex, object or other non-real data; an ``out`` that is not a NumPy
        array.
    ValueError
        An ``out`` of the wrong shape or dtype, or read-only.
    """
    return _forward(x, out, RELU)


@with_fallback(_fallback.relu_backward)
def relu_backward(grad: ArrayLike, x: ArrayLike, *,
                  out: FloatArray | None = None) -> FloatArray:
    """Gradient of relu given its input ``x``: ``grad`` where ``x > 0``, else 0.

    As in PyTorch, the gradient is 0 at ``x == 0`` and passes through where ``x`` is
    NaN (``x <= 0`` is false there).

    Parameters
    ----------
    grad : array_like
        Gradient with respect to relu's output.
    x : array_like
        The input of relu, same shape as ``grad``.
    out : ndarray, optional
        A location into which the result is stored; may be ``grad`` or ``x``.

    Returns
    -------
    ndarray
        The gradient with respect to relu's input.

    Raises
    ------
    TypeError
        ``grad`` or ``x`` of complex, object or other non-real data; an ``out`` that is
        not a NumPy array.
    ValueError
        ``grad`` and ``x`` of different shapes; an ``out`` of the wrong shape or dtype,
        or read-only.
    """
    return _backward(grad, x, "x", out, RELU)


@with_fallback(_fallback.leaky_relu)
def leaky_relu(x: ArrayLike, negative_slope: float = 0.01, *,
               out: FloatArray | None = None) -> FloatArray:
    """Leaky relu: ``x`` where ``x > 0``, else ``negative_slope * x``.

    Parameters
    ----------
    x : array_like
        Input data.
    negative_slope : float, optional
        Slope for negative inputs. Default 0.01.
    out : ndarray, optional
        A location into which the result is stored; may be ``x`` itself.

    Returns
    -------
    ndarray
        The result in the dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` of complex, object or other non-real data; a ``negative_slope`` that is
        not a real number; an ``out`` that is not a NumPy array.
    ValueError
        An ``out`` of the wrong shape or dtype, or read-only; a NaN ``negative_slope``.
    """
    slope = check_real(negative_slope, "negative_slope")
    return _forward(x, out, LEAKY_RELU, slope)


@with_fallback(_fallback.leaky_relu_backward)
def leaky_relu_backward(grad: ArrayLike, x: ArrayLike, negative_slope: float = 0.01, *,
                        out: FloatArray | None = None) -> FloatArray:
    """Gradient of leaky relu given its input ``x``.

    Parameters
    ----------
    grad : array_like
        Gradient with respect to leaky relu's output.
    x : array_like
        The input of leaky relu, same shape as ``grad``.
    negative_slope : float, optional
        Slope for negative inputs. Default 0.01.
    out : ndarray, optional
        A location into which the result is stored; may be ``grad`` or ``x``.

    Returns
    -------
    ndarray
        ``grad`` where ``x > 0``, else ``negative_slope * grad``.

    Raises
    ------
    TypeError
        ``grad`` or ``x`` of complex, object or other non-real data; a
        ``negative_slope`` that is not a real number; an ``out`` that is not a NumPy
        array.
    ValueError
        ``grad`` and ``x`` of different shapes; an ``out`` of the wrong shape or dtype,
        or read-only; a NaN ``negative_slope``.
    """
    slope = check_real(negative_slope, "negative_slope")
    return _backward(grad, x, "x", out, LEAKY_RELU, slope)


# -- softplus ------------------------------------------------------------------------------

@with_fallback(_fallback.softplus)
def softplus(x: ArrayLike, beta: float = 1.0, threshold: float = 20.0, *,
             out: FloatArray | None = None) -> FloatArray:
    """Softplus ``log(1 + exp(beta * x)) / beta``; linear where ``beta * x > threshold``.

    Parameters
    ----------
    x : array_like
        Input data.
    beta : float, optional
        Sharpness (nonzero). Default 1.
    threshold : float, optional
        Above this value of ``beta * x`` the result is ``x`` itself, as in PyTorch.
        Default 20.
    out : ndarray, optional
        A location into which the result is stored; may be ``x`` itself.

    Returns
    -------
    ndarray
        The result in the dtype of ``x``.

    Raises
    ------
    TypeError
        ``x`` of complex, object or other non-real data; a ``beta`` or ``threshold``
        that is not a real number; an ``out`` that is not a NumPy array.
    ValueError
        An ``out`` of the wrong shape or dtype, or read-only; ``beta`` equal to 0; a NaN
        ``beta`` or ``threshold``.
    """
    beta, threshold = _softplus_options(beta, threshold)
    return _forward(x, out, SOFTPLUS, beta, threshold)


@with_fallback(_fallback.softplus_backward)
def softplus_backward(grad: ArrayLike, x: ArrayLike, beta: float = 1.0,
                      threshold: float = 20.0, *,
                      out: FloatArray | None = None) -> FloatArray:
    """Gradient of softplus given its input ``x``: ``grad * sigmoid(beta * x)``.

    Parameters
    ----------
    grad : array_like
        Gradient with respect to softplus's output.
    x : array_like
        The input of softplus, same shape as ``grad``.
    beta : float, optional
        Sharpness (nonzero). Default 1.
    threshold : float, optional
        Above this value of ``beta * x`` the gradient passes through unchanged.
    out : ndarray, optional
        A location into which the result is stored; may be ``grad`` or ``x``.

    Returns
    -------
    ndarray
        The gradient with respect to softplus's input.

    Raises
    ------
    TypeError
        ``grad`` or ``x`` of complex, object or other non-real data; a ``beta`` or
        ``threshold`` that is not a real number; an ``out`` that is not a NumPy array.
    ValueError
        ``grad`` and ``x`` of different shapes; an ``out`` of the wrong shape or dtype,
        or read-only; ``beta`` equal to 0; a NaN ``beta`` or ``threshold``.
    """
    beta, threshold = _softplus_options(beta, threshold)
    return _backward(grad, x, "x", out, SOFTPLUS, beta, threshold)
