r"""Grouped matrix multiplication: ``y[..., g, :] = x[..., g, :] @ W[g] + b[g]``.

``G`` independent blocks, i.e. a block-diagonal weight kept as its ``G``
blocks (multi-area models, block-diagonal recurrences). Two primitives:
``etp_grouped_mv`` (``x`` of shape ``(G, I)``) and ``etp_grouped_mm`` (``x`` of
shape ``(..., G, I)``, any number of leading batch axes). ``jax.vmap`` of
``etp_grouped_mv`` binds ``etp_grouped_mm``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from .definition import define_primitive
from .dense import DenseRule
from .record import ETPPrimitive
from .trace_rules import Array
from .units import check_float, mantissa_in, split_unit, unit_product, with_unit

__all__ = ["grouped_matmul", "etp_grouped_mv_p", "etp_grouped_mm_p", "GroupedRule"]


def _impl(x, weight, *bias):
    y = jnp.einsum("...gi,gio->...go", x, weight)
    if bias:
        y = y + bias[0]
    return y


class GroupedRule(DenseRule):
    r"""D_RTRL trace of grouped weights ``W`` of shape ``(G, I, O)``.

    ``W[g, i, o]`` reaches only output ``(g, o)``. The trace keeps one entry per
    weight and batch element, layout ``(*B, G, I, O, S)`` (``B`` = the hidden
    group's axes before ``(G, O)``):

    .. math::

        ε^t[b, g, i, o, s] = \sum_{s'} D^t[b, g, o, s, s'] ε^{t-1}[b, g, i, o, s']
                             + x^t[b, g, i]\, df^t[b, g, o, s], \qquad
        \bar W[g, i, o] = \sum_{b, s} δ[b, g, o, s]\, ε[b, g, i, o, s].

    This is :class:`~braintrace.primitives.dense.DenseRule` (its ``init``,
    ``update`` and ``accumulate``) with the group axis as one more batch axis,
    kept apart in the contraction. Memory is ``|B|·G·I·O·S``, ``G`` times less
    than the dense trace of the equivalent ``(G·I, G·O)`` block-diagonal matrix.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> P = braintrace.primitives
    >>> x, w = jnp.ones((2, 3)), jnp.ones((2, 3, 4))               # G = 2 blocks of 3 -> 4
    >>> eqn = jax.make_jaxpr(braintrace.grouped_matmul)(x, w).eqns[-1]
    >>> entry = P.get_etp_primitive(eqn.primitive)
    >>> isinstance(entry.trace_rule, P.GroupedRule)
    True
    >>> entry.trace_rule.init(entry, (x, w), eqn.params, ("weight",), (2, 4), 1, jnp.float32)["weight"].shape
    (2, 3, 4, 1)
    """

    def contract(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        g = jnp.einsum("...gios,...gos->gio", trace["weight"].astype(delta.dtype), delta)
        return {"weight": g}


_rule = GroupedRule()
_mm = define_primitive("etp_grouped_mm", _impl, batched=True, trace_rule=_rule)
_mv = define_primitive("etp_grouped_mv", _impl, batched=False, trace_rule=_rule, batched_partner=_mm)
etp_grouped_mm_p = _mm.primitive
etp_grouped_mv_p = _mv.primitive


def grouped_matmul(x: Any, weight: Any, bias: Any = None) -> Any:
    r"""ETP-aware grouped (block-diagonal) matrix multiplication.

    ``G`` independent linear maps, one per group: group ``g`` of the input
    reaches only group ``g`` of the output. Equivalent to a ``(G·I, G·O)``
    block-diagonal matrix, with ``G`` times fewer weights and a ``G`` times
    smaller D_RTRL trace (see :class:`GroupedRule`).

    .. math:: y_{\ldots g o} = \sum_i x_{\ldots g i} W_{g i o} + b_{g o}

    Parameters
    ----------
    x : array or Quantity, shape ``(G, I)`` or ``(..., G, I)``
        Input, the group axis second to last. Rank 2 binds the unbatched
        primitive ``etp_grouped_mv``, higher ranks ``etp_grouped_mm`` (leading
        axes are batch axes).
    weight : array or Quantity, shape ``(G, I, O)``
        Floating-point blocks.
    bias : array or Quantity, shape ``(G, O)``, optional
        Its unit must match ``unit(x) * unit(weight)``.

    Returns
    -------
    array or Quantity, shape ``(..., G, O)``
        With unit ``unit(x) * unit(weight)``.

    Raises
    ------
    ValueError
        Wrong ranks, group or input sizes that do not match, a bias of the wrong
        shape or unit.
    TypeError
        A non-floating-point weight or bias.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> x = jnp.ones((5, 2, 3))                    # batch 5, G = 2 groups of 3 inputs
    >>> w = jnp.stack([jnp.ones((3, 4)), 2 * jnp.ones((3, 4))])
    >>> y = braintrace.grouped_matmul(x, w, jnp.zeros((2, 4)))
    >>> y.shape, y[0, :, 0].tolist()
    ((5, 2, 4), [3.0, 6.0])
    """
    xm, xu = split_unit(x)
    wm, wu = split_unit(weight)
    if wm.ndim != 3:
        raise ValueError(
            f"braintrace.grouped_matmul: `weight` must be 3-D (G, I, O), got shape {wm.shape}."
        )
    if xm.ndim < 2:
        raise ValueError(
            f"braintrace.grouped_matmul: `x` must have rank >= 2 (..., G, I), got shape {xm.shape}."
        )
    if xm.shape[-2:] != wm.shape[:2]:
        raise ValueError(
            f"braintrace.grouped_matmul: `x` has shape {xm.shape} but `weight` has shape {wm.shape}; the "
            f"last two axes of x (G, I) = {xm.shape[-2:]} must equal the first two of weight {wm.shape[:2]}."
        )
    check_float(wm, op="grouped_matmul", arg="weight")
    out_unit = unit_product(xu, wu)
    ops = [xm, wm]
    if bias is not None:
        bm = mantissa_in(bias, out_unit, op="grouped_matmul", arg="bias")
        check_float(bm, op="grouped_matmul", arg="bias")
        if bm.shape != (wm.shape[0], wm.shape[2]):
            raise ValueError(
                f"braintrace.grouped_matmul: `bias` has shape {bm.shape}; expected (G, O) = "
                f"{(wm.shape[0], wm.shape[2])} to match weight of shape {wm.shape}."
            )
        ops.append(bm)
    prim = etp_grouped_mv_p if xm.ndim == 2 else etp_grouped_mm_p
    return with_unit(prim.bind(*ops), out_unit)
