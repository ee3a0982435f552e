r"""From values to network inputs: per-feature scaling, and spike trains by rate or by latency.

Both spike encodings act on time-major values ``v`` of shape ``(T, N, *F)``
in ``[0, 1]`` and give every step ``k`` sub-steps, so the result has shape
``(T·k, N, *F)``; a static input (an image) is a sequence of one step,
``values[None]``. With ``u`` a uniform draw per sub-step and ``p_max`` the
rate at intensity 1:

.. math::

    \text{rate:}\quad s_{t k + j} = [\,u_{t k + j} < p_{max}\, v_t\,], \qquad
    \text{latency:}\quad s_{t k + j} = [\,j = \mathrm{round}((1 - v_t)(W - 1))\,]\,[\,v_t \ge θ\,]

(one spike per value, earlier for larger values, within the first ``W``
sub-steps; values below the threshold ``θ`` stay silent). A mask of shape
``(T, N)`` follows with ``np.repeat(mask, k, axis=0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .records import Sequences

__all__ = ["rate_encode", "latency_encode", "normalize"]

Rng = np.random.RandomState | np.random.Generator | int


def _unit_values(values: Any, fn: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim < 2:
        raise ValueError(
            f"{fn}: `values` must be time-major, shape (T, N, ...), got {v.shape}; a static input is a "
            "sequence of one step: pass `values[None]`."
        )
    if v.size and (not np.all(np.isfinite(v)) or v.min() < 0.0 or v.max() > 1.0):
        got = "NaN or inf" if not np.all(np.isfinite(v)) else f"the range [{v.min():.3g}, {v.max():.3g}]"
        raise ValueError(
            f"{fn}: `values` must lie in [0, 1] (intensities), got {got}. Scale them first, "
            "e.g. with braintrace.datasets.normalize(data, method='minmax')."
        )
    return v


def _steps(steps_per_value: int, fn: str) -> int:
    k = int(steps_per_value)
    if k < 1 or k != steps_per_value:
        raise ValueError(f"{fn}: steps_per_value must be a positive integer, got {steps_per_value!r}.")
    return k


def _rng(rng: Rng) -> np.random.RandomState | np.random.Generator:
    if isinstance(rng, (np.random.RandomState, np.random.Generator)):
        return rng
    return np.random.RandomState(int(rng))


def rate_encode(values: Any, steps_per_value: int, rng: Rng, *, max_prob: float = 1.0) -> np.ndarray:
    """Bernoulli spikes with probability ``max_prob * value`` at each of ``steps_per_value`` sub-steps.

    Parameters
    ----------
    values : array, shape (T, N, *F)
        Time-major intensities in ``[0, 1]``.
    steps_per_value : int
        Sub-steps ``k`` per step.
    rng : numpy RandomState, Generator or int seed
        Source of the draws. They are made sequence by sequence, so the spikes
        of the first ``n`` sequences do not depend on how many follow.
    max_prob : float, default 1.0
        Spike probability per sub-step at intensity 1, in ``(0, 1]``.

    Returns
    -------
    ndarray, shape (T * k, N, *F), float32
        Spikes in ``{0, 1}``.

    Raises
    ------
    ValueError
        Values outside ``[0, 1]``, not time-major, or a bad ``steps_per_value`` / ``max_prob``.

    Examples
    --------
    >>> import numpy as np
    >>> from braintrace.datasets import rate_encode
    >>> images = np.full((1, 2, 3), 0.5)          # one step, 2 images of 3 pixels
    >>> spikes = rate_encode(images, 1000, rng=0)
    >>> spikes.shape, round(float(spikes.mean()), 1)
    ((1000, 2, 3), 0.5)
    """
    fn = "rate_encode"
    v, k = _unit_values(values, fn), _steps(steps_per_value, fn)
    if not 0.0 < float(max_prob) <= 1.0:
        raise ValueError(f"{fn}: max_prob must be in (0, 1], got {max_prob!r}.")
    T, N = v.shape[:2]
    prob = float(max_prob) * np.repeat(np.moveaxis(v, 1, 0), k, axis=1)  # (N, T*k, *F)
    gen = _rng(rng)
    u = gen.random_sample(prob.shape) if isinstance(gen, np.random.RandomState) else gen.random(prob.shape)
    return np.ascontiguousarray(np.moveaxis((u < prob).astype(np.float32), 0, 1))


def latency_encode(
    values: Any, steps_per_value: int, *, window: int | None = None, threshold: float = 0.1
) -> np.ndarray:
    """One spike per value, at sub-step ``round((1 - value) * (window - 1))``; silent below ``threshold``.

    Parameters
    ----------
    values : array, shape (T, N, *F)
        Time-major intensities in ``[0, 1]``.
    steps_per_value : int
        Sub-steps ``k`` per step.
    window : int, optional
        The spikes fall in the first ``window`` sub-steps of each step
        (default ``k``; at most ``k``).
    threshold : float, default 0.1
        Values below it give no spike (a dark pixel is silent, not a late spike).

    Returns
    -------
    ndarray, shape (T * k, N, *F), float32
        Spikes in ``{0, 1}``, at most one per value.

    Examples
    --------
    >>> import numpy as np
    >>> from braintrace.datasets import latency_encode
    >>> v = np.array([[[1.0, 0.5, 0.0]]])          # T=1, N=1, three features
    >>> latency_encode(v, 5)[:, 0].T.tolist()       # bright: step 0, half: step 2, dark: silent
    [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    """
    fn = "latency_encode"
    v, k = _unit_values(values, fn), _steps(steps_per_value, fn)
    W = k if window is None else int(window)
    if not 1 <= W <= k:
        raise ValueError(f"{fn}: window must be in [1, steps_per_value={k}], got {window!r}.")
    T = v.shape[0]
    spikes = np.zeros((T, k) + v.shape[1:], np.float32)
    slot = np.round((1.0 - v) * (W - 1)).astype(np.int64)  # (T, N, *F)
    idx = np.nonzero(v >= threshold)
    spikes[(idx[0], slot[idx], *idx[1:])] = 1.0
    return spikes.reshape((T * k,) + v.shape[1:])


def normalize(data: Sequences, reference: Sequences | None = None, *, method: str = "zscore") -> Sequences:
    """Scale the inputs feature by feature, with statistics of the masked steps of ``reference``.

    ``'zscore'``: :math:`(x - μ) / σ`; ``'minmax'``: :math:`(x - \\min) / (\\max - \\min)`
    clipped to ``[0, 1]`` (ready for :func:`rate_encode`). Statistics come
    from ``reference`` (the training split; default ``data`` itself) over the
    steps its mask marks, per feature. Every step is scaled, the unmasked
    ones too (padding comes after a sequence's end, so its value never reaches
    a masked step).

    Parameters
    ----------
    data : Sequences
        The sequences to scale.
    reference : Sequences, optional
        Where the statistics come from (the training split); default ``data``.
    method : {'zscore', 'minmax'}, default 'zscore'
        Standardise, or map the reference's range to ``[0, 1]``.

    Returns
    -------
    Sequences
        ``data`` with scaled float32 inputs; targets and mask unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from braintrace.datasets import Sequences, normalize
    >>> data = Sequences(np.arange(6.0).reshape(3, 2, 1), np.zeros(2, int), np.ones((3, 2)))
    >>> normalize(data, method="minmax").inputs[:, :, 0].astype(float).round(2).tolist()
    [[0.0, 0.2], [0.4, 0.6], [0.8, 1.0]]
    """
    if method not in ("zscore", "minmax"):
        raise ValueError(f"normalize: method must be 'zscore' or 'minmax', got {method!r}.")
    ref = data if reference is None else reference
    x = np.asarray(ref.inputs, np.float64)
    valid = np.asarray(ref.mask).astype(bool)
    rows = x[valid]  # (number of masked steps, *F)
    if rows.shape[0] == 0:
        raise ValueError("normalize: the reference has no masked steps to take statistics from.")
    if method == "zscore":
        shift, scale = rows.mean(0), rows.std(0)
    else:
        shift, scale = rows.min(0), rows.max(0) - rows.min(0)
    scale = np.where(scale > 0, scale, 1.0)
    out = (np.asarray(data.inputs, np.float64) - shift) / scale
    if method == "minmax":
        out = np.clip(out, 0.0, 1.0)
    return Sequences(out.astype(np.float32), data.targets, data.mask)
