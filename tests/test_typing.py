"""The public API's annotations, as a type checker sees them from a user's code.

* mypy accepts a small, correct training step (softmax, cross_entropy_with_grad with
  ``out=``, a reduction literal) and rejects clearly wrong calls: one run checks both
  files, so the test fails if the annotations stop describing the API either way.
* Every function in ``fastloss.__all__`` is annotated: each parameter and the return.
* ``fastloss/_lib/kernels.pyi`` names every function of the built extension, with its
  parameters.
"""
import ast
import inspect
import pathlib
import textwrap

import pytest

import fastloss
from fastloss import _runtime

GOOD = """
    import numpy as np
    import numpy.typing as npt
    import fastloss

    logits = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    labels = np.arange(8) % 5
    probs: npt.NDArray[np.floating] = fastloss.softmax(logits, axis=-1)
    grad_buf = np.empty_like(logits)
    loss, grad = fastloss.cross_entropy_with_grad(
        logits, labels, reduction="sum", label_smoothing=0.1, out=grad_buf)
    per_row = fastloss.cross_entropy(logits, labels, reduction="none", weight=[1.0] * 5)
    total = float(loss) + float(np.sum(per_row))
    lse, sign = fastloss.logsumexp(logits, b=np.ones(5), return_sign=True)
    total += float(np.sum(sign * np.exp(lse)))
    grad -= 0.1 * grad
    w_out = np.ones((5, 5), np.float32)
    res = fastloss.linear_cross_entropy(logits, w_out, labels, softcap=30.0,
                                        chunk_size="auto", extras=("accuracy", "argmax"))
    total += float(np.sum(res.loss)) + float(res.extras["accuracy"])
    if res.grad_weight is not None:
        w_out -= 0.1 * res.grad_weight
    fastloss.set_backend("numpy")
    n: int = fastloss.get_num_threads()
"""

# mypy must report an error on each line marked so, and on no other.
BAD = """
    import numpy as np
    import fastloss

    x = np.zeros((2, 3))
    fastloss.cross_entropy(x, [0, 1], reduction=3)  # error
    fastloss.cross_entropy(x, [0, 1], reduction="average")  # error
    fastloss.softmax(x, dim=-1)  # error
    fastloss.set_backend("torch")  # error
    fastloss.linear_cross_entropy(x, x, [0, 1], extras=("recall",))  # error
    fastloss.linear_cross_entropy(x, x, [0, 1], chunk_size="big")  # error
"""
BAD_LINES = {i for i, line in enumerate(textwrap.dedent(BAD).lstrip("\n").splitlines(), 1)
             if line.endswith("# error")}


def run_mypy(tmp_path, files):
    """mypy on ``files`` ({name: code}) in ``tmp_path``: ``(stdout, stderr, status)``."""
    api = pytest.importorskip("mypy.api")
    for name, code in files.items():
        (tmp_path / name).write_text(textwrap.dedent(code).lstrip("\n"))
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    # The package under test is the one imported here: an installed copy is found as
    # any PEP 561 package is (through its py.typed), the source tree through mypy_path.
    package_root = pathlib.Path(fastloss.__file__).resolve().parent.parent
    if (package_root / "pyproject.toml").is_file():
        config.write_text(f"[mypy]\nmypy_path = {package_root}\n")
    return api.run(["--config-file", str(config), "--no-error-summary",
                    "--show-error-codes", "--cache-dir", str(tmp_path / ".mypy_cache"),
                    *files])


def test_mypy_accepts_a_user_snippet_and_rejects_wrong_calls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stdout, stderr, status = run_mypy(tmp_path, {"good.py": GOOD, "bad.py": BAD})
    assert "good.py" not in stdout, f"mypy rejects correct code:\n{stdout}{stderr}"
    flagged = {int(line.split(":")[1]) for line in stdout.splitlines()
               if line.startswith("bad.py:") and ": error:" in line}
    assert flagged == BAD_LINES, f"mypy flagged lines {sorted(flagged)}:\n{stdout}{stderr}"
    assert status == 1


PUBLIC = sorted(name for name in fastloss.__all__ if inspect.isfunction(getattr(fastloss, name)))


@pytest.mark.parametrize("name", PUBLIC)
def test_public_function_is_annotated(name):
    signature = inspect.signature(getattr(fastloss, name))
    bare = [p.name for p in signature.parameters.values() if p.annotation is p.empty]
    assert not bare, f"{name}: parameters without annotation: {bare}"
    assert signature.return_annotation is not signature.empty, f"{name}: no return annotation"


def test_py_typed_marker_ships_with_the_package():
    assert (pathlib.Path(fastloss.__file__).parent / "py.typed").is_file()


@pytest.mark.skipif(_runtime.config()["extension"] != "loaded",
                    reason="the compiled extension is not available")
def test_kernel_stub_matches_the_extension():
    from fastloss._lib import kernels

    stub_path = pathlib.Path(kernels.__file__).parent / "kernels.pyi"
    stub = {node.name: [a.arg for a in node.args.args]
            for node in ast.parse(stub_path.read_text()).body
            if isinstance(node, ast.FunctionDef)}
    built = {name: list(inspect.signature(obj).parameters)
             for name, obj in vars(kernels).items()
             if callable(obj) and not name.startswith("_") and not isinstance(obj, type)
             and getattr(obj, "__module__", None) == kernels.__name__}
    assert stub == built
