r"""The Heidelberg spiking data sets (SHD, SSC) from the ``.h5`` files users download themselves.

Cramer, Stradmann, Schemmel and Zenke (2020) converted spoken words into the
spikes of 700 cochlear channels: the *spiking Heidelberg digits* (SHD, the
digits 0-9 in English and German, 20 classes, 8,156 training and 2,264 test
recordings) and the *spiking speech commands* (SSC, 35 words, training,
validation and test files). The authors publish them as gzipped HDF5 files
(``shd_train.h5.gz``, ``shd_test.h5.gz``, ``ssc_train.h5.gz``,
``ssc_valid.h5.gz``, ``ssc_test.h5.gz``) on the Zenke lab's data-set page
(zenkelab.org, "Datasets"). Download and ``gunzip`` them; braintrace never
downloads anything. Each file holds

- ``spikes/times``: per recording, the spike times in seconds (variable length);
- ``spikes/units``: per recording, the channel ``0 ... 699`` of each spike;
- ``labels``: the class of each recording.

Binning: spike ``(τ, u)`` adds 1 to step :math:`\lfloor τ T / τ_{max} \rfloor`
and channel :math:`\lfloor u C / 700 \rfloor` (``C = n_channels`` pools
neighbouring channels); spikes at or after ``max_time`` are dropped. The
result takes ``N·T·C·4`` bytes (the whole SHD training file at ``T = 100``,
``C = 700``: 2.3 GB; pool channels or ``limit`` the recordings to fit).

References
----------
B. Cramer, Y. Stradmann, J. Schemmel, F. Zenke (2020). The Heidelberg
spiking data sets for the systematic evaluation of spiking neural networks.
IEEE Transactions on Neural Networks and Learning Systems 33(7), 2744-2757.
"""

from __future__ import annotations

import os

import numpy as np

from .optional import import_optional
from .records import Sequences

__all__ = ["shd", "ssc", "N_CHANNELS"]

#: Cochlear channels of the recordings.
N_CHANNELS = 700

_WHERE = (
    "Download {files} from the Zenke lab's data-set page (zenkelab.org, 'Datasets'; Cramer et al., 2020), "
    "`gunzip` them and pass the path of the .h5 file; braintrace never downloads data."
)


