r"""The ``custom_vjp`` machinery shared by every VJP-based learner.

A learner step is a pure function

    (params, states, traces, count, inputs) -> ((outputs, new states), new traces)

whose forward pass runs the model, computes ``D``, ``df`` and the operands, and
updates the traces. Its backward pass receives the cotangents of the outputs
and new states, obtains the instantaneous parameter gradients and the learning
signals ``δ`` from the step's VJP (hidden states of the previous step held
constant: no backpropagation through time), and adds the algorithm's trace
contributions. Parameters reach the ETP operands through parameter-only
computations (reshape, transpose, sign constraints ...); trace contributions
are pulled back through them with ``jax.vjp``.

For a parameter leaf whose every effect goes through covered relations (see
:class:`~braintrace.compiler.HiddenParamOpRelation`) the gradient is the trace
contribution alone; otherwise it is

.. math:: g = \bar\theta_{\rm imm} + \mathrm{pull}\Big(\sum_r c_r\Big) - \mathrm{pull}\Big(\sum_r i_r\Big)

with ``c_r`` the trace contribution and ``i_r`` the instantaneous part of it
(``xy_to_dw(x, Σ_s df ⊙ δ)``), so that paths the traces do not carry keep
their instantaneous gradient. ``i_r`` always uses the true ``δ = ∂L^t/∂h^t``
(the part of ``\bar\theta_{\rm imm}`` it cancels); ``c_r`` uses the signal
returned by the learner's ``_compute_learning_signal`` (a random projection
for e-prop with random feedback or OSTTP).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..compiler import evaluate_step
from ..executor import WindowTraceData
from ..primitives.trace_rules import sum_to_shape
from .loops import window_local, window_unroll
from .residuals import InvariantResiduals, analyse_residuals

__all__ = ["run_learner"]


class _Layout:
    """Where parameters, states, inputs and outputs sit in the step's jaxpr."""

    def __init__(self, learner):
        graph = learner.graph
        minfo = graph.module_info
        self.minfo = minfo
        self.n_args = minfo.num_arg_leaves
        self.n_out = minfo.num_out_leaves
        self.n_invars = len(minfo.jaxpr.invars)
        self.n_outvars = len(minfo.jaxpr.outvars)
        self.param_slots = minfo.param_slots
        self.state_slots = tuple(s for s in minfo.slots if s.role != "param")
        self.param_invars = tuple(i for s in self.param_slots for i in s.invars)
        self.state_invars = tuple(i for s in self.state_slots for i in s.invars)
        self.state_outvars = tuple(k for s in self.state_slots for k in s.outvars)
        covered = graph.covered_params
        self.uncovered = tuple(
            i for s in self.param_slots for key, i in zip(s.leaf_keys, s.invars) if (s.path, key) not in covered
        )
        self.uncovered_pos = tuple(self.param_invars.index(i) for i in self.uncovered)
        self.relations = graph.hidden_param_op_relations
        self.groups = graph.hidden_groups
        leaf_pos = {}
        for s in self.param_slots:
            for key, i in zip(s.leaf_keys, s.invars):
                leaf_pos[(s.path, key)] = i
        self.rel_needs_imm = {
            r.index: any(
                leaf_pos[src] in self.uncovered for _, srcs in r.param_sources for src in srcs
            )
            for r in self.relations
        }
        self.hidden_state_pos = {}
        offset = 0
        for s in self.state_slots:
            if s.role == "hidden":
                self.hidden_state_pos[s.path] = offset
            offset += len(s.invars)

    def assemble(self, arg_vals, param_vals, state_vals) -> list:
        iv: list[Any] = [None] * self.n_invars
        iv[: self.n_args] = list(arg_vals)
        for i, v in zip(self.param_invars, param_vals):
            iv[i] = v
        for i, v in zip(self.state_invars, state_vals):
            iv[i] = v
        return iv

    def outputs(self, outvals) -> tuple[tuple, tuple]:
        return tuple(outvals[: self.n_out]), tuple(outvals[k] for k in self.state_outvars)

    def cotangents(self, out_cts, state_cts) -> list:
        cot: list[Any] = [None] * self.n_outvars
        cot[: self.n_out] = list(out_cts)
        for k, c in zip(self.state_outvars, state_cts):
            cot[k] = c
        return cot

    def operands_fn(self, arg_vals, state_vals):
        """``param_vals -> {relation: {name: operand}}`` (parameter-only computations)."""

        def fn(param_vals):
            iv = self.assemble(arg_vals, param_vals, state_vals)
            _, rec = evaluate_step(self.minfo, iv, record=[r.eqn_index for r in self.relations])
            out = {}
            for r in self.relations:
                eqn = self.minfo.jaxpr.eqns[r.eqn_index]
                index = r.entry.trainable_invars(eqn.params, len(eqn.invars))
                out[r.index] = {n: rec[r.eqn_index][index[n]] for n in r.trainable_names}
            return out

        return fn


