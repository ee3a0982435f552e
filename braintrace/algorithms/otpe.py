r"""OTPE: online training with postsynaptic estimates (Summe et al., 2023).

OTPE extends OTTT's presynaptic trace with an estimate of the postsynaptic
factor's history: 'full' keeps the synapse-shaped trace of
:math:`x \otimes df` decayed by a scalar leak (the exact trace part of
:mod:`braintrace.algorithms.exact_traces` with ``D := λ``), 'approx' keeps a
presynaptic trace and a postsynaptic trace separately (the factored part of
:mod:`braintrace.algorithms.factored_traces`, undecayed by ``D``). In 'approx'
mode, relations whose outputs are summed before any other use (an input and a
recurrent current, see :attr:`~braintrace.compiler.ETraceGraph.output_classes`)
share one postsynaptic trace: their ``df`` are equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from ..executor import StepTraceData, WindowTraceData, add_contributions
from .rule import ETraceVjpAlgorithm
from .exact_traces import ExactTraces, full_rule, split_names
from .factored_traces import FactoredTraces, leaky_count
from .feedback import check_decay
from .graph_checks import check_single_state
from .keys import TraceKey

__all__ = ["OTPE"]

_MODES = ("full", "approx")

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
    feedback : {'symmetric', 'random'}, default 'symmetric'
        The learning signal of hidden layers: the true ``δ`` or a fixed random
        projection of the output error (see :class:`~braintrace.ETraceVjpAlgorithm`).
    kappa_filter_decay : float, default 0.0
        ``κ`` in ``[0, 1)`` of the filter of the hidden layers' traces
        (``E`` in 'full' mode, the postsynaptic traces ``F`` in 'approx' mode; see :class:`~braintrace.ETraceVjpAlgorithm`).
    random_feedback_key : int or jax PRNG key, optional
        Seed of the random feedback matrices.

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
        feedback: str = "symmetric",
        kappa_filter_decay: float = 0.0,
        random_feedback_key: Any = None,
    ) -> None:
        super().__init__(model, name=name, vjp_method=vjp_method, feedback=feedback, kappa_filter_decay=kappa_filter_decay, random_feedback_key=random_feedback_key)
        if mode not in _MODES:
            raise ValueError(f"OTPE: mode must be one of {_MODES}, got {mode!r}.")
        if leak is None:
            raise TypeError("OTPE: `leak` is required (the membrane decay per step, a float in [0, 1]).")
        self.leak = check_decay("OTPE", "leak", leak, closed_top=True)
        self.mode = mode
        self.fast_solve = bool(fast_solve)
        self.exact: ExactTraces | None = None
        self.factored: FactoredTraces | None = None

    def on_compile(self, graph: Any) -> None:
        super().on_compile(graph)
        check_single_state(graph, "OTPE", _WHY)
        lam = self.leak
        factored = None
        if self.mode == "approx":
            factored = FactoredTraces(graph, lam, lam, propagate=False, source_scale=1.0, normaliser=leaky_count(lam))

        def names(r):
            diag, other = split_names(r)
            return diag, (() if factored is not None and factored.covers(r) else other)

        rule = (lambda r: r.entry.trace_rule) if self.fast_solve else full_rule
        self.exact = ExactTraces(graph, names, rule, leak=lam)
        self.factored = factored

    def _exact(self) -> ExactTraces:
        if self.exact is None:
            self.check_compiled()
        assert self.exact is not None
        return self.exact

    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        out = self._exact().init(data)
        if self.factored is not None:
            out.update(self.factored.init(data))
        return out

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        out = {**traces, **self._exact().update(traces, data)}
        if self.factored is not None:
            out.update(self.factored.update(traces, data))
        return out

    def contributions(self, traces: Mapping[TraceKey, Any], data: StepTraceData, signal: Mapping, count: jax.Array) -> dict:
        """``δ · E`` ('full'), or ``xy_to_dw(â, Σ_s F / n_k ⊙ δ)`` with ``n_k = Σ_{j≤k} λ^j`` ('approx').

        Parameters
        ----------
        traces : mapping
            ``{TraceKey: pytree}``: the traces ``E`` (and, in 'approx' mode, ``â`` and ``F``)
            to contract.
        data : StepTraceData
            The step's trace data; its operands give the trainable inputs.
        signal : mapping
            ``{group index: (*V, S)}``, the learning signal ``δ`` of every hidden group.
        count : jax.Array
            Integer scalar, the step the traces belong to, counted from 0 at the last
            reset (``k`` of the normaliser ``n_k``, 'approx' mode).

        Returns
        -------
        dict
            ``{relation index: {trainable name: gradient}}``.
        """
        out = self._exact().contributions(traces, data.operands, signal)
        if self.factored is not None:
            out = add_contributions(out, self.factored.contributions(traces, data.operands, signal, count))
        return out

    def window_contributions(
        self, before: Mapping, after: Mapping, aux: Any, seq: WindowTraceData, signal_seq: Mapping, count: jax.Array
    ) -> dict:
        out = self._exact().contributions_seq(aux, seq, signal_seq)
        if self.factored is not None:
            out = add_contributions(out, self.factored.contributions_seq(aux, seq, signal_seq, count))
        return out
