"""SciPy's own softmax and log_softmax cases (scipy/special/tests/test_softmax.py and
test_log_softmax.py), ported to fastloss's defaults: SciPy reduces the whole array by
default, fastloss the last axis, so ``axis=None`` is passed where SciPy's cases rely on
their default. Both backends.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_almost_equal, assert_equal

import fastloss

# mpmath (dps 200), as in SciPy's test_log_softmax.py
LOG_SOFTMAX_ARANGE4 = np.array([-3.4401896985611953, -2.4401896985611953,
                                -1.4401896985611953, -0.44018969856119533])


def test_softmax_fixtures(backend):
    assert_equal(fastloss.softmax(np.array([1000.0, 0, 0, 0]), axis=None), [1, 0, 0, 0])
    assert_almost_equal(fastloss.softmax(np.array([1.0, 1.0]), axis=None), [0.5, 0.5])


def test_softmax_multi_axes(backend):
    x = np.array([[1000.0, 0], [1000.0, 0]])
    assert_almost_equal(fastloss.softmax(x, axis=0), [[0.5, 0.5], [0.5, 0.5]])
    assert_equal(fastloss.softmax(x, axis=1), [[1, 0], [1, 0]])


def test_softmax_dims(backend):
    assert fastloss.softmax(np.array([1.0, 0]), axis=None).ndim == 1
    assert fastloss.softmax(np.array([[1.0, 0], [2, 3]]), axis=None).ndim == 2


@pytest.mark.parametrize("x, expected", [
    (np.array([1000.0, 1.0]), np.array([0.0, -999.0])),
    (np.arange(4.0), LOG_SOFTMAX_ARANGE4),
])
def test_log_softmax(backend, x, expected):
    assert_allclose(fastloss.log_softmax(x, axis=None), expected, rtol=1e-13)


def test_log_softmax_translation(backend):
    assert_allclose(fastloss.log_softmax(np.arange(4.0) + 100, axis=None),
                    LOG_SOFTMAX_ARANGE4, rtol=1e-13)


def test_log_softmax_noneaxis(backend):
    assert_allclose(fastloss.log_softmax(np.arange(4.0).reshape(2, 2), axis=None),
                    LOG_SOFTMAX_ARANGE4.reshape(2, 2), rtol=1e-13)


@pytest.mark.parametrize("axis, expected", [
    (0, np.log(0.5) * np.ones((2, 2))),
    (1, np.array([[0.0, -999.0], [0.0, -999.0]])),
])
def test_axes(backend, axis, expected):
    x = np.array([[1000.0, 1.0], [1000.0, 1.0]])
    assert_allclose(fastloss.log_softmax(x, axis=axis), expected, rtol=1e-13)


def test_log_softmax_2d(backend):
    x = np.arange(8.0).reshape(2, 4)
    expected = np.stack([LOG_SOFTMAX_ARANGE4] * 2)
    assert_allclose(fastloss.log_softmax(x, axis=1), expected, rtol=1e-13)
    assert_allclose(fastloss.log_softmax(x.T, axis=0), expected.T, rtol=1e-13)


def test_log_softmax_3d(backend):
    x = np.arange(8.0).reshape(2, 2, 2)
    expected = np.stack([LOG_SOFTMAX_ARANGE4] * 2).reshape(2, 2, 2)
    assert_allclose(fastloss.log_softmax(x, axis=(1, 2)), expected, rtol=1e-13)


def test_log_softmax_scalar(backend):
    assert_allclose(fastloss.log_softmax(np.array(1.0), axis=None), 0.0, rtol=1e-13)
