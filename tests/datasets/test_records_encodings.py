"""The Sequences record, padding, the spike encodings and normalisation (against hand-computed values)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braintrace.datasets import Sequences, latency_encode, normalize, pad_sequences, rate_encode


def _data(T=4, N=6, F=3, per_sequence=True):
    x = np.arange(T * N * F, dtype=np.float32).reshape(T, N, F)
    y = np.arange(N, dtype=np.int32) if per_sequence else np.arange(T * N, dtype=np.int32).reshape(T, N)
    return Sequences(x, y, np.ones((T, N), np.float32))


def test_take_and_batches_keep_time_major_layout():
    d = _data(per_sequence=False)
    sub = d.take(np.array([4, 1]))
    assert sub.inputs.shape == (4, 2, 3) and np.array_equal(sub.inputs[:, 0], d.inputs[:, 4])
    assert np.array_equal(sub.targets, d.targets[:, [4, 1]]) and sub.mask.shape == (4, 2)
    batches = list(d.batches(4, np.random.RandomState(0)))
    assert len(batches) == 1 and batches[0].inputs.shape == (4, 4, 3)
    every = list(d.batches(4, drop_last=False))
    assert [b.n_sequences for b in every] == [4, 2]
    assert np.array_equal(np.concatenate([b.targets for b in every], axis=1), d.targets)


def test_a_shuffled_epoch_visits_every_sequence_once():
    d = _data(N=12)
    seen = np.concatenate([b.targets for b in d.batches(3, np.random.RandomState(1))])
    assert sorted(seen.tolist()) == list(range(12)) and seen.tolist() != list(range(12))


def test_record_is_a_pytree():
    d = jax.tree.map(jnp.asarray, _data())
    assert isinstance(d, Sequences) and isinstance(d.inputs, jax.Array)
    total = jax.jit(lambda s: s.inputs.sum() + s.mask.sum())(d)
    assert float(total) == float(np.arange(72).sum() + 24)


@pytest.mark.parametrize(
    "inputs, targets, mask, what",
    [
        (np.zeros(3), np.zeros(3), np.ones((3, 1)), "inputs"),
        (np.zeros((3, 2, 1)), np.zeros(2), np.ones((2, 3)), "mask"),
        (np.zeros((3, 2, 1)), np.zeros(3), np.ones((3, 2)), "targets"),
    ],
)
def test_bad_shapes_are_named(inputs, targets, mask, what):
    with pytest.raises(ValueError, match=f"`{what}`"):
        Sequences(inputs, targets, mask)


def test_pad_sequences_pads_after_the_end():
    x, mask = pad_sequences([np.full((2, 1), 7.0), np.full((3, 1), 5.0)], n_steps=4)
    assert x[:, :, 0].T.tolist() == [[7, 7, 0, 0], [5, 5, 5, 0]]
    assert mask.T.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match="shorter than the longest"):
        pad_sequences([np.zeros((5, 1))], n_steps=3)
    with pytest.raises(ValueError, match="same F"):
        pad_sequences([np.zeros((2, 1)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="no sequences"):
        pad_sequences([])


# ---------------------------------------------------------------- encodings


def test_rate_encode_matches_a_hand_written_bernoulli_draw():
    v = np.random.RandomState(0).rand(2, 5, 3)  # T=2, N=5, F=3
    spikes = rate_encode(v, 4, np.random.RandomState(7), max_prob=0.5)
    u = np.random.RandomState(7).random_sample((5, 8, 3))  # drawn sequence by sequence
    expected = (u < 0.5 * np.repeat(v.transpose(1, 0, 2), 4, axis=1)).transpose(1, 0, 2)
    assert spikes.shape == (8, 5, 3) and spikes.dtype == np.float32
    assert np.array_equal(spikes, expected.astype(np.float32))


def test_rate_encode_prefix_does_not_depend_on_the_batch():
    v = np.random.RandomState(0).rand(1, 10, 4)
    a = rate_encode(v, 6, 3)
    b = rate_encode(v[:, :4], 6, 3)
    assert np.array_equal(a[:, :4], b)


def test_rate_encode_rate_and_generator():
    v = np.full((1, 4, 2), 0.3)
    spikes = rate_encode(v, 5000, np.random.default_rng(0))
    assert abs(spikes.mean() - 0.3) < 0.01


def test_latency_encode_slots_window_and_threshold():
    v = np.array([[[1.0, 0.5, 0.05, 0.0]], [[0.25, 1.0, 1.0, 1.0]]])  # T=2, N=1, F=4
    s = latency_encode(v, 6, window=5)
    assert s.shape == (12, 1, 4)
    first, second = s[:6, 0], s[6:, 0]
    assert first[:, 0].argmax() == 0 and first[:, 1].argmax() == 2  # round(0.5 * 4) = 2
    assert first[:, 2].sum() == 0 and first[:, 3].sum() == 0  # below the threshold: silent
    assert second[:, 0].argmax() == 3  # round(0.75 * 4) = 3
    assert s.sum() == 6  # one spike per value at or above the threshold


@pytest.mark.parametrize("bad", [np.full((1, 2, 2), 1.5), np.full((1, 2, 2), -0.1), np.full((1, 2, 2), np.nan)])
def test_encodings_refuse_values_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\].*normalize"):
        rate_encode(bad, 3, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        latency_encode(bad, 3)


def test_encodings_refuse_bad_sizes():
    with pytest.raises(ValueError, match="time-major"):
        rate_encode(np.zeros(3), 2, 0)
    with pytest.raises(ValueError, match="steps_per_value"):
        latency_encode(np.zeros((1, 1, 1)), 0)
    with pytest.raises(ValueError, match="window"):
        latency_encode(np.zeros((1, 1, 1)), 3, window=4)
    with pytest.raises(ValueError, match="max_prob"):
        rate_encode(np.zeros((1, 1, 1)), 3, 0, max_prob=0.0)


def test_normalize_uses_the_reference_masked_steps():
    ref = Sequences(np.array([[[1.0], [3.0]], [[100.0], [5.0]]]), np.zeros(2, int), np.array([[1.0, 1.0], [0.0, 1.0]]))
    z = normalize(ref, method="zscore")
    vals = np.array([1.0, 3.0, 5.0])  # the masked steps only
    assert np.allclose(z.inputs[0, :, 0], (np.array([1.0, 3.0]) - vals.mean()) / vals.std())
    other = Sequences(np.full((2, 1, 1), 3.0), np.zeros(1, int), np.ones((2, 1)))
    assert np.allclose(normalize(other, ref).inputs, 0.0)
    mm = normalize(other, ref, method="minmax")
    assert np.allclose(mm.inputs, 0.5) and mm.inputs.dtype == np.float32
    with pytest.raises(ValueError, match="method"):
        normalize(ref, method="l2")
