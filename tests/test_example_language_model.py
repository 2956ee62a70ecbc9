"""The language-model examples, run as written: the output layer of a small language
model trained by plain SGD with ``linear_cross_entropy``.

README is the exact text of the README's example (between the ```python fences), GUIDE
the fuller one that docs/user-guide.md includes from this file ("Large vocabularies");
keep them in sync.  The tests run both under both backends and check what they print: a
loss that falls.
"""
import math
import pathlib
import re

import pytest

README = '''\
import numpy as np
import fastloss

rng = np.random.default_rng(0)
V, H, N = 2000, 32, 512  # vocabulary, hidden size, tokens
h = rng.standard_normal((N, H), dtype=np.float32)  # last hidden states
W = np.zeros((V, H), np.float32)  # output layer, as in nn.Linear
y = rng.integers(0, V, N)  # next tokens
for step in range(5):
    res = fastloss.linear_cross_entropy(h, W, y)  # no (N, V) logits
    W -= 20 * res.grad_weight  # SGD
    print(f"step {step}  loss {res.loss:.3f}")
'''

GUIDE = '''\
import numpy as np

import fastloss

# Token pairs (previous, next) from a random grammar: each of the V tokens is followed
# by one of its 4 successors, at random, so the best possible loss is log(4).
rng = np.random.default_rng(0)
V, H, N = 1000, 32, 1024                 # vocabulary, hidden size, tokens per batch
successors = np.array([rng.choice(V, 4, replace=False) for _ in range(V)])


def batch():
    prev = rng.integers(0, V, N)
    return prev, successors[prev, rng.integers(0, 4, N)]


# A bigram language model: an embedding table gives each token's hidden state, the
# output layer (weight (V, H) as in torch.nn.Linear, and a bias) its next-token logits.
E = rng.normal(0.0, 1.0, (V, H)).astype(np.float32)
W = np.zeros((V, H), np.float32)
b = np.zeros(V, np.float32)

learning_rate = 20.0
for step in range(301):
    prev, nxt = batch()
    nxt[:16] = -100                      # padding: no loss, no gradient
    res = fastloss.linear_cross_entropy(E[prev], W, nxt, bias=b, z_loss=1e-4,
                                        extras=("accuracy",))
    W -= learning_rate * res.grad_weight
    b -= learning_rate * res.grad_bias
    np.subtract.at(E, prev, learning_rate * res.grad_hidden)   # back into the table
    if step % 50 == 0:
        print(f"step {step:3d}   loss {res.loss:.3f}   accuracy {res.extras['accuracy']:.1%}")

prev, nxt = batch()                      # held-out tokens: the loss alone, no gradients
res = fastloss.linear_cross_entropy(E[prev], W, nxt, bias=b, return_grad=False)
print(f"held-out loss {res.loss:.3f} (best possible {np.log(4):.3f})")
'''

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(code, capsys):
    exec(compile(code, "fastloss_example.py", "exec"), {"__name__": "__main__"})
    return capsys.readouterr().out


def test_readme_example_trains(backend, capsys):
    printed = run(README, capsys)
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", printed)]
    assert len(losses) == 5
    assert losses[0] == pytest.approx(math.log(2000), rel=1e-4)   # W = 0: uniform
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0], losses


def test_guide_example_trains_and_generalizes(backend, capsys):
    printed = run(GUIDE, capsys)
    losses = [float(v) for v in re.findall(r"step +\d+ +loss ([0-9.]+)", printed)]
    accuracy = [float(v) for v in re.findall(r"accuracy ([0-9.]+)%", printed)]
    held_out = float(re.search(r"held-out loss ([0-9.]+)", printed).group(1))
    assert len(losses) == 7 and len(accuracy) == 7
    assert losses[0] > 6.5 and losses[-1] < 2.2 and losses[-1] < losses[1], losses
    assert accuracy[-1] > 15.0, accuracy   # chance is 0.1%, the best 25%
    assert math.log(4) < held_out < 2.2, printed


def source(name):
    path = ROOT / name
    if not path.exists():
        pytest.skip(f"{name} is not beside the tests (installed-package run)")
    return path.read_text()


def test_readme_shows_this_example_and_stays_small():
    """The README's copy is README; the README stays under 8 KiB."""
    text = source("README.md")
    assert README.strip() in text
    assert len(text.encode()) < 8192


def test_user_guide_includes_this_example():
    """docs/user-guide.md's literalinclude starts right after GUIDE's opening line
    (its first occurrence in this file)."""
    text = source("docs/user-guide.md")
    assert ":start-after: GUIDE = '''\\" in text
