r"""A lookup table whose rows learn online: token and symbol inputs to recurrent networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax.numpy as jnp
import numpy as np
import saiunit as u

from ..primitives import embedding
from .checks import layer_label, to_size

__all__ = ["Embedding"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any


class Embedding(brainstate.nn.Module):
    r"""Embedding table whose rows learn online, ``y = T[idx]``.

    Drop-in for :class:`brainstate.nn.Embedding`; the lookup goes through
    :func:`braintrace.embedding`, so the table learns online whenever the
    embedded tokens reach a hidden state (its D_RTRL trace is the trace of a
    dense layer fed one-hot vectors, with the rows looked up receiving each
    step's source: see :class:`~braintrace.primitives.EmbeddingRule`).

    .. math::

        y_{\ldots e} = m_{\ldots}\, T_{\mathrm{idx}_{\ldots},\, e}, \qquad
        m_{\ldots} = [\mathrm{idx}_{\ldots} \ne \mathrm{padding\_idx}]

    Parameters
    ----------
    num_embeddings : int
        :math:`N`, the number of rows (vocabulary size).
    embedding_size : int
        :math:`d`, the size of each row.
    embedding_init : initializer or array, default ``LecunUniform()``
        Table of shape ``(N, d)``; an array may carry a saiunit unit.
    padding_idx : int, optional
        A row that is never looked up: its positions give zeros and the row
        receives a zero gradient (it stays a fixed pad).
    name : str, optional
        Module name, used in error messages.

    Attributes
    ----------
    weight : brainstate.ParamState
        ``dict(weight=(N, d))``.
    out_size : tuple of int
        ``(d,)``.

    Raises
    ------
    ValueError
        Sizes that are not positive ints, a ``padding_idx`` outside
        ``[-N, N)`` (construction).
    TypeError
        Non-integer indices (call).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> emb = braintrace.nn.Embedding(10, 3, padding_idx=0)
    >>> y = emb(jnp.array([[1, 0, 4], [2, 2, 9]]))      # batch 2, 3 tokens each
    >>> y.shape, y[0, 1].tolist()
    ((2, 3, 3), [0.0, 0.0, 0.0])
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_size: int,
        embedding_init: Initializer = init.LecunUniform(),
        padding_idx: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        label = type(self).__name__
        self.num_embeddings = to_size(num_embeddings, label, "num_embeddings")[0]
        self.embedding_size = to_size(embedding_size, label, "embedding_size")[0]
        self.out_size = (self.embedding_size,)
        if padding_idx is not None:
            if not isinstance(padding_idx, (int, np.integer)) or isinstance(padding_idx, bool) or not (
                -self.num_embeddings <= padding_idx < self.num_embeddings
            ):
                raise ValueError(
                    f"{self._label}: `padding_idx`={padding_idx!r} must be an int in "
                    f"[-{self.num_embeddings}, {self.num_embeddings})."
                )
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        table = init.param(embedding_init, (self.num_embeddings, self.embedding_size), allow_none=False)
        self.weight = brainstate.ParamState(dict(weight=table))

    @property
    def _label(self) -> str:
        return layer_label(self, num_embeddings=self.num_embeddings, embedding_size=self.embedding_size)

    def update(self, indices: Any) -> Any:
        """Look up the rows of ``indices``.

        Parameters
        ----------
        indices : integer array_like
            Row numbers in ``[-N, N)``, any shape (every axis a batch or
            sequence axis; negative ones count from the end). An index outside
            that range gives a row of NaN.

        Returns
        -------
        jax.Array or Quantity
            The rows (with the table's unit), shape ``(*indices.shape, d)``;
            zeros where the index is ``padding_idx``.

        Raises
        ------
        TypeError
            ``indices`` is not an integer array.
        """
        indices = jnp.asarray(indices)
        dtype = indices.dtype
        if not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(
                f"{self._label}: expected integer token indices, got dtype {dtype}. Cast them with "
                "`.astype(jnp.int32)`."
            )
        y = embedding(indices, self.weight.value["weight"])
        if self.padding_idx is not None:
            # an out-of-range index is never the pad: its row of NaN stays visible
            rows = jnp.where(indices < 0, indices + self.num_embeddings, indices)
            y = u.math.where((rows != self.padding_idx)[..., None], y, u.math.zeros_like(y))
        return y
