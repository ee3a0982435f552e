r"""EProp: eligibility propagation (Bellec et al., 2020) on the D_RTRL traces.

e-prop factorises the gradient of a recurrent spiking network into a
*learning signal* per neuron and an *eligibility trace* per synapse. In the
notation of DESIGN.md §3 the eligibility vector of e-prop is the D_RTRL trace

.. math:: ε_w^t = D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w},

and the gradient contribution at step ``t`` is :math:`L^t \cdot \bar ε_w^t`
with :math:`L^t` the true signal ``δ^t`` (``'symmetric'``) or a fixed random
projection of the output error (``'random'``), and :math:`\bar ε` the
κ-filtered trace
(:class:`~braintrace.KappaFilter`). See :class:`EProp`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..compiler.module_info import path_str
from ..compiler.outputs import output_groups
from ..executor import StepTraceData, WindowTraceData
from .d_rtrl import ParamDimVjpAlgorithm
from .feedback import (
    FixedRandomFeedback,
    KappaFilter,
    as_key,
    layer_size,
    output_batch_shape,
    output_error,
    project_to_group,
)
from .keys import FILTERED, TraceKey

__all__ = ["EProp"]

_FEEDBACK = ("symmetric", "random")


class EProp(ParamDimVjpAlgorithm):
    r"""e-prop: D_RTRL eligibility traces with e-prop's learning signal and κ filter.

    Notation: ``h_g`` the states of hidden group ``g`` (per-position shape
    ``V``, ``S`` states), ``o^t`` the model's outputs, ``e^t = ∂L^t/∂o^t``
    the output error, ``D^t`` / ``df^t`` as in DESIGN.md §3, ``δ_g^t`` the
    learners' learning signal: ``∂L^t/∂h_g^t``, the other hidden groups
    responding within the step (a spiking layer's signal passes through the
    readout that reads it) and the group's own other states held fixed. An
    *output group* is a hidden group whose new value reaches an
    output without passing the data input of an ETP primitive (a
    :class:`~braintrace.nn.LeakyRateReadout` is one; a spiking layer read out
    through a trainable weight is not).

    .. math::

        ε_w^t &= D^t ε_w^{t-1} + df^t \otimes \frac{\partial y^t}{\partial w}
            \qquad\text{(D_RTRL trace: e-prop's eligibility vector)} \\
        \bar ε_w^t &= κ\, \bar ε_w^{t-1} + ε_w^t
            \qquad\text{(relations into non-output groups; } \bar ε = ε \text{ if } κ = 0) \\
        L_g^t &= \begin{cases}
            δ_g^t & \text{'symmetric', or 'random' and } g \text{ an output group} \\
            \mathrm{reshape}\big(e^t B_g,\ (*V_g, S_g)\big) & \text{'random', } g \text{ not an output group}
        \end{cases} \\
        \nabla_w L &\mathrel{+}= L_g^t \cdot \bar ε_w^t

    ``'symmetric'`` with ``kappa_filter_decay=0`` is exactly
    :class:`~braintrace.D_RTRL`. As in D_RTRL, a weight whose output reaches the
    loss along a path its traces do not carry (bypassing its hidden group's
    new value) keeps the instantaneous gradient of that path.

    *The κ filter.* In e-prop a leaky readout :math:`r^t = κ r^{t-1} + z^t W`
    makes the loss at step ``t`` depend on a hidden neuron's activity at every
    earlier step; filtering the eligibility traces with the readout's ``κ``
    credits that memory (Bellec et al., eq. 11). Here the filter acts on the
    eligibility vector ε, contracted with the signal of step ``t``, so the
    neuron's pseudo-derivative (inside ``L^t``) enters at step ``t`` (e-prop
    filters :math:`ψ^{t'} ε^{t'}`); the two agree for units with a constant
    gain. Output groups are not filtered: a readout's own trace already
    carries its leak exactly. The filtered values are traces: updated in the
    forward pass, reset with the traces.

    *Random feedback.* Output errors of every output leaf are read as
    ``(*b, n_k)`` (``b`` the batch axes shared by the outputs) and
    concatenated to :math:`e^t` of shape ``(*b, n_out)``. For each non-output
    group ``g`` learned online, ``V_g`` must start with ``b``; :math:`B_g` has
    shape ``(n_out, prod(V_g[len(b):])·S_g)``, entries
    :math:`\mathcal N(0, 0.1^2)` drawn at compile time from
    ``random_feedback_key``, and column ``j`` is the C-order flat index of
    (position, state) over ``V_g[len(b):] + (S_g,)``; each batch element's
    error goes to the same batch element. Output groups keep their true
    signal, so a readout learns from the true error, as in e-prop. The
    matrices are in :attr:`feedback_matrices` (a
    :class:`~braintrace.FixedRandomFeedback` per group). The random signal
    carries no pseudo-derivative (e-prop multiplies it by :math:`ψ^t` inside
    its eligibility trace). For a model that returns a hidden state's old
    value (a spike from the voltage before its update), a random signal
    stands in for the whole error of the step and is credited to the current
    trace; the bypass term (DESIGN.md §3) of those groups is then not added,
    and compiling says so with a warning.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; weights learned online go through ETP primitives.
    feedback : {'symmetric', 'random'}, default 'symmetric'
    kappa_filter_decay : float, default 0.0
        ``κ`` in ``[0, 1)``; typically the decay of the leaky readout.
    random_feedback_key : int or jax PRNG key, optional
        Seed of the random feedback matrices; ``None`` draws one from
        ``brainstate.random`` at compile time.
    name : str, optional
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        ``'multi-step'`` (BPTT inside a ``MultiStepData`` window) only with
        ``'symmetric'`` and ``κ = 0`` (it is then D_RTRL's hybrid); otherwise
        refused, the window's exact gradient would bypass the rule.
    fast_solve : bool, default True
        As in :class:`~braintrace.D_RTRL`.

    Attributes
    ----------
    feedback_matrices : dict
        ``{group index: FixedRandomFeedback}`` (``'random'``, after compiling).

    Raises
    ------
    ValueError
        A bad ``feedback`` or ``kappa_filter_decay``, or ``'multi-step'`` with
        another feedback or ``κ > 0``.
    CompilationError
        (compile time, ``'random'``) output leaves that disagree on their
        batch axes, or a hidden group whose leading axes are not those.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> net = brainstate.nn.Sequential(
    ...     braintrace.nn.Linear(3, 4), braintrace.nn.LIF(4, tau=10., dt=1.),
    ...     braintrace.nn.LeakyRateReadout(4, 2, decay=0.8))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> learner = braintrace.EProp(net, 'random', kappa_filter_decay=0.8, random_feedback_key=0)
    >>> _ = learner.compile_graph(jnp.zeros(3))
    >>> [fb.matrix.shape for fb in learner.feedback_matrices.values()]
    [(2, 4)]
    >>> params = net.states(brainstate.ParamState)
    >>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), params)(jnp.ones(3))
    >>> len(grads)
    2

    References
    ----------
    .. [1] Bellec, G., Scherr, F., Subramoney, A., Hajek, E., Salaj, D.,
       Legenstein, R., & Maass, W. (2020). A solution to the learning dilemma
       for recurrent networks of spiking neurons. Nature Communications, 11, 3625.
    """

    def __init__(
        self,
        model: Any,
        feedback: str = "symmetric",
        kappa_filter_decay: float = 0.0,
        random_feedback_key: Any = None,
        name: str | None = None,
        vjp_method: str = "single-step",
        fast_solve: bool = True,
    ) -> None:
        super().__init__(model, name=name, vjp_method=vjp_method, fast_solve=fast_solve)
        if feedback not in _FEEDBACK:
            raise ValueError(f"EProp: feedback must be one of {_FEEDBACK}, got {feedback!r}.")
        kappa = kappa_filter_decay
        if not (isinstance(kappa, numbers.Real) and not isinstance(kappa, bool) and 0.0 <= float(kappa) < 1.0):
            raise ValueError(f"EProp: kappa_filter_decay must be a real number in [0, 1), got {kappa!r}.")
        if vjp_method == "multi-step" and (feedback != "symmetric" or float(kappa) > 0):
            what = f"feedback={feedback!r} replaces the learning signal" if feedback != "symmetric" else (
                "the κ filter stands in for the readout's memory of earlier steps"
            )
            raise ValueError(
                f"EProp: vjp_method='multi-step' differentiates a window exactly (BPTT) with the true "
                f"learning signal, but {what}; the two do not combine into one rule. Use "
                "vjp_method='single-step' (MultiStepData windows then run step by step)."
            )
        self.feedback: str = feedback
        self.kappa: float = float(kappa)
        self.random_feedback_key: Any = random_feedback_key
        self.feedback_matrices: dict[int, FixedRandomFeedback] = {}
        #: the κ filter needs every step's trace: a window then advances them inside its scan
        self.traces_in_scan = self.kappa > 0
        self.hidden_groups: tuple[int, ...] = ()
        self.batch_axes: tuple[int, ...] = ()

    def on_compile(self, graph: Any) -> None:
        super().on_compile(graph)
        outputs = output_groups(graph)
        online = sorted({gi for r in graph.hidden_param_op_relations for gi in r.hidden_groups})
        self.hidden_groups = tuple(gi for gi in online if gi not in outputs)
        self.feedback_matrices = {}
        if self.feedback == "random" and self.hidden_groups:
            self.batch_axes, n_out = output_batch_shape(graph, "EProp")
            sizes = [layer_size(graph.hidden_groups[gi], self.batch_axes, "EProp") for gi in self.hidden_groups]
            keys = jax.random.split(as_key(self.random_feedback_key), len(self.hidden_groups))
            self.feedback_matrices = {
                gi: FixedRandomFeedback(n_out, n, k) for gi, n, k in zip(self.hidden_groups, sizes, keys)
            }
            replaced = [p for gi in self.feedback_matrices for p in graph.hidden_groups[gi].hidden_paths
                        if p in graph.bypass_paths]
            if replaced:
                warnings.warn(
                    f"EProp(feedback='random'): the model returns the old value of "
                    f"{', '.join('`' + path_str(p) + '`' for p in replaced)} (read before the write); the random "
                    "learning signal of those neurons is credited to their current trace, and the bypass term "
                    "dL[t]/dh[t-1] · trace[t-1] is not added for them.",
                    UserWarning,
                    stacklevel=3,
                )

    # -- the κ filter -----------------------------------------------------------
    def _filtered(self) -> list[tuple[TraceKey, TraceKey]]:
        if self.kappa == 0.0 or self.exact is None:
            return []
        return [
            (key, TraceKey(FILTERED, key.relations, key.group))
            for key in self.exact.keys()
            if key.group in self.hidden_groups
        ]

    def _view(self, traces: Mapping[TraceKey, Any]) -> dict:
        view = dict(traces)
        for key, fkey in self._filtered():
            view[key] = traces[fkey]
        return view

    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        out = super().init_traces(data)
        for key, fkey in self._filtered():
            out[fkey] = jax.tree.map(lambda v: v, out[key])
        return out

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        out = super().update_traces(traces, data, count)
        for key, fkey in self._filtered():
            out[fkey] = KappaFilter.rule(traces[fkey], out[key], self.kappa)
        return out

    def contributions(self, traces: Mapping[TraceKey, Any], data: StepTraceData, signal: Mapping, count: jax.Array) -> dict:
        return super().contributions(self._view(traces), data, signal, count)

    def window_contributions(
        self, before: Mapping, after: Mapping, aux: Any, seq: WindowTraceData, signal_seq: Mapping, count: jax.Array
    ) -> dict:
        if not self.traces_in_scan:
            return super().window_contributions(before, after, aux, seq, signal_seq, count)
        return self._exact().contributions_seq(self._view(aux), seq, signal_seq)

    # -- the learning signal ----------------------------------------------------
    def learning_signal(
        self, delta: Mapping, delta_prev: Mapping, *, out_cts: Any, signal: Any, count: jax.Array
    ) -> tuple[dict, dict]:
        """The true signals ('symmetric'), or for non-output groups ``reshape(e^t B_g)`` ('random')."""
        if self.feedback == "symmetric" or not self.feedback_matrices:
            return dict(delta), dict(delta_prev)
        assert self.graph is not None  # the learner calls its hooks after compile_graph
        out, prev = dict(delta), dict(delta_prev)
        err = output_error(out_cts, self.batch_axes)
        for gi, fb in self.feedback_matrices.items():
            g = self.graph.hidden_groups[gi]
            out[gi] = project_to_group(fb.matrix, err, g, delta[gi].dtype)
            if gi in prev:
                prev[gi] = jnp.zeros_like(prev[gi])
        return out, prev
