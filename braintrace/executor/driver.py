r"""The one ``custom_vjp`` driver of a learner step, with its two modes.

A learner step is a pure function

    (params, states, traces, count, inputs, signal) -> ((outputs, new states), new traces)

over one step or a window of ``K`` steps (inputs with a leading axis ``K``).
:class:`OnlineDriver` runs it for a *rule* (a learner: see
:class:`braintrace.algorithms.ETraceVjpAlgorithm` for the protocol) in one of
two modes:

``online`` (``vjp_method='single-step'``)
    Every step's loss is credited by the single-step rule. The forward pass
    linearises each step (:meth:`ETraceVjpGraphExecutor.linearize`), computes
    ``D``, ``df`` and the operands in the same evaluation, and advances the
    traces; the backward pass transposes the steps' linearisations together
    (no backpropagation through time), which gives the instantaneous
    gradients of the uncovered parameters, the learning signals ``δ^t`` and,
    for states read before they are written, ``δ_prev^t = ∂L^t/∂h^{t-1}``. The
    gradient is then

    .. math::

        g = \sum_t \Big[ c(ε^t, δ^t) + c(ε^{t-1}, δ_{\rm prev}^t) \Big]
            + \bar\theta_{\rm imm} - i(δ),

    ``c`` the rule's contribution (:meth:`contributions`), ``i`` its
    instantaneous part for the uncovered leaves (already in
    :math:`\bar\theta_{\rm imm}`). Over a window the bypass term is folded
    into the signal of the step before (``δ^k + δ_{\rm prev}^{k+1}``
    contracts ``ε^k``), plus ``c(ε^{-1}, δ_{\rm prev}^0)`` on the traces before
    the window.

``hybrid`` (``vjp_method='multi-step'``)
    The window's summed loss is differentiated exactly (BPTT inside the
    window) and the adjoint ``λ`` of the window's initial hidden states is
    credited to the traces before the window, ``c(ε^{-1}, λ)``.

The driver owns its caches (the built ``custom_vjp`` functions and the window
residual analyses); they live as long as the driver, i.e. its learner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..compiler import ETraceGraph
from ..primitives.trace_rules import sum_to_shape
from .graph_executor import ETraceVjpGraphExecutor
from .layout import StepLayout
from .loops import step_elements, window_local, window_unroll
from .trace_data import StepTraceData, WindowTraceData
from .window_residuals import WindowResiduals

__all__ = ["OnlineDriver", "add_contributions"]


class _Forward(NamedTuple):
    outs: Any
    states: Any
    traces: Any
    data: Any  # StepTraceData (one step) or WindowTraceData
    lin: Any
    aux: Any


def add_contributions(a: Mapping, b: Mapping) -> dict:
    """``{relation: {name: a + b}}`` of two contribution dicts (a missing entry counts as zero).

    Examples
    --------
    >>> from braintrace.executor.driver import add_contributions
    >>> add_contributions({0: {"weight": 1.0}}, {0: {"weight": 2.0, "bias": 3.0}, 1: {"weight": 4.0}})
    {0: {'weight': 3.0, 'bias': 3.0}, 1: {'weight': 4.0}}
    """
    out = {r: dict(v) for r, v in a.items()}
    for r, names in b.items():
        acc = out.setdefault(r, {})
        for n, v in names.items():
            acc[n] = v if n not in acc else acc[n] + v
    return out


class OnlineDriver:
    """Differentiates a learner's step: linearisation, transposition, the rule's contributions.

    Parameters
    ----------
    graph : ETraceGraph
        The compiled graph.
    rule : ETraceVjpAlgorithm
        The learner whose public rule protocol (``traces_in_scan``,
        ``update_traces``, ``window_update``, ``contributions``,
        ``window_contributions``, ``learning_signal``) the driver calls.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.D_RTRL(cell).compile_graph(jnp.zeros(2))
    >>> type(learner.driver).__name__, learner.driver.layout.hidden_state_pos
    ('OnlineDriver', {('h',): 0})
    """

    def __init__(self, graph: ETraceGraph, rule: Any) -> None:
        self.graph = graph
        self.rule = rule
        #: the rule keeps influence traces of the parameter leaves (RTRL, SnAp, UORO; see ``_influence_grads``)
        self.influence = bool(rule.influence_traces)
        self.layout = StepLayout(graph, covered=frozenset() if self.influence else None)
        self.executor = ETraceVjpGraphExecutor(graph)
        self.residuals = WindowResiduals(self._lin_leaves, fixed=self.layout.fixed_state_pos)
        #: the size of one step (decides whether a window's loop is unrolled)
        self.step_size = step_elements(graph.module_info.jaxpr)
        self._built: dict[tuple[str, bool], Any] = {}

    # -- public entry points -------------------------------------------------------
    def online(
        self, param_vals: tuple, state_vals: tuple, traces: Mapping, count: jax.Array, args: tuple, signal: Any,
        *, window: bool,
    ) -> tuple[tuple[Any, Any], dict]:
        """Run one step (``window=False``) or a window (inputs ``(K, ...)``) under the single-step rule."""
        return self._function("online", window)(param_vals, state_vals, traces, count, args, signal)

    def hybrid(
        self, param_vals: tuple, state_vals: tuple, traces: Mapping, count: jax.Array, args: tuple, signal: Any
    ) -> tuple[tuple[Any, Any], dict]:
        """Run a window with exact BPTT inside it and trace credit before it."""
        return self._function("hybrid", True)(param_vals, state_vals, traces, count, args, signal)

    def _function(self, mode: str, window: bool):
        key = (mode, window)
        if key not in self._built:
            build = self._build_online if mode == "online" else self._build_hybrid
            self._built[key] = build(window)
        return self._built[key]

    # -- the forward pass ----------------------------------------------------------
    def _lin_leaves(self, param_vals, state_vals, args_t):
        iv = self.layout.assemble(args_t, param_vals, state_vals)
        return jax.tree.leaves(self.executor.linearize(iv, self.layout.uncovered, old_hidden=self.influence)[2])

    def _one(self, param_vals, sv, tr, c, args_t, *, linearize: bool, stop: bool, update: bool):
        """One step: ``(new states, traces, outputs, trace data, linearisation)``."""
        layout, ex = self.layout, self.executor
        iv = layout.assemble(args_t, param_vals, sv)
        lin = None
        tangent = self.influence
        if linearize:
            outvals, operands, lin = ex.linearize(iv, layout.uncovered, old_hidden=tangent)
            data = ex.trace_data(iv, outvals, operands, tangent=tangent)
        elif stop:  # differentiable outputs, trace data of stopped values
            data = ex.trace_data(jax.lax.stop_gradient(iv), tangent=tangent)._replace(outvals=ex.forward(iv))
        else:
            data = ex.trace_data(iv, tangent=tangent)
        if update:
            tr = self.rule.update_traces(tr, data, c)
        outs, new_sv = layout.outputs(data.outvals)
        return new_sv, tr, outs, data._replace(outvals=[], tangent=None), lin

    def _forward(self, param_vals, state_vals, traces, count, args, *, window: bool, mode: str) -> _Forward:
        """Run the step(s); ``mode``: ``'plain'``, ``'linearize'`` or ``'differentiable'``."""
        linearize, stop = mode == "linearize", mode == "differentiable"
        if not window:
            sv, tr, outs, data, lin = self._one(
                param_vals, state_vals, traces, count, args, linearize=linearize, stop=stop, update=True
            )
            if stop:
                tr = jax.lax.stop_gradient(tr)
            return _Forward(outs, sv, tr, data, lin, None)
        in_scan = self.rule.traces_in_scan
        first = tuple(a[0] for a in args)
        analysis = self.residuals.analysis(param_vals, state_vals, first) if linearize else None
        shared: dict[str, Any] = {}

        def body(carry, args_t):
            sv, tr, c = carry
            sv, tr, outs, data, lin = self._one(
                param_vals, sv, tr, c, args_t, linearize=linearize, stop=stop, update=in_scan
            )
            if linearize:
                lin, shared_t = self.residuals.drop(lin, analysis)
                shared.update(shared_t)
            x = {r.index: data.operands[r.index][r.entry.x_invar_index]
                 for r in self.layout.relations if r.entry.x_invar_index is not None}
            return (sv, tr, c + 1), (outs, x, data.D, data.df, lin, tr if in_scan else None)

        carry0 = (tuple(state_vals), dict(traces) if in_scan else None, count)
        (sv, new_traces, _), (outs, xs, D, df, linears, aux) = jax.lax.scan(
            body, carry0, tuple(args),
            unroll=window_unroll(int(jnp.shape(args[0])[0]) if args else 1, step_size=self.step_size),
        )
        if linearize:
            linears = self.residuals.finish(linears, shared, param_vals, state_vals)
        operands = self.layout.operands(first, param_vals, state_vals)
        seq = WindowTraceData(operands=operands, x=window_local(xs), D=D, df=df)
        if stop:
            seq = jax.lax.stop_gradient(seq)
        if not in_scan:
            new_traces = self.rule.window_update(traces, seq, count)
        if stop:
            new_traces, aux = jax.lax.stop_gradient((new_traces, aux))
        return _Forward(outs, sv, new_traces, seq, linears, aux)

    # -- online mode -------------------------------------------------------------------
    def _build_online(self, window: bool):
        @jax.custom_vjp
        def run(param_vals, state_vals, traces, count, args, signal):
            fw = self._forward(param_vals, state_vals, traces, count, args, window=window, mode="plain")
            return (fw.outs, fw.states), fw.traces

        def fwd(param_vals, state_vals, traces, count, args, signal):
            fw = self._forward(param_vals, state_vals, traces, count, args, window=window, mode="linearize")
            res = (fw.lin, fw.data, traces, fw.traces, fw.aux, count, param_vals, state_vals, args, signal)
            return ((fw.outs, fw.states), fw.traces), res

        def bwd(res, cts):
            lin, data, before, after, aux, count, param_vals, state_vals, args, signal = res
            (out_cts, state_cts), _ = cts
            grads = self._online_grads(
                lin, data, before, after, aux, count, param_vals, state_vals, args, signal, out_cts, state_cts,
                window=window,
            )
            return grads, None, None, None, None, None

        run.defvjp(fwd, bwd)
        return run

    def _transpose(self, lin, param_vals, args, out_cts, state_cts, *, window: bool, per_step: bool = False):
        """Transpose the step(s); over a window ``state_cts`` reach the last step's new states only, or with
        ``per_step`` they are every step's (a leading axis ``K``)."""
        layout, ex = self.layout, self.executor
        avals = [param_vals[pos] for pos in layout.uncovered_pos]
        if not window:
            return ex.transpose(lin, layout.cotangents(out_cts, state_cts), avals, old_hidden=self.influence)
        K = int(jnp.shape(args[0])[0])
        last = jnp.arange(K) == K - 1
        # single-step rule: a step's new states get no cotangent from the next step
        state_ct_seq = tuple(state_cts) if per_step else tuple(
            jnp.where(last.reshape((K,) + (1,) * jnp.ndim(c)), c[None], jnp.zeros_like(c)[None])
            if c is not None and jnp.issubdtype(jnp.result_type(c), jnp.inexact) else None
            for c in state_cts
        )
        stacked, in_axes = self.residuals.restore(lin, param_vals, args)
        return ex.transpose(
            stacked, layout.cotangents(out_cts, state_ct_seq), avals, steps=K, in_axes=in_axes,
            old_hidden=self.influence,
        )

    def _online_grads(
        self, lin, data, before, after, aux, count, param_vals, state_vals, args, signal, out_cts, state_cts,
        *, window: bool,
    ):
        layout, rule = self.layout, self.rule
        if self.influence:
            return self._influence_grads(lin, data, before, after, aux, count, param_vals, args, signal, out_cts,
                                         state_cts, window=window)
        g_imm, d_paths, dp_paths = self._transpose(lin, param_vals, args, out_cts, state_cts, window=window)
        delta, delta_prev = self._pack(d_paths), self._pack(dp_paths)
        if window:
            K = int(jnp.shape(args[0])[0])
            counts = count + jnp.arange(K, dtype=jnp.result_type(count))
            sig, sig_prev = jax.vmap(
                lambda d, dp, o, s, c: rule.learning_signal(d, dp, out_cts=o, signal=s, count=c)
            )(delta, delta_prev, tuple(out_cts), signal, counts)
            contrib = rule.window_contributions(before, after, aux, data, _shift(sig, sig_prev), count)
            step0 = data.step(0, layout.relations)
            prev0 = {g: v[0] for g, v in sig_prev.items()}
            like = {g: v[0] for g, v in sig.items()}
            first = tuple(a[0] for a in args)
        else:
            sig, sig_prev = rule.learning_signal(delta, delta_prev, out_cts=tuple(out_cts), signal=signal, count=count)
            # from the new traces: contracting the old ones instead (a window of one step) makes XLA
            # copy every trace, as the loop's update overwrites them in place
            contrib = rule.contributions(after, data, sig, count)
            step0, prev0, like, first = data, sig_prev, sig, args
        if prev0:
            contrib = add_contributions(contrib, rule.contributions(before, step0, _full(prev0, like), count - 1))
        # the instantaneous part removed from ``g_imm`` is the one ``g_imm`` holds:
        # computed with the true δ, whatever signal the rule uses for its traces
        imm = self._instantaneous(data, delta, window=window) if layout.uncovered else {}
        return layout.pull_back(first, param_vals, state_vals, contrib, imm, g_imm)

    def _influence_grads(
        self, lin, data, before, after, aux, count, param_vals, args, signal, out_cts, state_cts, *, window: bool
    ):
        r"""The influence learners' gradient, :math:`g = \bar\theta_{\rm imm} + \sum_t c(P^{t-1}, λ^t)`.

        Every parameter leaf is differentiated by the step's linearisation
        (:math:`\bar\theta_{\rm imm}`: the instantaneous gradients, ``h^{t-1}``
        held fixed), and so are the old hidden values: their cotangent is the
        whole adjoint :math:`λ^t = ∂L^t/∂h^{t-1}` within the step (bypass reads
        included). The rule contracts it with the influence of the previous step,
        ``λ^t · P^{t-1}`` (over a window, with the stacked traces ``aux``), and
        returns the flat gradient of ``θ``.

        When the rule replaces the learning signal (``rule.replaces_signal``: a
        modulator ``m``, which then covers every hidden group), ``m^t`` takes the
        place of the loss: the step is transposed again with ``m^t`` as the
        cotangent of the new hidden values and none on the outputs, giving the
        covered leaves :math:`m^t \cdot P^t = m^t \cdot M^t + (J^{t\top} m^t) \cdot P^{t-1}`
        (the instantaneous part exact, the history through the traces, as for
        the loss); the other leaves keep their instantaneous gradient of the loss.
        """
        g_imm, d_paths, dp_paths, old_paths = self._transpose(lin, param_vals, args, out_cts, state_cts, window=window)
        lam = self._pack({p: v + dp_paths[p] if p in dp_paths else v for p, v in old_paths.items()})
        rule, flat_layout = self.rule, self.executor.influence_layout
        if rule.replaces_signal(signal):
            delta, delta_prev = _full(self._pack(d_paths), lam), self._pack(dp_paths)
            sig = _full(self._signals(delta, delta_prev, count, signal, out_cts, window=window), lam)
            g_imm, lam = self._modulated_transpose(lin, param_vals, args, out_cts, sig, g_imm, window=window)
        if window:
            flat = rule.window_contributions(before, after, aux, data, lam, count)
        else:
            flat = rule.contributions(before, data, lam, count - 1)
        return flat_layout.add_to(g_imm, flat)

    def _signals(self, delta, delta_prev, count, signal, out_cts, *, window: bool) -> dict:
        """The rule's learning signals of a step (vmapped over a window's steps)."""
        rule = self.rule
        if not window:
            return rule.learning_signal(delta, delta_prev, out_cts=tuple(out_cts), signal=signal, count=count)[0]
        K = jax.tree.leaves(delta)[0].shape[0]
        counts = count + jnp.arange(K, dtype=jnp.result_type(count))
        return jax.vmap(
            lambda d, dp, o, s, c: rule.learning_signal(d, dp, out_cts=o, signal=s, count=c)[0]
        )(delta, delta_prev, tuple(out_cts), signal, counts)

    def _modulated_transpose(self, lin, param_vals, args, out_cts, sig, g_imm, *, window: bool):
        """``(gradients, λ)`` with ``sig`` as the new hidden values' cotangent and no output cotangent: the
        covered leaves' instantaneous part ``m · M`` and ``λ = J^T m``; the other leaves keep ``g_imm``."""
        layout = self.layout
        state_cts: list[Any] = [None] * len(layout.state_outvars)
        for g in layout.groups:
            for p, v in g.unpack(sig[g.index]).items():
                state_cts[layout.hidden_state_pos[p]] = v
        zeros = tuple(jnp.zeros_like(o) for o in out_cts)
        g_m, _, _, old = self._transpose(lin, param_vals, args, zeros, state_cts, window=window, per_step=True)
        covered = set(self.executor.influence_layout.theta_pos)
        grads = tuple(g_m[k] if k in covered else g_imm[k] for k in range(len(g_imm)))
        return grads, self._pack(old)

    def _pack(self, paths: Mapping) -> dict:
        """``{group: (…, *V, S)}`` from ``{hidden path: value}``; groups none of whose members
        are given are left out, missing members are zeros."""
        out = {}
        for g in self.layout.groups:
            if not any(p in paths for p in g.hidden_paths):
                continue
            ref = next(paths[p] for p in g.hidden_paths if p in paths)
            members = {p: paths[p] if p in paths else jnp.zeros_like(ref) for p in g.hidden_paths}
            out[g.index] = g.pack(members)
        return out

    def _instantaneous(self, data, delta: Mapping, *, window: bool) -> dict:
        r"""``i_r = xy_to_dw(x, Σ_g Σ_s df ⊙ δ)`` (summed over a window's steps) for relations
        feeding uncovered leaves."""
        layout = self.layout
        out = {}
        for r in layout.relations:
            if not layout.rel_needs_imm[r.index]:
                continue
            params = layout.minfo.jaxpr.eqns[r.eqn_index].params

            def dy_of(df, d, r=r):
                return sum_to_shape(jnp.sum(df * d, axis=-1), r.y_shape)

            terms = [
                (jax.vmap(dy_of) if window else dy_of)(data.df[(r.index, gi)], delta[gi]) for gi in r.hidden_groups
            ]
            dy = sum(terms[1:], terms[0])
            ops = tuple(data.operands[r.index])
            if window:
                out[r.index] = r.entry.xy_to_dw_seq(ops, data.x.get(r.index), params, dy, names=r.trainable_names)
            else:
                out[r.index] = r.entry.xy_to_dw(ops, params, dy, names=r.trainable_names)
        return out

    # -- hybrid mode -------------------------------------------------------------------
    def _build_hybrid(self, window: bool):
        @jax.custom_vjp
        def run(param_vals, state_vals, traces, count, args, signal):
            fw = self._forward(param_vals, state_vals, traces, count, args, window=True, mode="plain")
            return (fw.outs, fw.states), fw.traces

        def fwd(param_vals, state_vals, traces, count, args, signal):
            def differentiable(pv, sv0):
                fw = self._forward(pv, sv0, traces, count, args, window=True, mode="differentiable")
                return (fw.outs, fw.states), fw.traces

            primal, vjp, new_traces = jax.vjp(differentiable, tuple(param_vals), tuple(state_vals), has_aux=True)
            return (primal, new_traces), (vjp, traces, count, param_vals, state_vals, args)

        def bwd(res, cts):
            vjp, before, count, param_vals, state_vals, args = res
            (out_cts, state_cts), _ = cts
            g_params, g_states = vjp((out_cts, state_cts))
            layout = self.layout
            lam = self._pack({p: g_states[pos] for p, pos in layout.hidden_state_pos.items()})
            first = tuple(a[0] for a in args)
            ops = layout.operands(first, param_vals, state_vals)
            step0 = StepTraceData(outvals=[], operands=ops, D={}, df={})
            credit = self.rule.contributions(before, step0, lam, count - 1)
            if self.influence:  # a flat gradient of θ
                return self.executor.influence_layout.add_to(g_params, credit), None, None, None, None, None
            pulled = layout.pull_back(first, param_vals, state_vals, credit)
            return tuple(a + b for a, b in zip(g_params, pulled)), None, None, None, None, None

        run.defvjp(fwd, bwd)
        return run


def _shift(signal: Mapping, signal_prev: Mapping) -> dict:
    """``signal_k + signal_prev_{k+1}`` (the last step keeps its own): a step's bypass signal
    contracts the traces of the step before it."""
    out = dict(signal)
    for g, sp in signal_prev.items():
        nxt = jnp.concatenate([sp[1:], jnp.zeros_like(sp[:1])], axis=0)
        out[g] = out[g] + nxt.astype(out[g].dtype) if g in out else nxt
    return out


def _full(partial: Mapping, like: Mapping) -> dict:
    """``partial`` completed with zeros for the groups of ``like`` it lacks."""
    return {g: partial[g] if g in partial else jnp.zeros_like(v) for g, v in like.items()}
