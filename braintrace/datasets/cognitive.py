"""Memory tasks: copying, evidence accumulation and delayed match-to-sample, generated on demand.

Each generator draws ``n`` fresh trials from ``rng`` (a
``numpy.random.RandomState`` or an integer seed; the same seed gives the same
trials) and returns time-major :class:`~braintrace.datasets.Sequences` whose
``mask`` marks the steps where the answer is scored:

- :func:`copying` — recall ``length`` symbols in order after a delay; one
  label per recall step;
- :func:`evidence_accumulation` — the cue task of e-prop (Bellec et al.,
  2020): Poisson cues on a left or a right input population, a delay, a
  recall cue; the answer is the side that had more cues;
- :func:`delayed_match_to_sample` — a sample stimulus, a long delay, a test
  stimulus; the answer is match or non-match.

Spiking inputs are Bernoulli draws of per-step rates, populations of
``n_per_population`` neurons per input channel.

References
----------
G. Bellec, F. Scherr, A. Subramoney, E. Hajek, D. Salaj, R. Legenstein,
W. Maass (2020). A solution to the learning dilemma for recurrent networks of
spiking neurons. Nature Communications 11, 3625.
"""

from __future__ import annotations

import numpy as np

from .records import Sequences

__all__ = ["copying", "evidence_accumulation", "delayed_match_to_sample"]


def _rng(rng: np.random.RandomState | int, fn: str) -> np.random.RandomState:
    if isinstance(rng, np.random.RandomState):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.RandomState(int(rng))
    raise TypeError(f"{fn}: rng must be a numpy.random.RandomState or an int seed, got {type(rng).__name__}.")


def _positive(fn: str, **sizes: int) -> None:
    bad = {k: v for k, v in sizes.items() if int(v) != v or v < 1}
    if bad:
        raise ValueError(f"{fn}: {', '.join(f'{k}={v!r}' for k, v in bad.items())}: must be positive integers.")


