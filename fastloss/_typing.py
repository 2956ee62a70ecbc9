"""The types in the public signatures, spelled once.

Inputs are anything NumPy turns into an array (``ArrayLike``); outputs and ``out`` are
floating arrays.  A loss is a NumPy floating scalar (``"mean"``, ``"sum"``) or an array
(``"none"``); the static type cannot tell which from the reduction, so it is the union.
"""
from __future__ import annotations

from typing import Any, Literal, SupportsIndex, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ArrayLike",
    "Axes",
    "Backend",
    "FloatArray",
    "KLReduction",
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
