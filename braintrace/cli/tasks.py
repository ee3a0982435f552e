"""The tasks of ``braintrace train``: spike-encoded digits and three memory tasks.

Every task is a :class:`Task`: input and output sizes, the sequence length,
the chance accuracy and two functions that make a :class:`Dataset` (arrays,
batch-major). Targets are per-step class labels with a mask of the steps that
count in the loss and the accuracy, so one loss and one accuracy serve all
tasks:

- ``digits`` — scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  real data, no download), each pixel a spike train over ``T`` steps
  (Bernoulli with a rate proportional to the intensity, or one spike whose
  latency falls with the intensity). Classified from the read-out summed over
  the masked steps.
- ``copying`` — recall ``L`` symbols in order after a delay (as in
  ``examples/copying_task.py``); accuracy per recall step.
- ``evidence`` — evidence accumulation, the cue task of e-prop (Bellec et al.,
  2020) scaled down: cues on a left or a right input population, then a delay,
  then a recall cue; the answer is the side that had more cues.
- ``dms`` — delayed match-to-sample: a sample stimulus, a delay, a test
  stimulus; the answer is match or non-match.

The generators and the spike encodings live in :mod:`braintrace.datasets`
(time-major); this module sizes them for the command line and lays them out
batch-major. All randomness comes from the ``numpy.random.RandomState`` passed
in, so the same seed gives the same data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .. import datasets
from ..datasets import Sequences, latency_encode, rate_encode

__all__ = ["Dataset", "Task", "TASKS", "build_task", "TaskUnavailable"]


class TaskUnavailable(RuntimeError):
    """A task cannot be built here (e.g. scikit-learn is not installed)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Sequences of one task, batch-major.

    Attributes
    ----------
    x : ndarray, shape (N, T, n_in), float32
        Inputs (spikes in {0, 1} for the spiking tasks).
    labels : ndarray, shape (N, T), int32
        Class label of every step (meaningful where ``mask`` is 1).
    mask : ndarray, shape (N, T), float32
        1 on the steps that count in the loss and the accuracy.
    """

    x: np.ndarray
    labels: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclasses.dataclass(frozen=True)
class Task:
    """A training task.

    Attributes
    ----------
    name, description : str
    n_in, n_out, n_steps : int
        Input size, number of classes, sequence length ``T``.
    chance : float
        Accuracy of guessing.
    per_step : bool
        ``True``: accuracy over masked steps (copying). ``False``: one answer
        per sequence, the argmax of the logits summed over the masked steps.
    train : callable
        ``train(rng) -> Dataset``, called once per epoch (fresh spikes or samples).
    test : Dataset
        Fixed held-out set.
    """

    name: str
    description: str
    n_in: int
    n_out: int
    n_steps: int
    chance: float
    per_step: bool
    train: Callable[[np.random.RandomState], Dataset]
    test: Dataset


# ---------------------------------------------------------------- digits


def _batch_major(data: Sequences) -> Dataset:
    """A time-major :class:`braintrace.datasets.Sequences` as this module's batch-major :class:`Dataset`."""
    T = data.n_steps
    labels = np.repeat(data.targets[:, None], T, axis=1) if data.per_sequence else data.targets.T
    return Dataset(
        np.ascontiguousarray(data.inputs.transpose(1, 0, 2)), np.ascontiguousarray(labels, np.int32),
        np.ascontiguousarray(data.mask.T),
    )


