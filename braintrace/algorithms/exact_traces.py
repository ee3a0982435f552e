r"""The exact parameter-dimension trace of a relation: D_RTRL's trace, shared by several learners.

For a relation ``y = op(x, w)`` reaching hidden group ``g``,

.. math::

    ε_w^t = D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w},
    \qquad c(ε^t, δ) = δ \cdot ε_w^t,

kept in the primitive's compact layout (its :class:`~braintrace.primitives.TraceRule`;
biases and element-wise weights by :class:`~braintrace.primitives.DiagonalRule`).
:class:`ExactTraces` holds it for chosen trainable inputs of every relation:
all of them for D_RTRL, e-prop and OSTL, the broadcast ones for ES_D_RTRL, OTPE
with ``D := λ``. Over a window of ``K`` steps it reads and writes the trace
once (:meth:`ExactTraces.window_update`, :meth:`ExactTraces.window_contributions`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..executor.loops import window_unroll
from ..executor.trace_data import StepTraceData, WindowTraceData
from ..primitives import DiagonalRule, FullJacobianRule
from ..primitives.trace_rules import accumulate_sources, apply_block, contract_sequence, sum_to_shape
from .keys import EPS, TraceKey

__all__ = ["ExactTraces", "window_propagators", "window_adjoints", "split_names"]

_DIAGONAL = DiagonalRule()
_FULL = FullJacobianRule()

Names = tuple[tuple[str, ...], tuple[str, ...]]


def split_names(relation: Any) -> Names:
    """``(diagonal names, x-dependent names)`` of a relation's trainable inputs.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.exact_traces import split_names
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> split_names(braintrace.compile_etrace_graph(cell, jnp.zeros(2)).relations[0])
    (('bias',), ('weight',))
    """
    diag = tuple(n for n in relation.trainable_names if n in relation.entry.diagonal_names)
    fact = tuple(n for n in relation.trainable_names if n not in relation.entry.diagonal_names)
    return diag, fact


def _matmul_blocks(A: jax.Array, B: jax.Array) -> jax.Array:
    if A.shape[-1] == 1:
        return A * B
    return jnp.einsum("...ij,...jk->...ik", A, B)


def window_propagators(D_seq: jax.Array, df_seq: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""``Φ_{K,0}`` and ``u_k = Φ_{K,k} df_k`` for a window, with ``Φ_{t,k} = D_t ⋯ D_{k+1}``.

    ``D_seq`` is ``(K, *V, S, S)``, ``df_seq`` ``(K, *V, S)``. The trace at the
    window's end is ``Φ_{K,0} ε_0 + Σ_k u_k ⊗ ∂y_k/∂w``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.algorithms.exact_traces import window_propagators
    >>> R0, u = window_propagators(jnp.full((3, 2, 1, 1), 0.5), jnp.ones((3, 2, 1)))
    >>> R0[0, 0, 0].item(), u[:, 0, 0].tolist()
    (0.125, [0.25, 0.5, 1.0])
    """
    S = D_seq.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(S, dtype=D_seq.dtype), D_seq.shape[1:])

    def body(R, inp):
        D, df = inp
        return _matmul_blocks(R, D), apply_block(R, df)

    return jax.lax.scan(body, eye, (D_seq, df_seq), reverse=True, unroll=window_unroll(D_seq.shape[0]))


