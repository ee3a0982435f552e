r"""Factored input/output traces: the part ES_D_RTRL, OSTLFeedforward and OTPE('approx') share.

For a relation ``y = op(x, w)`` reaching group ``g``, the synapse-shaped trace
is replaced by an input trace and an output trace, decayed by ``a_x`` and ``a_f``:

.. math::

    ε_x^t = a_x\, ε_x^{t-1} + x^t, \qquad
    ε_f^t = a_f\, \tilde D^t ε_f^{t-1} + s\, df^t, \qquad
    c(ε^t, δ) = \mathrm{xy\_to\_dw}\Big(ε_x^t,\ \sum_s \frac{ε_f^t}{n_k} ⊙ δ\Big),

with ``D̃ = D`` (ES_D_RTRL, OSTLFeedforward) or ``D̃ = 1`` (OTPE), a source
scale ``s`` and a normaliser ``n_k`` of the step count ``k`` since reset:
``s = 1 - a_f``, ``n_k = 1 - a_f^{k+1}`` (ES_D_RTRL's bias correction ``c_k``) or
``s = 1``, ``n_k = Σ_{j≤k} a^j`` (OTPE, ``a_x = a_f = a``). Relations whose outputs are summed
before any other use have equal ``df`` (``graph.output_classes``): they share
one output trace. Memory is ``O(B·(I+O)·S)`` per relation. A primitive whose
data input is an index (``x_linear=False``, :func:`braintrace.embedding`: a
decayed sum of indices is no index) is not factored: its learner keeps the
exact trace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..executor.trace_data import StepTraceData, WindowTraceData
from ..primitives.trace_rules import apply_block, sum_to_shape
from .exact_traces import split_names
from .keys import INPUT, OUTPUT, TraceKey

__all__ = ["FactoredTraces", "bias_correction", "leaky_count"]

Normaliser = Callable[[jax.Array, Any], jax.Array]


def bias_correction(decay: float) -> Normaliser:
    """``k -> 1 - a^{k+1}`` (``1`` where it is not positive: the traces are still zero).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.algorithms.factored_traces import bias_correction
    >>> bias_correction(0.5)(jnp.arange(3), jnp.float32).tolist()
    [0.5, 0.75, 0.875]
    """

    def norm(k: jax.Array, dtype: Any) -> jax.Array:
        c = 1.0 - jnp.power(jnp.asarray(decay, dtype), jnp.asarray(k).astype(dtype) + 1)
        return jnp.where(c > 0, c, jnp.ones_like(c))

    return norm


def leaky_count(decay: float) -> Normaliser:
    """``k -> Σ_{j=0}^{k} a^j`` (``1`` where ``k < 0``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.algorithms.factored_traces import leaky_count
    >>> leaky_count(0.5)(jnp.arange(3), jnp.float32).tolist()
    [1.0, 1.5, 1.75]
    """

    def norm(k: jax.Array, dtype: Any) -> jax.Array:
        k = jnp.asarray(k).astype(dtype)
        n = k + 1 if decay == 1.0 else (1 - jnp.power(jnp.asarray(decay, dtype), k + 1)) / (1 - decay)
        return jnp.where(n > 0, n, jnp.ones_like(n))

    return norm


class FactoredTraces:
    r"""Input and output traces of the x-dependent trainable inputs of every relation.

    Parameters
    ----------
    graph : ETraceGraph
        The compiled graph.
    x_decay : float
        ``a_x``, the decay of the input trace.
    f_decay : float
        ``a_f``, the decay of the output trace.
    propagate : bool
        Whether the output trace is propagated by the step's blocks ``D``
        (``True``) or only decayed (``False``).
    source_scale : float
        ``s``.
    normaliser : callable
        ``(k, dtype) -> n_k``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.factored_traces import FactoredTraces, bias_correction
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros(2))
    >>> part = FactoredTraces(graph, 0.9, 0.9, propagate=True, source_scale=0.1, normaliser=bias_correction(0.9))
    >>> ex = braintrace.ETraceGraphExecutor(graph)
    >>> traces = part.init(ex.trace_data(ex.current_invals(jnp.zeros(2))))
    >>> sorted((k.kind, v[k.kind].shape) for k, v in traces.items())
    [('f', (3, 1)), ('x', (5,))]
    """

    def __init__(
        self, graph: Any, x_decay: float, f_decay: float, *, propagate: bool, source_scale: float,
        normaliser: Normaliser,
    ) -> None:
        self.graph = graph
        self.x_decay = float(x_decay)
        self.f_decay = float(f_decay)
        self.propagate = propagate
        self.source_scale = float(source_scale)
        self.normaliser = normaliser
        self.relations = tuple(
            r for r in graph.hidden_param_op_relations
            if r.entry.x_invar_index is not None and r.entry.x_linear and split_names(r)[1]
        )
        members = {r.index for r in self.relations}
        classes = graph.output_classes or tuple(range(len(graph.hidden_param_op_relations)))
        self._class = {
            r.index: tuple(m for m in sorted(members) if classes[m] == classes[r.index]) for r in self.relations
        }

    def covers(self, relation: Any) -> bool:
        """Whether ``relation``'s x-dependent inputs are factored here."""
        return relation.index in self._class

    def x_key(self, relation: Any) -> TraceKey:
        return TraceKey(INPUT, (relation.index,))

    def f_key(self, relation: Any, gi: int) -> TraceKey:
        """The output trace of ``relation``'s summed-output class for group ``gi``."""
        return TraceKey(OUTPUT, self._class[relation.index], gi)

    def keys(self) -> list[TraceKey]:
        out: dict[TraceKey, None] = {}
        for r in self.relations:
            out[self.x_key(r)] = None
            for gi in r.hidden_groups:
                out[self.f_key(r, gi)] = None
        return list(out)

    def init(self, data: StepTraceData) -> dict[TraceKey, Any]:
        out = {}
        for r in self.relations:
            dtype = data.D[r.hidden_groups[0]].dtype
            x = data.operands[r.index][r.entry.x_invar_index]
            out[self.x_key(r)] = {"x": jnp.zeros(jnp.shape(x), dtype)}
            for gi in r.hidden_groups:
                g = self.graph.hidden_groups[gi]
                out[self.f_key(r, gi)] = {"f": jnp.zeros(tuple(g.varshape) + (g.num_state,), dtype)}
        return out

    def update(self, traces: Mapping[TraceKey, Any], data: StepTraceData) -> dict[TraceKey, Any]:
        ax, af, s = self.x_decay, self.f_decay, self.source_scale
        out: dict[TraceKey, Any] = {}
        for r in self.relations:
            key = self.x_key(r)
            x = data.operands[r.index][r.entry.x_invar_index]
            out[key] = {"x": (ax * traces[key]["x"] + x.astype(traces[key]["x"].dtype)).astype(traces[key]["x"].dtype)}
            for gi in r.hidden_groups:
                fkey = self.f_key(r, gi)
                if fkey in out:  # advanced by another member of its class
                    continue
                f = traces[fkey]["f"]
                prev = apply_block(data.D[gi], f) if self.propagate else f
                out[fkey] = {"f": (af * prev + s * data.df[(r.index, gi)]).astype(f.dtype)}
        return out

    def _dy(self, relation: Any, f_of: Callable[[int], jax.Array], signal: Mapping, scale: jax.Array) -> jax.Array:
        terms = [
            sum_to_shape(jnp.sum(f_of(gi).astype(signal[gi].dtype) / scale * signal[gi], axis=-1), relation.y_shape)
            for gi in relation.hidden_groups
        ]
        return sum(terms[1:], terms[0])

    def contributions(self, traces: Mapping[TraceKey, Any], operands: Mapping, signal: Mapping, k: jax.Array) -> dict:
        """``{relation: {name: xy_to_dw(ε_x, Σ_s ε_f / n_k ⊙ δ)}}`` from the traces of step ``k``."""
        out = {}
        for r in self.relations:
            dtype = signal[r.hidden_groups[0]].dtype
            dy = self._dy(r, lambda gi: traces[self.f_key(r, gi)]["f"], signal, self.normaliser(k, dtype))
            ops = _with_x(r, operands[r.index], traces[self.x_key(r)]["x"])
            params = self.graph.module_info.jaxpr.eqns[r.eqn_index].params
            out[r.index] = r.entry.xy_to_dw(ops, params, dy, names=split_names(r)[1])
        return out

    def contributions_seq(
        self, aux: Mapping[TraceKey, Any], seq: WindowTraceData, signal_seq: Mapping, count,
        before: Mapping[TraceKey, Any] | None = None,
    ):
        r"""``Σ_k`` of the per-step contributions from every step's traces ``aux``: one product per relation.

        With ``before`` (the traces before the window), the input trace of an
        event-driven relation (:attr:`~braintrace.primitives.ETPPrimitive.event_driven`,
        linear in ``x``) is unrolled into the window's raw inputs, which are as
        sparse as the spikes while the trace is not:

        .. math::

            \sum_k \mathrm{xy\_to\_dw}(ε_x^k, \bar y^k)
            = \mathrm{xy\_to\_dw}\Big(ε_x^{-1}, \sum_k a^{k+1} \bar y^k\Big)
            + \sum_s \mathrm{xy\_to\_dw}\Big(x^s, \sum_{k \ge s} a^{k-s} \bar y^k\Big),

        from :math:`ε_x^k = a^{k+1} ε_x^{-1} + \sum_{s \le k} a^{k-s} x^s`.
        """
        out = {}
        for r in self.relations:
            delta0 = signal_seq[r.hidden_groups[0]]
            K, dtype = delta0.shape[0], delta0.dtype
            n = self.normaliser(count + jnp.arange(K), dtype).reshape((K,) + (1,) * (delta0.ndim - 1))
            dy = jax.vmap(lambda f_k, d_k, n_k, r=r: self._dy(r, lambda gi: f_k[gi], d_k, n_k))(
                {gi: aux[self.f_key(r, gi)]["f"] for gi in r.hidden_groups}, signal_seq, n
            )
            params = self.graph.module_info.jaxpr.eqns[r.eqn_index].params
            names = split_names(r)[1]
            ops = tuple(seq.operands[r.index])
            if before is not None and r.entry.event_driven and r.index in seq.x:
                decay = np.power(self.x_decay, np.arange(K, dtype=np.float64))
                carry = jnp.asarray(self.x_decay * decay, dy.dtype)  # a^{k+1}
                lag = np.subtract.outer(np.arange(K), np.arange(K))  # k - s
                filt = jnp.asarray(np.where(lag >= 0, decay[np.abs(lag)], 0.0).T, dy.dtype)  # [s, k]
                x_seq = seq.x[r.index]
                x0 = before[self.x_key(r)]["x"].astype(x_seq.dtype)
                out[r.index] = r.entry.xy_to_dw_seq(  # both terms: one product over K + 1 rows
                    ops, jnp.concatenate([x0[None], x_seq]), params,
                    jnp.concatenate([jnp.tensordot(carry, dy, 1)[None], jnp.tensordot(filt, dy, 1)]), names=names,
                )
            else:
                out[r.index] = r.entry.xy_to_dw_seq(ops, aux[self.x_key(r)]["x"], params, dy, names=names)
        return out


def _with_x(relation: Any, operands: Any, x: jax.Array) -> tuple:
    ops = list(operands)
    i = relation.entry.x_invar_index
    ops[i] = x.astype(jnp.result_type(operands[i]))
    return tuple(ops)
