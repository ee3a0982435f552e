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

from typing import Any

import jax.numpy as jnp

from ..primitives import DiagonalRule, FullJacobianRule
from .base import ETraceVjpAlgorithm

__all__ = ["ParamDimVjpAlgorithm", "D_RTRL"]

_DIAGONAL = DiagonalRule()
_FULL = FullJacobianRule()


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
    >>> cell = braintrace.nn.GRUCell(3, 4)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    GRUCell(...)
    >>> learner = braintrace.D_RTRL(cell)
    >>> learner.compile_graph(jnp.zeros(3))  # doctest: +ELLIPSIS
    D_RTRL(...)
    >>> weights = cell.states(brainstate.ParamState)
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), weights)(jnp.ones(3))
    >>> sorted(grads)
    [('Wh', 'weight'), ('Wr', 'weight'), ('Wz', 'weight')]
    """

    def __init__(
        self,
        model: Any,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
        trace_dtype: Any = None,
    ):
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
    def init_traces(self, data):
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

    def update_traces(self, traces, data, count):
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

    def trace_contributions(self, traces, data, delta, count):
        return self._contract(traces, data.operands, delta)

    def credit_contributions(self, traces, operands, lam, count):
        return self._contract(traces, operands, lam)


D_RTRL = ParamDimVjpAlgorithm
