r"""The rule protocol: :class:`ETraceVjpAlgorithm`, the learner whose gradients the
executor's ``custom_vjp`` driver (:class:`~braintrace.executor.OnlineDriver`) delivers.

Its class attributes declare what a learner supports; its public methods
initialise, advance and contract the traces. A learner is a rule: it never runs
the model itself (the learner's life cycle, compiling and resetting, is
:class:`~braintrace.algorithms.base.ETraceAlgorithm`'s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import brainstate
import jax
import jax.numpy as jnp

from ..compiler import ETraceGraph
from ..compiler.module_info import path_str
from ..data import unwrap_step_args
from ..errors import NotSupportedError
from ..executor import OnlineDriver, StepTraceData, WindowTraceData, add_contributions
from .base import ETraceAlgorithm
from .feedback import random_feedback_matrices, random_feedback_signal
from .input_checks import check_call_args, check_states
from .keys import EPS, OUTPUT, TraceKey
from .modulation import modulator_signal
from .wrapped_rule import WrappedRule, check_options

__all__ = ["ETraceVjpAlgorithm"]


class ETraceVjpAlgorithm(ETraceAlgorithm):
    r"""Base class of the VJP-based learners (D_RTRL, ES_D_RTRL and the SNN rules).

    A subclass is a *rule*: the executor's driver runs the model, linearises and
    transposes each step, and calls the rule through this protocol.

    Capability flags (class attributes):

    ``traces_in_scan``
        ``True``: :meth:`update_traces` runs step by step inside a window's
        forward scan and every step's traces are kept for
        :meth:`window_contributions` (small traces). ``False``: the traces are
        advanced once per window by :meth:`window_update` (large traces, read
        and written once per window).
    ``credits_previous_traces``
        Whether :meth:`contributions` can contract a signal with the traces of
        the *previous* step alone (needed for ``vjp_method='multi-step'`` and
        for the bypass term of states read before they are written).
    ``filtered_kinds``
        The kinds of trace (:class:`~braintrace.algorithms.TraceKey`) the κ filter acts on.
    ``influence_traces``
        ``False`` (default): the traces belong to the relations' trainable
        operands and hold each step's instantaneous part. ``True`` (RTRL,
        SnAp, UORO): the traces are the influence ``P = dh/dθ`` of every
        parameter leaf that reaches a hidden state (see
        :mod:`braintrace.executor.influence`). The driver then gives
        :meth:`update_traces` the step's full linearisation
        (``data.tangent``), every leaf its instantaneous gradient, and
        :meth:`contributions` the *previous* step's traces with the adjoint
        ``λ^t = ∂L^t/∂h^{t-1}`` as signal (:meth:`window_contributions`: the
        ``λ`` of every step of the window); both return the flat gradient
        of ``θ`` (``(|θ|,)``); :meth:`learning_signal` only where :meth:`replaces_signal`.

    Methods the driver calls: :meth:`init_traces`, :meth:`update_traces`,
    :meth:`window_update`, :meth:`contributions`,
    :meth:`window_contributions`, :meth:`learning_signal`, :meth:`replaces_signal`.

    *Options shared by every learner*, with ``ε^t`` any trace, ``c(ε^t, δ^t)``
    its contribution (``δ^t · ε^t`` for D_RTRL), a *hidden layer* a group learned
    online that is not an output group (a leaky readout, or a state read out by
    a plain JAX product, is one):

    .. math::

        \bar ε^t &= κ\, \bar ε^{t-1} + ε^t
            \qquad\text{(κ filter, traces of hidden layers; } c(\bar ε^t, \cdot) \text{ in place of } c(ε^t, \cdot)) \\
        L_g^t &= \mathrm{reshape}\big(e^t B_g,\ (*V_g, S_g)\big)
            \qquad\text{('random' feedback, hidden layers; } e^t = ∂L^t/∂o^t) \\
        \nabla_w L &\mathrel{+}= c(ε^t, m_g^t)
            \qquad\text{(modulator } m^t \text{ given to the call: three-factor learning)}

    The κ filter [1] (``κ``: a leaky readout's decay) acts on the kinds in
    ``filtered_kinds`` (exact traces, the output factor ``ε_f``, OTTT's
    presynaptic traces); random feedback [2] uses fixed ``B_g``
    (:attr:`feedback_matrices`, entries ``N(0, 0.1²)``); output groups keep their
    true signal; a replaced signal stands for the step's whole credit (no bypass
    term); weights not learned online keep their instantaneous gradient.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; weights learned online go through ETP primitives.
    name : str, optional
        The module's name.
    vjp_method : {'single-step', 'multi-step'}
        ``'single-step'``: every step's loss contributes ``δ^t · ε^t`` (and
        ``δ_prev^t · ε^{t-1}`` for outputs read before the write).
        ``'multi-step'``: a ``MultiStepData`` window is differentiated exactly
        (BPTT inside the window) plus trace credit for what came before; not
        with random feedback, the κ filter or a modulator (the window's exact
        gradient would bypass them).
    feedback : {'symmetric', 'random'}, default 'symmetric'
        The learning signal of hidden layers: the true ``δ``, or a fixed random
        projection of the output error.
    kappa_filter_decay : float, default 0.0
        ``κ`` in ``[0, 1)``; ``0`` keeps the traces unfiltered.
    random_feedback_key : int or jax PRNG key, optional
        Seed of the random feedback matrices; ``None`` draws one from
        ``brainstate.random`` at compile time.

    Attributes
    ----------
    feedback_matrices : dict
        ``{group index: FixedRandomFeedback}`` (``feedback='random'``, after compiling).

    Raises
    ------
    ValueError
        A bad ``vjp_method``, ``feedback`` or ``kappa_filter_decay``, or ``'multi-step'`` with them.
    CompilationError
        (compile, ``'random'``) outputs that disagree on their batch axes, or a hidden group not led by them.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> learner = braintrace.ES_D_RTRL(cell, decay_or_rank=0.9, vjp_method="multi-step")
    >>> isinstance(learner, braintrace.ETraceVjpAlgorithm), learner.traces_in_scan
    (True, True)
    >>> _ = learner.compile_graph(jnp.zeros(2))
    >>> learner(braintrace.MultiStepData(jnp.ones((4, 2)))).shape
    (4, 3)

    References
    ----------
    .. [1] Bellec, G., et al. (2020). A solution to the learning dilemma for recurrent
       networks of spiking neurons. Nature Communications, 11, 3625.
    .. [2] Lillicrap, T. P., et al. (2016). Random synaptic feedback weights support
       error backpropagation for deep learning. Nature Communications, 7, 13276.
    .. [3] Gerstner, W., et al. (2018). Eligibility traces and plasticity on behavioral
       time scales: experimental support of neoHebbian three-factor learning rules.
       Frontiers in Neural Circuits, 12, 53.
    """

    #: Advance the traces inside a window's forward scan (see the class docstring).
    traces_in_scan: bool = True
    #: :meth:`contributions` works on the previous step's traces alone.
    credits_previous_traces: bool = True
    #: The kinds of trace the κ filter acts on (exact traces and output factors).
    filtered_kinds: ClassVar[tuple[str, ...]] = (EPS, OUTPUT)
    #: The traces are the influence of the parameter leaves (see the class docstring).
    influence_traces: ClassVar[bool] = False
    #: Preferred ``MultiStepData`` window of :func:`braintrace.online_gradients`
    #: (``window='auto'``); ``None``: one step at a time.
    default_window: ClassVar[int | None] = None

    def __init__(
        self,
        model: brainstate.nn.Module,
        name: str | None = None,
        vjp_method: str = "single-step",
        *,
        feedback: str = "symmetric",
        kappa_filter_decay: float = 0.0,
        random_feedback_key: Any = None,
    ) -> None:
        super().__init__(model, name=name)
        check_options(type(self).__name__, vjp_method, self.credits_previous_traces, feedback, kappa_filter_decay)
        self.vjp_method = vjp_method
        self.feedback: str = feedback
        self.kappa: float = float(kappa_filter_decay)
        self.random_feedback_key: Any = random_feedback_key
        self.feedback_matrices: dict[int, Any] = {}
        self.batch_axes: tuple[int, ...] = ()
        self.driver: OnlineDriver | None = None

    def on_compile(self, graph: ETraceGraph) -> None:
        self.driver = OnlineDriver(graph, WrappedRule(self, graph))
        self.feedback_matrices, self.batch_axes = {}, ()
        if self.feedback == "random":
            self.batch_axes, self.feedback_matrices = random_feedback_matrices(
                graph, self.random_feedback_key, type(self).__name__
            )
        if graph.bypass_paths and not self.credits_previous_traces:
            names = ", ".join(f"`{path_str(p)}`" for p in graph.bypass_paths)
            raise NotSupportedError(
                f"{type(self).__name__}: the model reads {names} before writing it and returns (or spikes from) "
                "the old value; the gradient of that output needs the traces of the previous step, which "
                f"{type(self).__name__}'s rule does not keep, so the weights feeding those states would get a "
                "wrong (often zero) gradient. Compute the output from the new value, or use D_RTRL, ES_D_RTRL "
                "or OTPE."
            )

    # -- the rule protocol ----------------------------------------------------------------
    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        """The traces after one step.

        Parameters
        ----------
        traces : mapping
            ``{TraceKey: pytree}``, every trace before the step (those
            :meth:`init_traces` created and the copies the shared options add).
        data : StepTraceData
            The step's trace data: the Jacobian blocks ``D``, the factors
            ``df``, the relations' operands (and, for influence learners, the
            step's linearisation ``tangent``).
        count : jax.Array
            Integer scalar, the number of time steps since the last reset,
            before this one.

        Returns
        -------
        dict
            ``{TraceKey: pytree}``, every key of ``traces`` with its new value.
        """
        raise NotImplementedError

    def window_update(self, traces: Mapping[TraceKey, Any], seq: WindowTraceData, count: jax.Array) -> dict:
        """The traces after a window of ``K`` steps (used when ``traces_in_scan`` is False).

        The default applies :meth:`update_traces` step by step.

        Parameters
        ----------
        traces : mapping
            ``{TraceKey: pytree}``, the traces before the window.
        seq : WindowTraceData
            The window's trace data: ``D``, ``df`` and the data inputs ``x``
            stacked over the ``K`` steps, the other operands of the first step.
        count : jax.Array
            Integer scalar, the number of time steps since the last reset,
            before the window's first step.

        Returns
        -------
        dict
            ``{TraceKey: pytree}``, the traces after the window's last step.
        """
        assert self.graph is not None
        relations = self.graph.hidden_param_op_relations

        def body(tr, k):
            return self.update_traces(tr, seq.step(k, relations), count + k), None

        return jax.lax.scan(body, dict(traces), jnp.arange(seq.num_steps))[0]

    def contributions(self, traces: Mapping[TraceKey, Any], data: StepTraceData, signal: Mapping, count: jax.Array) -> dict:
        """``{relation index: {trainable name: gradient}}``: ``signal`` contracted with the traces
        of step ``count``.

        Parameters
        ----------
        traces : mapping
            ``{TraceKey: pytree}``, the traces to contract: those after step
            ``count``, or, for the bypass term and the influence learners, those
            before it (``count`` is then one less than the step's).
        data : StepTraceData
            The step's trace data; its ``operands`` give the trainable inputs
            (the shapes of the gradients).
        signal : mapping
            ``{group index: (*V, S)}``, the learning signal of every hidden
            group (from :meth:`learning_signal`, or a modulator; for influence
            learners the adjoint ``λ``).
        count : jax.Array
            Integer scalar, the time step (since the last reset) the traces
            belong to.

        Returns
        -------
        dict
            ``{relation index: {trainable name: gradient}}``, each gradient
            shaped like its trainable input (influence learners: the flat
            gradient of ``θ``, ``(|θ|,)``).
        """
        raise NotImplementedError

    def window_contributions(
        self,
        before: Mapping[TraceKey, Any],
        after: Mapping[TraceKey, Any],
        aux: Any,
        seq: WindowTraceData,
        signal_seq: Mapping,
        count: jax.Array,
    ) -> dict:
        """``Σ_k contributions(ε_k, signal_k)`` over a window.

        The default sums :meth:`contributions` over the steps (it needs ``aux``).

        Parameters
        ----------
        before : mapping
            ``{TraceKey: pytree}``, the traces before the window.
        after : mapping
            ``{TraceKey: pytree}``, the traces after the window.
        aux : mapping or None
            Every step's traces stacked on a leading axis ``K``
            (``traces_in_scan`` learners, or with the κ filter); else ``None``.
        seq : WindowTraceData
            The window's trace data (see :meth:`window_update`).
        signal_seq : mapping
            ``{group index: (K, *V, S)}``, every step's learning signal (step
            ``k``'s with the bypass signal of step ``k + 1`` added); for
            influence learners the adjoints ``λ``.
        count : jax.Array
            Integer scalar, the number of time steps since the last reset,
            before the window's first step.

        Returns
        -------
        dict
            ``{relation index: {trainable name: gradient}}`` summed over the
            window (influence learners: the flat gradient of ``θ``).
        """
        assert self.graph is not None
        relations = self.graph.hidden_param_op_relations

        def body(acc, k):
            tr_k = jax.tree.map(lambda a: a[k], aux)
            c = self.contributions(tr_k, seq.step(k, relations), {g: d[k] for g, d in signal_seq.items()}, count + k)
            return add_contributions(acc, c), None

        first = body({}, 0)[0]
        if seq.num_steps == 1:
            return first
        return jax.lax.scan(body, first, jnp.arange(1, seq.num_steps))[0]

    def learning_signal(
        self, delta: Mapping, delta_prev: Mapping, *, out_cts: Any, signal: Any, count: jax.Array
    ) -> tuple[dict, dict]:
        """``(signal, signal_prev)`` contracted with the traces, from one step's true signals.

        Default: the true signals, or for hidden layers the random projection of the output error
        (``feedback='random'``). A call's modulator replaces it. Over a window it is mapped over
        the steps (the shapes below are one step's).

        Parameters
        ----------
        delta : mapping
            ``{group index: (*V, S)}``, ``δ^t = ∂L^t/∂h^t`` of every hidden group.
        delta_prev : mapping
            ``{group index: (*V, S)}``, ``δ_prev^t = ∂L^t/∂h^{t-1}`` of the groups read before
            they are written (the others absent).
        out_cts : tuple of arrays
            The cotangents of the model's output leaves, ``∂L^t/∂o^t`` (the output error).
        signal : pytree
            What the call passed besides the inputs (:meth:`run`'s ``signal``, e.g. OSTTP's
            target; ``()`` for none).
        count : jax.Array
            Integer scalar, the step's number of time steps since the last reset.

        Returns
        -------
        signal : dict
            The signal contracted with the step's traces, keyed and shaped as ``delta``.
        signal_prev : dict
            The signal contracted with the previous step's traces (the bypass term),
            keyed and shaped as ``delta_prev``.
        """
        if not self.feedback_matrices:  # filled at compile time: self.graph is set
            return dict(delta), dict(delta_prev)
        return random_feedback_signal(self.graph, self.feedback_matrices, self.batch_axes, delta, delta_prev, out_cts)

    def replaces_signal(self, signal: Any) -> bool:
        """Whether :meth:`learning_signal` may return other than the true signals (a static answer).

        Parameters
        ----------
        signal : pytree
            What the call passed besides the inputs (see :meth:`run`).
        """
        return bool(self.feedback_matrices)

    def traces_initializer(self) -> Any:
        self.check_compiled()
        assert self.driver is not None
        return self.driver.rule.init_traces

    # -- running ----------------------------------------------------------------------
    def update(self, *args: Any, modulator: Any = None) -> Any:
        r"""Run one step, or a ``MultiStepData`` window of steps, updating states and traces.

        Parameters
        ----------
        *args
            The model's inputs of one step; with a ``MultiStepData`` argument,
            a window of steps (plain arguments are broadcast to every step).
        modulator : scalar, array or mapping, optional
            Three-factor learning: ``m^t`` in place of the learning signal,
            :math:`\nabla_w L \mathrel{+}= m^t \cdot ε_w^t` for every trace
            (``m = δ``: the learner's own gradient). A scalar (a reward), an
            array shaped as a leading part of the hidden states' shape
            (``(B,)``, ``(B, N)``, ...), or ``{hidden path: array}`` for chosen
            groups (see :func:`~braintrace.algorithms.modulation.modulator_signal`);
            over a window, with a leading axis of ``K`` steps. Pass ``m = -reward``
            to increase a reward. The differentiated loss must use the call's
            output (``0.0 * out.sum()`` for a pure reward rule); weights not
            learned online keep its gradient. Not with ``'multi-step'`` (a
            ``ValueError``, as for a shape that does not fit).

        Returns
        -------
        The model's output (stacked over a window's steps).

        Examples
        --------
        >>> import brainstate, jax.numpy as jnp
        >>> import braintrace
        >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
        >>> _ = brainstate.nn.init_all_states(cell)
        >>> learner = braintrace.D_RTRL(cell).compile_graph(jnp.zeros(2))
        >>> reward_rule = lambda x, r: 0.0 * learner(x, modulator=-r).sum()  # increase r
        >>> grads = brainstate.transform.grad(reward_rule, cell.states(brainstate.ParamState))(jnp.ones(2), 1.0)
        >>> grads[('W', 'weight')]['weight'].shape
        (5, 3)
        """
        return self.run(args, signal=(), modulator=modulator)

    def run(self, args: tuple, *, signal: Any = (), modulator: Any = None) -> Any:
        """Run ``args`` (one step or a window) through the driver.

        Parameters
        ----------
        args : tuple
            The inputs, as :meth:`update` takes them.
        signal : pytree, default ()
            Given to :meth:`learning_signal` (e.g. OSTTP's target); leading axis ``K`` over a window.
        modulator : scalar, array or mapping, optional
            Replaces the learning signal (see :meth:`update`).
        """
        self.check_compiled()
        assert self.graph is not None and self.driver is not None
        owner = type(self).__name__
        data, multi = unwrap_step_args(args, owner)
        check_call_args(owner, data, multi, self._arg_spec)
        check_states(owner, self.graph, self._state_spec)
        driver, layout = self.driver, self.driver.layout
        arg_vals = tuple(jax.tree.leaves(data))
        steps = int(jnp.shape(arg_vals[0])[0]) if multi and arg_vals else None
        hybrid = multi and self.vjp_method == "multi-step"
        signal = (signal, modulator_signal(self.graph, modulator, steps, owner, exact_window=hybrid,
                                           every_group=self.influence_traces))
        traces = {k: st.value for k, st in self.etraces.items()}
        count = self.step_count.value
        if hybrid:
            result = driver.hybrid(layout.param_values(), layout.state_values(), traces, count, arg_vals, signal)
        else:
            result = driver.online(
                layout.param_values(), layout.state_values(), traces, count, arg_vals, signal, window=multi
            )
        (out_leaves, new_states), new_traces = result
        layout.write_states(new_states)
        for k, st in self.etraces.items():
            st.value = new_traces[k]
        self.step_count.value = count + (steps if steps is not None else 1)
        return jax.tree.unflatten(layout.minfo.out_treedef, list(out_leaves))