def _bin(
    path: str | os.PathLike,
    *,
    name: str,
    files: str,
    n_steps: int,
    max_time: float,
    n_channels: int,
    binary: bool,
    limit: int | None,
) -> Sequences:
    fn = f"braintrace.datasets.{name}"
    if int(n_steps) < 1 or not float(max_time) > 0 or not 1 <= int(n_channels) <= N_CHANNELS:
        raise ValueError(
            f"{fn}: need n_steps >= 1, max_time > 0 and 1 <= n_channels <= {N_CHANNELS}; got n_steps={n_steps}, "
            f"max_time={max_time}, n_channels={n_channels}."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{fn}: no file at {os.fspath(path)!r}. " + _WHERE.format(files=files))
    h5py = import_optional("h5py", package="h5py", purpose=f"{fn} (reading the .h5 file)")
    T, C = int(n_steps), int(n_channels)
    with h5py.File(path, "r") as f:
        missing = [k for k in ("spikes/times", "spikes/units", "labels") if k not in f]
        if missing:
            raise ValueError(
                f"{fn}: {os.fspath(path)!r} lacks the dataset(s) {missing}; expected the layout of the Heidelberg "
                f"spiking data sets (spikes/times, spikes/units, labels). " + _WHERE.format(files=files)
            )
        n = len(f["labels"]) if limit is None else min(int(limit), len(f["labels"]))
        labels = np.asarray(f["labels"][:n], np.int32)
        times, units = f["spikes/times"][:n], f["spikes/units"][:n]
    counts = np.zeros((T, n, C), np.float32)
    for i in range(n):
        tau, unit = np.asarray(times[i], np.float64), np.asarray(units[i], np.int64)
        if tau.shape != unit.shape:
            raise ValueError(f"{fn}: recording {i} has {tau.size} spike times but {unit.size} units.")
        if unit.size and (unit.min() < 0 or unit.max() >= N_CHANNELS):
            raise ValueError(
                f"{fn}: recording {i} has units in [{unit.min()}, {unit.max()}], outside 0..{N_CHANNELS - 1}."
            )
        keep = (tau >= 0) & (tau < float(max_time))
        step = np.floor(tau[keep] * T / float(max_time)).astype(np.int64)
        np.add.at(counts[:, i], (step, unit[keep] * C // N_CHANNELS), 1.0)
    if binary:
        np.minimum(counts, 1.0, out=counts)
    return Sequences(counts, labels, np.ones((T, n), np.float32))


def shd(
    path: str | os.PathLike,
    *,
    n_steps: int = 100,
    max_time: float = 1.4,
    n_channels: int = N_CHANNELS,
    binary: bool = False,
    limit: int | None = None,
) -> Sequences:
    """The spiking Heidelberg digits from ``shd_train.h5`` or ``shd_test.h5``, binned to ``n_steps`` steps.

    Parameters
    ----------
    path : str or path-like
        A gunzipped SHD file (see the module documentation for where to get it).
    n_steps : int, default 100
        Time bins ``T`` over ``[0, max_time)``.
    max_time : float, default 1.4
        Seconds kept (SHD recordings last up to about 1.4 s).
    n_channels : int, default 700
        Channels ``C`` after pooling neighbours (700: no pooling).
    binary : bool, default False
        Clip the counts to 1 (a spike or none per bin).
    limit : int, optional
        Read only the first ``limit`` recordings.

    Returns
    -------
    Sequences
        ``inputs`` ``(T, N, C)`` float32 spike counts; ``targets`` ``(N,)``
        int32 classes 0-19; ``mask`` ``(T, N)`` all ones.

    Raises
    ------
    FileNotFoundError
        No file at ``path`` (the message says where to download it).
    OptionalDependencyError
        ``h5py`` is not installed (``pip install "braintrace[datasets]"``).
    ValueError
        A file without the SHD layout, or bad sizes.

    Examples
    --------
    >>> from braintrace.datasets import shd
    >>> try:
    ...     shd("no/such/shd_train.h5")
    ... except FileNotFoundError as err:
    ...     print(str(err)[:64])
    braintrace.datasets.shd: no file at 'no/such/shd_train.h5'. Down
    """
    return _bin(
        path, name="shd", files="shd_train.h5.gz and shd_test.h5.gz", n_steps=n_steps, max_time=max_time,
        n_channels=n_channels, binary=binary, limit=limit,
    )


def ssc(
    path: str | os.PathLike,
    *,
    n_steps: int = 100,
    max_time: float = 1.0,
    n_channels: int = N_CHANNELS,
    binary: bool = False,
    limit: int | None = None,
) -> Sequences:
    """The spiking speech commands from ``ssc_{train,valid,test}.h5``, binned to ``n_steps`` steps.

    Parameters
    ----------
    path : str or path-like
        A gunzipped SSC file (see the module documentation for where to get it).
    n_steps : int, default 100
        Time bins ``T`` over ``[0, max_time)``.
    max_time : float, default 1.0
        Seconds kept (SSC recordings last up to 1 s).
    n_channels : int, default 700
        Channels ``C`` after pooling neighbours (700: no pooling).
    binary : bool, default False
        Clip the counts to 1.
    limit : int, optional
        Read only the first ``limit`` recordings.

    Returns
    -------
    Sequences
        ``inputs`` ``(T, N, C)`` float32 spike counts; ``targets`` ``(N,)``
        int32 classes 0-34; ``mask`` ``(T, N)`` all ones.

    Raises
    ------
    FileNotFoundError, OptionalDependencyError, ValueError
        As :func:`shd`.

    Examples
    --------
    >>> from braintrace.datasets import ssc
    >>> try:
    ...     ssc("no/such/ssc_test.h5")
    ... except FileNotFoundError as err:
    ...     print("ssc_train.h5.gz" in str(err))
    True
    """
    return _bin(
        path, name="ssc", files="ssc_train.h5.gz, ssc_valid.h5.gz and ssc_test.h5.gz", n_steps=n_steps,
        max_time=max_time, n_channels=n_channels, binary=binary, limit=limit,
    )
