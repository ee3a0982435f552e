r"""D_RTRL: the parameter-dimension online learner (Zenke & Neftci's diagonal RTRL family).

For every online relation (an ETP primitive ``y = op(x, w)`` whose output
reaches hidden group ``g`` through a position-wise tail) the learner keeps

.. math::

    ε_w^t = D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w},
    \qquad \bar w \mathrel{+}= δ^t \cdot ε_w^t,

where ``D^t`` are the per-position blocks of the cut Jacobian
``∂h^t/∂h^{t-1}``, ``df^t = ∂h^t/∂y^t`` and ``δ^t = ∂L^t/∂h^t``. Memory is
``O(B·|w|·S)`` per relation and independent of the sequence length. The
gradient equals BPTT when the cut transition is element-wise and no hidden
state feeds another through a trainable op (leaky integrators, LIF neurons with
feed-forward input weights, diagonal recurrences).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..primitives import DiagonalRule, FullJacobianRule
from ..primitives.trace_rules import accumulate_sources, apply_block, sum_to_shape
from ..executor import StepTraceData
from .base import ETraceVjpAlgorithm
from .loops import window_unroll

__all__ = ["ParamDimVjpAlgorithm", "D_RTRL", "window_propagators", "window_adjoints"]

_DIAGONAL = DiagonalRule()
_FULL = FullJacobianRule()


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
    >>> from braintrace.algorithms.d_rtrl import window_propagators
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
    >>> from braintrace.algorithms.d_rtrl import window_adjoints
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


def _split_names(relation) -> tuple[tuple[str, ...], tuple[str, ...]]:
    diag = tuple(n for n in relation.trainable_names if n in relation.entry.diagonal_names)
    fact = tuple(n for n in relation.trainable_names if n not in relation.entry.diagonal_names)
    return diag, fact


class ParamDimVjpAlgorithm(ETraceVjpAlgorithm):
    r"""Online learning with parameter-dimension eligibility traces (D_RTRL).

    .. math::

        ε_w^t = D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w},
        \qquad \nabla_w L \mathrel{+}= δ^t \cdot ε_w^t

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; weights learned online go through ETP primitives.
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        See :class:`ETraceVjpAlgorithm`.
    fast_solve : bool, default True
        Use each primitive's compact trace rule (einsum kernels). ``False``
        uses the generic full-Jacobian rule: exact, memory-hungry, for checks.
    trace_dtype : dtype, optional
        Storage dtype of the traces (e.g. ``jnp.bfloat16``); Jacobians,
        learning signals and gradients stay in the model's precision.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(3, 4)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    MGUCell(...)
    >>> learner = braintrace.D_RTRL(cell)  # D_RTRL is ParamDimVjpAlgorithm
    >>> learner.compile_graph(jnp.zeros(3))  # doctest: +ELLIPSIS
    ParamDimVjpAlgorithm(...)
    >>> weights = cell.states(brainstate.ParamState)
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), weights)(jnp.ones(3))
    >>> sorted(grads)
    [('Wf', 'weight'), ('Wh', 'weight')]
    """

    #: D_RTRL's traces are weight-sized: a window reads and writes them once
    #: (see :meth:`window_update`), many times faster than once per step.
    default_window: int | None = 64

    def __init__(
        self,
        model: Any,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
        trace_dtype: Any = None,
    ) -> None:
        super().__init__(model, name=name, vjp_method=vjp_method)
        self.fast_solve = bool(fast_solve)
        self.trace_dtype = None if trace_dtype is None else jnp.dtype(trace_dtype)

    # keys ---------------------------------------------------------------
    def _key(self, relation, gi: int) -> str:
        return f"{self.trace_key_prefix(relation)}->g{gi}"

    def _params(self, relation):
        return self.graph.module_info.jaxpr.eqns[relation.eqn_index].params

    def _rule(self, relation):
        return relation.entry.trace_rule if self.fast_solve else _FULL

    # hooks --------------------------------------------------------------
    def init_traces(self, data: StepTraceData) -> dict[str, Any]:
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = _split_names(r)
            ops, params = data.operands[r.index], self._params(r)
            for gi in r.hidden_groups:
                g = self.graph.hidden_groups[gi]
                dtype = self.trace_dtype or data.D[gi].dtype
                val = {}
                if diag:
                    val.update(_DIAGONAL.init(r.entry, ops, params, diag, g.varshape, g.num_state, dtype))
                if fact:
                    val.update(self._rule(r).init(r.entry, ops, params, fact, g.varshape, g.num_state, dtype))
                out[self._key(r, gi)] = val
        return out

    def update_traces(self, traces: Mapping[str, Any], data: StepTraceData, count: jax.Array) -> dict[str, Any]:
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out = dict(traces)
        for r in self.graph.hidden_param_op_relations:
            diag, fact = _split_names(r)
            ops, params = data.operands[r.index], self._params(r)
            for gi in r.hidden_groups:
                key = self._key(r, gi)
                D, df = data.D[gi], data.df[(r.index, gi)]
                val = {}
                if diag:
                    val.update(_DIAGONAL.update(r.entry, traces[key], ops, params, diag, D, df))
                if fact:
                    val.update(self._rule(r).update(r.entry, traces[key], ops, params, fact, D, df))
                out[key] = val
        return out

    def _contract(self, traces, operands, signal):
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = _split_names(r)
            ops, params = operands[r.index], self._params(r)
            acc: dict[str, Any] = {}
            for gi in r.hidden_groups:
                key = self._key(r, gi)
                parts = {}
                if diag:
                    parts.update(_DIAGONAL.contract(r.entry, traces[key], ops, params, diag, signal[gi]))
                if fact:
                    parts.update(self._rule(r).contract(r.entry, traces[key], ops, params, fact, signal[gi]))
                for n, v in parts.items():
                    acc[n] = v if n not in acc else acc[n] + v
            out[r.index] = acc
        return out

    def trace_contributions(
        self, traces: Mapping[str, Any], data: StepTraceData, delta: dict[int, jax.Array], count: jax.Array
    ) -> dict:
        return self._contract(traces, data.operands, delta)

    # fused windows ---------------------------------------------------------
    def window_update(self, traces: Mapping[str, Any], seq: Any, count: jax.Array) -> tuple[dict[str, Any], None]:
        r"""``ε_K = Φ_{K,0} ε_0 + Σ_k (Φ_{K,k} df_k) ⊗ ∂y_k/∂w``: one pass over the trace per window."""
        assert self.graph is not None
        out = dict(traces)
        for r in self.graph.hidden_param_op_relations:
            diag, fact = _split_names(r)
            ops, params = seq.operands[r.index], self._params(r)
            x_seq = seq.x.get(r.index)
            for gi in r.hidden_groups:
                key = self._key(r, gi)
                R0, u_seq = window_propagators(seq.D[gi], seq.df[(r.index, gi)])
                zero = jnp.zeros_like(u_seq[0])
                val = {}
                for names, rule in ((diag, _DIAGONAL), (fact, self._rule(r))):
                    if not names:
                        continue
                    prop = rule.update(r.entry, traces[key], ops, params, names, R0, zero)
                    src = accumulate_sources(rule, r.entry, prop, ops, x_seq, params, names, u_seq)
                    val.update({k: (prop[k] + src[k]).astype(prop[k].dtype) for k in prop})
                out[key] = val
        return out, None

    def window_contributions(
        self, traces: Mapping[str, Any], aux: Any, seq: Any, delta_seq: dict[int, jax.Array], count: jax.Array
    ) -> dict:
        r"""``Σ_t δ_t · ε_t`` over a window from the traces before it: one matrix product per relation."""
        assert self.graph is not None
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = _split_names(r)
            ops, params = seq.operands[r.index], self._params(r)
            eqn = self.graph.module_info.jaxpr.eqns[r.eqn_index]
            y_shape = tuple(eqn.outvars[r.entry.y_outvar_index].aval.shape)
            acc: dict[str, Any] = {}
            dy_seq = None
            for gi in r.hidden_groups:
                key = self._key(r, gi)
                A0, A_seq = window_adjoints(seq.D[gi], delta_seq[gi])
                for names, rule in ((diag, _DIAGONAL), (fact, self._rule(r))):
                    if names:
                        for n, v in rule.contract(r.entry, traces[key], ops, params, names, A0).items():
                            acc[n] = v if n not in acc else acc[n] + v
                c = jnp.sum(A_seq * seq.df[(r.index, gi)], axis=-1)
                c = jax.vmap(lambda ck: sum_to_shape(ck, y_shape))(c)
                dy_seq = c if dy_seq is None else dy_seq + c
            assert dy_seq is not None  # a relation reaches at least one hidden group
            src = r.entry.xy_to_dw_seq(tuple(ops), seq.x.get(r.index), params, dy_seq, names=r.trainable_names)
            for n, v in src.items():
                acc[n] = v if n not in acc else acc[n] + v
            out[r.index] = acc
        return out

    def credit_contributions(
        self, traces: Mapping[str, Any], operands: dict, lam: dict[int, jax.Array], count: jax.Array
    ) -> dict:
        return self._contract(traces, operands, lam)


D_RTRL = ParamDimVjpAlgorithm
