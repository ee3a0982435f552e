r"""Hidden–parameter–operation relations: which weight feeds which hidden group.

A relation says "the trainable inputs of ETP equation ``e`` come from these
``ParamState`` leaves, and its output ``y`` reaches hidden group ``g`` through a
non-parametric, position-wise tail". For each relation the learners keep an
eligibility trace per reached group.

Rules (DESIGN.md section 3 and the limitations guide):

* trainable inputs are traced back to ``ParamState`` leaves through any
  parameter-only computation (reshape, transpose, ``abs``, standardisation,
  dict leaves); one that depends on data or on no parameter is a constant;
* the output is walked forward; a path entering another ETP primitive that is
  not ``gradient_enabled`` is blocked (weight → weight → hidden);
* a reached group must have a per-position shape whose suffix is ``y``'s shape,
  and the tail must be position-wise.

Weights that end up in no relation still receive their instantaneous gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..primitives import REGISTRY, ETPPrimitive
from .diagnostics import CompilationRecord, DiagnosticKind, DiagnosticLevel
from .hidden_groups import HiddenGroup
from .hidden_groups import _analyze as _analyze_groups
from .jaxpr_tools import UseDef, is_literal
from .module_info import ModuleInfo, extract_module_info, path_str
from .positions import layout_of, propagate_alignment

__all__ = [
    "HiddenParamOpRelation",
    "find_hidden_param_op_relations_from_minfo",
    "find_hidden_param_op_relations_from_module",
]

Path = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class HiddenParamOpRelation:
    """Connection between an ETP primitive, its trainable parameters, and hidden states.

    Attributes
    ----------
    index : int
        Position of the relation in the graph.
    eqn_index : int
        Index of the ETP equation in the graph's (flat) jaxpr.
    primitive : jax.extend.core.Primitive
        The ETP primitive (registry entry: ``braintrace.primitives.REGISTRY.get(primitive)``).
    weight_path : tuple
        Path of the ``ParamState`` behind the main trainable input.
    trainable_names : tuple of str
        Trainable inputs of the equation that come from ``ParamState`` leaves.
    param_sources : tuple of tuple
        ``(name, ((state path, leaf key), ...))`` per trainable name: the
        parameter leaves that input is computed from.
    hidden_groups : tuple of int
        Indices of the hidden groups the output reaches through its tail.
    hidden_paths : tuple of tuple
        Paths of the hidden states of those groups.
    x_shape, y_shape : tuple of int
        Shapes of the data input (``()`` if none) and of the output.
    covered : bool
        Whether every effect of ``y`` on the step's outputs passes through the
        traced hidden groups (then the trace alone gives the gradient).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    GRUCell(...)
    >>> rels = braintrace.find_hidden_param_op_relations_from_module(cell, jnp.zeros(2))
    >>> sorted(r.weight_path for r in rels)
    [('Wh', 'weight'), ('Wz', 'weight')]
    """

    index: int
    eqn_index: int
    primitive: Any
    weight_path: Path
    trainable_names: tuple[str, ...]
    param_sources: tuple[tuple[str, tuple[tuple[Path, tuple[Any, ...]], ...]], ...]
    hidden_groups: tuple[int, ...]
    hidden_paths: tuple[Path, ...]
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    covered: bool

    @property
    def entry(self) -> ETPPrimitive:
        entry = REGISTRY.get(self.primitive)
        assert entry is not None  # relations are built for registered primitives only
        return entry


def _weight_label(prim_name: str, path: Path | None) -> str:
    return f"ETP primitive {prim_name} (weight=`{path_str(path)}`)" if path else f"ETP primitive {prim_name}"


def _analyze(
    minfo: ModuleInfo, groups: tuple[HiddenGroup, ...]
) -> tuple[tuple[HiddenParamOpRelation, ...], tuple[CompilationRecord, ...]]:
    finder = _RelationFinder(minfo, groups)
    for ei, eqn in enumerate(minfo.jaxpr.eqns):
        entry = REGISTRY.get(eqn.primitive)
        if entry is not None:
            finder.examine(ei, eqn, entry)
    return tuple(finder.relations), tuple(finder.records)


def _paths_text(paths) -> str:
    return ", ".join("`" + path_str(p) + "`" for p in paths)


class _RelationFinder:
    """One compile pass over a step's ETP equations: the relations found and the records of every decision."""

    def __init__(self, minfo: ModuleInfo, groups: tuple[HiddenGroup, ...]) -> None:
        jaxpr = minfo.jaxpr
        self.minfo, self.groups, self.jaxpr = minfo, groups, jaxpr
        self.usedef = UseDef(jaxpr)
        self.param_of = minfo.param_leaf_of_invar()
        self.nonparam_invars = {v for v in jaxpr.invars if v not in self.param_of}
        self.hidden_out = {minfo.hidden_out_var(s): s.path for s in minfo.hidden_slots}
        self.non_hidden_out = {v for v in jaxpr.outvars if not is_literal(v) and v not in self.hidden_out}
        self.records: list[CompilationRecord] = []
        self.relations: list[HiddenParamOpRelation] = []

    def is_blocking(self, i: int) -> bool:
        entry = REGISTRY.get(self.jaxpr.eqns[i].primitive)
        return entry is not None and not entry.gradient_enabled

    def flows(self, i: int, k: int) -> bool:
        return not self.is_blocking(i)

    def examine(self, ei: int, eqn: Any, entry: ETPPrimitive) -> None:
        """Decide whether equation ``ei`` is a relation; record why or why not."""
        name = entry.name
        names, sources = self._trainable_sources(eqn, entry)
        if not names:
            self.records.append(CompilationRecord(
                DiagnosticKind.RELATION_EXCLUDED_NO_PARAMSTATE, DiagnosticLevel.INFO,
                f"ETP primitive {name} has no trainable input coming from a ParamState; "
                "there is nothing to learn online.",
                primitive=name,
            ))
            return
        main = dict(sources).get("weight", sources[0][1])
        weight_path = main[0][0]
        label = _weight_label(name, weight_path)
        y = eqn.outvars[entry.y_outvar_index]
        reach_direct = self._reach(ei, y, name, label, weight_path)
        if reach_direct is None:
            return
        target_groups = self._target_groups(y, name, label, weight_path)
        if not target_groups:
            return
        self._record_partial_paths(ei, reach_direct, name, label, weight_path)
        rel = HiddenParamOpRelation(
            index=len(self.relations),
            eqn_index=ei,
            primitive=eqn.primitive,
            weight_path=weight_path,
            trainable_names=tuple(names),
            param_sources=tuple(sources),
            hidden_groups=tuple(g.index for g in target_groups),
            hidden_paths=tuple(p for g in target_groups for p in g.hidden_paths),
            x_shape=tuple(eqn.invars[entry.x_invar_index].aval.shape) if entry.x_invar_index is not None else (),
            y_shape=tuple(y.aval.shape),
            covered=self._covered(ei, y, target_groups),
        )
        self.relations.append(rel)
        self.records.append(CompilationRecord(
            DiagnosticKind.RELATION_INCLUDED, DiagnosticLevel.INFO,
            f"{label} learns online through {_paths_text(rel.hidden_paths)}.",
            primitive=name, weight_path=weight_path, hidden_paths=rel.hidden_paths,
            context={"trainable": rel.trainable_names},
        ))

    def _trainable_sources(self, eqn: Any, entry: ETPPrimitive) -> tuple[list[str], list]:
        """The trainable inputs computed from ``ParamState`` leaves only, and those leaves."""
        names: list[str] = []
        sources: list[tuple[str, tuple[tuple[Path, tuple[Any, ...]], ...]]] = []
        for tname, k in entry.trainable_invars(eqn.params, len(eqn.invars)).items():
            var = eqn.invars[k]
            deps: set[Any] = set() if is_literal(var) else self.usedef.backward([var])
            leaves = sorted({(self.param_of[v][0].path, self.param_of[v][1]) for v in deps if v in self.param_of}, key=str)
            data_dep = any(v in self.nonparam_invars for v in deps)
            if not leaves or data_dep:
                why = "depends on the step's inputs or states" if data_dep else "is not computed from any ParamState"
                self.records.append(CompilationRecord(
                    DiagnosticKind.TRAINABLE_INVAR_NOT_PARAMSTATE,
                    DiagnosticLevel.WARNING if not data_dep else DiagnosticLevel.INFO,
                    f"The `{tname}` input of ETP primitive {entry.name} {why}; it is treated as a constant "
                    "and receives no gradient. To learn it, store it in a brainstate.ParamState and "
                    "read `.value` inside update.",
                    primitive=entry.name,
                    weight_path=leaves[0][0] if leaves else None,
                    context={"input": tname, "shape": tuple(getattr(var.aval, "shape", ()))},
                ))
                continue
            names.append(tname)
            sources.append((tname, tuple(leaves)))
        return names, sources

    def _reach(self, ei: int, y: Any, name: str, label: str, weight_path: Path) -> set | None:
        """What ``y`` reaches without passing another trainable primitive; ``None`` (recorded) if no hidden state."""
        usedef, hidden_out = self.usedef, self.hidden_out
        reach_all = usedef.forward([y])
        reach_direct = usedef.forward([y], through=self.flows)
        hidden_all = {hidden_out[v] for v in reach_all if v in hidden_out}
        if not hidden_all:
            self.records.append(CompilationRecord(
                DiagnosticKind.RELATION_EXCLUDED_NON_TEMPORAL, DiagnosticLevel.INFO,
                f"{label} has no connected hidden state; it is not learned online and receives "
                "its instantaneous gradient.",
                primitive=name, weight_path=weight_path,
            ))
            return None
        if not any(v in hidden_out for v in reach_direct):
            via = sorted({
                self.jaxpr.eqns[i].primitive.name
                for v in reach_all for i, _ in usedef.consumers.get(v, ()) if self.is_blocking(i) and i != ei
            }) or [name]
            self.records.append(CompilationRecord(
                DiagnosticKind.RELATION_EXCLUDED_WEIGHT_TO_WEIGHT, DiagnosticLevel.WARNING,
                f"{label} reaches a hidden state only through another trainable ETP primitive "
                f"({', '.join(via)}). Per the non-parametric-tail invariant this weight is not learned "
                "online: it receives its instantaneous gradient only. Learn it by BPTT or rewire the "
                "architecture so its output flows directly into a hidden state.",
                primitive=name, weight_path=weight_path, hidden_paths=tuple(sorted(hidden_all, key=str)),
            ))
            return None
        return reach_direct

    def _target_groups(self, y: Any, name: str, label: str, weight_path: Path) -> list[HiddenGroup]:
        """The groups ``y`` reaches through its own position-wise tail (the others recorded)."""
        y_shape = tuple(y.aval.shape)
        out: list[HiddenGroup] = []
        for g in self.groups:
            gpaths = tuple(g.hidden_paths)
            # the group's own tail: other groups' new values are not walked through
            # (their responses reach the loss through this group's learning signal)
            others = {v for v, p in self.hidden_out.items() if p not in gpaths}
            reach_g = self.usedef.forward([y], through=self.flows, stop=others)
            if not any(v in reach_g for v, p in self.hidden_out.items() if p in gpaths):
                continue
            y_align = layout_of(y_shape, g.varshape, False)
            if y_align is None:
                self.records.append(CompilationRecord(
                    DiagnosticKind.RELATION_EXCLUDED_SHAPE_MISMATCH, DiagnosticLevel.WARNING,
                    f"{label} produces shape {y_shape}, which does not align with the hidden state(s) "
                    f"{_paths_text(gpaths)} of per-position shape {g.varshape}; this path is not learned online "
                    "(instantaneous gradient only). Make the primitive's output shape match the hidden state "
                    "(no slicing in between).",
                    primitive=name, weight_path=weight_path, hidden_paths=gpaths,
                    context={"y_shape": y_shape, "varshape": g.varshape},
                ))
                continue
            align = propagate_alignment(self.usedef, {y: y_align}, g.varshape, through=self.flows, stop=others)
            members = {self.minfo.hidden_out_var(s): s for s in self.minfo.hidden_slots if s.path in gpaths}
            if not all(v not in align or align[v] == (0, 1 if s.has_state_axis else 0) for v, s in members.items()):
                self.records.append(CompilationRecord(
                    DiagnosticKind.RELATION_EXCLUDED_NON_ELEMENTWISE_TAIL, DiagnosticLevel.WARNING,
                    f"{label} reaches {_paths_text(gpaths)} through operations that mix positions (a reduction, "
                    "a plain matrix product, a slice or reshape); this path is not learned online "
                    "(instantaneous gradient only).",
                    primitive=name, weight_path=weight_path, hidden_paths=gpaths,
                ))
                continue
            out.append(g)
        return out

    def _covered(self, ei: int, y: Any, target_groups: list[HiddenGroup]) -> bool:
        """Whether every path from ``y`` to the step's outputs first reaches a traced hidden state
        (whose learning signal carries everything downstream of it) without passing another
        trainable primitive on the way (``df``, taken with those data inputs cut, would miss it)."""
        traced_paths = {p for g in target_groups for p in g.hidden_paths}
        traced_vars = {v for v, p in self.hidden_out.items() if p in traced_paths}
        first = self.usedef.forward([y], stop=traced_vars)
        outputs = self.non_hidden_out | set(self.hidden_out)
        blocked_first = any(
            i != ei and self.is_blocking(i) for v in first - traced_vars for i, _ in self.usedef.consumers.get(v, ())
        )
        return not ((first & outputs) - traced_vars) and not blocked_first

    def _record_partial_paths(self, ei: int, reach_direct: set, name: str, label: str, weight_path: Path) -> None:
        usedef, hidden_out = self.usedef, self.hidden_out
        blockers = {
            i for v in reach_direct for i, _ in usedef.consumers.get(v, ())
            if i != ei and self.is_blocking(i) and any(o in hidden_out for o in usedef.forward(self.jaxpr.eqns[i].outvars))
        }
        if not blockers:
            return
        via = sorted({self.jaxpr.eqns[i].primitive.name for i in blockers})
        reached = sorted(
            {hidden_out[o] for i in blockers for o in usedef.forward(self.jaxpr.eqns[i].outvars) if o in hidden_out},
            key=str,
        )
        self.records.append(CompilationRecord(
            DiagnosticKind.RELATION_PARTIAL_PATH, DiagnosticLevel.INFO,
            f"{label} also reaches {_paths_text(reached)} through another trainable ETP primitive "
            f"({', '.join(via)}); those paths contribute their instantaneous gradient only.",
            primitive=name, weight_path=weight_path, hidden_paths=tuple(reached),
        ))


