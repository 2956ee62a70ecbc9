"""PyTorch and JAX CPU arrays in and out of the NumPy functions, through DLPack.

Every argument that is a torch tensor or a JAX array is viewed as a NumPy array with
``np.from_dlpack`` -- no copy, whatever its strides -- and the function runs on the
views.  Its results come back as the type that went in: a torch result is
``torch.from_dlpack`` of the NumPy array (no copy; a 0-d loss is a 0-d tensor, as
PyTorch's losses return), a JAX result a new ``jax.numpy`` array (JAX arrays are
immutable, so the NumPy buffer cannot be handed over).  An ``out=`` tensor is
returned as that very tensor.

Refused with ``TypeError``, before anything is computed:
  * an array on another device than the CPU (fastloss is a CPU library);
  * a torch tensor that requires grad: fastloss does not record autograd graphs, and a
    silent detach would hand back a loss whose ``backward()`` fails far from here or
    trains nothing.  The message says to pass ``tensor.detach()`` and to use the
    ``*_with_grad`` functions for gradients;
  * a JAX array as ``out=`` (JAX arrays are immutable);
  * a dtype NumPy does not have (bfloat16).

Neither torch nor JAX is imported here: an argument is recognised by the module of its
type, and the library that made it is already in ``sys.modules``.
"""
from __future__ import annotations

import inspect
import sys
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["array_family", "call_with_dlpack"]

# DLPack's device type of host memory (DLDeviceType.kDLCPU).
DLPACK_CPU = 1


def array_family(value: Any) -> Optional[str]:
    """``"torch"``, ``"jax"`` or ``"dask"`` for an array of those libraries (a Dask
    array, not a Dask DataFrame), else None."""
    module = type(value).__module__
    root = module.partition(".")[0]
    if root == "torch":
        return "torch"
    if root in ("jax", "jaxlib"):
        return "jax"
    if module.startswith("dask.array"):
        return "dask"
    return None


def _as_numpy(value, name, is_out):
    family = array_family(value)
    if family not in ("torch", "jax"):
        return value
    device_type, _ = value.__dlpack_device__()
    if int(device_type) != DLPACK_CPU:
        raise TypeError(
            f"{name} is on a {family} device other than the CPU; fastloss is a CPU "
            f"library: move it to the CPU first (tensor.cpu(), or jax.device_put with a "
            f"CPU device)")
    if family == "torch" and value.requires_grad:
        raise TypeError(
            f"{name} requires grad: fastloss does not record autograd graphs; pass "
            f"{name}.detach(), and use the *_with_grad functions for the gradient")
    if family == "jax" and is_out:
        raise TypeError("out cannot be a JAX array: JAX arrays are immutable")
    try:
        return np.from_dlpack(value)
    except (BufferError, RuntimeError, TypeError) as exc:
        # NumPy has no bfloat16 (among others): the export fails, named here.
        raise TypeError(f"{name}: a {family} array of dtype {value.dtype} has no NumPy "
                        f"view ({exc}); convert it to float32 first") from exc


def _back(result, family, originals):
    """A result of the NumPy function as the caller's array type."""
    if isinstance(result, tuple):
        items = [_back(item, family, originals) for item in result]
        return type(result)(*items) if hasattr(result, "_fields") else tuple(items)
    if isinstance(result, dict):
        return {key: _back(item, family, originals) for key, item in result.items()}
    if not isinstance(result, (np.ndarray, np.generic)):
        return result
    for view, original in originals:
        if result is view:
            return original
    if family == "torch":
        # A fresh, writable, C- or strided NumPy buffer: torch shares it.
        return sys.modules["torch"].from_dlpack(np.asarray(result))
    return sys.modules["jax.numpy"].asarray(result)


def call_with_dlpack(func: Callable[..., Any], signature: inspect.Signature, family: str,
                     args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)`` with torch/JAX arguments viewed as NumPy arrays and the
    results returned as ``family`` arrays; ``signature`` (``func``'s) names the
    arguments in the error messages."""
    bound = signature.bind(*args, **kwargs)
    given = dict(bound.arguments)
    for name, value in given.items():
        bound.arguments[name] = _as_numpy(value, name, name == "out")
    out = given.get("out")
    originals = [] if out is None or bound.arguments["out"] is out \
        else [(bound.arguments["out"], out)]
    return _back(func(*bound.args, **bound.kwargs), family, originals)