def _time_major(x: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> Sequences:
    """Batch-major arrays (drawn sequence by sequence) as a time-major record."""
    t = targets if targets.ndim == 1 else np.ascontiguousarray(targets.T)
    return Sequences(np.ascontiguousarray(x.transpose(1, 0, 2)), t, np.ascontiguousarray(mask.T))


def copying(
    n: int, rng: np.random.RandomState | int, *, n_symbols: int = 4, length: int = 3, delay: int = 2
) -> Sequences:
    """Copying: ``length`` one-hot symbols, ``delay`` blank steps, then recall them in order.

    ``T = 2·length + delay``; input channel ``n_symbols`` is the go cue, on
    during recall.

    Parameters
    ----------
    n : int
        Number of trials ``N``.
    rng : RandomState or int
        Source of the symbols (an int is a seed).
    n_symbols : int, default 4
        Alphabet size ``K`` (one-hot input channels; the go cue is channel ``K``).
    length : int, default 3
        Symbols to remember.
    delay : int, default 2
        Blank steps between the last symbol and the first recall step.

    Returns
    -------
    Sequences
        ``inputs`` ``(T, n, n_symbols + 1)``; ``targets`` ``(T, n)`` int32,
        the symbol to recall at each recall step; ``mask`` ``(T, n)``, 1 on
        the ``length`` recall steps.

    Examples
    --------
    >>> from braintrace.datasets import copying
    >>> data = copying(2, rng=0, length=2, delay=1)
    >>> data.inputs.shape, data.mask[:, 0].tolist()
    ((5, 2, 5), [0.0, 0.0, 0.0, 1.0, 1.0])
    >>> bool((data.inputs[:2].argmax(-1) == data.targets[3:]).all())
    True
    """
    fn = "copying"
    _positive(fn, n=n, n_symbols=n_symbols, length=length)
    r = _rng(rng, fn)
    T = 2 * length + delay
    symbols = r.randint(0, n_symbols, size=(n, length))
    x = np.zeros((n, T, n_symbols + 1), np.float32)
    labels = np.zeros((n, T), np.int32)
    mask = np.zeros((n, T), np.float32)
    for k in range(length):
        x[np.arange(n), k, symbols[:, k]] = 1.0
        labels[:, length + delay + k] = symbols[:, k]
        mask[:, length + delay + k] = 1.0
    x[:, length + delay :, n_symbols] = 1.0
    return _time_major(x, labels, mask)


def evidence_accumulation(
    n: int,
    rng: np.random.RandomState | int,
    *,
    n_cues: int = 7,
    n_per_population: int = 10,
    cue_steps: int = 4,
    gap_steps: int = 3,
    delay: int = 15,
    recall_steps: int = 5,
    cue_rate: float = 0.4,
    noise_rate: float = 0.05,
    majority: float = 0.7,
) -> Sequences:
    """Evidence accumulation: count left and right cues, answer after a delay which side had more.

    Populations: 0 left cues, 1 right cues, 2 recall cue, 3 background noise.
    Each cue lasts ``cue_steps`` at ``cue_rate`` followed by ``gap_steps``;
    a cue is on the trial's majority side with probability ``majority``.
    ``T = n_cues·(cue_steps + gap_steps) + delay + recall_steps``.

    Parameters
    ----------
    n : int
        Number of trials ``N``.
    rng : RandomState or int
        Source of the trials and the spikes (an int is a seed).
    n_cues : int, default 7
        Cues per trial (odd, so that one side always wins).
    n_per_population : int, default 10
        Input neurons ``P`` per population.
    cue_steps, gap_steps : int, default 4 and 3
        Duration of a cue and of the silence after it.
    delay : int, default 15
        Steps between the last cue's gap and the recall cue.
    recall_steps : int, default 5
        Duration of the recall cue, the scored steps.
    cue_rate, noise_rate : float, default 0.4 and 0.05
        Spike probability per step of an active cue population and of the noise population.
    majority : float, default 0.7
        Probability that a cue is on the trial's winning side.

    Returns
    -------
    Sequences
        ``inputs`` ``(T, n, 4·n_per_population)`` spikes; ``targets`` ``(n,)``
        int32, 0 when left had more cues, 1 when right did; ``mask``
        ``(T, n)``, 1 on the recall steps.

    Examples
    --------
    >>> from braintrace.datasets import evidence_accumulation
    >>> data = evidence_accumulation(3, rng=0, n_cues=3, delay=5)
    >>> data.inputs.shape, data.targets.shape, int(data.mask[:, 0].sum())
    ((31, 3, 40), (3,), 5)
    """
    fn = "evidence_accumulation"
    _positive(fn, n=n, n_cues=n_cues, n_per_population=n_per_population, cue_steps=cue_steps, recall_steps=recall_steps)
    r = _rng(rng, fn)
    T = n_cues * (cue_steps + gap_steps) + delay + recall_steps
    left = r.rand(n) < 0.5
    on_major = r.rand(n, n_cues) < majority
    side_left = np.where(on_major, left[:, None], ~left[:, None])
    labels = (side_left.sum(1) * 2 < n_cues).astype(np.int32)
    rates = np.zeros((n, T, 4), np.float32)
    rates[:, :, 3] = noise_rate
    for k in range(n_cues):
        t0 = k * (cue_steps + gap_steps)
        rates[np.nonzero(side_left[:, k])[0], t0 : t0 + cue_steps, 0] = cue_rate
        rates[np.nonzero(~side_left[:, k])[0], t0 : t0 + cue_steps, 1] = cue_rate
    rates[:, T - recall_steps :, 2] = cue_rate
    rates = np.repeat(rates, n_per_population, axis=2)
    x = (r.random_sample(rates.shape) < rates).astype(np.float32)
    mask = np.zeros((n, T), np.float32)
    mask[:, T - recall_steps :] = 1.0
    return _time_major(x, labels, mask)


def delayed_match_to_sample(
    n: int,
    rng: np.random.RandomState | int,
    *,
    n_stimuli: int = 4,
    n_per_population: int = 8,
    stimulus_steps: int = 5,
    delay: int = 50,
    response_steps: int = 5,
    rate: float = 0.5,
    background: float = 0.02,
) -> Sequences:
    """Delayed match-to-sample: is the test stimulus the sample shown ``delay`` steps before it?

    A sample (one of ``n_stimuli`` populations at ``rate``) for
    ``stimulus_steps``, ``delay`` steps of background, a test stimulus (the
    sample in half of the trials), then a go population during the response.
    ``T = 2·stimulus_steps + delay + response_steps``; the default delay of 50
    steps is long next to the stimuli.

    Parameters
    ----------
    n : int
        Number of trials ``N``.
    rng : RandomState or int
        Source of the trials and the spikes (an int is a seed).
    n_stimuli : int, default 4
        Stimulus populations ``K`` (at least 2); population ``K`` is the go cue.
    n_per_population : int, default 8
        Input neurons ``P`` per population.
    stimulus_steps : int, default 5
        Duration of the sample and of the test stimulus.
    delay : int, default 50
        Steps between the sample and the test stimulus.
    response_steps : int, default 5
        Duration of the go cue, the scored steps.
    rate, background : float, default 0.5 and 0.02
        Spike probability per step of an active and of a silent population.

    Returns
    -------
    Sequences
        ``inputs`` ``(T, n, (n_stimuli + 1)·n_per_population)`` spikes;
        ``targets`` ``(n,)`` int32, 1 for a match; ``mask`` ``(T, n)``, 1 on
        the response steps.

    Examples
    --------
    >>> from braintrace.datasets import delayed_match_to_sample
    >>> data = delayed_match_to_sample(4, rng=0)
    >>> data.inputs.shape, data.targets.dtype.name
    ((65, 4, 40), 'int32')
    """
    fn = "delayed_match_to_sample"
    _positive(fn, n=n, n_per_population=n_per_population, stimulus_steps=stimulus_steps, response_steps=response_steps)
    if n_stimuli < 2:
        raise ValueError(f"{fn}: n_stimuli must be at least 2 (a non-match needs another stimulus), got {n_stimuli}.")
    r = _rng(rng, fn)
    T = 2 * stimulus_steps + delay + response_steps
    sample = r.randint(0, n_stimuli, n)
    match = r.rand(n) < 0.5
    other = (sample + r.randint(1, n_stimuli, n)) % n_stimuli
    test = np.where(match, sample, other)
    rates = np.full((n, T, n_stimuli + 1), background, np.float32)
    rates[np.arange(n), :stimulus_steps, sample] = rate
    t1 = stimulus_steps + delay
    rates[np.arange(n), t1 : t1 + stimulus_steps, test] = rate
    rates[:, T - response_steps :, n_stimuli] = rate
    rates = np.repeat(rates, n_per_population, axis=2)
    x = (r.random_sample(rates.shape) < rates).astype(np.float32)
    mask = np.zeros((n, T), np.float32)
    mask[:, T - response_steps :] = 1.0
    return _time_major(x, match.astype(np.int32), mask)
