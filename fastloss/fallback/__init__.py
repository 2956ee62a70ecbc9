"""The NumPy implementation of every public fastloss function.

Plain, readable NumPy with the same signatures as the compiled functions: the
reference in the tests, the baseline of the benchmark, and what runs when the compiled
extension is unavailable or the ``"numpy"`` backend is selected.  Always importable.
Each function is documented once, on the public one (``help(fastloss.softmax)``); its
twin here says so in one line.
"""
from fastloss.fallback.activations import (
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
from fastloss.fallback.cross_entropy import (
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_with_grad,
    nll_loss,
    nll_loss_with_grad,
)
from fastloss.fallback.linear_cross_entropy import linear_cross_entropy
from fastloss.fallback.losses import (
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
from fastloss.fallback.softmax import (
    log_softmax,
    log_softmax_backward,
    logsumexp,
    softmax,
    softmax_backward,
)

__all__ = [
    # softmax family
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    # cross-entropy family
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
    "linear_cross_entropy",
    # other losses
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "kl_div",
    "kl_div_with_grad",
    "mse_loss",
    "mse_loss_with_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_with_grad",
    "huber_loss",
    "huber_loss_with_grad",
    "multi_margin_loss",
    "multi_margin_loss_with_grad",
    # activations
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