def _full_cotangent(template, partial):
    return {
        r: {n: (partial.get(r, {}).get(n) if partial.get(r, {}).get(n) is not None else jnp.zeros_like(v))
            for n, v in names.items()}
        for r, names in template.items()
    }


def _imm_contributions(layout, data, delta):
    """``i_r = xy_to_dw(x, Σ_g Σ_s df ⊙ δ)`` for relations feeding uncovered leaves."""
    out = {}
    for r in layout.relations:
        if not layout.rel_needs_imm[r.index]:
            continue
        eqn = layout.minfo.jaxpr.eqns[r.eqn_index]
        y_shape = tuple(eqn.outvars[r.entry.y_outvar_index].aval.shape)
        dy = None
        for gi in r.hidden_groups:
            term = sum_to_shape(jnp.sum(data.df[(r.index, gi)] * delta[gi], axis=-1), y_shape)
            dy = term if dy is None else dy + term
        ops = data.operands[r.index]
        out[r.index] = r.entry.xy_to_dw(tuple(ops), eqn.params, dy, names=r.trainable_names)
    return out


def _pull_back(layout, arg_vals, param_vals, state_vals, contrib, imm, g_imm):
    fn = layout.operands_fn(arg_vals, state_vals)
    template, pull = jax.vjp(fn, tuple(param_vals))
    (p1,) = pull(_full_cotangent(template, contrib))
    grads = list(p1)
    if layout.uncovered:
        (p2,) = pull(_full_cotangent(template, imm)) if imm else (None,)
        for pos, gi in zip(layout.uncovered_pos, g_imm):
            extra = gi if p2 is None else gi - p2[pos]
            grads[pos] = grads[pos] + extra
    return tuple(grads)


def _deltas(layout, delta_paths):
    return {g.index: g.pack({p: delta_paths[p] for p in g.hidden_paths}) for g in layout.groups}


def _make_single(learner, layout):
    ex = learner.executor

    def forward(param_vals, state_vals, traces, count, arg_vals):
        iv = layout.assemble(arg_vals, param_vals, state_vals)
        data = ex.trace_data(iv)
        new_traces = learner.update_traces(traces, data, count)
        return iv, data, new_traces

    @jax.custom_vjp
    def step(param_vals, state_vals, traces, count, arg_vals, signal):
        _, data, new_traces = forward(param_vals, state_vals, traces, count, arg_vals)
        return layout.outputs(data.outvals), new_traces

    def fwd(param_vals, state_vals, traces, count, arg_vals, signal):
        iv, data, new_traces = forward(param_vals, state_vals, traces, count, arg_vals)
        outvals, vjp = ex.step_vjp(iv, layout.uncovered)
        res = (vjp, data._replace(outvals=[]), new_traces, count, param_vals, state_vals, arg_vals, signal)
        return (layout.outputs(outvals), new_traces), res

    def bwd(res, cts):
        vjp, data, new_traces, count, param_vals, state_vals, arg_vals, signal = res
        (out_cts, state_cts), _ = cts
        g_imm, delta_paths = ex.apply_vjp(vjp, layout.cotangents(out_cts, state_cts))
        true_delta = _deltas(layout, delta_paths)
        delta = learner._compute_learning_signal(
            true_delta,
            data=data,
            count=count,
            out_cts=out_cts,
            signal=signal,
            traces=new_traces,
            invals=layout.assemble(arg_vals, param_vals, state_vals),
        )
        contrib = learner.trace_contributions(new_traces, data, delta, count)
        # the instantaneous part removed from ``g_imm`` is the one ``g_imm`` holds:
        # computed with the true δ, whatever signal the algorithm uses for its traces
        imm = _imm_contributions(layout, data, true_delta) if layout.uncovered else {}
        grads = _pull_back(layout, arg_vals, param_vals, state_vals, contrib, imm, g_imm)
        return grads, None, None, None, None, None

    step.defvjp(fwd, bwd)
    return step


