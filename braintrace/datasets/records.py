r"""The record every loader returns: time-major inputs, targets and a mask.

A data set of ``N`` sequences of ``T`` steps is a :class:`Sequences` with

- ``inputs``, shape ``(T, N, *F)``: the features of every step (time first,
  the layout :func:`braintrace.online_gradients` scans over);
- ``targets``: one class label per sequence, shape ``(N,)``; one label per
  step, shape ``(T, N)``; or a value per step, shape ``(T, N, *G)``;
- ``mask``, shape ``(T, N)``: 1 on the steps that count (the steps that hold
  data for variable-length sequences; the response window of a memory task),
  0 elsewhere.

Padding always goes after the end of a sequence, so step ``t`` of every
sequence is its ``t``-th real step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["Sequences", "pad_sequences"]


@dataclasses.dataclass(frozen=True)
class Sequences:
    """``N`` time-major sequences: ``inputs`` ``(T, N, *F)``, ``targets``, ``mask`` ``(T, N)``.

    A pytree (``jax.tree.map(jnp.asarray, data)`` moves it to the device).

    Attributes
    ----------
    inputs : ndarray, shape (T, N, *F)
        Features per step.
    targets : ndarray, shape (N,), (T, N) or (T, N, *G)
        A class label per sequence (integer, ``(N,)``), a class label per step
        (integer, ``(T, N)``) or a value per step (float, ``(T, N, *G)``).
    mask : ndarray, shape (T, N), float32
        1 on the steps that count in the loss and the score.

    Examples
    --------
    >>> import numpy as np
    >>> from braintrace.datasets import Sequences
    >>> data = Sequences(np.zeros((5, 8, 3), np.float32), np.arange(8) % 2, np.ones((5, 8), np.float32))
    >>> data.n_steps, data.n_sequences, data.per_sequence
    (5, 8, True)
    >>> [b.inputs.shape for b in data.batches(3)]
    [(5, 3, 3), (5, 3, 3)]
    >>> data.take(np.array([0, 2])).targets
    array([0, 0])
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        if not all(hasattr(a, "shape") for a in (self.inputs, self.targets, self.mask)):
            return  # jax rebuilds the record from placeholders inside tree utilities: nothing to check
        inputs, targets, mask = self.inputs, self.targets, self.mask
        if inputs.ndim < 2:
            raise ValueError(f"Sequences: `inputs` must be time-major (T, N, ...), got shape {inputs.shape}.")
        T, N = inputs.shape[:2]
        if mask.shape != (T, N):
            raise ValueError(f"Sequences: `mask` must have shape (T, N) = {(T, N)}, got {mask.shape}.")
        if targets.shape != (N,) and targets.shape[:2] != (T, N):
            raise ValueError(
                f"Sequences: `targets` must have shape (N,) = {(N,)} (a label per sequence) or start with "
                f"(T, N) = {(T, N)} (a target per step), got {targets.shape}."
            )

    @property
    def n_steps(self) -> int:
        """``T``, the number of time steps (padding included)."""
        return int(np.shape(self.inputs)[0])

    @property
    def n_sequences(self) -> int:
        """``N``, the number of sequences."""
        return int(np.shape(self.inputs)[1])

    @property
    def per_sequence(self) -> bool:
        """``True`` when ``targets`` holds one label per sequence (shape ``(N,)``)."""
        return bool(np.ndim(self.targets) == 1)

    def take(self, index: Any) -> Sequences:
        """The sequences ``index`` (an integer array, a slice or a boolean mask over ``N``)."""
        targets = self.targets[index] if self.per_sequence else self.targets[:, index]
        return Sequences(self.inputs[:, index], targets, self.mask[:, index])

    def batches(
        self, batch_size: int, rng: np.random.RandomState | np.random.Generator | None = None, *, drop_last: bool = True
    ) -> Iterator[Sequences]:
        """Batches of ``batch_size`` sequences, shuffled by ``rng`` (in order when ``None``).

        ``drop_last=True`` leaves out the last, smaller batch, so every batch
        has the shape a jitted step was compiled for.
        """
        if int(batch_size) < 1:
            raise ValueError(f"Sequences.batches: batch_size must be a positive integer, got {batch_size!r}.")
        N, B = self.n_sequences, int(batch_size)
        order = np.arange(N) if rng is None else rng.permutation(N)
        stop = N - N % B if drop_last else N
        for start in range(0, stop, B):
            yield self.take(order[start : start + B])


jax.tree_util.register_dataclass(Sequences, data_fields=["inputs", "targets", "mask"], meta_fields=[])


def pad_sequences(
    sequences: Sequence[np.ndarray], n_steps: int | None = None, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Stack sequences of different lengths time-major, zero-padded after their ends.

    Parameters
    ----------
    sequences : sequence of arrays, each of shape (T_i, *F)
        ``N`` sequences with the same feature shape ``F``.
    n_steps : int, optional
        ``T`` of the result (at least the longest ``T_i``); default the longest.
    dtype : dtype, default float32
        Data type of the result.

    Returns
    -------
    inputs : ndarray, shape (T, N, *F)
    mask : ndarray, shape (T, N), float32
        1 on the steps ``t < T_i`` of sequence ``i``.

    Raises
    ------
    ValueError
        No sequences, feature shapes that differ, or ``n_steps`` shorter than a sequence.

    Examples
    --------
    >>> import numpy as np
    >>> from braintrace.datasets import pad_sequences
    >>> x, mask = pad_sequences([np.ones((2, 3)), np.ones((4, 3))])
    >>> x.shape, mask.T.tolist()
    ((4, 2, 3), [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    """
    arrays = [np.asarray(s) for s in sequences]
    if not arrays:
        raise ValueError("pad_sequences: got no sequences.")
    features = {a.shape[1:] for a in arrays}
    if len(features) > 1 or arrays[0].ndim < 1:
        raise ValueError(
            f"pad_sequences: every sequence must have shape (T_i, *F) with the same F; got feature shapes "
            f"{sorted(features)}."
        )
    lengths = np.array([a.shape[0] for a in arrays])
    T = int(lengths.max()) if n_steps is None else int(n_steps)
    if T < lengths.max():
        raise ValueError(f"pad_sequences: n_steps={n_steps} is shorter than the longest sequence ({lengths.max()}).")
    out = np.zeros((T, len(arrays)) + arrays[0].shape[1:], dtype)
    for i, a in enumerate(arrays):
        out[: len(a), i] = a
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float32)
    return out, mask
