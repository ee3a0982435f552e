"""Japanese vowels: speaker identification from short multivariate recordings of variable length.

Nine male speakers say the Japanese vowel /ae/; each utterance is described
by 12 linear-prediction cepstrum coefficients per analysis frame, 7 to 29
frames long (Kudo, Toyama and Shimbo, 1999, from the UCI repository). The
task is to name the speaker: 270 training utterances (30 per speaker) and
370 test utterances, kept as the archive splits them.

The recordings are read from the ``.ts`` files that the ``sktime`` wheel
ships (``sktime/datasets/data/JapaneseVowels/``) through
``sktime.datasets.load_japanese_vowels``. Among the packages that ship this
set, ``sktime`` needs the fewest extra packages (``aeon`` ships the same
files but also needs ``numba``); nothing is downloaded.

References
----------
M. Kudo, J. Toyama, M. Shimbo (1999). Multidimensional curve classification
using passing-through regions. Pattern Recognition Letters 20(11-13), 1103-1111.
"""

from __future__ import annotations

import functools

import numpy as np

from .optional import import_optional
from .records import Sequences, pad_sequences

__all__ = ["japanese_vowels"]

#: The longest utterance of both splits (frames).
_MAX_STEPS = 29


@functools.cache
def _load(split: str) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    datasets = import_optional(
        "sktime.datasets",
        package="sktime",
        purpose="braintrace.datasets.japanese_vowels (the recordings it ships)",
    )
    frames, labels = datasets.load_japanese_vowels(split=split, return_type="df-list")
    seqs = tuple(np.asarray(f, np.float32) for f in frames)
    y = np.asarray([int(v) for v in labels], np.int32) - 1
    for a in (*seqs, y):
        a.setflags(write=False)
    return seqs, y


def japanese_vowels(split: str = "train", *, n_steps: int = _MAX_STEPS) -> Sequences:
    """The Japanese vowels recordings, zero-padded to ``n_steps`` frames with a mask.

    Parameters
    ----------
    split : {'train', 'test'}
        270 training or 370 test utterances, as the archive splits them.
    n_steps : int, default 29
        ``T`` of the result: the longest utterance (29) or more.

    Returns
    -------
    Sequences
        ``inputs`` ``(T, N, 12)`` float32 cepstrum coefficients (raw; scale
        them with :func:`~braintrace.datasets.normalize`); ``targets`` ``(N,)``
        int32 speaker labels 0-8; ``mask`` ``(T, N)``: 1 on the frames of
        each utterance (7 to 29), 0 on the padding after it.

    Raises
    ------
    OptionalDependencyError
        ``sktime`` is not installed (``pip install "braintrace[datasets]"``).
    ValueError
        A bad ``split`` or an ``n_steps`` shorter than 29.

    Examples
    --------
    >>> from braintrace.datasets import japanese_vowels
    >>> train = japanese_vowels("train")
    >>> lengths = train.mask.sum(0)
    >>> train.inputs.shape, int(lengths.min()), int(lengths.max()), int(train.targets.max())
    ((29, 270, 12), 7, 26, 8)
    """
    if split not in ("train", "test"):
        raise ValueError(f"japanese_vowels: split must be 'train' or 'test', got {split!r}.")
    if int(n_steps) < _MAX_STEPS:
        raise ValueError(f"japanese_vowels: n_steps must be at least {_MAX_STEPS} (the longest utterance), got {n_steps}.")
    seqs, labels = _load(split)
    inputs, mask = pad_sequences(seqs, int(n_steps))
    return Sequences(inputs, labels.copy(), mask)
