r"""The rule the driver runs: a learner's own rule with the shared options around it.

Every VJP learner (:class:`~braintrace.ETraceVjpAlgorithm`) offers three
options that do not depend on how it keeps its traces; they are applied here,
once, around the learner's rule protocol, so that a learner written against
the protocol gets them without a line of its own:

* **the κ filter** (``kappa_filter_decay``): every trace of a hidden layer
  whose kind the learner lists in ``filtered_kinds`` gets a filtered copy
  :math:`\bar ε^t = κ\,\bar ε^{t-1} + ε^t` (advanced in the forward pass, reset
  with the traces), and the learner's contributions see the copy in place of
  the trace. Over a window the contributions need every step's filtered trace:
  a learner that keeps its traces in the window's loop (``traces_in_scan``)
  stacks them; one that does not (D_RTRL's family, whose traces are one value
  per synapse) recomputes them in a second loop, so that a window of ``K``
  steps does not keep ``K`` copies of its traces;
* **a modulator** (three-factor learning, :mod:`~braintrace.algorithms.modulation`):
  the signal the learner would contract with its traces is replaced by ``m^t``;
* **random feedback** (``feedback='random'``) is the default
  :meth:`~braintrace.ETraceVjpAlgorithm.learning_signal`, which the wrapper calls.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..errors import InvalidArgumentError
from ..executor import StepTraceData, WindowTraceData
from .feedback import hidden_layer_groups, leaky_sum
from .keys import TraceKey, filtered_key
from .modulation import apply_modulator

__all__ = ["WrappedRule", "check_options"]

_VJP_METHODS = ("single-step", "multi-step")
_FEEDBACK = ("symmetric", "random")


def check_options(owner: str, vjp_method: str, credits_previous: bool, feedback: str, kappa: Any) -> None:
    """A ``ValueError`` for a bad ``vjp_method``, ``feedback`` or ``kappa_filter_decay``, or a combination
    that does not make one rule (``'multi-step'`` with random feedback or the κ filter).

    Examples
    --------
    >>> from braintrace.algorithms.wrapped_rule import check_options
    >>> check_options("D_RTRL", "single-step", True, "random", 0.5)
    >>> try:
    ...     check_options("D_RTRL", "multi-step", True, "random", 0.0)
    ... except ValueError as err:
    ...     print(str(err)[:60])
    D_RTRL: vjp_method='multi-step' differentiates a window exac
    """
    if vjp_method not in _VJP_METHODS:
        raise InvalidArgumentError(f"{owner}: vjp_method must be one of {_VJP_METHODS}, got {vjp_method!r}.")
    if vjp_method == "multi-step" and not credits_previous:
        raise InvalidArgumentError(
            f"{owner}: vjp_method='multi-step' credits the adjoint at a window's start to the "
            "traces before the window, but this learner's contributions need the current step's data "
            "besides its traces. Use vjp_method='single-step' (MultiStepData windows then run step by step)."
        )
    if feedback not in _FEEDBACK:
        raise InvalidArgumentError(f"{owner}: feedback must be one of {_FEEDBACK}, got {feedback!r}.")
    if not (isinstance(kappa, numbers.Real) and not isinstance(kappa, bool) and 0.0 <= float(kappa) < 1.0):
        raise InvalidArgumentError(f"{owner}: kappa_filter_decay must be a real number in [0, 1), got {kappa!r}.")
    if vjp_method == "multi-step" and (feedback != "symmetric" or float(kappa) > 0):
        what = f"feedback={feedback!r} replaces the learning signal" if feedback != "symmetric" else (
            "the κ filter stands in for the readout's memory of earlier steps"
        )
        raise InvalidArgumentError(
            f"{owner}: vjp_method='multi-step' differentiates a window exactly (BPTT) with the true "
            f"learning signal, but {what}; the two do not combine into one rule. Use "
            "vjp_method='single-step' (MultiStepData windows then run step by step)."
        )


class WrappedRule:
    r"""A learner's rule protocol with the κ filter and the modulator applied around it.

    Parameters
    ----------
    rule : ETraceVjpAlgorithm
        The learner (its ``kappa`` and ``filtered_kinds`` are read here).
    graph : ETraceGraph
        The compiled graph.

    Attributes
    ----------
    traces_in_scan : bool
        The learner's flag. With the κ filter a learner that keeps its traces
        out of the window's loop gets them recomputed, step by step, for the
        window's contributions (:meth:`window_contributions`) instead of
        stacked: its memory stays that of one step's traces.
    credits_previous_traces : bool
        The learner's flag.
    influence_traces : bool
        The learner's flag.

    Notes
    -----
    The signal the driver passes to :meth:`learning_signal` is the pair
    ``(learner's signal, {group: modulator})`` that
    :meth:`~braintrace.ETraceVjpAlgorithm.run` builds. Over a window the
    learner's :meth:`window_contributions` receives the filtered traces in
    ``aux`` (every step's traces, for learners with ``traces_in_scan``),
    which it must read when given.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> net = brainstate.nn.Sequential(braintrace.nn.Linear(3, 4), braintrace.nn.LIF(4, tau=10., dt=1.),
    ...                                braintrace.nn.LeakyRateReadout(4, 2, decay=0.8))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> learner = braintrace.D_RTRL(net, kappa_filter_decay=0.8).compile_graph(jnp.zeros(3))
    >>> type(learner.driver.rule).__name__, learner.driver.rule.traces_in_scan
    ('WrappedRule', False)
    >>> sorted(k.kind for k in learner.etraces)  # the LIF layer's trace has a filtered copy, the readout's not
    ['eps', 'eps', 'kappa']
    """

    def __init__(self, rule: Any, graph: Any) -> None:
        self.rule = rule
        self.graph = graph
        self.kappa = float(rule.kappa)
        self.traces_in_scan: bool = bool(rule.traces_in_scan)
        # the filtered traces of a learner that keeps its traces out of the loop: recomputed per window
        self.recomputes: bool = self.kappa > 0 and not self.traces_in_scan
        self.credits_previous_traces: bool = bool(rule.credits_previous_traces)
        self.influence_traces: bool = bool(rule.influence_traces)
        self.layers = frozenset(hidden_layer_groups(graph)) if self.kappa > 0 else frozenset()
        self.kinds = frozenset(rule.filtered_kinds)

    def filtered(self, key: TraceKey) -> bool:
        """Whether ``key``'s trace has a κ-filtered copy (a listed kind, of hidden layers only)."""
        if self.kappa == 0.0 or key.kind not in self.kinds:
            return False
        if key.group >= 0:
            return key.group in self.layers
        rels = self.graph.hidden_param_op_relations
        return all(gi in self.layers for i in key.relations for gi in rels[i].hidden_groups)

    def view(self, traces: Any) -> Any:
        """``traces`` with every filtered trace in place of its original (``None`` stays ``None``)."""
        if traces is None or self.kappa == 0.0:
            return traces
        out = dict(traces)
        for key in traces:
            if self.filtered(key):
                out[key] = traces[filtered_key(key)]
        return out

    # -- the rule protocol ---------------------------------------------------------------
    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        out = self.rule.init_traces(data)
        keys = [k for k in out if self.filtered(k)]
        if self.kappa > 0 and not keys:
            warnings.warn(
                f"{type(self.rule).__name__}(kappa_filter_decay={self.kappa}): no trace is filtered; the filter acts "
                "on the traces of hidden layers (groups learned online that are not output groups), and this "
                "model has none, or the learner keeps no trace of a filtered kind. The gradient is that of "
                "kappa_filter_decay=0.",
                UserWarning,
                stacklevel=6,
            )
        for k in keys:
            out[filtered_key(k)] = jax.tree.map(lambda v: v, out[k])
        return out

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        out = dict(self.rule.update_traces(traces, data, count))
        for key in list(out):
            if self.filtered(key):
                fkey = filtered_key(key)
                out[fkey] = leaky_sum(traces[fkey], out[key], self.kappa)
        return out

    def window_update(self, traces: Mapping[TraceKey, Any], seq: WindowTraceData, count: jax.Array) -> dict:
        if self.recomputes:  # the filtered copies advance with the traces, step by step
            return self._replay(traces, seq, count, None)[0]
        return self.rule.window_update(traces, seq, count)

    def contributions(self, traces: Mapping[TraceKey, Any], data: StepTraceData, signal: Mapping, count: jax.Array) -> dict:
        return self.rule.contributions(self.view(traces), data, signal, count)

    def window_contributions(self, before, after, aux, seq: WindowTraceData, signal_seq: Mapping, count) -> dict:
        if self.recomputes and aux is None:
            return self._replay(before, seq, count, signal_seq)[1]
        return self.rule.window_contributions(
            self.view(before), self.view(after), self.view(aux), seq, signal_seq, count
        )

    def _replay(
        self, traces: Mapping[TraceKey, Any], seq: WindowTraceData, count: jax.Array,
        signal_seq: Mapping | None,
    ) -> tuple[dict, dict]:
        r"""``(traces after the window, Σ_k contributions(\bar ε^k, signal_k))``: the window's steps
        replayed from ``traces`` (the contributions only with ``signal_seq``), one step's traces
        alive at a time."""
        relations = self.graph.hidden_param_op_relations

        def step(tr, k):
            data = seq.step(k, relations)
            tr = self.update_traces(tr, data, count + k)
            if signal_seq is None:
                return tr, {}
            return tr, self.contributions(tr, data, {g: d[k] for g, d in signal_seq.items()}, count + k)

        def body(carry, k):
            tr, c = step(carry[0], k)
            return (tr, jax.tree.map(jnp.add, carry[1], c)), None

        carry = step(dict(traces), 0)  # the first step outside the loop: it gives the sum its structure
        if seq.num_steps > 1:
            carry, _ = jax.lax.scan(body, carry, jnp.arange(1, seq.num_steps))
        return carry

    def replaces_signal(self, signal: Any) -> bool:
        """Whether the signals may differ from the true ones: a modulator, or the learner's own signal."""
        own, modulators = signal
        return bool(modulators) or bool(self.rule.replaces_signal(own))

    def learning_signal(
        self, delta: Mapping, delta_prev: Mapping, *, out_cts: Any, signal: Any, count: jax.Array
    ) -> tuple[dict, dict]:
        own, modulators = signal
        sig, prev = self.rule.learning_signal(delta, delta_prev, out_cts=out_cts, signal=own, count=count)
        return apply_modulator(sig, prev, modulators)
