"""The record of one ETP primitive: what the compiler and the learners know about it.

An *ETP primitive* is a real JAX primitive (``jax.extend.core.Primitive``) that
computes ``y = op(x, w_1, ..., w_k)`` from one data input ``x`` and named
trainable inputs (``weight``, ``bias``, LoRA's ``B`` and ``A`` ...).
:class:`ETPPrimitive` says where the data input and the trainable inputs sit
among the operands, whether the output may lie on another primitive's tail
(``gradient_enabled``), and gives the primitive's eligibility-trace rule and the
cotangent ``xy_to_dw`` of ``y`` with respect to its trainable inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive

__all__ = ["ETPPrimitive", "TrainableFn", "default_trainable_invars"]

TrainableFn = Callable[[Mapping[str, Any], int], Mapping[str, int]]


def default_trainable_invars(params: Mapping[str, Any], num_invars: int) -> dict[str, int]:
    """Operand 1 is ``weight``; a third operand, if any, is ``bias``."""
    names = {"weight": 1}
    if num_invars > 2:
        names["bias"] = 2
    return names


@dataclasses.dataclass(frozen=True, eq=False)
class ETPPrimitive:
    """What the compiler and the learners know about one ETP primitive.

    Attributes
    ----------
    primitive : jax.extend.core.Primitive
        The JAX primitive; equations are matched by identity with it.
    impl : callable
        ``impl(*operands, **params) -> y``, the plain-JAX computation.
    batched : bool
        Whether the data input carries leading batch axes.
    gradient_enabled : bool
        Whether an upstream ETP weight may reach a hidden state through this
        primitive's output (only sound for identity-like, x-free primitives such
        as :func:`braintrace.element_wise`).
    trainable_invars_fn : callable
        ``fn(params, num_invars) -> {name: operand index}``.
    x_invar_index : int or None
        Operand index of the data input ``x``; ``None`` for x-free primitives.
    y_outvar_index : int
        Output index of ``y`` (always 0 for the built-in primitives).
    diagonal_names : frozenset of str
        Trainable inputs whose Jacobian is diagonal after broadcasting
        (``y[v]`` depends only on ``w[broadcast(v)]``): biases and element-wise
        weights. Their D_RTRL trace has the hidden state's shape.
    trace_rule : TraceRule
        The D_RTRL trace rule of the other (x-dependent) trainable inputs.
    batched_partner : ETPPrimitive or None
        For an unbatched primitive, the batched form that ``jax.vmap`` binds.
    x_linear : bool
        Whether ``y`` is linear in the data input ``x``, so that a running sum
        of past inputs may stand in for ``x`` in :meth:`xy_to_dw` (the
        presynaptic traces of ES_D_RTRL, OTTT and OTPE). ``False`` for an index
        input (:func:`braintrace.embedding`): a sum of indices is no index.
    event_driven : bool
        Whether the primitive is linear in ``x`` and costs in proportion to
        the nonzeros of ``x`` (an event-driven product on spikes): learners
        that keep a leaky trace of ``x`` then contract a window's raw inputs
        instead of the trace (a sum of ``x`` itself is as sparse as the spikes).
    window_rule : callable or None
        ``(operands, x_seq, params, dy_seq, index) -> {name: gradient}`` or
        ``None``: the primitive's own :meth:`xy_to_dw_seq` (the sparse products
        contract a window without gathering ``K · nnz`` values); ``None``, or a
        rule that returns ``None``, takes the VJP.

    Examples
    --------
    >>> import braintrace
    >>> entry = braintrace.primitives.get_etp_primitive(braintrace.primitives.etp_mv_p)
    >>> entry.name, entry.x_invar_index, entry.batched_partner.name
    ('etp_mv', 0, 'etp_mm')
    >>> entry.trainable_invars({}, 3)
    {'weight': 1, 'bias': 2}
    """

    primitive: Primitive
    impl: Callable[..., jax.Array]
    batched: bool
    gradient_enabled: bool
    trainable_invars_fn: TrainableFn
    x_invar_index: int | None
    y_outvar_index: int
    diagonal_names: frozenset[str]
    trace_rule: Any  # a braintrace.primitives.TraceRule
    batched_partner: "ETPPrimitive | None" = None
    x_linear: bool = True
    event_driven: bool = False
    window_rule: Callable[..., dict[str, jax.Array] | None] | None = None

    @property
    def name(self) -> str:
        return self.primitive.name

    def trainable_invars(self, params: Mapping[str, Any], num_invars: int) -> dict[str, int]:
        """``{name: operand index}`` of the trainable inputs of one equation."""
        return dict(self.trainable_invars_fn(params, num_invars))

    def call(self, operands: tuple, params: Mapping[str, Any]) -> jax.Array:
        """Evaluate the plain-JAX implementation."""
        return self.impl(*operands, **params)

    def xy_to_dw(
        self,
        operands: tuple,
        params: Mapping[str, Any],
        dy: jax.Array,
        names: tuple[str, ...] | None = None,
    ) -> dict[str, jax.Array]:
        r"""The VJP of ``y`` w.r.t. each trainable input, given ``x``.

        .. math:: \bar w = \left(\frac{\partial y}{\partial w}\right)^\top \bar y

        Parameters
        ----------
        operands : tuple
            All operands of the equation (``x`` and the trainable inputs).
        params : mapping
            The equation's static parameters.
        dy : array
            Cotangent of ``y``, shaped like ``y``.
        names : tuple of str, optional
            Restrict to these trainable inputs (default: all).

        Returns
        -------
        dict
            ``{name: cotangent}``, each shaped like its trainable input.
        """
        index = self.trainable_invars(params, len(operands))
        if names is not None:
            index = {k: v for k, v in index.items() if k in names}
        base = list(operands)

        def f(trainables):
            ops = list(base)
            for name, i in index.items():
                ops[i] = trainables[name]
            return self.impl(*ops, **params)

        _, vjp = jax.vjp(f, {name: base[i] for name, i in index.items()})
        return vjp(dy.astype(jnp.result_type(dy)))[0]

    def xy_to_dw_seq(
        self,
        operands: tuple,
        x_seq: jax.Array,
        params: Mapping[str, Any],
        dy_seq: jax.Array,
        names: tuple[str, ...] | None = None,
    ) -> dict[str, jax.Array]:
        r"""``Σ_k xy_to_dw(x_k, dy_k)`` over a leading window axis, as one VJP.

        .. math:: \bar w = \sum_k \left(\frac{\partial y_k}{\partial w}\right)^\top \bar y_k

        The trainable inputs are those of ``operands``; ``x_seq`` (``K`` data
        inputs) replaces the data input. The window axis becomes a batch axis,
        so dense products become one large matrix product: a batched primitive
        takes it merged into its leading batch axis (as under ``jax.vmap``), an
        unbatched one hands the window to its batched partner, and any other
        primitive is vmapped over it with the weights unmapped.
        """
        index = self.trainable_invars(params, len(operands))
        if names is not None:
            index = {k: v for k, v in index.items() if k in names}
        if self.x_invar_index is None:
            return self.xy_to_dw(operands, params, jnp.sum(dy_seq, axis=0), tuple(index))
        if self.window_rule is not None and x_seq is not None:
            own = self.window_rule(tuple(operands), x_seq, params, dy_seq, index)
            if own is not None:
                return own
        base = list(operands)
        xi = self.x_invar_index
        if self.batched and x_seq.ndim >= 2 and dy_seq.ndim >= 2:
            base[xi] = x_seq.reshape((-1,) + x_seq.shape[2:])
            return self.xy_to_dw(tuple(base), params, dy_seq.reshape((-1,) + dy_seq.shape[2:]), tuple(index))
        if self.batched_partner is not None:
            base[xi] = x_seq
            return self.batched_partner.xy_to_dw(tuple(base), params, dy_seq, tuple(index))

        def f(trainables):
            ops = list(base)
            for name, i in index.items():
                ops[i] = trainables[name]

            def one(xk):
                o = list(ops)
                o[xi] = xk
                return self.impl(*o, **params)

            return jax.vmap(one)(x_seq)

        _, vjp = jax.vjp(f, {name: base[i] for name, i in index.items()})
        return vjp(dy_seq)[0]

    def diagonal_factor(self, operands: tuple, params: Mapping[str, Any], name: str) -> jax.Array:
        r"""``∂y[v]/∂w[broadcast(v)]`` of a diagonal trainable input, shaped like ``y``."""
        i = self.trainable_invars(params, len(operands))[name]
        base = list(operands)

        def f(w):
            ops = list(base)
            ops[i] = w
            return self.impl(*ops, **params)

        _, dy = jax.jvp(f, (base[i],), (jnp.ones_like(base[i]),))
        return dy