def _make_scan_single(learner, layout):
    single = _get(learner, layout, "single")

    def window(param_vals, state_vals, traces, count, arg_seq, signal_seq):
        def body(carry, inputs):
            args_t, signal_t = inputs
            sv, tr, c = carry
            (outs, sv2), tr2 = single(param_vals, sv, tr, c, args_t, signal_t)
            return (sv2, tr2, c + 1), outs

        (sv, tr, _), outs = jax.lax.scan(
            body, (tuple(state_vals), traces, count), (tuple(arg_seq), signal_seq)
        )
        return (outs, sv), tr

    return window


def _first_operands(layout, first_args, param_vals, state_vals) -> dict:
    iv0 = layout.assemble(first_args, param_vals, state_vals)
    _, rec = evaluate_step(layout.minfo, iv0, record=[r.eqn_index for r in layout.relations])
    return {r.index: rec[r.eqn_index] for r in layout.relations}


def _x_of(layout, operands) -> dict:
    return {
        r.index: operands[r.index][r.entry.x_invar_index]
        for r in layout.relations
        if r.entry.x_invar_index is not None
    }


def _residual_analysis(learner, layout, param_vals, state_vals, first_args) -> InvariantResiduals:
    """Which leaves of a step's linearisation depend on the parameters only (cached per shapes)."""
    ex = learner.executor

    def leaves(pv, sv, args_t):
        iv = layout.assemble(args_t, pv, sv)
        return jax.tree.leaves(ex.step_linearize(iv, layout.uncovered)[1])

    key = tuple(jax.typeof(v) for v in (*param_vals, *state_vals, *first_args))
    cache = learner._fns.setdefault("invariant_residuals", {})
    if key not in cache:
        n_data = len(jax.tree.leaves(tuple(first_args)))
        analysis = analyse_residuals(leaves, param_vals, tuple(state_vals), tuple(first_args), n_data=n_data)
        if any(isinstance(c, jax.core.Tracer) for c in analysis.closed.consts):
            return analysis  # closes over values of an enclosing trace: not reusable
        cache[key] = analysis
    return cache[key]


def _drop_invariants(lin, analysis: InvariantResiduals, shared: dict) -> list:
    """The leaves of a step's linearisation that the scan stacks; the others replaced by ``None``.

    A leaf that depends on the parameters only (e.g. ``W`` or ``W.T`` for the
    tangent ``dx @ W``) is the same at every step: it is not stacked ``K``
    times but computed once (:meth:`InvariantResiduals.values`). A leaf that
    cheap operations compute from the stacked ones and the step's data
    (``1 - tanh(x)`` next to ``tanh(x)``) is recomputed after the scan
    (:meth:`InvariantResiduals.derived_values`). ``shared`` receives the tree
    structure and the analysis, or ``None`` should the leaves not be those
    analysed (then every leaf is stacked).
    """
    leaves, treedef = jax.tree.flatten(lin)
    shared["treedef"] = treedef
    shared["analysis"] = analysis if analysis.matches(leaves) else None
    if shared["analysis"] is None:
        return leaves
    return [leaf if k else None for leaf, k in zip(leaves, analysis.stacked)]


def _structure_key(vjps) -> tuple:
    return jax.tree.structure(vjps), tuple((jnp.shape(v), str(jnp.result_type(v))) for v in jax.tree.leaves(vjps))