def find_hidden_param_op_relations_from_minfo(
    minfo: ModuleInfo, hidden_groups: tuple[HiddenGroup, ...] | None = None
) -> tuple[HiddenParamOpRelation, ...]:
    """Find ETP relations from a ModuleInfo.

    Parameters
    ----------
    minfo : ModuleInfo
        From :func:`extract_module_info`.
    hidden_groups : tuple of HiddenGroup, optional
        Precomputed groups (computed if omitted).

    Returns
    -------
    tuple of HiddenParamOpRelation

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.Linear(3, 2)   # no hidden state: no relation
    >>> info = braintrace.extract_module_info(layer, jnp.zeros(3))
    >>> braintrace.find_hidden_param_op_relations_from_minfo(info)
    ()
    """
    if hidden_groups is None:
        hidden_groups = _analyze_groups(minfo)[0]
    return _analyze(minfo, hidden_groups)[0]


def find_hidden_param_op_relations_from_module(model: Any, *args: Any) -> tuple[HiddenParamOpRelation, ...]:
    """Find ETP relations from a model (see :func:`find_hidden_param_op_relations_from_minfo`).

    Parameters
    ----------
    model : brainstate.nn.Module
        The model, its states initialised.
    *args
        Inputs of one time step.

    Returns
    -------
    tuple of HiddenParamOpRelation
        One per (ETP equation, weight) that learns online.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    MGUCell(...)
    >>> [r.weight_path for r in braintrace.find_hidden_param_op_relations_from_module(cell, jnp.zeros(2))]
    [('Wf', 'weight'), ('Wh', 'weight')]
    """
    return find_hidden_param_op_relations_from_minfo(extract_module_info(model, *args))
