r"""Hidden groups: hidden states whose dynamics couple them position by position.

Two hidden states belong to one group when, with every ETP primitive's data
input cut (treated as a constant), the new value of one depends on the old
value of the other and both have the same per-position shape ``V`` (the
membrane potential and adaptation current of one neuron). A group stacks its
members' states along a last axis of size ``S``; its per-position Jacobian
blocks ``D[v] = ∂h^t[v] / ∂h^{t-1}[v]`` (``S × S``) drive the D_RTRL traces.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from ..primitives import REGISTRY
from .diagnostics import CompilationRecord, DiagnosticKind, DiagnosticLevel
from .jaxpr_tools import UseDef
from .module_info import ModuleInfo, StateSlot, extract_module_info, path_str
from .positions import propagate_alignment

__all__ = [
    "HiddenGroup",
    "find_hidden_groups_from_minfo",
    "find_hidden_groups_from_module",
    "cut_data_inputs",
]

Path = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class HiddenGroup:
    """The data structure recording a hidden-group relation.

    Attributes
    ----------
    index : int
        Position of the group in the graph.
    hidden_paths : tuple of tuple
        Paths of the member hidden states, in jaxpr order.
    varshape : tuple of int
        Per-position shape ``V`` shared by the members (batch axes included).
    num_state : int
        ``S``, the number of states per position (a ``HiddenGroupState``
        contributes its trailing axis size, a ``HiddenState`` one).
    member_num_states : tuple of int
        States contributed by each member.
    member_state_axis : tuple of bool
        Whether each member carries a trailing state axis.
    elementwise : bool
        Whether the cut transition is position-wise. If not, the exact blocks
        are obtained by probing every position (slower, still exact).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.LSTMCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    LSTMCell(...)
    >>> [g.hidden_paths for g in braintrace.find_hidden_groups_from_module(cell, jnp.zeros(2))]
    [(('h',), ('c',))]
    """

    index: int
    hidden_paths: tuple[Path, ...]
    varshape: tuple[int, ...]
    num_state: int
    member_num_states: tuple[int, ...]
    member_state_axis: tuple[bool, ...]
    elementwise: bool

    def pack(self, values: dict[Path, Any]) -> Any:
        """Stack member values ``{path: array}`` into one ``(*V, S)`` array."""
        parts = []
        for path, ax in zip(self.hidden_paths, self.member_state_axis):
            v = values[path]
            parts.append(v if ax else v[..., None])
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)

    def unpack(self, packed: Any) -> dict[Path, Any]:
        """Inverse of :meth:`pack`."""
        out, start = {}, 0
        for path, n, ax in zip(self.hidden_paths, self.member_num_states, self.member_state_axis):
            piece = packed[..., start : start + n]
            out[path] = piece if ax else piece[..., 0]
            start += n
        return out


def cut_data_inputs(minfo: ModuleInfo):
    """``through(eqn, operand)`` that stops dependence at every ETP data input."""
    eqns = minfo.jaxpr.eqns

    def through(i: int, k: int) -> bool:
        entry = REGISTRY.get(eqns[i].primitive)
        return not (entry is not None and entry.x_invar_index == k)

    return through


def _analyze(minfo: ModuleInfo) -> tuple[tuple[HiddenGroup, ...], tuple[CompilationRecord, ...]]:
    usedef = UseDef(minfo.jaxpr)
    through = cut_data_inputs(minfo)
    hidden = minfo.hidden_slots
    in_var = {s.path: minfo.hidden_in_var(s) for s in hidden}
    out_var = {s.path: minfo.hidden_out_var(s) for s in hidden}

    parent = {s.path: s.path for s in hidden}

    def find(p):
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    records: list[CompilationRecord] = []
    for a in hidden:
        reach = usedef.forward([in_var[a.path]], through=through)
        for b in hidden:
            if b is a or out_var[b.path] not in reach:
                continue
            if a.varshape == b.varshape:
                parent[find(a.path)] = find(b.path)

    members: dict[Path, list[StateSlot]] = {}
    for s in hidden:
        members.setdefault(find(s.path), []).append(s)

    groups = []
    for gi, mem in enumerate(sorted(members.values(), key=lambda m: hidden.index(m[0]))):
        varshape = mem[0].varshape
        sources = {in_var[s.path]: (0, 1 if s.has_state_axis else 0) for s in mem}
        align = propagate_alignment(usedef, sources, varshape, through=through)
        elementwise = all(
            out_var[s.path] not in align or align[out_var[s.path]] == (0, 1 if s.has_state_axis else 0)
            for s in mem
        )
        group = HiddenGroup(
            index=gi,
            hidden_paths=tuple(s.path for s in mem),
            varshape=tuple(varshape),
            num_state=sum(s.num_state for s in mem),
            member_num_states=tuple(s.num_state for s in mem),
            member_state_axis=tuple(s.has_state_axis for s in mem),
            elementwise=elementwise,
        )
        groups.append(group)
        names = ", ".join(f"`{path_str(p)}`" for p in group.hidden_paths)
        if len(mem) > 1:
            records.append(
                CompilationRecord(
                    DiagnosticKind.HIDDEN_GROUP_MERGED,
                    DiagnosticLevel.INFO,
                    f"Hidden states {names} are coupled position by position and form one group "
                    f"of {group.num_state} states per position.",
                    hidden_paths=group.hidden_paths,
                    context={"varshape": group.varshape, "num_state": group.num_state},
                )
            )
        if not elementwise:
            records.append(
                CompilationRecord(
                    DiagnosticKind.HIDDEN_GROUP_NON_ELEMENTWISE,
                    DiagnosticLevel.WARNING,
                    f"The transition of hidden group {names} mixes positions (a reduction, a matrix "
                    "product or a reshape through a plain JAX op). Its per-position Jacobian blocks are "
                    f"computed exactly by probing all {group.num_state * _size(varshape)} entries each "
                    "step, which is slow for large states. If the mixing goes through a weight, use an "
                    "ETP primitive (braintrace.matmul) for it.",
                    hidden_paths=group.hidden_paths,
                    context={"varshape": group.varshape},
                )
            )
    return tuple(groups), tuple(records)


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def find_hidden_groups_from_minfo(minfo: ModuleInfo) -> tuple[HiddenGroup, ...]:
    """Find the hidden groups from the model information.

    Parameters
    ----------
    minfo : ModuleInfo
        From :func:`extract_module_info`.

    Returns
    -------
    tuple of HiddenGroup

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    GRUCell(...)
    >>> info = braintrace.extract_module_info(cell, jnp.zeros(2))
    >>> [g.num_state for g in braintrace.find_hidden_groups_from_minfo(info)]
    [1]
    """
    return _analyze(minfo)[0]


def find_hidden_groups_from_module(model: Any, *args: Any) -> tuple[HiddenGroup, ...]:
    """Find hidden groups from a model (see :func:`find_hidden_groups_from_minfo`).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    GRUCell(...)
    >>> len(braintrace.find_hidden_groups_from_module(cell, jnp.zeros(2)))
    1
    """
    return find_hidden_groups_from_minfo(extract_module_info(model, *args))
