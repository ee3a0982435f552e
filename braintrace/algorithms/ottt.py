r"""OTTT: online training through time (Xiao et al., 2022).

OTTT keeps no synapse-shaped trace at all: only a presynaptic trace of each
weight's data input, and pairs it with the postsynaptic factor and learning
signal of the current step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ..executor import StepTraceData
from ..primitives.trace_rules import sum_to_shape
from .rule import ETraceVjpAlgorithm
from .exact_traces import split_names
from .factored_traces import _with_x
from .feedback import PresynapticTrace, check_decay
from .graph_checks import check_single_state
from .keys import INPUT, PRESYNAPTIC, TraceKey

__all__ = ["OTTT"]

_MODES = ("A", "O")

_WHY = (
    "OTTT's presynaptic trace â = leak·â + x stands in for the eligibility trace only when each position "
    "holds a single state that decays by the scalar `leak`."
)


class OTTT(ETraceVjpAlgorithm):
    r"""Online training through time: a presynaptic trace per weight input.

    Notation as in DESIGN.md §3: an ETP primitive ``y = op(x, w)``, ``df^t =
    ∂h^t/∂y^t``, ``δ^t = ∂L^t/∂h^t``, ``λ`` = ``leak``.

    .. math::

        \hat a^t &= \begin{cases}
            λ\, \hat a^{t-1} + x^t & \text{mode 'A' (accumulated)} \\
            x^t & \text{mode 'O' (instantaneous)}
        \end{cases} \\
        \nabla_w L &\mathrel{+}= \mathrm{xy\_to\_dw}\Big(\hat a^t,\ \sum_s df^t[\cdot, s]\, δ^t[\cdot, s]\Big)

    ``xy_to_dw`` is the primitive's own VJP with ``x`` replaced by
    :math:`\hat a`, so every primitive whose output is linear in ``x``
    (dense, sparse, conv, LoRA) works. Inputs that enter by broadcasting
    (biases, element-wise weights) keep the same kind of trace of their
    factor :math:`a^t = ∂y^t/∂w` (1 for a bias):
    :math:`\hat a_w^t = λ \hat a_w^{t-1} + a^t`,
    :math:`\nabla_w L \mathrel{+}= \sum_{v}\sum_s df^t δ^t \hat a_w^t`.

    *Exactness.* The D_RTRL trace is :math:`\sum_k (\prod D)\, df \otimes x`;
    OTTT replaces the products of ``D`` by powers of ``λ`` and every past
    ``df`` by the current one. Mode 'A' therefore equals D_RTRL (and BPTT) on a
    leaky linear layer :math:`h^t = λ h^{t-1} + \mathrm{op}(x^t, w)`, and
    both modes equal D_RTRL over one step from zero traces. On LIF neurons it
    drops the reset's contribution to ``D``.

    Parameters
    ----------
    model : brainstate.nn.Module
    mode : {'A', 'O'}, default 'A'
    leak : float
        ``λ`` in ``[0, 1]``, keyword-only and required (it is not inferred
        from the model; give the membrane decay per step). Mode 'O' keeps no
        trace and does not use it.
    name : str, optional
    vjp_method : {'single-step'}, default 'single-step'
        ``'multi-step'`` is refused: OTTT keeps no postsynaptic factor between
        steps, so there is no trace to credit the adjoint at a window start
        with. ``MultiStepData`` windows run step by step. For the same reason a
        model that returns (or spikes from) a hidden state's old value is
        refused at compile time (:class:`~braintrace.NotSupportedError`).
    feedback : {'symmetric', 'random'}, default 'symmetric'
        The learning signal of hidden layers: the true ``δ`` or a fixed random
        projection of the output error (see :class:`~braintrace.ETraceVjpAlgorithm`).
    kappa_filter_decay : float, default 0.0
        ``κ`` in ``[0, 1)`` of the filter of the hidden layers' traces
        (the presynaptic traces ``â``: the filter of ``â ⊗ df`` with ``df`` of the current step; see :class:`~braintrace.ETraceVjpAlgorithm`).
    random_feedback_key : int or jax PRNG key, optional
        Seed of the random feedback matrices.

    Raises
    ------
    TypeError
        ``leak`` missing.
    ValueError
        A bad ``mode`` or ``leak``, or ``vjp_method='multi-step'``.
    CompilationError
        (compile time) a weight reaching a hidden group with ``num_state > 1``
        (an ALIF neuron, an LSTM cell), or an x-free primitive with
        non-broadcast trainable inputs.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> readout = braintrace.nn.LeakyRateReadout(3, 2, decay=0.8)
    >>> _ = brainstate.nn.init_all_states(readout)
    >>> learner = braintrace.OTTT(readout, leak=0.8).compile_graph(jnp.zeros(3))
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), readout.states(brainstate.ParamState))(jnp.ones(3))
    >>> grads[('W',)].tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]

    References
    ----------
    .. [1] Xiao, M., Meng, Q., Zhang, Z., He, D., & Lin, Z. (2022). Online
       training through time for spiking neural networks. NeurIPS 35.
    """

    #: The contribution pairs the trace with the *current* step's ``df``.
    credits_previous_traces: bool = False
    #: The κ filter acts on the presynaptic traces (the postsynaptic factor is the current ``df``).
    filtered_kinds: ClassVar[tuple[str, ...]] = (INPUT, PRESYNAPTIC)

    def __init__(
        self,
        model: Any,
        mode: str = "A",
        *,
        leak: float,
        name: str | None = None,
        vjp_method: str = "single-step",
        feedback: str = "symmetric",
        kappa_filter_decay: float = 0.0,
        random_feedback_key: Any = None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"OTTT: mode must be one of {_MODES}, got {mode!r}.")
        if leak is None:
            raise TypeError("OTTT: `leak` is required (the membrane decay per step, a float in [0, 1]).")
        super().__init__(model, name=name, vjp_method=vjp_method, feedback=feedback, kappa_filter_decay=kappa_filter_decay, random_feedback_key=random_feedback_key)
        self.leak = check_decay("OTTT", "leak", leak, closed_top=True)
        self.mode = mode

    def on_compile(self, graph: Any) -> None:
        super().on_compile(graph)
        check_single_state(graph, "OTTT", _WHY)

    def _presynaptic(self, r, ops, params):
        """``(x, {name: a})``: the step's data input and diagonal factors."""
        diag, fact = split_names(r)
        x = ops[r.entry.x_invar_index] if fact else None
        return x, {n: r.entry.diagonal_factor(tuple(ops), params, n) for n in diag}

    def _params(self, r):
        return self.graph.module_info.jaxpr.eqns[r.eqn_index].params

    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out: dict[TraceKey, Any] = {}
        if self.mode == "O":
            return out
        for r in self.graph.hidden_param_op_relations:
            dtype = data.D[r.hidden_groups[0]].dtype
            x, a = self._presynaptic(r, data.operands[r.index], self._params(r))
            if x is not None:
                out[TraceKey(INPUT, (r.index,))] = {"x": jnp.zeros(jnp.shape(x), dtype)}
            if a:
                out[TraceKey(PRESYNAPTIC, (r.index,))] = {n: jnp.zeros(jnp.shape(v), dtype) for n, v in a.items()}
        return out

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out = dict(traces)
        if self.mode == "O":
            return out
        for r in self.graph.hidden_param_op_relations:
            x, a = self._presynaptic(r, data.operands[r.index], self._params(r))
            if x is not None:
                key = TraceKey(INPUT, (r.index,))
                out[key] = PresynapticTrace.rule(traces[key], {"x": x}, self.leak)
            if a:
                key = TraceKey(PRESYNAPTIC, (r.index,))
                out[key] = PresynapticTrace.rule(traces[key], a, self.leak)
        return out

    def contributions(self, traces: Mapping[TraceKey, Any], data: StepTraceData, signal: Mapping, count: jax.Array) -> dict:
        """``xy_to_dw(â, Σ_g Σ_s df ⊙ δ)`` with the current step's ``df`` (and the diagonal inputs' trace).

        Parameters
        ----------
        traces : mapping
            ``{TraceKey: pytree}``: the presynaptic traces ``â`` of the data inputs and of
            the diagonal inputs (mode 'A'; mode 'O' keeps none and reads the step's inputs).
        data : StepTraceData
            The step's trace data: its ``df`` and operands (the trainable inputs and, in
            mode 'O', the data inputs).
        signal : mapping
            ``{group index: (*V, S)}``, the learning signal ``δ`` of every hidden group.
        count : jax.Array
            The step's number (not read).

        Returns
        -------
        dict
            ``{relation index: {trainable name: gradient}}``.
        """
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out = {}
        for r in self.graph.hidden_param_op_relations:
            diag, fact = split_names(r)
            ops, params = data.operands[r.index], self._params(r)
            x, a = self._presynaptic(r, ops, params)
            if self.mode == "A":
                x = traces[TraceKey(INPUT, (r.index,))]["x"] if fact else None
                a = traces[TraceKey(PRESYNAPTIC, (r.index,))] if diag else {}
            acc: dict[str, Any] = {}
            posts = {gi: jnp.sum(data.df[(r.index, gi)] * signal[gi], axis=-1) for gi in r.hidden_groups}
            if fact:
                terms = [sum_to_shape(p, r.y_shape) for p in posts.values()]
                dy = sum(terms[1:], terms[0])
                acc.update(r.entry.xy_to_dw(_with_x(r, ops, x), params, dy, names=fact))
            for n in diag:
                for post in posts.values():
                    g = _diag_to_param(r.entry, ops, params, n, post * a[n].astype(post.dtype))
                    acc[n] = g if n not in acc else acc[n] + g
            out[r.index] = acc
        return out


def _diag_to_param(entry, operands, params, name: str, g: jax.Array) -> jax.Array:
    """Map a hidden-shaped sum back to a diagonal (broadcast) trainable input."""
    to_param = getattr(entry.trace_rule, "diagonal_to_param", None)
    if to_param is not None:
        return to_param(entry, operands, params, name, g)
    index = entry.trainable_invars(params, len(operands))
    return sum_to_shape(g, jnp.shape(operands[index[name]]))
