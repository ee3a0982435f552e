r"""Dense matrix multiplication: ``y = x @ W + b``.

Two primitives: ``etp_mv`` (``x`` of shape ``(I,)``) and ``etp_mm`` (``x`` of
shape ``(..., I)``, any number of leading batch axes). ``jax.vmap`` of
``etp_mv`` binds ``etp_mm``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .definition import define_primitive
from .record import ETPPrimitive
from .trace_rules import Array, apply_block, broadcast_leading, contract_weight_layout
from .units import check_float, mantissa_in, split_unit, unit_product, with_unit

__all__ = ["matmul", "etp_mv_p", "etp_mm_p", "DenseRule"]


def _impl(x, weight, *bias):
    y = jnp.matmul(x, weight)
    if bias:
        y = y + bias[0]
    return y


class DenseRule:
    r"""D_RTRL trace of a dense weight ``W`` of shape ``(I, O)``.

    ``W[i, o]`` reaches only output ``o``, so the trace keeps one entry per
    weight and batch element, shape ``(*B, I, O, S)``:

    .. math::

        ε^t[b, i, o, s] = \sum_{s'} D^t[b, o, s, s'] ε^{t-1}[b, i, o, s']
                          + x^t[b, i]\, df^t[b, o, s], \qquad
        \bar W[i, o] = \sum_{b, s} δ[b, o, s]\, ε[b, i, o, s].
    """

    def init(
        self,
        entry: ETPPrimitive,
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        varshape: tuple[int, ...],
        num_state: int,
        dtype: Any,
    ) -> dict[str, Array]:
        w = operands[1]  # (..., I, O): the input axis is second to last
        return {"weight": jnp.zeros(tuple(varshape[:-1]) + (w.shape[-2], varshape[-1], num_state), dtype)}

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
        varshape = df.shape[:-1]
        x = broadcast_leading(operands[0], varshape, operands[0].ndim)
        eps = trace["weight"]
        new = apply_block(D, eps.astype(D.dtype), extra_axes=1)
        new = new + x.astype(df.dtype)[..., :, None, None] * df[..., None, :, :]
        return {"weight": new.astype(eps.dtype)}

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
        """``Σ_k x_k ⊗ u_k`` per batch element: one matrix product over the window."""
        varshape = u_seq.shape[1:-1]
        x = jax.vmap(lambda xk: broadcast_leading(xk, varshape, xk.ndim))(x_seq).astype(u_seq.dtype)
        acc = jnp.einsum("k...i,k...os->...ios", x, u_seq)
        return {"weight": acc.astype(template["weight"].dtype)}

    def contract(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        g = contract_weight_layout(trace["weight"].astype(delta.dtype), delta)
        return {"weight": g}


_rule = DenseRule()
_mm = define_primitive("etp_mm", _impl, batched=True, trace_rule=_rule)
_mv = define_primitive("etp_mv", _impl, batched=False, trace_rule=_rule, batched_partner=_mm)
etp_mm_p = _mm.primitive
etp_mv_p = _mv.primitive


def matmul(x: Any, weight: Any, bias: Any = None) -> Any:
    r"""ETP-aware matrix multiplication, ``y = x @ W + b``.

    Use it instead of ``x @ w`` to make ``w`` (and ``bias``) learn online: the
    compiler recognises the primitive and keeps an eligibility trace for it.

    .. math:: y_{\ldots o} = \sum_i x_{\ldots i} W_{io} + b_o

    Parameters
    ----------
    x : array or Quantity, shape ``(I,)`` or ``(..., I)``
        Input. Rank 1 binds the unbatched primitive ``etp_mv``, higher ranks the
        batched ``etp_mm`` (leading axes are batch axes).
    weight : array or Quantity, shape ``(I, O)``
        Floating-point weight.
    bias : array or Quantity, shape ``(O,)``, optional
        Its unit must match ``unit(x) * unit(weight)``.

    Returns
    -------
    array or Quantity, shape ``(..., O)``
        With unit ``unit(x) * unit(weight)``.

    Raises
    ------
    ValueError
        Wrong ranks, mismatched sizes, a bias of the wrong shape or unit.
    TypeError
        A non-floating-point weight or bias.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> y = braintrace.matmul(jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.zeros(4))
    >>> y.shape
    (2, 4)
    """
    xm, xu = split_unit(x)
    wm, wu = split_unit(weight)
    if wm.ndim != 2:
        raise ValueError(f"braintrace.matmul: `weight` must be 2-D (I, O), got shape {wm.shape}.")
    if xm.ndim < 1:
        raise ValueError(f"braintrace.matmul: `x` must have rank >= 1 (..., I), got a scalar.")
    if xm.shape[-1] != wm.shape[0]:
        raise ValueError(
            f"braintrace.matmul: `x` has shape {xm.shape} but `weight` has shape {wm.shape}; "
            f"the last axis of x ({xm.shape[-1]}) must equal the first axis of weight ({wm.shape[0]})."
        )
    check_float(wm, op="matmul", arg="weight")
    out_unit = unit_product(xu, wu)
    ops = [xm, wm]
    if bias is not None:
        bm = mantissa_in(bias, out_unit, op="matmul", arg="bias")
        check_float(bm, op="matmul", arg="bias")
        if bm.shape != (wm.shape[1],):
            raise ValueError(
                f"braintrace.matmul: `bias` has shape {bm.shape}; expected ({wm.shape[1]},) to match "
                f"weight of shape {wm.shape}."
            )
        ops.append(bm)
    prim = etp_mv_p if xm.ndim == 1 else etp_mm_p
    return with_unit(prim.bind(*ops), out_unit)
