"""SHD / SSC loaders on small .h5 files written here in the Heidelberg layout; binning checked by hand."""

import sys

import numpy as np
import pytest

from braintrace.datasets import shd, ssc
from braintrace.errors import OptionalDependencyError

h5py = pytest.importorskip("h5py")


def _write(path, times, units, labels, *, drop=None):
    with h5py.File(path, "w") as f:
        vt, vu = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.uint16)
        if drop != "spikes/times":
            t = f.create_dataset("spikes/times", (len(times),), dtype=vt)
            for i, a in enumerate(times):
                t[i] = np.asarray(a, np.float32)
        u = f.create_dataset("spikes/units", (len(units),), dtype=vu)
        for i, a in enumerate(units):
            u[i] = np.asarray(a, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), np.uint16))
    return path


TIMES = [[0.0, 0.05, 0.051, 0.99, 1.2], [0.5], []]
UNITS = [[0, 699, 699, 350, 3], [10], []]


@pytest.fixture
def small(tmp_path):
    return _write(tmp_path / "shd_small.h5", TIMES, UNITS, [3, 19, 0])


def test_binning_by_hand(small):
    d = shd(small, n_steps=10, max_time=1.0)
    assert d.inputs.shape == (10, 3, 700) and d.inputs.dtype == np.float32
    assert d.targets.tolist() == [3, 19, 0] and d.mask.shape == (10, 3) and d.mask.min() == 1
    expected = np.zeros((10, 3, 700), np.float32)
    expected[0, 0, 0] = 1  # t=0.0
    expected[0, 0, 699] = 2  # t=0.05 and 0.051 share step 0, unit 699
    expected[9, 0, 350] = 1  # t=0.99
    expected[5, 1, 10] = 1  # t=0.5; t=1.2 >= max_time is dropped
    assert np.array_equal(d.inputs, expected)


def test_pooling_binary_and_limit(small):
    d = shd(small, n_steps=10, max_time=1.0, n_channels=7, binary=True, limit=2)
    assert d.inputs.shape == (10, 2, 7)
    assert d.inputs[0, 0].tolist() == [1, 0, 0, 0, 0, 0, 1]  # units 0 and 699 -> channels 0 and 6, clipped
    assert d.inputs[9, 0, 3] == 1 and d.inputs[5, 1, 0] == 1
    longer = shd(small, n_steps=7, max_time=1.4)
    assert longer.inputs.sum() == 6  # every spike is inside 1.4 s


def test_ssc_reads_the_same_layout(tmp_path):
    path = _write(tmp_path / "ssc_small.h5", [[0.1, 0.2]], [[5, 6]], [34])
    d = ssc(path, n_steps=5)
    assert d.targets.tolist() == [34] and d.inputs.sum() == 2 and d.inputs[0, 0, 5] == 1 and d.inputs[1, 0, 6] == 1


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shd_train\.h5\.gz.*gunzip"):
        shd(tmp_path / "nope.h5")


def test_wrong_layout_and_bad_units(tmp_path):
    bad = _write(tmp_path / "bad.h5", TIMES, UNITS, [0, 0, 0], drop="spikes/times")
    with pytest.raises(ValueError, match="spikes/times"):
        shd(bad)
    worse = _write(tmp_path / "worse.h5", [[0.1]], [[700]], [0])
    with pytest.raises(ValueError, match="outside 0..699"):
        shd(worse)
    with pytest.raises(ValueError, match="n_channels"):
        shd(worse, n_channels=701)


def test_missing_h5py_names_the_extra(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(OptionalDependencyError, match=r"h5py.*braintrace\[datasets\]"):
        shd(small)