def window_adjoints(D_seq: jax.Array, delta_seq: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""``D_1^T A_1`` and ``A_k = Σ_{t≥k} Φ_{t,k}^T δ_t`` for a window.

    Then ``Σ_t δ_t · ε_t = (D_1^T A_1) · ε_0 + Σ_k (A_k · df_k) ⊗ ∂y_k/∂w``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.algorithms.exact_traces import window_adjoints
    >>> A0, A = window_adjoints(jnp.full((3, 1, 1, 1), 0.5), jnp.ones((3, 1, 1)))
    >>> A0.item(), A[:, 0, 0].tolist()
    (0.875, [1.75, 1.5, 1.0])
    """
    DT = jnp.swapaxes(D_seq, -1, -2)

    def body(M, inp):
        Dt, delta = inp
        A = delta + M
        return apply_block(Dt, A), A

    return jax.lax.scan(
        body, jnp.zeros_like(delta_seq[0]), (DT, delta_seq), reverse=True, unroll=window_unroll(D_seq.shape[0])
    )


def _add(acc: dict, parts: Mapping) -> None:
    for n, v in parts.items():
        acc[n] = v if n not in acc else acc[n] + v


class ExactTraces:
    r"""The exact trace ``ε_w`` of chosen trainable inputs of every relation, per reached group.

    Parameters
    ----------
    graph : ETraceGraph
        The compiled graph.
    names : callable
        ``names(relation) -> (diagonal names, other names)`` kept by this part
        (empty tuples: the relation keeps no exact trace here).
    rule : callable
        ``rule(relation) -> TraceRule`` for the other names (the primitive's
        compact rule, or :class:`~braintrace.primitives.FullJacobianRule`).
    trace_dtype : dtype, optional
        Storage dtype (default: that of ``D``).
    leak : float, optional
        Use ``D := leak`` (a scalar per state) instead of the step's Jacobian
        blocks (OTPE).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.exact_traces import ExactTraces, split_names
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros(2))
    >>> part = ExactTraces(graph, split_names, lambda r: r.entry.trace_rule)
    >>> ex = braintrace.ETraceGraphExecutor(graph)
    >>> traces = part.init(ex.trace_data(ex.current_invals(jnp.zeros(2))))
    >>> {k.kind: sorted(v) for k, v in traces.items()}
    {'eps': ['bias', 'weight']}
    """

    def __init__(
        self,
        graph: Any,
        names: Callable[[Any], Names],
        rule: Callable[[Any], Any],
        *,
        trace_dtype: Any = None,
        leak: float | None = None,
    ) -> None:
        self.graph = graph
        self.rule = rule
        self.trace_dtype = trace_dtype
        self.leak = leak
        self.names = {r.index: names(r) for r in graph.hidden_param_op_relations}
        self.relations = tuple(r for r in graph.hidden_param_op_relations if any(self.names[r.index]))

    def key(self, relation: Any, gi: int) -> TraceKey:
        """The key of ``relation``'s trace for group ``gi``."""
        return TraceKey(EPS, (relation.index,), gi)

    def keys(self) -> list[TraceKey]:
        """Every key this part keeps."""
        return [self.key(r, gi) for r in self.relations for gi in r.hidden_groups]

    def _params(self, relation: Any) -> Any:
        return self.graph.module_info.jaxpr.eqns[relation.eqn_index].params

    def _parts(self, relation: Any):
        diag, other = self.names[relation.index]
        return [(n, rule) for n, rule in ((diag, _DIAGONAL), (other, self.rule(relation))) if n]

    def _D(self, data_D: jax.Array) -> jax.Array:
        return data_D if self.leak is None else jnp.full(data_D.shape, self.leak, data_D.dtype)

    def init(self, data: StepTraceData) -> dict[TraceKey, Any]:
        """Zero traces, shaped from one step's trace data."""
        out = {}
        for r in self.relations:
            ops, params = data.operands[r.index], self._params(r)
            for gi in r.hidden_groups:
                g = self.graph.hidden_groups[gi]
                dtype = self.trace_dtype or data.D[gi].dtype
                val: dict[str, Any] = {}
                for names, rule in self._parts(r):
                    val.update(rule.init(r.entry, ops, params, names, g.varshape, g.num_state, dtype))
                out[self.key(r, gi)] = val
        return out

    def update(self, traces: Mapping[TraceKey, Any], data: StepTraceData) -> dict[TraceKey, Any]:
        """``ε^t = D^t ε^{t-1} + df^t ⊗ ∂y^t/∂w`` for every kept trace."""
        out = {}
        for r in self.relations:
            ops, params = data.operands[r.index], self._params(r)
            for gi in r.hidden_groups:
                key = self.key(r, gi)
                D, df = self._D(data.D[gi]), data.df[(r.index, gi)]
                val: dict[str, Any] = {}
                for names, rule in self._parts(r):
                    val.update(rule.update(r.entry, traces[key], ops, params, names, D, df))
                out[key] = val
        return out

    def contributions(self, traces: Mapping[TraceKey, Any], operands: Mapping, signal: Mapping) -> dict:
        """``{relation: {name: δ · ε}}`` from the traces of one step."""
        out: dict[int, dict[str, Any]] = {}
        for r in self.relations:
            ops, params = operands[r.index], self._params(r)
            acc = out.setdefault(r.index, {})
            for gi in r.hidden_groups:
                for names, rule in self._parts(r):
                    _add(acc, rule.contract(r.entry, traces[self.key(r, gi)], ops, params, names, signal[gi]))
        return out

    def contributions_seq(self, aux: Mapping[TraceKey, Any], seq: WindowTraceData, signal_seq: Mapping) -> dict:
        """``Σ_k δ_k · ε_k`` from every step's traces ``aux`` (stacked on a leading window axis)."""
        out: dict[int, dict[str, Any]] = {}
        for r in self.relations:
            ops, params = seq.operands[r.index], self._params(r)
            acc = out.setdefault(r.index, {})
            for gi in r.hidden_groups:
                for names, rule in self._parts(r):
                    _add(acc, contract_sequence(rule, r.entry, aux[self.key(r, gi)], ops, params, names, signal_seq[gi]))
        return out

    # -- one pass over the trace per window -------------------------------------------
    def window_update(self, traces: Mapping[TraceKey, Any], seq: WindowTraceData) -> dict[TraceKey, Any]:
        r"""``ε_K = Φ_{K,0} ε_0 + Σ_k (Φ_{K,k} df_k) ⊗ ∂y_k/∂w``: one pass over the trace per window."""
        out = {}
        for r in self.relations:
            ops, params = seq.operands[r.index], self._params(r)
            x_seq = seq.x.get(r.index)
            for gi in r.hidden_groups:
                key = self.key(r, gi)
                R0, u_seq = window_propagators(self._D(seq.D[gi]), seq.df[(r.index, gi)])
                zero = jnp.zeros_like(u_seq[0])
                val: dict[str, Any] = {}
                for names, rule in self._parts(r):
                    prop = rule.update(r.entry, traces[key], ops, params, names, R0, zero)
                    src = accumulate_sources(rule, r.entry, prop, ops, x_seq, params, names, u_seq)
                    val.update({k: (prop[k] + src[k]).astype(prop[k].dtype) for k in prop})
                out[key] = val
        return out

    def window_contributions(self, before: Mapping[TraceKey, Any], seq: WindowTraceData, signal_seq: Mapping) -> dict:
        r"""``Σ_t δ_t · ε_t`` over a window from the traces before it: one matrix product per relation."""
        out: dict[int, dict[str, Any]] = {}
        for r in self.relations:
            ops, params = seq.operands[r.index], self._params(r)
            acc = out.setdefault(r.index, {})
            dy_seq = None
            for gi in r.hidden_groups:
                A0, A_seq = window_adjoints(self._D(seq.D[gi]), signal_seq[gi])
                for names, rule in self._parts(r):
                    _add(acc, rule.contract(r.entry, before[self.key(r, gi)], ops, params, names, A0))
                c = jnp.sum(A_seq * seq.df[(r.index, gi)], axis=-1)
                c = jax.vmap(lambda ck: sum_to_shape(ck, r.y_shape))(c)
                dy_seq = c if dy_seq is None else dy_seq + c
            assert dy_seq is not None  # a relation reaches at least one hidden group
            names = tuple(n for part in self.names[r.index] for n in part)
            _add(acc, r.entry.xy_to_dw_seq(tuple(ops), seq.x.get(r.index), params, dy_seq, names=names))
        return out


def full_rule(relation: Any) -> Any:
    """The generic :class:`~braintrace.primitives.FullJacobianRule` (exact for any primitive)."""
    return _FULL
