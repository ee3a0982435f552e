r"""OTPE: online training with postsynaptic estimates (Summe et al., 2023).

OTPE extends OTTT's presynaptic trace with an estimate of the postsynaptic
factor's history: 'full' keeps the synapse-shaped trace of
:math:`x \otimes df` decayed by a scalar leak, 'approx' keeps a presynaptic
trace and a postsynaptic trace separately. In 'approx' mode, relations whose
outputs are summed before any other use (an input and a recurrent current, see
:attr:`~braintrace.compiler.ETraceGraph.output_classes`) share one postsynaptic
trace: their ``df`` are equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..executor import StepTraceData
from ..primitives import DiagonalRule, FullJacobianRule
from .base import ETraceVjpAlgorithm
from .helpers import (
    PresynapticTrace,
    _add,
    _check_decay,
    _check_presynaptic,
    _dy,
    _eqn,
    _names,
    _shared_output_key,
    _with_x,
)

__all__ = ["OTPE"]

_MODES = ("full", "approx")
_DIAGONAL = DiagonalRule()
_FULL = FullJacobianRule()

_WHY = (
    "OTPE replaces the Jacobian blocks D of the eligibility trace by the scalar `leak`, which is meaningful "
    "only when each position holds a single state."
)


class OTPE(ETraceVjpAlgorithm):
    r"""Online training with postsynaptic estimates.

    Notation as in DESIGN.md §3 (``x``, ``df^t``, ``δ^t``, ``D^t``);
    ``λ`` = ``leak``; ``k`` time steps since reset.

    *'full'*: the D_RTRL trace with the Jacobian blocks replaced by ``λ``
    (for a dense weight, an ``I × O`` trace per batch element):

    .. math::

        E^t = λ E^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w}
        \;\big(= λ E^{t-1} + x^t \otimes df^t \text{ for } y = xW\big),
        \qquad \nabla_w L \mathrel{+}= δ^t \cdot E^t

    *'approx'*: separate presynaptic and postsynaptic traces,

    .. math::

        \hat a^t = λ \hat a^{t-1} + x^t, \qquad
        F^t = λ F^{t-1} + df^t, \qquad
        n_k = \sum_{j=0}^{k} λ^j, \qquad
        \nabla_w L \mathrel{+}= \mathrm{xy\_to\_dw}\Big(\hat a^t,\ \sum_s \frac{F^t}{n_k} δ^t\Big),

    i.e. :math:`E^t ≈ \hat a^t \otimes \bar f^t` with :math:`\bar f = F/n`
    the ``λ``-weighted mean of past ``df`` (exact when ``df`` is constant in
    time). Biases and element-wise weights keep the 'full' trace in both modes
    (it is already of the hidden state's size).

    Both modes work for every primitive (the 'full' trace uses the
    primitive's own compact D_RTRL rule with ``D := λ``; 'approx' needs a
    primitive linear in its data input). They equal D_RTRL over one step from
    zero traces, and equal D_RTRL and BPTT on a leaky linear layer
    :math:`h^t = λ h^{t-1} + \mathrm{op}(x^t, w)`. With
    ``vjp_method='multi-step'`` the window is differentiated exactly and the
    OTPE trace credits the adjoint at the window start (as D_RTRL's hybrid).

    Parameters
    ----------
    model : brainstate.nn.Module
    mode : {'full', 'approx'}, default 'full'
    leak : float
        ``λ`` in ``[0, 1]``, keyword-only and required (not inferred from
        the model).
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
    fast_solve : bool, default True
        'full' mode: the primitive's compact trace rule (``False``: the generic
        full-Jacobian rule).

    Raises
    ------
    TypeError
        ``leak`` missing.
    ValueError
        A bad ``mode`` or ``leak``.
    CompilationError
        (compile time) a weight reaching a hidden group with ``num_state > 1``,
        or an x-free primitive with non-broadcast trainable inputs.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> readout = braintrace.nn.LeakyRateReadout(3, 2, decay=0.5)
    >>> _ = brainstate.nn.init_all_states(readout)
    >>> learner = braintrace.OTPE(readout, 'approx', leak=0.5).compile_graph(jnp.zeros(3))
    >>> loss = lambda x: learner(x).sum()
    >>> grad = brainstate.transform.grad(loss, readout.states(brainstate.ParamState))
    >>> _ = grad(jnp.ones(3))
    >>> grad(jnp.ones(3))[('W',)].tolist()
    [[1.5, 1.5], [1.5, 1.5], [1.5, 1.5]]

    References
    ----------
    .. [1] Summe, T., Schaefer, C. J. S., & Joshi, S. (2023). Estimating
       post-synaptic effects for online training of feed-forward SNNs.
       arXiv:2311.16151.
    .. [2] Xiao, M., Meng, Q., Zhang, Z., He, D., & Lin, Z. (2022). Online
       training through time for spiking neural networks. NeurIPS 35.
    """

    def __init__(
        self,
        model: Any,
        mode: str = "full",
        *,
        leak: float,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
    ) -> None:
        super().__init__(model, name=name, vjp_method=vjp_method)
        if mode not in _MODES:
            raise ValueError(f"OTPE: mode must be one of {_MODES}, got {mode!r}.")
        if leak is None:
            raise TypeError("OTPE: `leak` is required (the membrane decay per step, a float in [0, 1]).")
        self.leak = _check_decay("OTPE", "leak", leak, closed_top=True)
        self.mode = mode
        self.fast_solve = bool(fast_solve)

    def _on_compile(self) -> None:
        super()._on_compile()
        _check_presynaptic(self, "OTPE", _WHY)

    def _key(self, r, gi: int) -> str:
        return f"{self.trace_key_prefix(r)}->g{gi}"

    def _x_key(self, r) -> str:
        return f"{self.trace_key_prefix(r)}:x"

    def _rule(self, r):
        return r.entry.trace_rule if self.fast_solve else _FULL

    def _approx(self, r) -> bool:
        return self.mode == "approx" and bool(_names(r)[1])

    def _f_key(self, r, gi: int) -> str:
        """The approximate trace ``f`` of group ``gi``, shared by relations whose outputs are summed."""
        return _shared_output_key(self, r, gi, self._approx)

    def _own_traces(self, r) -> bool:
        diag, fact = _names(r)
        return bool(diag) or (bool(fact) and not self._approx(r))

    def init_traces(self, data: StepTraceData) -> dict[str, Any]:
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = _names(r)
            ops, params = data.operands[r.index], _eqn(self, r).params
            dtype = data.D[r.hidden_groups[0]].dtype
            if self._approx(r):
                out[self._x_key(r)] = {"x": jnp.zeros(jnp.shape(ops[r.entry.x_invar_index]), dtype)}
            for gi in r.hidden_groups:
                g = self.graph.hidden_groups[gi]
                if self._approx(r):
                    out[self._f_key(r, gi)] = {"f": jnp.zeros(tuple(g.varshape) + (g.num_state,), dtype)}
                if not self._own_traces(r):
                    continue
                val = {}
                if diag:
                    val.update(_DIAGONAL.init(r.entry, ops, params, diag, g.varshape, g.num_state, dtype))
                if fact and not self._approx(r):
                    val.update(self._rule(r).init(r.entry, ops, params, fact, g.varshape, g.num_state, dtype))
                out[self._key(r, gi)] = val
        return out

    def update_traces(self, traces: Mapping[str, Any], data: StepTraceData, count: jax.Array) -> dict[str, Any]:
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        lam = self.leak
        out = dict(traces)
        for r in self.graph.hidden_param_op_relations:
            diag, fact = _names(r)
            ops, params = data.operands[r.index], _eqn(self, r).params
            if self._approx(r):
                key = self._x_key(r)
                out[key] = PresynapticTrace.rule(traces[key], {"x": ops[r.entry.x_invar_index]}, lam)
            for gi in r.hidden_groups:
                key = self._key(r, gi)
                df = data.df[(r.index, gi)]
                if self._approx(r):
                    fkey = self._f_key(r, gi)
                    if out[fkey] is traces[fkey]:  # not yet advanced by another member of its class
                        out[fkey] = {"f": PresynapticTrace.rule(traces[fkey]["f"], df, lam)}
                if not self._own_traces(r):
                    continue
                D = jnp.full(data.D[gi].shape, lam, data.D[gi].dtype)  # D := λ (S = 1)
                val = {}
                if diag:
                    val.update(_DIAGONAL.update(r.entry, traces[key], ops, params, diag, D, df))
                if fact and not self._approx(r):
                    val.update(self._rule(r).update(r.entry, traces[key], ops, params, fact, D, df))
                out[key] = val
        return out

    def _norm(self, k, dtype):
        """``n_k = Σ_{j=0}^{k} λ^j`` (1 where ``k < 0``: the traces are still zero)."""
        k = k.astype(dtype)
        if self.leak == 1.0:
            n = k + 1
        else:
            n = (1 - jnp.power(jnp.asarray(self.leak, dtype), k + 1)) / (1 - self.leak)
        return jnp.where(n > 0, n, jnp.ones_like(n))

    def _contract(self, traces, operands, signal, k):
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = _names(r)
            ops, params = operands[r.index], _eqn(self, r).params
            acc: dict[str, Any] = {}
            for gi in r.hidden_groups:
                tr = traces.get(self._key(r, gi))
                if diag:
                    _add(acc, _DIAGONAL.contract(r.entry, tr, ops, params, diag, signal[gi]))
                if fact and not self._approx(r):
                    _add(acc, self._rule(r).contract(r.entry, tr, ops, params, fact, signal[gi]))
            if self._approx(r):
                dtype = signal[r.hidden_groups[0]].dtype
                n = self._norm(k, dtype)
                fbar = {gi: traces[self._f_key(r, gi)]["f"].astype(dtype) / n for gi in r.hidden_groups}
                dy = _dy(self, r, None, signal, scale=fbar)
                _add(acc, r.entry.xy_to_dw(_with_x(r, ops, traces[self._x_key(r)]["x"]), params, dy, names=fact))
            out[r.index] = acc
        return out

    def trace_contributions(
        self, traces: Mapping[str, Any], data: StepTraceData, delta: dict, count: jax.Array
    ) -> dict:
        return self._contract(traces, data.operands, delta, count)

    def credit_contributions(
        self, traces: Mapping[str, Any], operands: dict, lam: dict, count: jax.Array
    ) -> dict:
        # the traces before the window belong to step count - 1
        return self._contract(traces, operands, lam, count - 1)
