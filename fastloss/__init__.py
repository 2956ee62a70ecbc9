"""fastloss: fast, numerically stable softmax, log-softmax and cross-entropy for NumPy.

Layers (one job each):
  src/                  C and Cython kernels (SIMD math, OpenMP over rows)
  fastloss._lib         the compiled extension built from src/
  fastloss._softmax ... thin wrappers: validate, allocate, reshape, dispatch
  fastloss.fallback     the NumPy twin of every function (reference and fallback)
  fastloss._runtime     backend, threads, SIMD level, build information
"""
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
