"""The memory tasks: their answers follow from their inputs, seeds reproduce, and the CLI's data did not change."""

import hashlib

import numpy as np
import pytest

from braintrace.cli.tasks import build_task
from braintrace.datasets import copying, delayed_match_to_sample, evidence_accumulation


def test_copying_recall_steps_hold_the_presented_symbols():
    d = copying(50, rng=1, n_symbols=5, length=4, delay=3)
    T = 2 * 4 + 3
    assert d.inputs.shape == (T, 50, 6) and d.targets.shape == (T, 50)
    presented = d.inputs[:4, :, :5].argmax(-1)
    assert np.array_equal(d.targets[7:], presented)
    assert d.mask.sum(0).tolist() == [4.0] * 50 and np.all(d.inputs[7:, :, 5] == 1)


def test_evidence_label_is_the_side_with_more_cues():
    n_per, cue, gap = 6, 4, 3
    d = evidence_accumulation(200, rng=2, n_cues=5, n_per_population=n_per, cue_steps=cue, gap_steps=gap,
                              cue_rate=1.0, noise_rate=0.0)
    left = d.inputs[:, :, :n_per].sum((0, 2))
    right = d.inputs[:, :, n_per : 2 * n_per].sum((0, 2))
    assert np.array_equal(d.targets, (right > left).astype(np.int32))
    assert 0.2 < d.targets.mean() < 0.8
    assert d.mask[:, 0].tolist() == [0.0] * (d.n_steps - 5) + [1.0] * 5


def test_dms_label_is_match_of_sample_and_test():
    d = delayed_match_to_sample(200, rng=3, n_stimuli=3, n_per_population=4, delay=20, rate=1.0, background=0.0)
    T = 2 * 5 + 20 + 5
    assert d.n_steps == T
    chan = d.inputs.reshape(T, 200, 4, 4).sum(-1)  # (T, N, populations)
    sample = chan[:5, :, :3].sum(0).argmax(-1)
    test = chan[25:30, :, :3].sum(0).argmax(-1)
    assert np.array_equal(d.targets, (sample == test).astype(np.int32))
    assert chan[5:25].sum() == 0  # the delay is silent


def test_default_delay_is_long():
    assert delayed_match_to_sample(2, rng=0).n_steps == 2 * 5 + 50 + 5


@pytest.mark.parametrize("gen", [copying, evidence_accumulation, delayed_match_to_sample])
def test_same_seed_same_trials(gen):
    a, b = gen(8, rng=5), gen(8, rng=np.random.RandomState(5))
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)
    assert not np.array_equal(a.inputs, gen(8, rng=6).inputs)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="length=0"):
        copying(3, rng=0, length=0)
    with pytest.raises(TypeError, match="rng"):
        evidence_accumulation(3, rng="seed")
    with pytest.raises(ValueError, match="n_stimuli"):
        delayed_match_to_sample(3, rng=0, n_stimuli=1)


def _digest(task):
    h = hashlib.sha256()
    for data in (task.test, task.train(np.random.RandomState(5))):
        for a in (data.x, data.labels, data.mask):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# sha256 prefixes of the data `braintrace train` drew before the generators moved to braintrace.datasets
CLI_DIGESTS = {
    ("digits", "bernoulli"): "ccf2737bb56b55c8",
    ("digits", "latency"): "1b73653f3f51139f",
    ("copying", None): "2b29553250daace1",
    ("evidence", None): "b9a69f10105e2733",
    ("dms", None): "f0ad0bf3b06eee1d",
}


@pytest.mark.parametrize("name, encoding", list(CLI_DIGESTS))
def test_cli_tasks_draw_the_same_data_as_before(name, encoding):
    pytest.importorskip("sklearn")
    task = build_task(name, 3, True, **({"encoding": encoding} if encoding else {}))
    assert _digest(task) == CLI_DIGESTS[(name, encoding)]
