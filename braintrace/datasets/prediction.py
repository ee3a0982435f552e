r"""Sunspot numbers: a real univariate series for prediction, scored by normalised MSE.

``statsmodels`` ships the monthly mean sunspot numbers of January 1749 to
June 2009 (3,126 months, the NOAA National Geophysical Data Center's table)
as ``statsmodels/datasets/sunspots/src/sunspots_monthly.dat`` and the yearly
numbers of 1700-2008 through ``statsmodels.datasets.sunspots``. Nothing is
downloaded.

The prediction task: at step ``t`` the network sees :math:`s_t` and predicts
:math:`s_{t+h}` (``horizon`` ``h``). The series is split in time (the last
``test_fraction`` for testing), standardised with the training part's mean
and standard deviation, and cut into windows of ``window`` steps; the first
``washout`` steps of each window are masked out of the loss and the score
(the network has no history there yet). Score with :func:`nmse`:

.. math:: \mathrm{NMSE} = \frac{\sum_{t,n} m_{tn} (\hat y_{tn} - y_{tn})^2}
                               {\sum_{t,n} m_{tn} (y_{tn} - \bar y)^2},
          \qquad \bar y = \frac{\sum m_{tn} y_{tn}}{\sum m_{tn}}

(1 for predicting the mean, 0 for a perfect prediction).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from typing import Any

import numpy as np

from .optional import import_optional
from .records import Sequences

__all__ = ["sunspot_series", "sunspots", "nmse"]

_ROW = re.compile(r"^\s*(\d{4})((?:\s+-?\d+(?:\.\d+)?){1,12})\s*$")


def sunspot_series(resolution: str = "monthly") -> np.ndarray:
    """The raw sunspot numbers: 3,126 monthly means (1749-01 to 2009-06) or 309 yearly values (1700-2008).

    Parameters
    ----------
    resolution : {'monthly', 'yearly'}, default 'monthly'
        Monthly means (1749-01 to 2009-06) or yearly values (1700-2008).

    Returns
    -------
    ndarray, shape (L,), float32
        Read-only, oldest first.

    Raises
    ------
    OptionalDependencyError
        ``statsmodels`` is not installed (``pip install "braintrace[datasets]"``).

    Examples
    --------
    >>> from braintrace.datasets import sunspot_series
    >>> s = sunspot_series("monthly")
    >>> s.shape, float(s[0])
    ((3126,), 58.0)
    """
    if resolution not in ("monthly", "yearly"):
        raise ValueError(f"sunspot_series: resolution must be 'monthly' or 'yearly', got {resolution!r}.")
    return _series(resolution)


@functools.cache
def _series(resolution: str) -> np.ndarray:
    purpose = "braintrace.datasets.sunspots (the sunspot numbers it ships)"
    module = import_optional("statsmodels.datasets.sunspots", package="statsmodels", purpose=purpose)
    if resolution == "yearly":
        values = np.asarray(module.load_pandas().data["SUNACTIVITY"], np.float32)
    else:
        text = (importlib.resources.files("statsmodels.datasets.sunspots") / "src" / "sunspots_monthly.dat").read_text()
        rows = [_ROW.match(line) for line in text.splitlines()]
        values = np.asarray([float(v) for m in rows if m for v in m.group(2).split()], np.float32)
    values.setflags(write=False)
    return values


def sunspots(
    split: str = "train",
    *,
    window: int = 128,
    horizon: int = 1,
    washout: int = 16,
    test_fraction: float = 0.2,
    resolution: str = "monthly",
) -> Sequences:
    """Windows of the standardised sunspot series: input :math:`s_t`, target :math:`s_{t+h}`.

    Parameters
    ----------
    split : {'train', 'test'}
        The first ``1 - test_fraction`` of the series or the rest.
    window : int, default 128
        Steps per sequence ``T``; consecutive windows do not overlap (the
        last incomplete one is dropped).
    horizon : int, default 1
        How far ahead the target is.
    washout : int, default 16
        Masked steps at the start of each window (``0 <= washout < window``).
    test_fraction : float, default 0.2
        The share of the series, at its end, kept for testing.
    resolution : {'monthly', 'yearly'}, default 'monthly'
        Which series (see :func:`sunspot_series`).

    Returns
    -------
    Sequences
        ``inputs`` ``(T, N, 1)`` and ``targets`` ``(T, N, 1)`` float32,
        standardised with the training part's statistics; ``mask`` ``(T, N)``.

    Raises
    ------
    OptionalDependencyError
        ``statsmodels`` is not installed.
    ValueError
        Bad sizes: a window longer than the split, a washout not shorter than the window.

    Examples
    --------
    >>> from braintrace.datasets import sunspots
    >>> train = sunspots("train", window=100)
    >>> train.inputs.shape, train.targets.shape, float(train.mask[:16].sum())
    ((100, 25, 1), (100, 25, 1), 0.0)
    """
    if split not in ("train", "test"):
        raise ValueError(f"sunspots: split must be 'train' or 'test', got {split!r}.")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"sunspots: test_fraction must be in (0, 1), got {test_fraction!r}.")
    if int(horizon) < 1 or not 0 <= int(washout) < int(window):
        raise ValueError(
            f"sunspots: need horizon >= 1 and 0 <= washout < window, got horizon={horizon}, washout={washout}, "
            f"window={window}."
        )
    s = sunspot_series(resolution).astype(np.float64)
    cut = int(round(len(s) * (1.0 - float(test_fraction))))
    mean, std = s[:cut].mean(), s[:cut].std()
    z = ((s - mean) / std).astype(np.float32)
    part = z[:cut] if split == "train" else z[cut:]
    T, h = int(window), int(horizon)
    n = (len(part) - h) // T
    if n < 1:
        raise ValueError(
            f"sunspots: the {split} part has {len(part)} values, too few for one window of {T} steps and a "
            f"horizon of {h}; use a smaller window or test_fraction."
        )
    starts = np.arange(n) * T
    steps = starts[None, :] + np.arange(T)[:, None]  # (T, N)
    mask = np.ones((T, n), np.float32)
    mask[: int(washout)] = 0.0
    return Sequences(part[steps][..., None], part[steps + h][..., None], mask)


def nmse(prediction: Any, target: Any, mask: Any = None) -> float:
    r"""Normalised mean squared error over the masked steps: MSE divided by the target's variance.

    Parameters
    ----------
    prediction, target : array, shape (T, N, *G)
        The predicted and the true values.
    mask : array, shape (T, N), optional
        Steps that count (default all).

    Returns
    -------
    float
        0 for a perfect prediction, 1 for predicting the mean of the target.

    Raises
    ------
    ValueError
        Shapes that differ, no masked step, or a constant target.

    Examples
    --------
    >>> import numpy as np
    >>> from braintrace.datasets import nmse
    >>> y = np.arange(6.0).reshape(3, 2, 1)
    >>> nmse(y, y), nmse(np.full_like(y, y.mean()), y)
    (0.0, 1.0)
    """
    p, y = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    if p.shape != y.shape:
        raise ValueError(f"nmse: prediction {p.shape} and target {y.shape} must have the same shape.")
    m = np.ones(y.shape[:2]) if mask is None else np.asarray(mask, np.float64)
    if m.shape != y.shape[:2]:
        raise ValueError(f"nmse: mask must have shape (T, N) = {y.shape[:2]}, got {m.shape}.")
    w = m.reshape(m.shape + (1,) * (y.ndim - 2)) * np.ones_like(y)
    if w.sum() == 0:
        raise ValueError("nmse: the mask selects no step.")
    mean = (w * y).sum() / w.sum()
    var = (w * (y - mean) ** 2).sum()
    if var == 0:
        raise ValueError("nmse: the target is constant on the masked steps; its variance cannot normalise the error.")
    return float((w * (p - y) ** 2).sum() / var)