def _restore_leaves(learner, vjps, param_vals, arg_seq) -> tuple[Any, list]:
    """``(linearisations, in_axes)`` from ``vjps = (stacked leaves, invariant leaves)`` (``in_axes``: one per leaf):
    the invariant leaves put back unbatched, the derived ones recomputed.

    The structure was recorded by the forward pass in the learner's cache, by
    the structure and shapes of ``vjps`` (a ``custom_vjp`` residual keeps
    arrays only). Derived leaves are computed here for all the window's steps
    at once, from the stacked leaves and the window's data ``arg_seq``.
    """
    stacked, invariant = vjps
    treedef, analysis = learner._fns["window_structures"][_structure_key(vjps)]
    if analysis is None:
        return jax.tree.unflatten(treedef, list(stacked)), [0] * len(stacked)
    derived: Any = iter(())
    if any(analysis.derived):
        kept = [leaf for leaf, k in zip(stacked, analysis.stacked) if k]
        data = jax.tree.leaves(tuple(arg_seq))
        derived = iter(jax.vmap(lambda s, d: analysis.derived_values(param_vals, s, d))(kept, data))
    once = iter(invariant)
    leaves = [next(once) if m else next(derived) if d else leaf
              for leaf, m, d in zip(stacked, analysis.mask, analysis.derived)]
    axes = [None if m else 0 for m in analysis.mask]
    return jax.tree.unflatten(treedef, leaves), axes


def _unroll(arg_seq) -> int:
    return window_unroll(int(jnp.shape(arg_seq[0])[0]) if arg_seq else 1)


def _window_forward(learner, layout, param_vals, state_vals, traces, count, arg_seq, mode):
    """Scan the window's steps: final states, stacked outputs and trace data, traces (and VJPs).

    ``mode``: ``'plain'`` (no derivatives), ``'vjp'`` (each step's
    linearisation is kept: ``vjps = (stacked, invariant)``, its leaves
    stacked on a leading axis, ``None`` where a leaf depends on the
    parameters only (those are computed once) or is derived from the others
    and the data (recomputed after the scan); see :func:`_restore_leaves`) or ``'differentiable'`` (outputs
    differentiable through the whole window; the trace data is computed on
    stopped values).

    Returns ``(states, outputs, seq, vjps, new_traces, aux)``. A learner that
    keeps the default :meth:`~ETraceVjpAlgorithm.window_update` has its traces
    advanced step by step inside this scan (one pass over the window) and every
    step's traces kept as ``aux``; otherwise its ``window_update`` runs on the
    stacked data afterwards.
    """
    ex = learner.executor
    in_scan = mode != "differentiable" and learner.updates_traces_in_scan
    first = tuple(a[0] for a in arg_seq)
    shared: dict[str, Any] = {}
    if mode == "vjp":
        analysis = _residual_analysis(learner, layout, param_vals, state_vals, first)

    def body(carry, args_t):
        sv, tr, c = carry
        iv = layout.assemble(args_t, param_vals, sv)
        vjp = None
        if mode == "differentiable":
            data = ex.trace_data(jax.lax.stop_gradient(iv))
            outvals = ex.forward(iv)
        else:
            data = ex.trace_data(iv)
            outvals = data.outvals
            if mode == "vjp":
                outvals, lin = ex.step_linearize(iv, layout.uncovered)
                vjp = _drop_invariants(lin, analysis, shared)
        if in_scan:
            tr = learner.update_traces(tr, data, c)
        outs, new_sv = layout.outputs(outvals)
        return (new_sv, tr, c + 1), (outs, _x_of(layout, data.operands), data.D, data.df, vjp, tr if in_scan else None)

    carry0 = (tuple(state_vals), dict(traces) if in_scan else None, count)
    (sv, new_traces, _), (outs, xs, D, df, vjps, aux) = jax.lax.scan(body, carry0, tuple(arg_seq), unroll=_unroll(arg_seq))
    xs = window_local(xs)  # slices of the sequence: keep their layout from spreading to all of it
    if mode == "vjp":
        used = shared["analysis"]
        vjps = (vjps, used.values(param_vals) if used is not None and any(used.mask) else [])
        structures = learner._fns.setdefault("window_structures", {})
        structures[_structure_key(vjps)] = (shared["treedef"], used)
    operands = _first_operands(layout, first, param_vals, state_vals)
    seq = WindowTraceData(operands=operands, x=xs, D=D, df=df)
    if not in_scan:
        if mode == "differentiable":
            seq = jax.lax.stop_gradient(seq)
        new_traces, aux = learner.window_update(traces, seq, count)
    return sv, outs, seq, vjps, new_traces, aux


