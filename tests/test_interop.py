"""PyTorch and JAX CPU arrays through DLPack (fastloss._interop): the input is viewed,
not copied; the result is the caller's array type with the NumPy path's values; GPU
arrays, tensors that require grad and JAX ``out=`` are refused with a TypeError."""
import subprocess
import sys

import numpy as np
import pytest

import fastloss

torch = pytest.importorskip("torch")


def test_torch_input_is_viewed_not_copied(monkeypatch):
    x = torch.randn(6, 9, dtype=torch.float64)
    seen = []
    original = np.from_dlpack

    def recording(value, **kwargs):
        view = original(value, **kwargs)
        seen.append(view)
        return view

    monkeypatch.setattr(np, "from_dlpack", recording)
    fastloss.softmax(x)
    assert len(seen) == 1 and np.shares_memory(seen[0], x.numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp", "sigmoid", "relu"])
def test_torch_round_trip_values_and_type(name, dtype):
    x = torch.randn(5, 7, dtype=dtype)
    result = getattr(fastloss, name)(x)
    assert isinstance(result, torch.Tensor) and result.dtype == dtype
    np.testing.assert_array_equal(result.numpy(), getattr(fastloss, name)(x.numpy()))


def test_torch_result_shares_the_numpy_buffer():
    result = fastloss.softmax(torch.randn(3, 4))
    assert result.is_contiguous()
    assert np.shares_memory(result.numpy(), np.from_dlpack(result))


def test_torch_loss_is_a_0d_tensor_like_pytorch():
    x = torch.randn(8, 5, dtype=torch.float64)
    t = torch.randint(0, 5, (8,))
    t[2] = -100
    loss = fastloss.cross_entropy(x, t)
    expected = torch.nn.functional.cross_entropy(x, t)
    assert isinstance(loss, torch.Tensor) and loss.shape == ()
    assert abs(loss.item() - expected.item()) <= 1e-12


def test_torch_loss_and_grad_with_numpy_options():
    x = torch.randn(8, 5, dtype=torch.float64)
    t = torch.randint(0, 5, (8,))
    w = np.linspace(0.5, 2.0, 5)
    loss, grad = fastloss.cross_entropy_with_grad(x, t, weight=w)
    ref_loss, ref_grad = fastloss.cross_entropy_with_grad(x.numpy(), t.numpy(), weight=w)
    assert isinstance(loss, torch.Tensor) and isinstance(grad, torch.Tensor)
    assert loss.item() == ref_loss
    np.testing.assert_array_equal(grad.numpy(), ref_grad)


def test_torch_non_contiguous_tensors():
    base = torch.randn(7, 12, dtype=torch.float64)
    for x in (base.t(), base[:, ::3], base[1:, 2:]):
        result = fastloss.log_softmax(x, axis=0)
        np.testing.assert_array_equal(result.numpy(),
                                      fastloss.log_softmax(x.numpy(), axis=0))


def test_torch_out_is_returned_as_that_tensor():
    x = torch.randn(4, 6)
    out = torch.empty(4, 6)
    assert fastloss.softmax(x, out=out) is out
    np.testing.assert_array_equal(out.numpy(), fastloss.softmax(x.numpy()))
    assert fastloss.softmax(x, out=x) is x     # in place, as with NumPy


def test_torch_requires_grad_is_refused_with_the_way_out():
    x = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(TypeError, match=r"logits requires grad.*detach\(\)"):
        fastloss.cross_entropy(x, torch.tensor([0, 1, 2]))
    fastloss.cross_entropy(x.detach(), torch.tensor([0, 1, 2]))


def test_torch_linear_cross_entropy_named_tuple():
    result = fastloss.linear_cross_entropy(torch.randn(4, 3), torch.randn(6, 3),
                                           torch.randint(0, 6, (4,)))
    assert isinstance(result, fastloss.LinearCrossEntropyResult)
    assert isinstance(result.loss, torch.Tensor)
    assert isinstance(result.grad_hidden, torch.Tensor) and result.grad_bias is None


def test_a_dtype_numpy_lacks_is_a_type_error_naming_the_argument():
    with pytest.raises(TypeError, match="x: a torch array of dtype torch.bfloat16"):
        fastloss.softmax(torch.ones(2, 3, dtype=torch.bfloat16))


class _OnGpu:
    """What a CUDA tensor or a JAX GPU array says through the DLPack protocol."""
    __module__ = "torch"
    requires_grad = False

    def __dlpack_device__(self):
        return (2, 0)   # kDLCUDA


def test_gpu_arrays_are_refused_as_a_cpu_library():
    with pytest.raises(TypeError, match="fastloss is a CPU library"):
        fastloss.softmax(_OnGpu())


def test_jax_round_trip():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 7)), dtype=jnp.float32)
    view = np.from_dlpack(x)
    assert np.shares_memory(view, np.from_dlpack(x))
    result = fastloss.softmax(x)
    assert isinstance(result, jax.Array) and result.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(result), fastloss.softmax(view))
    t = jnp.asarray([0, 1, 2, 3, 4])
    loss = fastloss.cross_entropy(x, t)
    assert isinstance(loss, jax.Array) and loss.shape == ()
    assert float(loss) == fastloss.cross_entropy(view, np.asarray(t))


def test_jax_out_is_refused():
    jax = pytest.importorskip("jax")
    x = jax.numpy.ones((2, 3))
    with pytest.raises(TypeError, match="immutable"):
        fastloss.softmax(np.ones((2, 3), np.float32), out=x)


def test_fastloss_imports_no_array_library():
    """torch, JAX and Dask are recognised by the module of an argument's type; fastloss
    itself imports none of them, not even when it runs."""
    code = ("import sys, numpy as np, fastloss\n"
            "fastloss.cross_entropy(np.zeros((2, 3)), np.zeros(2, np.int64))\n"
            "print(sorted(m for m in ('torch', 'jax', 'dask') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
