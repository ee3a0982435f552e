"""The compiled eligibility-trace graph and its entry point.

:func:`compile_etrace_graph` runs the whole compiler on a model step and
bundles the result in an :class:`ETraceGraph`. There is no global cache: each
call traces the step afresh, so a graph always reflects the model's values at
the time of the call (plain array attributes such as ``model.gain`` are
constants of the traced step). A learner keeps the graph it compiled; see
:meth:`braintrace.ETraceAlgorithm.compile_graph`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import brainstate
import jax

from .bypass import bypass_paths
from .control_flow import check_control_flow
from .diagnostics import CompilationRecord, DiagnosticKind, DiagnosticLevel, emit_warnings
from .hidden_groups import HiddenGroup, _analyze as _analyze_groups
from .jaxpr_tools import UseDef, is_literal
from .module_info import ModuleInfo, extract_module_info, path_str
from .perturbation import HiddenPerturbation, add_hidden_perturbation_from_minfo
from .state_shapes import check_state_shapes
from .relations import HiddenParamOpRelation, _analyze as _analyze_relations
from .summed_outputs import summed_output_classes

__all__ = ["ETraceGraph", "compile_etrace_graph"]

Path = tuple[Any, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class ETraceGraph:
    """The overall compiled graph for the eligibility trace.

    Attributes
    ----------
    module_info : ModuleInfo
        The traced step.
    hidden_groups : tuple of HiddenGroup
    hidden_param_op_relations : tuple of HiddenParamOpRelation
        The weights that learn online and the hidden groups they reach.
    hidden_perturbation : HiddenPerturbation
    diagnostics : tuple of CompilationRecord
        Every compiler decision, in the order it was made.
    covered_params : frozenset
        ``(state path, leaf key)`` of parameter leaves whose every effect goes
        through traced relations (their gradient comes from traces alone).
    output_classes : tuple of int
        For each relation, the index of the first relation whose output is
        summed with its own before any other use (its own index if none);
        relations of one class have equal output derivatives ``df``
        (:func:`~braintrace.compiler.summed_outputs.summed_output_classes`).
    bypass_paths : tuple of tuple
        Hidden states whose old value reaches the step's output other than
        through their new value (read before the write); the learners add the
        bypass term ``∂L^t/∂h^{t-1} · ε^{t-1}`` for them
        (:func:`~braintrace.compiler.bypass.bypass_paths`).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(4, 8)
    >>> brainstate.nn.init_all_states(cell, batch_size=2)  # doctest: +ELLIPSIS
    MGUCell(...)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros((2, 4)))
    >>> [r.weight_path for r in graph.hidden_param_op_relations]
    [('Wf', 'weight'), ('Wh', 'weight')]
    """

    module_info: ModuleInfo
    hidden_groups: tuple[HiddenGroup, ...]
    hidden_param_op_relations: tuple[HiddenParamOpRelation, ...]
    hidden_perturbation: HiddenPerturbation
    diagnostics: tuple[CompilationRecord, ...]
    covered_params: frozenset
    output_classes: tuple[int, ...] = ()
    bypass_paths: tuple[Path, ...] = ()

    @property
    def relations(self) -> tuple[HiddenParamOpRelation, ...]:
        """Alias of :attr:`hidden_param_op_relations`."""
        return self.hidden_param_op_relations

    def online_weight_paths(self) -> tuple[Path, ...]:
        """Paths of the ``ParamState``\\ s with at least one online relation."""
        seen: dict[Path, None] = {}
        for r in self.hidden_param_op_relations:
            for _, leaves in r.param_sources:
                for path, _key in leaves:
                    seen.setdefault(path, None)
        return tuple(seen)

    def select(
        self,
        *,
        weight_path: Path | str | None = None,
        hidden_path: Path | str | None = None,
        kind: DiagnosticKind | None = None,
        min_level: DiagnosticLevel = DiagnosticLevel.INFO,
    ) -> tuple[CompilationRecord, ...]:
        """The diagnostics matching all the given filters."""

        def norm(p):
            return p if p is None or isinstance(p, str) else path_str(tuple(p))

        wp, hp = norm(weight_path), norm(hidden_path)
        out = []
        for r in self.diagnostics:
            if kind is not None and r.kind != kind:
                continue
            if r.level < min_level:
                continue
            if wp is not None and (r.weight_path is None or path_str(r.weight_path) != wp):
                continue
            if hp is not None and hp not in {path_str(p) for p in r.hidden_paths}:
                continue
            out.append(r)
        return tuple(out)

    def explain(
        self,
        weight_path: Path | str | None = None,
        hidden_path: Path | str | None = None,
        kind: DiagnosticKind | None = None,
    ) -> str:
        """A readable account of the compiler's decisions, filtered.

        Parameters
        ----------
        weight_path : tuple or str, optional
            A ``ParamState`` path, e.g. ``('Wr', 'weight')`` or ``'Wr.weight'``.
        hidden_path : tuple or str, optional
            A hidden state path.
        kind : DiagnosticKind, optional

        Returns
        -------
        str
            One line per matching record (or a line saying there is none).
        """
        recs = self.select(weight_path=weight_path, hidden_path=hidden_path, kind=kind)
        if not recs:
            return "No compiler record matches these filters."
        return "\n".join(str(r) for r in recs)

    def __repr__(self) -> str:
        lines = [f"ETraceGraph({len(self.hidden_groups)} hidden groups, "
                 f"{len(self.hidden_param_op_relations)} online relations)"]
        for g in self.hidden_groups:
            lines.append(
                f"  group {g.index}: {', '.join(path_str(p) for p in g.hidden_paths)} "
                f"varshape={g.varshape} S={g.num_state}"
            )
        for r in self.hidden_param_op_relations:
            lines.append(
                f"  {path_str(r.weight_path)} --{r.primitive.name}[{', '.join(r.trainable_names)}]--> "
                f"{', '.join(path_str(p) for p in r.hidden_paths)}"
            )
        return "\n".join(lines)


def _coverage(minfo: ModuleInfo, relations: tuple[HiddenParamOpRelation, ...]) -> frozenset:
    jaxpr = minfo.jaxpr
    usedef = UseDef(jaxpr)
    stops: dict[int, set[int]] = {}
    covered_rel = {r.eqn_index: r.covered for r in relations}
    for r in relations:
        entry = r.entry
        index = entry.trainable_invars(jaxpr.eqns[r.eqn_index].params, len(jaxpr.eqns[r.eqn_index].invars))
        stops[r.eqn_index] = {index[n] for n in r.trainable_names}
    passthrough = {k for slot in minfo.param_slots for k in slot.outvars}
    outs = {v for k, v in enumerate(jaxpr.outvars) if not is_literal(v) and k not in passthrough}

    def through(i, k):
        return not (i in stops and k in stops[i])

    covered = set()
    for slot in minfo.param_slots:
        for key, vi in zip(slot.leaf_keys, slot.invars):
            v = jaxpr.invars[vi]
            reach = usedef.forward([v], through=through)
            if reach & outs:
                continue
            used_by = [i for i in stops if any(jaxpr.eqns[i].invars[k] in reach for k in stops[i])]
            if used_by and all(covered_rel[i] for i in used_by):
                covered.add((slot.path, key))
    return frozenset(covered)


def _build(model: Any, args: tuple) -> ETraceGraph:
    minfo = extract_module_info(model, *args)
    check_state_shapes(minfo)
    records = list(minfo.records)
    records += check_control_flow(minfo)
    groups, grecs = _analyze_groups(minfo)
    records += grecs
    relations, rrecs = _analyze_relations(minfo, groups)
    records += rrecs
    bypass, brecs = bypass_paths(minfo)
    records += brecs
    if not minfo.hidden_slots:
        records.append(
            CompilationRecord(
                DiagnosticKind.STATE_MISMATCH,
                DiagnosticLevel.INFO,
                "The model has no brainstate.HiddenState; nothing is learned online and every weight "
                "receives its instantaneous gradient.",
            )
        )
    return ETraceGraph(
        module_info=minfo,
        hidden_groups=groups,
        hidden_param_op_relations=relations,
        hidden_perturbation=add_hidden_perturbation_from_minfo(minfo),
        diagnostics=tuple(records),
        covered_params=_coverage(minfo, relations),
        output_classes=summed_output_classes(minfo.jaxpr, relations),
        bypass_paths=bypass,
    )


def compile_etrace_graph(model: brainstate.nn.Module, *args: Any) -> ETraceGraph:
    """Construct the eligibility-trace graph for a given model and inputs.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; its states must be initialised.
    *args
        Example inputs of one time step.

    Returns
    -------
    ETraceGraph
        A new graph, traced from the model as it is now. Compiler warnings are
        emitted as ``UserWarning``.

    Raises
    ------
    NotSupportedError
        A ``ParamState`` written in the step, or control flow touching weights
        or hidden states.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(3, 4)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros(3))
    >>> len(graph.hidden_param_op_relations)
    1
    """
    graph = _build(model, tuple(args))
    emit_warnings(graph.diagnostics)
    return graph