def _make_window(learner, layout):
    """A ``MultiStepData`` window with single-step learning rules, traces advanced once per window.

    The gradient equals the sum of the single steps' online gradients; the
    traces are read and written once per window (see ``window_update`` and
    ``window_contributions`` of the learner), the steps' learning signals are
    computed together.
    """
    ex = learner.executor

    @jax.custom_vjp
    def window(param_vals, state_vals, traces, count, arg_seq, signal_seq):
        sv, outs, _, _, new_traces, _ = _window_forward(
            learner, layout, param_vals, state_vals, traces, count, arg_seq, "plain"
        )
        return (outs, sv), new_traces

    def fwd(param_vals, state_vals, traces, count, arg_seq, signal_seq):
        sv, outs, seq, vjps, new_traces, aux = _window_forward(
            learner, layout, param_vals, state_vals, traces, count, arg_seq, "vjp"
        )
        first = tuple(a[0] for a in arg_seq)
        res = (vjps, seq, traces, aux, count, param_vals, state_vals, first, arg_seq)
        return ((outs, sv), new_traces), res

    def bwd(res, cts):
        vjps, seq, traces, aux, count, param_vals, state_vals, first, arg_seq = res
        (outs_ct, sv_ct), _ = cts
        K = jax.tree.leaves(outs_ct)[0].shape[0] if jax.tree.leaves(outs_ct) else _steps(seq)
        # single-step rule: a step's new states get no cotangent from the next step
        last = jnp.arange(K) == K - 1
        state_ct_seq = tuple(
            jnp.where(last.reshape((K,) + (1,) * jnp.ndim(c)), c[None], jnp.zeros_like(c)[None])
            if c is not None and jnp.issubdtype(jnp.result_type(c), jnp.inexact) else None
            for c in sv_ct
        )
        # the steps are independent (no backpropagation through time): their
        # linearisations are transposed together, parameter gradients summed
        linearised, in_axes = _restore_leaves(learner, vjps, param_vals, arg_seq)
        g_imm, delta_paths = ex.transpose_steps(
            linearised, layout.cotangents(outs_ct, state_ct_seq), [param_vals[pos] for pos in layout.uncovered_pos],
            in_axes=in_axes,
        )
        delta_seq = _deltas(layout, delta_paths)
        contrib = learner.window_contributions(traces, aux, seq, delta_seq, count)
        imm = _window_imm(layout, seq, delta_seq) if layout.uncovered else {}
        grads = _pull_back(layout, first, param_vals, state_vals, contrib, imm, g_imm)
        return grads, None, None, None, None, None

    window.defvjp(fwd, bwd)
    return window


def _steps(seq) -> int:
    for v in list(seq.D.values()) + list(seq.x.values()):
        return int(v.shape[0])
    return 0


def _window_imm(layout, seq, delta_seq):
    """``Σ_k xy_to_dw(x_k, Σ_g Σ_s df_k ⊙ δ_k)`` for relations feeding uncovered leaves."""
    out = {}
    for r in layout.relations:
        if not layout.rel_needs_imm[r.index]:
            continue
        eqn = layout.minfo.jaxpr.eqns[r.eqn_index]
        y_shape = tuple(eqn.outvars[r.entry.y_outvar_index].aval.shape)
        dy = None
        for gi in r.hidden_groups:
            term = jax.vmap(lambda c: sum_to_shape(c, y_shape))(
                jnp.sum(seq.df[(r.index, gi)] * delta_seq[gi], axis=-1)
            )
            dy = term if dy is None else dy + term
        out[r.index] = r.entry.xy_to_dw_seq(
            tuple(seq.operands[r.index]), seq.x.get(r.index), eqn.params, dy, names=r.trainable_names
        )
    return out


