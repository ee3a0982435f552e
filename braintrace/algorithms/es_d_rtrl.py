r"""ES_D_RTRL: the input/output-dimension online learner (pp-prop).

The D_RTRL trace of a weight is approximated by a product of an input trace
and an output trace, exponentially smoothed with decays ``α_x`` and ``α_f``
(both ``α`` by default):

.. math::

    ε_x^t = α_x ε_x^{t-1} + x^t, \qquad
    ε_f^t = α_f D^t ε_f^{t-1} + (1 - α_f)\, df^t, \qquad
    \nabla_w L \mathrel{+}= \mathrm{xy\_to\_dw}\!\left(ε_x^t,
        \sum_s \frac{ε_f^t[\cdot, s]}{c_t}\, δ^t[\cdot, s]\right),

with the bias correction ``c_t = 1 - α_f^{k+1}``, ``k`` the number of time steps
since the last reset (and, for states read before they are written, the same
contraction of ``δ_prev^t`` with the traces of step ``t-1``). Memory is
``O(B·(I+O)·S)`` per relation. Inputs that enter by broadcasting (biases,
element-wise weights) keep their exact D_RTRL trace, whose size is already
``O(B·O·S)``. Relations whose outputs are summed before any other use (an
input and a recurrent current, see
:attr:`~braintrace.compiler.ETraceGraph.output_classes`) have equal ``df``,
hence equal ``ε_f``: they share one output trace.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import jax

from ..errors import InvalidArgumentError
from ..executor import StepTraceData, WindowTraceData, add_contributions
from .rule import ETraceVjpAlgorithm
from .exact_traces import ExactTraces, full_rule, split_names
from .factored_traces import FactoredTraces, bias_correction
from .keys import INPUT, OUTPUT, TraceKey

__all__ = ["IODimVjpAlgorithm", "ES_D_RTRL", "pp_prop", "decay_from", "trace_decays"]


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
    raise InvalidArgumentError(
        f"decay_or_rank={decay_or_rank!r} is not valid: give a float decay α in the open interval (0, 1), "
        "or an integer rank n >= 1 (then α = (n - 1) / (n + 1))."
    )


def trace_decays(owner: str, decay_or_rank: Any, decay_x: Any, decay_f: Any) -> tuple[float | None, float, float]:
    """``(α, α_x, α_f)``: ``α`` from ``decay_or_rank`` (``None`` if not given), the separate decays
    (each a real number in ``[0, 1)``) defaulting to it.

    Examples
    --------
    >>> from braintrace.algorithms.es_d_rtrl import trace_decays
    >>> trace_decays("ES_D_RTRL", 0.9, None, 0.5), trace_decays("ES_D_RTRL", None, 0.8, 0.0)
    ((0.9, 0.9, 0.5), (None, 0.8, 0.0))
    """
    alpha = None if decay_or_rank is None else decay_from(decay_or_rank)
    out = []
    for arg, value in (("decay_x", decay_x), ("decay_f", decay_f)):
        if value is None:
            if alpha is None:
                raise InvalidArgumentError(
                    f"{owner}: decay_or_rank=None needs both `decay_x` and `decay_f`; otherwise give a float decay "
                    "α in the open interval (0, 1), or an integer rank n >= 1 (then α = (n - 1) / (n + 1))."
                )
            value = alpha
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= float(value) < 1.0
        if not ok:
            raise InvalidArgumentError(
                f"{owner}: `{arg}` must be a real number in [0, 1), got {value!r} (0 keeps only the current "
                "step's value)."
            )
        out.append(float(value))
    return alpha, out[0], out[1]


class IODimVjpAlgorithm(ETraceVjpAlgorithm):
    r"""Online learning with input/output-dimension eligibility traces (ES_D_RTRL, pp-prop).

    .. math::

        ε_x^t = α_x ε_x^{t-1} + x^t, \quad
        ε_f^t = α_f D^t ε_f^{t-1} + (1-α_f)\, df^t, \quad
        c_t = 1 - α_f^{k+1}, \quad
        \nabla_w L \mathrel{+}= \mathrm{xy\_to\_dw}(ε_x^t, (ε_f^t / c_t) ∘ δ^t)

    ``k`` counts time steps since the last reset; ``α_x = α_f = α`` unless
    ``decay_x`` / ``decay_f`` are given.

    *Separate decays and the bias correction.* The output trace's source is
    scaled by ``1 - α_f``, so after ``k + 1`` steps its weights
    ``(1 - α_f) α_f^j`` sum to ``c_t = 1 - α_f^{k+1}``: ``ε_f / c_t`` is a
    weighted *mean* of the past ``df`` (propagated by ``D``), corrected for
    the zero start whatever ``α_x`` is. The input trace is a leaky *sum*,
    the same form as the exact trace's input factor, and needs no correction.
    So only ``α_f`` enters ``c_t``. A short output memory with a long input
    memory is the useful split: with ``α_f = 0`` (``ε_f = df^t``, ``c_t = 1``)
    and ``α_x = λ``, the rule is ``ε_x ⊗ df^t`` (OTTT's presynaptic trace),
    which equals D_RTRL and BPTT on a leaky layer ``h = λ h + op(x, w)``; with
    ``α_x = α_f`` it is the original ES_D_RTRL.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; weights learned online go through ETP primitives.
    decay_or_rank : float, int or None
        A decay ``α`` in ``(0, 1)``, or an integer rank ``n >= 1`` giving
        ``α = (n - 1)/(n + 1)``; ``None`` only with both ``decay_x`` and
        ``decay_f``.
    name : str, optional
        The module's name.
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        See :class:`ETraceVjpAlgorithm`.
    fast_solve : bool, default True
        For the inputs that keep an exact trace (biases, element-wise weights,
        inputs of primitives without a data input): the primitive's compact
        trace rule; ``False`` uses the generic full-Jacobian rule (for checks).
    decay_x : float, optional
        ``α_x`` in ``[0, 1)``, the decay of the input traces (default ``α``).
    decay_f : float, optional
        ``α_f`` in ``[0, 1)``, the decay of the output traces and of the bias
        correction (default ``α``).
    feedback : {'symmetric', 'random'}, default 'symmetric'
        The learning signal of hidden layers (see :class:`ETraceVjpAlgorithm`).
    kappa_filter_decay : float, default 0.0
        ``κ`` of the filter of the hidden layers' output traces ``ε_f`` (and
        exact traces); see :class:`ETraceVjpAlgorithm`.
    random_feedback_key : int or jax PRNG key, optional
        Seed of the random feedback matrices.

    Raises
    ------
    ValueError
        A bad ``decay_or_rank``, ``decay_x`` or ``decay_f``, neither
        ``decay_or_rank`` nor both separate decays, or a bad shared option.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(3, 4)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    MGUCell(...)
    >>> learner = braintrace.ES_D_RTRL(cell, decay_or_rank=0.9)
    >>> learner.compile_graph(jnp.zeros(3))  # doctest: +ELLIPSIS
    ES_D_RTRL(...)
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), cell.states(brainstate.ParamState))(jnp.ones(3))
    >>> sorted(grads)
    [('Wf', 'weight'), ('Wh', 'weight')]
    """

    #: A window's steps share one pass: traces advanced in the forward scan, the
    #: weight gradients one matrix product per window (CPU LIF-1024: 0.6x the
    #: per-step time; H100 LIF-4096: 0.45x).
    default_window = 32

    def __init__(
        self,
        model: Any,
        decay_or_rank: float | int | None,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
        *,
        decay_x: float | None = None,
        decay_f: float | None = None,
        feedback: str = "symmetric",
        kappa_filter_decay: float = 0.0,
        random_feedback_key: Any = None,
    ) -> None:
        super().__init__(
            model, name=name, vjp_method=vjp_method, feedback=feedback, kappa_filter_decay=kappa_filter_decay,
            random_feedback_key=random_feedback_key,
        )
        self.decay, self.decay_x, self.decay_f = trace_decays(type(self).__name__, decay_or_rank, decay_x, decay_f)
        self.fast_solve = bool(fast_solve)
        self.exact: ExactTraces | None = None
        self.factored: FactoredTraces | None = None

    def on_compile(self, graph: Any) -> None:
        super().on_compile(graph)
        ax, af = self.decay_x, self.decay_f
        self.factored = FactoredTraces(
            graph, ax, af, propagate=True, source_scale=1.0 - af, normaliser=bias_correction(af)
        )
        factored = self.factored

        def names(r):
            diag, other = split_names(r)
            return diag, (() if factored.covers(r) else other)

        rule = (lambda r: r.entry.trace_rule) if self.fast_solve else full_rule
        self.exact = ExactTraces(graph, names, rule)

    @property
    def etrace_xs(self) -> dict:
        """``{TraceKey: state}`` of the input traces (0.2.0's name)."""
        return {k: v for k, v in self.etraces.items() if k.kind == INPUT}

    @property
    def etrace_dfs(self) -> dict:
        """``{TraceKey: state}`` of the output traces (0.2.0's name)."""
        return {k: v for k, v in self.etraces.items() if k.kind == OUTPUT}

    def _parts(self) -> tuple[ExactTraces, FactoredTraces]:
        if self.exact is None or self.factored is None:
            self.check_compiled()
        assert self.exact is not None and self.factored is not None
        return self.exact, self.factored

    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        exact, factored = self._parts()
        return {**factored.init(data), **exact.init(data)}

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        exact, factored = self._parts()
        return {**traces, **factored.update(traces, data), **exact.update(traces, data)}

    def contributions(self, traces: Mapping[TraceKey, Any], data: StepTraceData, signal: Mapping, count: jax.Array) -> dict:
        """The exact part's ``δ · ε`` plus ``xy_to_dw(ε_x, Σ_s ε_f / c_k ⊙ δ)`` with ``c_k = 1 - α_f^{k+1}``."""
        exact, factored = self._parts()
        return add_contributions(
            exact.contributions(traces, data.operands, signal),
            factored.contributions(traces, data.operands, signal, count),
        )

    def window_contributions(
        self, before: Mapping, after: Mapping, aux: Any, seq: WindowTraceData, signal_seq: Mapping, count: jax.Array
    ) -> dict:
        """``Σ_k`` of the per-step contributions from every step's traces, one matrix product per relation
        (event-driven relations contract the window's raw inputs: see :meth:`FactoredTraces.contributions_seq`)."""
        exact, factored = self._parts()
        return add_contributions(
            exact.contributions_seq(aux, seq, signal_seq),
            factored.contributions_seq(aux, seq, signal_seq, count, before=before),
        )


class ES_D_RTRL(IODimVjpAlgorithm):
    __doc__ = IODimVjpAlgorithm.__doc__


pp_prop = ES_D_RTRL
