"""The types in the public signatures, spelled once.

Inputs are anything NumPy turns into an array (``ArrayLike``); outputs and ``out`` are
floating arrays.  A loss is a NumPy floating scalar (``"mean"``, ``"sum"``) or an array
(``"none"``); the static type cannot tell which from the reduction, so it is the union.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple, Optional, SupportsIndex, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ArrayLike",
    "Axes",
    "Backend",
    "FloatArray",
    "KLReduction",
    "LinearCrossEntropyResult",
    "LinearCEExtra",
    "Loss",
    "LossAndGrad",
    "Reduction",
]

FloatArray = NDArray[np.floating[Any]]
Loss = Union[np.floating[Any], FloatArray]
LossAndGrad = tuple[Loss, FloatArray]
Axes = Union[SupportsIndex, tuple[SupportsIndex, ...], None]
Reduction = Literal["mean", "sum", "none"]
KLReduction = Literal["mean", "sum", "none", "batchmean"]
Backend = Literal["cython", "numpy"]
LinearCEExtra = Literal["loss_per_row", "logsumexp", "argmax", "accuracy", "entropy"]


class LinearCrossEntropyResult(NamedTuple):
    """What ``linear_cross_entropy`` returns, always this one type whatever the flags.

    ``loss`` as ``cross_entropy`` returns it; the gradients with respect to ``hidden``
    (its shape), ``weight`` (``(V, H)``) and ``bias`` (``(V,)``), each ``None`` when not
    asked for (``return_grad=False``, or no bias); ``extras``: the requested by-products
    by name (an empty dict when none were asked for).
    """

    loss: Loss
    grad_hidden: Optional[FloatArray]
    grad_weight: Optional[FloatArray]
    grad_bias: Optional[FloatArray]
    extras: dict[str, Any]
