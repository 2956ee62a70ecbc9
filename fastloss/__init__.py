"""fastloss: fast, numerically stable softmax, log-softmax and cross-entropy for NumPy.

Layers (one job each):
  src/                  C and Cython kernels (SIMD math, OpenMP over rows)
  fastloss._lib         the compiled extension built from src/
  fastloss._softmax ... thin wrappers: validate, allocate, reshape, dispatch; each
                        public function's annotated signature and docstring
  fastloss._layout, _flat, _validation   array plumbing the wrappers share
  fastloss._typing      the types in the public signatures
  fastloss.fallback     the NumPy twin of every function (reference and fallback)
  fastloss._runtime     backend, threads, SIMD level, build information
"""
# The one place the version is written: pyproject.toml reads this literal (setuptools'
# dynamic version), so it must stay a plain string assignment.
__version__ = "0.1.0"

from fastloss._runtime import (  # noqa: E402
    available_simd_levels,
    get_backend,
    get_num_threads,
    get_simd_level,
    set_backend,
    set_num_threads,
    set_simd_level,
    show_config,
)
from fastloss._softmax import (  # noqa: E402
    log_softmax,
    log_softmax_backward,
    logsumexp,
    softmax,
    softmax_backward,
)
from fastloss._cross_entropy import (  # noqa: E402
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_with_grad,
    nll_loss,
    nll_loss_with_grad,
)
from fastloss._linear_cross_entropy import linear_cross_entropy  # noqa: E402
from fastloss._typing import LinearCrossEntropyResult  # noqa: E402
from fastloss._activations import (  # noqa: E402
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from fastloss._losses import (  # noqa: E402
    binary_cross_entropy,
    binary_cross_entropy_with_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_with_grad,
    huber_loss,
    huber_loss_with_grad,
    kl_div,
    kl_div_with_grad,
    mse_loss,
    mse_loss_with_grad,
    multi_margin_loss,
    multi_margin_loss_with_grad,
    smooth_l1_loss,
    smooth_l1_loss_with_grad,
)

from fastloss import fallback  # noqa: E402

__all__ = [
    "fallback",
    "__version__",
    "available_simd_levels",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "get_backend",
    "get_num_threads",
    "get_simd_level",
    "huber_loss",
    "huber_loss_with_grad",
    "kl_div",
    "kl_div_with_grad",
    "leaky_relu",
    "linear_cross_entropy",
    "leaky_relu_backward",
    "log_softmax",
    "log_softmax_backward",
    "logsumexp",
    "mse_loss",
    "mse_loss_with_grad",
    "multi_margin_loss",
    "multi_margin_loss_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
    "relu",
    "relu_backward",
    "set_backend",
    "set_num_threads",
    "set_simd_level",
    "show_config",
    "sigmoid",
    "sigmoid_backward",
    "smooth_l1_loss",
    "smooth_l1_loss_with_grad",
    "softmax",
    "softmax_backward",
    "softplus",
    "softplus_backward",
    "tanh",
    "tanh_backward",
]
