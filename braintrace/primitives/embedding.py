r"""Embedding lookup: ``y = T[idx]``, a gathered row of a table.

Two primitives: ``etp_embed`` (one index, shape ``()``, giving ``y`` of shape
``(d,)``) and ``etp_embed_batched`` (indices of shape ``(...)``, any number of
leading axes, giving ``y`` of shape ``(..., d)``). ``jax.vmap`` of ``etp_embed``
binds ``etp_embed_batched``. Operands are ``(indices, table)``: the integer
indices are the data input, the table ``T`` of shape ``(N, d)`` the trainable
``weight``.

The lookup is the product of a one-hot vector with the table,
``y = onehot(idx) @ T``, computed as a gather. Its data input is an index, not
a vector: the registry records ``x_linear=False``, so no learner substitutes a
sum of past indices for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .definition import define_primitive
from .dense import DenseRule
from .record import ETPPrimitive
from .trace_rules import Array, apply_block, broadcast_leading
from .units import check_float, split_unit, with_unit

__all__ = ["embedding", "etp_embed_p", "etp_embed_batched_p", "EmbeddingRule"]


def _rows(indices: Array, n: int) -> Array:
    """Indices in ``[0, n)``; negative ones count from the end, out-of-range ones become ``n``.

    Row ``n`` does not exist: the gather fills it with NaN and the trace's
    scatter drops it, so a bad index is visible and never wraps twice.
    """
    i = jnp.where(indices < 0, indices + n, indices)
    return jnp.where((i >= 0) & (i < n), i, n)


def _impl(indices, table):
    return jnp.take(table, _rows(indices, table.shape[0]), axis=0, mode="fill", fill_value=jnp.nan)


class EmbeddingRule(DenseRule):
    r"""D_RTRL trace of an embedding table, one row per table row and batch element.

    With ``P`` the positions of the hidden group before its last axis (batch
    axes and the index axes) and ``idx^t[p]`` the row looked up at ``p``,
    ``T[r, e]`` reaches only ``y[p, e]`` and only where ``idx^t[p] = r``:

    .. math::

        ε^t[p, r, e, s] = \sum_{s'} D^t[p, e, s, s'] ε^{t-1}[p, r, e, s']
                          + [\mathrm{idx}^t[p] = r]\, df^t[p, e, s], \qquad
        \bar T[r, e] = \sum_{p, s} δ[p, e, s]\, ε[p, r, e, s].

    This is the dense trace of ``onehot(idx) @ T`` (layout ``(*P, N, d, S)``:
    :class:`~braintrace.primitives.dense.DenseRule` with ``I = N``, whose
    ``init`` and ``contract`` it keeps), with the source term written as a
    scatter into the row used.

    Memory order. A row keeps a decaying, position-dependent trace after it was
    used, so the exact trace is ``O(|P|·N·d·S)``: table-sized per batch element
    and no smaller than a dense layer's with ``N`` inputs (it is ``d`` times
    smaller than :class:`~braintrace.primitives.FullJacobianRule`'s
    ``|P|·d·S·N·d``). What the gather saves is the source: each step adds
    ``|P|·d·S`` values into the rows used (a scatter) instead of an outer
    product with a one-hot vector. Over a ``MultiStepData`` window of ``K``
    steps the trace is propagated once and the ``K`` steps' sources are one
    scatter of ``K·|P|`` rows (:meth:`accumulate`).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> P = braintrace.primitives
    >>> idx, table = jnp.array([2, 0]), jnp.ones((5, 3))        # 2 lookups, N = 5 rows, d = 3
    >>> eqn = jax.make_jaxpr(braintrace.embedding)(idx, table).eqns[-1]
    >>> entry = P.get_etp_primitive(eqn.primitive)
    >>> rule = entry.trace_rule
    >>> trace = rule.init(entry, (idx, table), eqn.params, ("weight",), (2, 3), 1, jnp.float32)
    >>> trace["weight"].shape                                   # (*P, N, d, S)
    (2, 5, 3, 1)
    >>> trace = rule.update(entry, trace, (idx, table), eqn.params, ("weight",),
    ...                     jnp.zeros((2, 3, 1, 1)), jnp.ones((2, 3, 1)))
    >>> trace["weight"][0, :, 0, 0].tolist()                    # only row idx[0] = 2 received df
    [0.0, 0.0, 1.0, 0.0, 0.0]
    """

    @staticmethod
    def _scatter(eps: Array, rows: Array, src: Array) -> Array:
        """``eps[m, rows[j], :, :] += src[j]`` with ``m = j mod M`` on a ``(M, N, d, S)`` view."""
        lead = eps.shape[:-3]
        M = math.prod(lead)
        flat = eps.reshape((M,) + eps.shape[-3:])
        m = jnp.tile(jnp.arange(M), rows.size // max(M, 1))
        flat = flat.at[m, rows.reshape(-1)].add(src.reshape((-1,) + src.shape[-2:]).astype(flat.dtype), mode="drop")
        return flat.reshape(eps.shape)

    def update(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        D: Array,
        df: Array,
    ) -> dict[str, Array]:
        positions = df.shape[:-2]
        indices, n = operands[0], operands[1].shape[0]
        rows = broadcast_leading(_rows(indices, n), positions, indices.ndim)
        eps = trace["weight"]
        new = apply_block(D, eps.astype(D.dtype), extra_axes=1)
        return {"weight": self._scatter(new, rows, df).astype(eps.dtype)}

    def accumulate(
        self,
        entry: ETPPrimitive,
        template: Mapping[str, Array],
        operands: Sequence[Array],
        x_seq: Array | None,
        params: Mapping[str, Any],
        names: tuple[str, ...],
        u_seq: Array,
    ) -> dict[str, Array]:
        """``Σ_k [idx_k = r] u_k`` per position: one scatter of the window's ``K·|P|`` rows.

        Parameters
        ----------
        entry : ETPPrimitive
            The primitive's record.
        template : dict
            ``{'weight': trace}``, a trace in this rule's layout ``(*P, N, d, S)``;
            only its shape and dtype are read.
        operands : sequence of arrays
            The equation's operands ``(indices, table)`` at the window's first
            step; only the table's row count ``N`` is read.
        x_seq : integer array
            The window's indices stacked, shape ``(K, *indices.shape)``.
        params : mapping
            The equation's parameters (not read: the lookup has none).
        names : tuple of str
            The trainable inputs to accumulate, ``('weight',)``.
        u_seq : array
            Every step's source ``u_k = Φ_{K,k} df_k`` (``df_k`` carried to the
            window's end by the later steps' ``D``), shape ``(K, *P, d, S)``.

        Returns
        -------
        dict
            ``{'weight': (*P, N, d, S)}``, the window's summed sources, of the
            template's dtype.
        """
        assert x_seq is not None  # the indices are the data input
        positions = u_seq.shape[1:-2]
        n = operands[1].shape[0]
        rows = jax.vmap(lambda i: broadcast_leading(_rows(i, n), positions, i.ndim))(x_seq)
        zero = jnp.zeros(template["weight"].shape, u_seq.dtype)
        return {"weight": self._scatter(zero, rows, u_seq).astype(template["weight"].dtype)}


_rule = EmbeddingRule()
_batched = define_primitive("etp_embed_batched", _impl, batched=True, trace_rule=_rule, x_linear=False)
_single = define_primitive(
    "etp_embed", _impl, batched=False, trace_rule=_rule, batched_partner=_batched, x_linear=False
)
etp_embed_batched_p = _batched.primitive
etp_embed_p = _single.primitive


def embedding(indices: Any, table: Any) -> Any:
    r"""ETP-aware embedding lookup, ``y = T[idx]``: the row of a table for each index.

    Use it for token or symbol inputs to a recurrent network: the table learns
    online like a dense weight fed a one-hot vector, while the forward pass and
    the trace's per-step source touch only the rows looked up (see
    :class:`EmbeddingRule` for the trace and its memory).

    .. math::

        y_{\ldots e} = T_{\mathrm{idx}_{\ldots},\, e}
        = \sum_r [\mathrm{idx}_{\ldots} = r]\, T_{re}

    Parameters
    ----------
    indices : integer array, shape ``()`` or ``(...)``
        Rows to look up, in ``[-N, N)`` (negative ones count from the end, as in
        NumPy). A scalar binds ``etp_embed``, higher ranks ``etp_embed_batched``
        (every axis is a batch or sequence axis). An index outside ``[-N, N)``
        gives a row of NaN and no gradient, never a silently clamped row.
    table : array or Quantity, shape ``(N, d)``
        Floating-point table; may carry a unit.

    Returns
    -------
    array or Quantity, shape ``(*indices.shape, d)``
        With the unit of ``table``.

    Raises
    ------
    TypeError
        Non-integer ``indices`` (or indices with a physical unit); a
        non-floating-point table.
    ValueError
        A table that is not 2-D.

    Notes
    -----
    There is no bias: a vector added to every looked-up row can be absorbed
    into the table.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> table = jnp.arange(12.0).reshape(4, 3)
    >>> braintrace.embedding(jnp.array([3, 0]), table).tolist()
    [[9.0, 10.0, 11.0], [0.0, 1.0, 2.0]]
    >>> braintrace.embedding(jnp.array(-1), table).shape       # one index, no batch axis
    (3,)
    """
    im, iu = split_unit(indices)
    if not iu.is_unitless:
        raise TypeError(
            f"braintrace.embedding: `indices` has unit {iu}; indices are row numbers and must be unitless "
            "integers."
        )
    if not jnp.issubdtype(im.dtype, jnp.integer):
        raise TypeError(
            f"braintrace.embedding: `indices` has dtype {im.dtype}; it must be an integer array of row numbers "
            "(cast with `.astype(jnp.int32)`). For a weighted sum of rows use braintrace.matmul(x, table)."
        )
    tm, tu = split_unit(table)
    if tm.ndim != 2:
        raise ValueError(
            f"braintrace.embedding: `table` must be 2-D (num_embeddings N, embedding size d), got shape "
            f"{tm.shape}."
        )
    check_float(tm, op="embedding", arg="table")
    prim = etp_embed_p if im.ndim == 0 else etp_embed_batched_p
    return with_unit(prim.bind(im, tm), tu)