def _encode(images: np.ndarray, n_steps: int, encoding: str, rng: np.random.RandomState) -> np.ndarray:
    """Pixel intensities in [0, 1], shape (N, P), as spikes of shape (N, T, P)."""
    if encoding == "bernoulli":
        spikes = rate_encode(images[None], n_steps, rng, max_prob=0.5)
    else:  # one spike, earlier for brighter pixels, in the first half; dark pixels (< 0.1) stay silent
        spikes = latency_encode(images[None], n_steps, window=n_steps // 2, threshold=0.1)
    return np.ascontiguousarray(spikes.transpose(1, 0, 2))


def digits(seed: int, quick: bool, n_steps: int | None = None, encoding: str = "bernoulli") -> Task:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise TaskUnavailable(
            "the digits task reads scikit-learn's bundled 8x8 digits; install it with "
            "`python -m pip install scikit-learn` (or `pip install -e \".[examples]\"`)."
        ) from err
    data = load_digits()
    images = (data.data / 16.0).astype(np.float32)
    targets = data.target.astype(np.int32)
    order = np.random.RandomState(seed).permutation(len(images))
    n_test = len(images) // 5
    test_idx, train_idx = order[:n_test], order[n_test:]
    if quick:
        train_idx, test_idx = train_idx[:256], test_idx[:128]
    T = n_steps or (12 if quick else 25)
    mask = np.zeros(T, np.float32)
    mask[T // 3 :] = 1.0  # the read-out needs a few steps to integrate evidence

    def make(idx: np.ndarray, rng: np.random.RandomState) -> Dataset:
        labels = np.repeat(targets[idx][:, None], T, axis=1)
        return Dataset(_encode(images[idx], T, encoding, rng), labels, np.tile(mask, (len(idx), 1)))

    return Task(
        name="digits",
        description=f"8x8 handwritten digits (scikit-learn), {encoding} spike trains over {T} steps, "
        f"{len(train_idx)} train / {len(test_idx)} test images",
        n_in=64,
        n_out=10,
        n_steps=T,
        chance=0.1,
        per_step=False,
        train=lambda rng: make(train_idx, rng),
        test=make(test_idx, np.random.RandomState(seed + 1)),
    )


# ---------------------------------------------------------------- copying


def copying(seed: int, quick: bool, n_symbols: int = 4, length: int = 3, delay: int = 2) -> Task:
    T = 2 * length + delay
    n_train, n_test = (256, 128) if quick else (2048, 512)

    def make(n: int, rng: np.random.RandomState) -> Dataset:
        return _batch_major(datasets.copying(n, rng, n_symbols=n_symbols, length=length, delay=delay))

    return Task(
        name="copying",
        description=f"copying: recall {length} symbols of {n_symbols} after a delay of {delay}",
        n_in=n_symbols + 1,
        n_out=n_symbols,
        n_steps=T,
        chance=1.0 / n_symbols,
        per_step=True,
        train=lambda rng: make(n_train, rng),
        test=make(n_test, np.random.RandomState(seed + 1)),
    )


# ---------------------------------------------------------------- evidence accumulation


def evidence(seed: int, quick: bool) -> Task:
    """Left/right cues (populations 0 and 1), recall cue (2), background noise (3)."""
    n_per = 5 if quick else 10
    n_cues = 3 if quick else 7
    cue, gap, delay, recall = 4, 3, (5 if quick else 15), 5
    T = n_cues * (cue + gap) + delay + recall
    n_train, n_test = (256, 128) if quick else (2048, 512)

    def make(n: int, rng: np.random.RandomState) -> Dataset:
        return _batch_major(datasets.evidence_accumulation(
            n, rng, n_cues=n_cues, n_per_population=n_per, cue_steps=cue, gap_steps=gap, delay=delay,
            recall_steps=recall, cue_rate=0.4, noise_rate=0.05, majority=0.7,
        ))

    return Task(
        name="evidence",
        description=f"evidence accumulation (e-prop cue task): {n_cues} cues, delay {delay}, T={T}",
        n_in=4 * n_per,
        n_out=2,
        n_steps=T,
        chance=0.5,
        per_step=False,
        train=lambda rng: make(n_train, rng),
        test=make(n_test, np.random.RandomState(seed + 1)),
    )


# ---------------------------------------------------------------- delayed match-to-sample


def dms(seed: int, quick: bool, n_stimuli: int = 4) -> Task:
    """Stimulus populations 0..K-1 and a go population K."""
    n_per = 5 if quick else 8
    stim, delay, response = 5, (5 if quick else 10), 5
    T = 2 * stim + delay + response
    n_train, n_test = (256, 128) if quick else (2048, 512)

    def make(n: int, rng: np.random.RandomState) -> Dataset:
        return _batch_major(datasets.delayed_match_to_sample(
            n, rng, n_stimuli=n_stimuli, n_per_population=n_per, stimulus_steps=stim, delay=delay,
            response_steps=response, rate=0.5, background=0.02,
        ))

    return Task(
        name="dms",
        description=f"delayed match-to-sample: {n_stimuli} stimuli, delay {delay}, T={T}",
        n_in=(n_stimuli + 1) * n_per,
        n_out=2,
        n_steps=T,
        chance=0.5,
        per_step=False,
        train=lambda rng: make(n_train, rng),
        test=make(n_test, np.random.RandomState(seed + 1)),
    )


TASKS: dict[str, Callable[..., Task]] = {"digits": digits, "copying": copying, "evidence": evidence, "dms": dms}


def build_task(name: str, seed: int, quick: bool, **options) -> Task:
    """The task ``name`` (a key of :data:`TASKS`) for this seed and size."""
    return TASKS[name](seed, quick, **options)
