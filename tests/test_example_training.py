"""The README's worked example, run as written: a small classifier trained by plain
gradient descent, with fastloss supplying the loss, its gradient and the activation.

EXAMPLE is the exact text for the README (between the ```python fences); keep the
two in sync.  docs/user-guide.md includes EXAMPLE's text from this file.  The test runs
it under both backends and checks what it prints: a loss that falls at every report and
a high training accuracy.
"""
import re

EXAMPLE = '''\
import numpy as np

import fastloss

# Three interleaved spirals: 3 classes x 100 points in 2-D.
rng = np.random.default_rng(0)
n, k = 100, 3
X = np.empty((n * k, 2), dtype=np.float32)
y = np.repeat(np.arange(k), n)
for c in range(k):
    r = np.linspace(0.0, 1.0, n)
    theta = np.linspace(4.0 * c, 4.0 * (c + 1), n) + rng.normal(0.0, 0.2, n)
    X[c * n:(c + 1) * n] = np.c_[r * np.sin(theta), r * np.cos(theta)]

# A two-layer network: 2 inputs -> 100 ReLU units -> 3 logits.
W1 = rng.normal(0.0, 1.0, (2, 100)).astype(np.float32)
b1 = np.zeros(100, dtype=np.float32)
W2 = rng.normal(0.0, 0.1, (100, 3)).astype(np.float32)
b2 = np.zeros(3, dtype=np.float32)

learning_rate = 1.0
for step in range(3001):
    # forward
    z = X @ W1 + b1
    h = fastloss.relu(z)
    logits = h @ W2 + b2
    loss, d_logits = fastloss.cross_entropy_with_grad(logits, y)  # mean loss, d loss / d logits
    # backward
    d_h = d_logits @ W2.T
    d_z = fastloss.relu_backward(d_h, z, out=d_h)                 # in place over d_h
    grads = (X.T @ d_z, d_z.sum(axis=0), h.T @ d_logits, d_logits.sum(axis=0))
    # plain gradient descent
    for param, grad in zip((W1, b1, W2, b2), grads):
        param -= learning_rate * grad
    if step % 500 == 0:
        print(f"step {step:4d}   loss {loss:.4f}")

predicted = np.argmax(fastloss.relu(X @ W1 + b1) @ W2 + b2, axis=1)
print(f"training accuracy: {np.mean(predicted == y):.1%}")
'''


def test_readme_example_trains(backend, capsys):
    exec(compile(EXAMPLE, "fastloss_example.py", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", printed)]
    accuracy = float(re.search(r"training accuracy: ([0-9.]+)%", printed).group(1))
    assert len(losses) == 7
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[0] > 1.0 and losses[-1] < 0.1, losses
    assert accuracy >= 95.0, printed


def test_readme_shows_this_example():
    """The README's copy of the example is this one (skipped outside the source tree)."""
    import pathlib

    import pytest

    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not beside the tests (installed-package run)")
    assert EXAMPLE.strip() in readme.read_text()
