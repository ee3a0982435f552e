r"""ES_D_RTRL: the input/output-dimension online learner (pp-prop).

The D_RTRL trace of a weight is approximated by a product of an input trace
and an output trace, both exponentially smoothed with decay ``α``:

.. math::

    ε_x^t = α ε_x^{t-1} + x^t, \qquad
    ε_f^t = α D^t ε_f^{t-1} + (1 - α)\, df^t, \qquad
    \nabla_w L \mathrel{+}= \mathrm{xy\_to\_dw}\!\left(ε_x^t,
        \sum_s \frac{ε_f^t[\cdot, s]}{c_t}\, δ^t[\cdot, s]\right),

with the bias correction ``c_t = 1 - α^{k+1}``, ``k`` the number of time steps
since the last reset. Memory is ``O(B·(I+O)·S)`` per relation. Inputs that
enter by broadcasting (biases, element-wise weights) keep their exact D_RTRL
trace, whose size is already ``O(B·O·S)``; so do the weights of a primitive
whose data input is an index (``x_linear=False``, e.g. :func:`braintrace.embedding`:
a decayed sum of indices is no index). Relations whose outputs are summed
before any other use (an input and a recurrent current, see
:attr:`~braintrace.compiler.ETraceGraph.output_classes`) have equal ``df``,
hence equal ``ε_f``: they share one output trace.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..primitives import DiagonalRule
from ..primitives.trace_rules import apply_block, contract_sequence, sum_to_shape
from ..executor import StepTraceData
from .base import ETraceVjpAlgorithm
from .helpers import _shared_output_key

__all__ = ["IODimVjpAlgorithm", "ES_D_RTRL", "pp_prop", "decay_from"]

_DIAGONAL = DiagonalRule()


def decay_from(decay_or_rank: Any) -> float:
    """``α`` from a decay in (0, 1) or an integer rank ``n >= 1`` (``α = (n-1)/(n+1)``).

    Examples
    --------
    >>> from braintrace.algorithms.es_d_rtrl import decay_from
    >>> decay_from(0.9), decay_from(3)
    (0.9, 0.5)
    """
    if isinstance(decay_or_rank, bool):
        pass
    elif isinstance(decay_or_rank, numbers.Integral):
        if int(decay_or_rank) >= 1:
            return (int(decay_or_rank) - 1) / (int(decay_or_rank) + 1)
    elif isinstance(decay_or_rank, numbers.Real):
        if 0.0 < float(decay_or_rank) < 1.0:
            return float(decay_or_rank)
    raise ValueError(
        f"decay_or_rank={decay_or_rank!r} is not valid: give a float decay α in the open interval (0, 1), "
        "or an integer rank n >= 1 (then α = (n - 1) / (n + 1))."
    )


class IODimVjpAlgorithm(ETraceVjpAlgorithm):
    r"""Online learning with input/output-dimension eligibility traces (ES_D_RTRL, pp-prop).

    .. math::

        ε_x^t = α ε_x^{t-1} + x^t, \quad
        ε_f^t = α D^t ε_f^{t-1} + (1-α)\, df^t, \quad
        \nabla_w L \mathrel{+}= \mathrm{xy\_to\_dw}(ε_x^t, (ε_f^t / c_t) ∘ δ^t)

    Parameters
    ----------
    model : brainstate.nn.Module
    decay_or_rank : float or int
        A decay ``α`` in ``(0, 1)``, or an integer rank ``n >= 1`` giving
        ``α = (n - 1)/(n + 1)``.
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
    fast_solve : bool, default True
        Kept for API symmetry with :class:`ParamDimVjpAlgorithm`; the
        factored traces need no solver.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(3, 4)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    MGUCell(...)
    >>> learner = braintrace.ES_D_RTRL(cell, decay_or_rank=0.9)
    >>> learner.compile_graph(jnp.zeros(3))  # doctest: +ELLIPSIS
    IODimVjpAlgorithm(...)
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), cell.states(brainstate.ParamState))(jnp.ones(3))
    >>> sorted(grads)
    [('Wf', 'weight'), ('Wh', 'weight')]
    """

    #: A window's steps share one pass: traces advanced in the forward scan, the
    #: weight gradients one matrix product per window (CPU LIF-1024: 0.6x the
    #: per-step time; H100 LIF-4096: 0.45x).
    default_window: int | None = 32

    def __init__(
        self,
        model: Any,
        decay_or_rank: float | int,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
    ) -> None:
        super().__init__(model, name=name, vjp_method=vjp_method)
        self.decay = decay_from(decay_or_rank)
        self.fast_solve = bool(fast_solve)

    def _params(self, relation):
        return self.graph.module_info.jaxpr.eqns[relation.eqn_index].params

    def _names(self, relation):
        entry = relation.entry
        diag = tuple(n for n in relation.trainable_names if n in entry.diagonal_names)
        fact = tuple(n for n in relation.trainable_names if n not in entry.diagonal_names)
        return diag, fact

    def _x_key(self, r) -> str:
        return f"{self.trace_key_prefix(r)}:x"

    def _f_key(self, r, gi) -> str:
        """Key of the relation's own traces for group ``gi`` (diagonal and non-factored names)."""
        return f"{self.trace_key_prefix(r)}->g{gi}"

    def _shared_f_key(self, r, gi) -> str:
        """Key of the output trace ``ε_f`` for group ``gi``: factored relations whose
        outputs are summed before any other use have equal ``df``, hence equal ``ε_f``,
        and share one trace."""
        return _shared_output_key(self, r, gi, self._factored)

    def _factored(self, r) -> bool:
        return r.entry.x_invar_index is not None and r.entry.x_linear and bool(self._names(r)[1])

    def _own_traces(self, r) -> bool:
        """Whether the relation keeps traces of its own (diagonal names, or names without ``x``)."""
        diag, fact = self._names(r)
        return bool(diag) or (bool(fact) and not self._factored(r))

    def init_traces(self, data: StepTraceData) -> dict[str, Any]:
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = self._names(r)
            ops, params = data.operands[r.index], self._params(r)
            dtype = data.D[r.hidden_groups[0]].dtype
            if self._factored(r):
                x = ops[r.entry.x_invar_index]
                out[self._x_key(r)] = {"x": jnp.zeros(jnp.shape(x), dtype)}
            for gi in r.hidden_groups:
                g = self.graph.hidden_groups[gi]
                if self._factored(r):
                    out[self._shared_f_key(r, gi)] = {"f": jnp.zeros(tuple(g.varshape) + (g.num_state,), dtype)}
                if not self._own_traces(r):
                    continue
                val = {}
                if diag:
                    val.update(_DIAGONAL.init(r.entry, ops, params, diag, g.varshape, g.num_state, dtype))
                if fact and not self._factored(r):
                    val.update(r.entry.trace_rule.init(r.entry, ops, params, fact, g.varshape, g.num_state, dtype))
                out[self._f_key(r, gi)] = val
        return out

    def update_traces(self, traces: Mapping[str, Any], data: StepTraceData, count: jax.Array) -> dict[str, Any]:
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        a = self.decay
        out = dict(traces)
        for r in self.graph.hidden_param_op_relations:
            diag, fact = self._names(r)
            ops, params = data.operands[r.index], self._params(r)
            if self._factored(r):
                key = self._x_key(r)
                x = ops[r.entry.x_invar_index]
                out[key] = {"x": a * traces[key]["x"] + x.astype(traces[key]["x"].dtype)}
            for gi in r.hidden_groups:
                D, df = data.D[gi], data.df[(r.index, gi)]
                if self._factored(r):
                    shared = self._shared_f_key(r, gi)
                    if out[shared] is traces[shared]:  # not yet advanced by another member of its class
                        out[shared] = {"f": a * apply_block(D, traces[shared]["f"]) + (1.0 - a) * df}
                if not self._own_traces(r):
                    continue
                key = self._f_key(r, gi)
                val = {}
                if diag:
                    val.update(_DIAGONAL.update(r.entry, traces[key], ops, params, diag, D, df))
                if fact and not self._factored(r):
                    val.update(r.entry.trace_rule.update(r.entry, traces[key], ops, params, fact, D, df))
                out[key] = val
        return out

    def _contract(self, traces, operands, signal, k):
        """Gradient contributions with bias correction ``c = 1 - α^(k+1)``."""
        a = self.decay
        dtype = jnp.result_type(*[v for v in signal.values()]) if signal else jnp.float32
        c = 1.0 - jnp.power(jnp.asarray(a, dtype), k.astype(dtype) + 1)
        c = jnp.where(c > 0, c, jnp.ones_like(c))
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = self._names(r)
            ops, params = operands[r.index], self._params(r)
            eqn = self.graph.module_info.jaxpr.eqns[r.eqn_index]
            y_shape = tuple(eqn.outvars[r.entry.y_outvar_index].aval.shape)
            acc: dict[str, Any] = {}

            def add(parts):
                for n, v in parts.items():
                    acc[n] = v if n not in acc else acc[n] + v

            dy = None
            for gi in r.hidden_groups:
                tr = traces.get(self._f_key(r, gi))
                if diag:
                    add(_DIAGONAL.contract(r.entry, tr, ops, params, diag, signal[gi]))
                if fact and self._factored(r):
                    f = traces[self._shared_f_key(r, gi)]["f"]
                    term = sum_to_shape(jnp.sum(f / c.astype(f.dtype) * signal[gi], axis=-1), y_shape)
                    dy = term if dy is None else dy + term
                elif fact:
                    add(r.entry.trace_rule.contract(r.entry, tr, ops, params, fact, signal[gi]))
            if dy is not None:
                new_ops = list(ops)
                new_ops[r.entry.x_invar_index] = traces[self._x_key(r)]["x"]
                add(r.entry.xy_to_dw(tuple(new_ops), params, dy, names=fact))
            out[r.index] = acc
        return out

    # fused windows ---------------------------------------------------------
    # The traces are O(B·(I+O)·S): the window's forward scan advances them step
    # by step (the default ``window_update``) and keeps every step's traces, so
    # a window's contributions are one matrix product per relation.
    def window_contributions(
        self, traces: Mapping[str, Any], aux: Any, seq: Any, delta_seq: dict[int, jax.Array], count: jax.Array
    ) -> dict:
        """``Σ_k`` of the per-step contributions from every step's traces (``aux``), one matrix product per relation."""
        assert self.graph is not None
        a = self.decay
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = self._names(r)
            ops, params = seq.operands[r.index], self._params(r)
            eqn = self.graph.module_info.jaxpr.eqns[r.eqn_index]
            y_shape = tuple(eqn.outvars[r.entry.y_outvar_index].aval.shape)
            exact = ((diag, _DIAGONAL), (() if self._factored(r) else fact, r.entry.trace_rule))
            acc: dict[str, Any] = {}
            dy_f = None
            for gi in r.hidden_groups:
                tr_seq, delta = aux.get(self._f_key(r, gi)), delta_seq[gi]
                for names, rule in exact:
                    if names:
                        for n, v in contract_sequence(rule, r.entry, tr_seq, ops, params, names, delta).items():
                            acc[n] = v if n not in acc else acc[n] + v
                if fact and self._factored(r):
                    K = delta.shape[0]
                    k = count.astype(delta.dtype) + jnp.arange(K, dtype=delta.dtype)
                    corr = 1.0 - jnp.power(jnp.asarray(a, delta.dtype), k + 1)
                    corr = jnp.where(corr > 0, corr, jnp.ones_like(corr))
                    f_seq = aux[self._shared_f_key(r, gi)]["f"].astype(delta.dtype)
                    scale = corr.reshape((K,) + (1,) * (f_seq.ndim - 1))
                    term = jax.vmap(lambda ck: sum_to_shape(ck, y_shape))(jnp.sum(f_seq / scale * delta, axis=-1))
                    dy_f = term if dy_f is None else dy_f + term
            if dy_f is not None:
                src = r.entry.xy_to_dw_seq(tuple(ops), aux[self._x_key(r)]["x"], params, dy_f, names=fact)
                for n, v in src.items():
                    acc[n] = v if n not in acc else acc[n] + v
            out[r.index] = acc
        return out

    def trace_contributions(
        self, traces: Mapping[str, Any], data: StepTraceData, delta: dict[int, jax.Array], count: jax.Array
    ) -> dict:
        return self._contract(traces, data.operands, delta, count)

    def credit_contributions(
        self, traces: Mapping[str, Any], operands: dict, lam: dict[int, jax.Array], count: jax.Array
    ) -> dict:
        # traces before the window belong to step count - 1, i.e. k = count - 1
        return self._contract(traces, operands, lam, count - 1)


ES_D_RTRL = IODimVjpAlgorithm
pp_prop = IODimVjpAlgorithm
