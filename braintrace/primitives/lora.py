r"""LoRA matrix multiplication: ``y = α (x @ B) @ A + b``.

Two primitives: ``etp_lora_mv`` (``x`` of shape ``(I,)``) and ``etp_lora_mm``
(``x`` of shape ``(..., I)``). ``jax.vmap`` of ``etp_lora_mv`` binds
``etp_lora_mm``. Operands are ``(x, B, A[, bias])`` with trainable names
``'B'``, ``'A'`` and ``'bias'``; ``alpha`` is a static float.
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

__all__ = ["lora_matmul", "etp_lora_mv_p", "etp_lora_mm_p", "LoraRule"]


def _impl(x, B, A, *bias, alpha):
    y = alpha * jnp.matmul(jnp.matmul(x, B), A)
    if bias:
        y = y + bias[0]
    return y


def _trainables(params, num_invars):
    names = {"B": 1, "A": 2}
    if num_invars > 3:
        names["bias"] = 3
    return names


class LoraRule:
    r"""D_RTRL trace of a LoRA pair through one trace of the effective weight.

    ``y = x W`` with ``W = α B A`` of shape ``(I, O)``. The rule keeps the dense
    trace ``E`` of ``W`` (key ``'W'``, layout ``(*B, I, O, S)`` as in
    :class:`~braintrace.primitives.dense.DenseRule`) and maps its contraction
    to the factors by the chain rule:

    .. math::

        E^t[b, i, o, s] = \sum_{s'} D^t[b, o, s, s'] E^{t-1}[b, i, o, s']
                          + x^t[b, i]\, df^t[b, o, s],

        \bar W = \sum_{b, s} δ[b, o, s] E[b, i, o, s], \qquad
        \bar B = α\, \bar W A^\top, \qquad \bar A = α\, B^\top \bar W.

    This is exact while ``B`` and ``A`` stay fixed during the accumulation of the
    trace (the D_RTRL setting: weights change between windows, not inside
    them). Separate traces for ``B`` and ``A`` contracted one by one would
    multiply sums where the gradient needs a sum of products.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> P = braintrace.primitives
    >>> entry = P.get_etp_primitive(P.etp_lora_mv_p)
    >>> isinstance(entry.trace_rule, P.LoraRule)
    True
    >>> ops = (jnp.ones(4), jnp.ones((4, 2)), jnp.ones((2, 3)))  # x, B (I, r), A (r, O)
    >>> trace = entry.trace_rule.init(entry, ops, {"alpha": 1.0}, ("B", "A"), (3,), 1, jnp.float32)
    >>> {k: v.shape for k, v in trace.items()}                  # one (I, O, S) trace of W = αBA
    {'W': (4, 3, 1)}
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
        if not any(n in ("B", "A") for n in names):
            return {}
        i, o = operands[1].shape[0], operands[2].shape[1]
        return {"W": jnp.zeros(tuple(varshape[:-1]) + (i, o, num_state), dtype)}

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
        if "W" not in trace:
            return {}
        varshape = df.shape[:-1]
        x = broadcast_leading(operands[0], varshape, operands[0].ndim)
        eps = trace["W"]
        new = apply_block(D, eps.astype(D.dtype), extra_axes=1)
        new = new + x.astype(df.dtype)[..., :, None, None] * df[..., None, :, :]
        return {"W": new.astype(eps.dtype)}

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
        """``Σ_k x_k ⊗ u_k`` per batch element for the effective-weight trace."""
        if "W" not in template:
            return {}
        varshape = u_seq.shape[1:-1]
        x = jax.vmap(lambda xk: broadcast_leading(xk, varshape, xk.ndim))(x_seq).astype(u_seq.dtype)
        acc = jnp.einsum("k...i,k...os->...ios", x, u_seq)
        return {"W": acc.astype(template["W"].dtype)}

    def contract(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        if "W" not in trace:
            return {}
        B, A, alpha = operands[1], operands[2], params["alpha"]
        dW = contract_weight_layout(trace["W"].astype(delta.dtype), delta)
        out = {}
        if "B" in names:
            out["B"] = alpha * (dW @ A.T.astype(dW.dtype))
        if "A" in names:
            out["A"] = alpha * (B.T.astype(dW.dtype) @ dW)
        return out


_rule = LoraRule()
_mm = define_primitive("etp_lora_mm", _impl, batched=True, trainable_invars_fn=_trainables, trace_rule=_rule)
_mv = define_primitive(
    "etp_lora_mv", _impl, batched=False, trainable_invars_fn=_trainables, trace_rule=_rule,
    batched_partner=_mm,
)
etp_lora_mm_p = _mm.primitive
etp_lora_mv_p = _mv.primitive


def lora_matmul(x: Any, B: Any, A: Any, *, alpha: float = 1.0, bias: Any = None) -> Any:
    r"""ETP-aware LoRA (low-rank adaptation) matrix multiplication.

    .. math:: y_{\ldots o} = α \sum_{j} \Big(\sum_i x_{\ldots i} B_{ij}\Big) A_{jo} + b_o

    ``B`` and ``A`` (and ``bias``) learn online through one eligibility trace
    of the effective weight ``α B A`` (see :class:`LoraRule`).

    Parameters
    ----------
    x : array or Quantity, shape ``(I,)`` or ``(..., I)``
        Input. Rank 1 binds ``etp_lora_mv``, higher ranks ``etp_lora_mm``.
    B : array or Quantity, shape ``(I, r)``
        Floating-point down-projection.
    A : array or Quantity, shape ``(r, O)``
        Floating-point up-projection.
    alpha : float, default 1.0
        Static scale (a Python number, not a traced value).
    bias : array or Quantity, shape ``(O,)``, optional
        Its unit must match ``unit(x) * unit(B) * unit(A)``.

    Returns
    -------
    array or Quantity, shape ``(..., O)``
        With unit ``unit(x) * unit(B) * unit(A)``.

    Raises
    ------
    ValueError
        Wrong ranks, mismatched sizes, a bias of the wrong shape or unit.
    TypeError
        A non-floating-point ``B``, ``A`` or bias; an ``alpha`` that is not a
        concrete number.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> y = braintrace.lora_matmul(jnp.ones((2, 3)), jnp.ones((3, 1)), jnp.ones((1, 4)), alpha=0.5)
    >>> y.shape, float(y[0, 0])
    ((2, 4), 1.5)
    """
    xm, xu = split_unit(x)
    bm_, bu = split_unit(B)
    am, au = split_unit(A)
    if bm_.ndim != 2 or am.ndim != 2:
        raise ValueError(
            f"braintrace.lora_matmul: `B` and `A` must be 2-D, (I, r) and (r, O); got shapes "
            f"{bm_.shape} and {am.shape}."
        )
    if xm.ndim < 1 or xm.shape[-1] != bm_.shape[0]:
        raise ValueError(
            f"braintrace.lora_matmul: `x` has shape {xm.shape} but `B` has shape {bm_.shape}; x must be "
            f"(..., {bm_.shape[0]})."
        )
    if bm_.shape[1] != am.shape[0]:
        raise ValueError(
            f"braintrace.lora_matmul: `B` has shape {bm_.shape} and `A` has shape {am.shape}; the rank "
            f"axes ({bm_.shape[1]} and {am.shape[0]}) must agree."
        )
    check_float(bm_, op="lora_matmul", arg="B")
    check_float(am, op="lora_matmul", arg="A")
    try:
        alpha = float(alpha)
    except Exception:
        raise TypeError(
            f"braintrace.lora_matmul: `alpha` must be a concrete Python number (a static scale), got "
            f"{type(alpha).__name__}."
        ) from None
    out_unit = unit_product(xu, bu, au)
    ops = [xm, bm_, am]
    if bias is not None:
        bias_m = mantissa_in(bias, out_unit, op="lora_matmul", arg="bias")
        check_float(bias_m, op="lora_matmul", arg="bias")
        if bias_m.shape != (am.shape[1],):
            raise ValueError(
                f"braintrace.lora_matmul: `bias` has shape {bias_m.shape}; expected ({am.shape[1]},) to "
                f"match `A` of shape {am.shape}."
            )
        ops.append(bias_m)
    prim = etp_lora_mv_p if xm.ndim == 1 else etp_lora_mm_p
    return with_unit(prim.bind(*ops, alpha=alpha), out_unit)
