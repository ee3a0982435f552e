r"""Where a step's parameters, states, inputs and outputs sit in its flat jaxpr.

The executor works on flat lists aligned with ``graph.module_info.jaxpr``:
inputs are the argument leaves, then every state's leaves; outputs are the
model's output leaves, then every state's new leaves. :class:`StepLayout`
converts between those lists and the groups a learner step handles
separately: parameter values, the other states' values, the arguments.

It also knows which parameter leaves are *covered* (every effect of the leaf
goes through online relations, so its gradient is the trace contribution
alone) and gives the pull-back of per-relation operand gradients to the
parameter leaves (:meth:`StepLayout.pull_back`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..compiler import ETraceGraph, evaluate_operands

__all__ = ["StepLayout"]

Path = tuple[Any, ...]


class StepLayout:
    """Positions of parameters, states, arguments and outputs in a compiled step.

    Parameters
    ----------
    graph : ETraceGraph
        The compiled graph.
    covered : frozenset, optional
        ``(state path, leaf key)`` of the parameter leaves whose gradient comes
        from the learner's traces alone (default: the graph's
        :attr:`~braintrace.ETraceGraph.covered_params`; the influence learners,
        whose traces hold no instantaneous part, cover none).

    Attributes
    ----------
    param_slots, state_slots : tuple of StateSlot
        The ``ParamState`` slots, and every other state's slot, in jaxpr order.
    uncovered : tuple of int
        Jaxpr input indices of the parameter leaves that are not covered: they
        get their instantaneous gradient from the step's linearisation.
    uncovered_pos : tuple of int
        Their positions among the parameter leaves.
    hidden_state_pos : dict
        ``{hidden path: position of its leaf among the state leaves}``.
    fixed_state_pos : tuple of int
        Positions, among the state leaves, of the leaves of the states the step
        reads but never writes (constant over a window of steps).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.executor import StepLayout
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> layout = StepLayout(braintrace.compile_etrace_graph(cell, jnp.zeros(2)))
    >>> sorted(s.path for s in layout.param_slots), layout.hidden_state_pos
    ([('Wh', 'weight'), ('Wr', 'weight'), ('Wz', 'weight')], {('h',): 0})
    """

    def __init__(self, graph: ETraceGraph, covered: frozenset | None = None) -> None:
        minfo = graph.module_info
        self.graph = graph
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
        covered = graph.covered_params if covered is None else covered
        self.uncovered = tuple(
            i for s in self.param_slots for key, i in zip(s.leaf_keys, s.invars) if (s.path, key) not in covered
        )
        self.uncovered_pos = tuple(self.param_invars.index(i) for i in self.uncovered)
        self.relations = graph.hidden_param_op_relations
        self.groups = graph.hidden_groups
        leaf_invar = {(s.path, key): i for s in self.param_slots for key, i in zip(s.leaf_keys, s.invars)}
        #: ``{relation index: whether it feeds an uncovered leaf}`` (its instantaneous part is removed from it)
        self.rel_needs_imm = {
            r.index: any(leaf_invar[src] in self.uncovered for _, srcs in r.param_sources for src in srcs)
            for r in self.relations
        }
        self.hidden_state_pos: dict[Path, int] = {}
        fixed: list[int] = []
        offset = 0
        for s in self.state_slots:
            if s.role == "hidden":
                self.hidden_state_pos[s.path] = offset
            if not s.written:
                fixed.extend(range(offset, offset + len(s.invars)))
            offset += len(s.invars)
        self.fixed_state_pos = tuple(fixed)

    # -- flat lists ------------------------------------------------------------
    def assemble(self, arg_vals: Sequence[Any], param_vals: Sequence[Any], state_vals: Sequence[Any]) -> list:
        """The jaxpr's input list from arguments, parameter leaves and state leaves."""
        iv: list[Any] = [None] * self.n_invars
        iv[: self.n_args] = list(arg_vals)
        for i, v in zip(self.param_invars, param_vals):
            iv[i] = v
        for i, v in zip(self.state_invars, state_vals):
            iv[i] = v
        return iv

    def outputs(self, outvals: Sequence[Any]) -> tuple[tuple, tuple]:
        """``(model output leaves, new state leaves)`` from the jaxpr's output list."""
        return tuple(outvals[: self.n_out]), tuple(outvals[k] for k in self.state_outvars)

    def cotangents(self, out_cts: Sequence[Any], state_cts: Sequence[Any]) -> list:
        """The jaxpr's output cotangent list (``None`` where there is none)."""
        cot: list[Any] = [None] * self.n_outvars
        cot[: self.n_out] = list(out_cts)
        for k, c in zip(self.state_outvars, state_cts):
            cot[k] = c
        return cot

    def param_values(self) -> tuple:
        """The parameter leaves' current values (from the states)."""
        return tuple(leaf for s in self.param_slots for leaf in jax.tree.leaves(s.state.value))

    def state_values(self) -> tuple:
        """The other states' leaves' current values."""
        return tuple(leaf for s in self.state_slots for leaf in jax.tree.leaves(s.state.value))

    def write_states(self, new_states: Sequence[Any]) -> None:
        """Write the step's new state leaves back into the states it writes."""
        pos = 0
        for s in self.state_slots:
            n = len(s.invars)
            if s.written:
                s.state.value = jax.tree.unflatten(s.treedef, list(new_states[pos: pos + n]))
            pos += n

    # -- operands and the pull-back to parameters ---------------------------------
    def operands(self, arg_vals: Sequence[Any], param_vals: Sequence[Any], state_vals: Sequence[Any]) -> dict:
        """``{relation index: operands of its ETP equation}`` of one step."""
        iv = self.assemble(arg_vals, param_vals, state_vals)
        rec = evaluate_operands(self.minfo, iv, [r.eqn_index for r in self.relations])
        return {r.index: rec[r.eqn_index] for r in self.relations}

    def _trainable_operands(self, arg_vals, state_vals):
        """``param_vals -> {relation: {name: operand}}`` (the parameter-only computations)."""

        index = {}
        for r in self.relations:
            eqn = self.minfo.jaxpr.eqns[r.eqn_index]
            index[r.index] = r.entry.trainable_invars(eqn.params, len(eqn.invars))
        positions = {r.eqn_index: [index[r.index][n] for n in r.trainable_names] for r in self.relations}

        def fn(param_vals):
            iv = self.assemble(arg_vals, param_vals, state_vals)
            ops = evaluate_operands(self.minfo, iv, [r.eqn_index for r in self.relations], positions)
            return {
                r.index: {n: ops[r.eqn_index][index[r.index][n]] for n in r.trainable_names} for r in self.relations
            }

        return fn

    def pull_back(
        self,
        arg_vals: Sequence[Any],
        param_vals: Sequence[Any],
        state_vals: Sequence[Any],
        contrib: Mapping[int, Mapping[str, Any]],
        imm: Mapping[int, Mapping[str, Any]] | None = None,
        g_imm: Sequence[Any] = (),
    ) -> tuple:
        r"""Parameter-leaf gradients from per-relation operand gradients.

        .. math:: g = \bar\theta_{\rm imm} + \mathrm{pull}\Big(\sum_r c_r\Big) - \mathrm{pull}\Big(\sum_r i_r\Big)

        ``contrib`` (``c_r``) are the trace contributions, ``imm`` (``i_r``)
        their instantaneous parts for relations feeding uncovered leaves, and
        ``g_imm`` the instantaneous gradients of the uncovered leaves (in
        :attr:`uncovered` order). Parameters reach the operands through
        parameter-only computations (reshape, transpose, sign constraints), which
        ``jax.vjp`` pulls the gradients back through.
        """
        template, pull = jax.vjp(self._trainable_operands(arg_vals, state_vals), tuple(param_vals))
        (p1,) = pull(_full_cotangent(template, contrib))
        grads = list(p1)
        if self.uncovered:
            (p2,) = pull(_full_cotangent(template, imm)) if imm else (None,)
            for pos, gi in zip(self.uncovered_pos, g_imm):
                grads[pos] = grads[pos] + (gi if p2 is None else gi - p2[pos])
        return tuple(grads)


def _full_cotangent(template: Mapping, partial: Mapping) -> dict:
    return {
        r: {n: (partial.get(r, {}).get(n) if partial.get(r, {}).get(n) is not None else jnp.zeros_like(v))
            for n, v in names.items()}
        for r, names in template.items()
    }