def _make_multi(learner, layout):
    """``vjp_method='multi-step'``: exact BPTT inside the window plus trace credit before it."""

    @jax.custom_vjp
    def window(param_vals, state_vals, traces, count, arg_seq, signal_seq):
        sv, outs, _, _, new_traces, _ = _window_forward(
            learner, layout, param_vals, state_vals, traces, count, arg_seq, "plain"
        )
        return (outs, sv), new_traces

    def fwd(param_vals, state_vals, traces, count, arg_seq, signal_seq):
        def W(pv, sv0):
            sv, outs, _, _, new_traces, _ = _window_forward(
                learner, layout, pv, sv0, traces, count, arg_seq, "differentiable"
            )
            return (outs, sv), jax.lax.stop_gradient(new_traces)

        primal, vjp, new_traces = jax.vjp(W, tuple(param_vals), tuple(state_vals), has_aux=True)
        first = tuple(a[0] for a in arg_seq)
        res = (vjp, traces, count, param_vals, state_vals, first)
        return (primal, new_traces), res

    def bwd(res, cts):
        vjp, traces, count, param_vals, state_vals, first = res
        (outs_ct, sv_ct), _ = cts
        g_params, g_sv0 = vjp((outs_ct, sv_ct))
        lam_paths = {p: g_sv0[pos] for p, pos in layout.hidden_state_pos.items()}
        lam = _deltas(layout, lam_paths)
        operands = _first_operands(layout, first, param_vals, state_vals)
        credit = learner.credit_contributions(traces, operands, lam, count)
        fn = layout.operands_fn(first, state_vals)
        template, pull = jax.vjp(fn, tuple(param_vals))
        (p1,) = pull(_full_cotangent(template, credit))
        grads = tuple(a + b for a, b in zip(g_params, p1))
        return grads, None, None, None, None, None

    window.defvjp(fwd, bwd)
    return window


_BUILDERS = {
    "single": _make_single,
    "scan_single": _make_scan_single,
    "window": _make_window,
    "multi": _make_multi,
}


def _get(learner, layout, kind):
    fns = learner._fns
    if kind not in fns:
        fns[kind] = _BUILDERS[kind](learner, layout)
    return fns[kind]


def _layout(learner) -> _Layout:
    if "layout" not in learner._fns:
        learner._fns["layout"] = _Layout(learner)
    return learner._fns["layout"]


def run_learner(learner, data: tuple, multi: bool, signal: Any = ()) -> Any:
    """Run one step (or a window) of ``learner`` and write back states and traces.

    ``signal`` (a pytree, time-major for a window) is handed unchanged to the
    learner's ``_compute_learning_signal`` in the backward pass (e.g. the target
    of target-projection rules).
    """
    layout = _layout(learner)
    arg_vals = tuple(jax.tree.leaves(data))
    param_vals = tuple(leaf for s in layout.param_slots for leaf in jax.tree.leaves(s.state.value))
    state_vals = tuple(leaf for s in layout.state_slots for leaf in jax.tree.leaves(s.state.value))
    traces = {k: st.value for k, st in learner.etraces.items()}
    count = learner.step_count.value
    if multi:
        if learner.vjp_method == "multi-step":
            kind = "multi"
        else:
            kind = "window" if learner.window_fusion else "scan_single"
        steps = int(jnp.shape(arg_vals[0])[0]) if arg_vals else 0
    else:
        kind, steps = "single", 1
    fn = _get(learner, layout, kind)
    (out_leaves, new_states), new_traces = fn(param_vals, state_vals, traces, count, arg_vals, signal)

    pos = 0
    for s in layout.state_slots:
        n = len(s.invars)
        if s.written:
            s.state.value = jax.tree.unflatten(s.treedef, list(new_states[pos : pos + n]))
        pos += n
    for k, st in learner.etraces.items():
        st.value = new_traces[k]
    learner.step_count.value = count + steps
    return jax.tree.unflatten(layout.minfo.out_treedef, list(out_leaves))
