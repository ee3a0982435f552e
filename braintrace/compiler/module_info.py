"""The compiler's structured view of one model step.

:func:`extract_module_info` traces ``model(*args)`` with
``brainstate.transform.StatefulFunction`` into a flat jaxpr whose inputs are the
step's arguments followed by the values of every state it reads or writes, and
whose outputs are the step's output followed by the states' new values. The
:class:`ModuleInfo` it returns maps every state, by path, to its jaxpr
variables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr

from ..errors import NotSupportedError
from .diagnostics import CompilationRecord, DiagnosticKind, DiagnosticLevel
from .jaxpr_tools import inline_calls

__all__ = ["StateSlot", "ModuleInfo", "extract_module_info"]

Path = tuple[Any, ...]

PARAM, HIDDEN, OTHER = "param", "hidden", "other"


def _key_name(k: Any) -> Any:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return str(k)


def path_str(path: Path) -> str:
    """``('cell', 'h')`` -> ``'cell.h'``."""
    return ".".join(str(p) for p in path) if path else "<root>"


@dataclasses.dataclass(frozen=True, eq=False)
class StateSlot:
    """One state of the step and where its value sits in the jaxpr.

    Attributes
    ----------
    path : tuple
        The state's path in the model (``model.states()`` key).
    state : brainstate.State
        The state object.
    role : str
        ``'param'``, ``'hidden'`` or ``'other'``.
    leaf_keys : tuple of tuple
        Key path of each leaf of the state's value (``()`` for a plain array).
    invars : tuple of int
        Indices into ``jaxpr.invars`` of the value's leaves.
    outvars : tuple of int
        Indices into ``jaxpr.outvars`` of the new value's leaves.
    written : bool
        Whether the step writes the state.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> info = braintrace.extract_module_info(braintrace.nn.Linear(3, 2), jnp.zeros(3))
    >>> slot = info.param_slots[0]
    >>> slot.path, slot.role, slot.leaf_keys, slot.written
    (('weight',), 'param', (('bias',), ('weight',)), False)
    """

    path: Path
    state: Any
    role: str
    treedef: Any
    leaf_keys: tuple[tuple[Any, ...], ...]
    invars: tuple[int, ...]
    outvars: tuple[int, ...]
    written: bool

    @property
    def varshape(self) -> tuple[int, ...]:
        """Per-state shape (a ``HiddenGroupState``'s trailing axis stripped)."""
        shape = tuple(jnp.shape(jax.tree.leaves(self.state.value)[0]))
        return shape[:-1] if self.has_state_axis else shape

    @property
    def has_state_axis(self) -> bool:
        return isinstance(self.state, brainstate.HiddenGroupState)

    @property
    def num_state(self) -> int:
        if self.has_state_axis:
            return int(jnp.shape(jax.tree.leaves(self.state.value)[0])[-1])
        return 1


@dataclasses.dataclass(frozen=True, eq=False)
class ModuleInfo:
    """The model information for the ETrace compiler.

    Attributes
    ----------
    model : brainstate.nn.Module
        The model whose step was traced.
    closed_jaxpr : jax.extend.core.ClosedJaxpr
        The step, with nested ``jit`` calls inlined. Inputs: the argument
        leaves, then each state's leaves in ``slots`` order. Outputs: the
        output leaves, then each state's new leaves in ``slots`` order.
    arg_treedef, out_treedef
        Tree structures of the step's arguments and output.
    slots : tuple of StateSlot
        Every state the step reads or writes, in jaxpr order.
    records : tuple of CompilationRecord
        Diagnostics raised while reading the states (e.g. ``STATE_MISMATCH``).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    GRUCell(...)
    >>> info = braintrace.extract_module_info(cell, jnp.zeros(2))
    >>> [s.path for s in info.hidden_slots]
    [('h',)]
    """

    model: Any
    closed_jaxpr: ClosedJaxpr
    arg_treedef: Any
    out_treedef: Any
    num_arg_leaves: int
    num_out_leaves: int
    slots: tuple[StateSlot, ...]
    records: tuple[CompilationRecord, ...] = ()

    @property
    def jaxpr(self) -> Any:
        # a jax.extend.core.Jaxpr; typed Any: jax types its avals as AbstractValue (no shape)
        return self.closed_jaxpr.jaxpr

    def slots_of(self, role: str) -> tuple[StateSlot, ...]:
        return tuple(s for s in self.slots if s.role == role)

    @property
    def hidden_slots(self) -> tuple[StateSlot, ...]:
        return self.slots_of(HIDDEN)

    @property
    def param_slots(self) -> tuple[StateSlot, ...]:
        return self.slots_of(PARAM)

    @property
    def other_slots(self) -> tuple[StateSlot, ...]:
        return self.slots_of(OTHER)

    def hidden_in_var(self, slot: StateSlot) -> Any:
        return self.jaxpr.invars[slot.invars[0]]

    def hidden_out_var(self, slot: StateSlot) -> Any:
        return self.jaxpr.outvars[slot.outvars[0]]

    def param_leaf_of_invar(self) -> dict[Any, tuple[StateSlot, tuple[Any, ...]]]:
        """``{jaxpr invar: (param slot, leaf key)}`` (valid during one compile pass)."""
        out = {}
        for s in self.param_slots:
            for key, i in zip(s.leaf_keys, s.invars):
                out[self.jaxpr.invars[i]] = (s, key)
        return out


def _state_paths(model) -> dict[int, Path]:
    return {id(st): tuple(path) for path, st in model.states().items()}


def _role(st: Any, path: Path, written: bool, leaves: list, records: list[CompilationRecord]) -> str:
    """``'param'``, ``'hidden'`` or ``'other'`` for a state of the step (a warning record for a
    ``ShortTermState`` used as a recurrent variable)."""
    if isinstance(st, brainstate.ParamState):
        if written:
            raise NotSupportedError(
                f"The step writes the ParamState `{path_str(path)}`. Parameters are read-only "
                "inside `update`; their values change only through the optimizer. Keep values "
                "that the step updates in a brainstate.HiddenState (learned through) or a "
                "brainstate.LongTermState (running statistics)."
            )
        return PARAM
    if isinstance(st, brainstate.HiddenState):
        return HIDDEN
    if type(st) is brainstate.ShortTermState and written and len(leaves) == 1 and jnp.issubdtype(
        jnp.result_type(leaves[0]), jnp.inexact
    ):
        records.append(
            CompilationRecord(
                DiagnosticKind.STATE_MISMATCH,
                DiagnosticLevel.WARNING,
                f"`{path_str(path)}` is a brainstate.ShortTermState that the step reads and "
                "rewrites like a recurrent variable; it is treated as a hidden state so the "
                "weights that reach it learn online. Declare it as brainstate.HiddenState to "
                "make this explicit and silence this warning.",
                hidden_paths=(path,),
            )
        )
        return HIDDEN
    return OTHER


def extract_module_info(model: brainstate.nn.Module, *args: Any) -> ModuleInfo:
    """Extract the model information for the ETrace compiler.

    Parameters
    ----------
    model : brainstate.nn.Module
        A model whose ``__call__``/``update`` advances one time step. Its states
        must be initialised (``brainstate.nn.init_all_states``).
    *args
        Example inputs of one time step (arrays or ``ShapeDtypeStruct``).

    Returns
    -------
    ModuleInfo

    Raises
    ------
    NotSupportedError
        If the step writes a ``ParamState`` (parameters are read-only inside a
        step) or a hidden state whose value is not a single array.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.Linear(3, 2)
    >>> info = braintrace.extract_module_info(layer, jnp.zeros(3))
    >>> [s.path for s in info.param_slots]
    [('weight',)]
    """
    if not isinstance(model, brainstate.nn.Module):
        raise TypeError(
            f"extract_module_info: `model` must be a brainstate.nn.Module, got {type(model).__name__}."
        )
    sf = brainstate.transform.StatefulFunction(lambda *a: model(*a), return_only_write=False)
    sf.make_jaxpr(*args)
    key = sf.get_arg_cache_key(*args)
    closed = sf.get_jaxpr_by_cache(key)
    states = tuple(sf.get_states_by_cache(key))
    written_ids = {id(s) for s in sf.get_write_states_by_cache(key)}
    out_shapes, _ = sf.get_out_shapes_by_cache(key)
    out_treedef = jax.tree.structure(out_shapes)
    arg_leaves, arg_treedef = jax.tree.flatten(args)
    n_args = len(arg_leaves)
    n_out = len(jax.tree.leaves(out_shapes))

    paths = _state_paths(model)
    records: list[CompilationRecord] = []
    slots: list[StateSlot] = []
    in_pos, out_pos = n_args, n_out
    for idx, st in enumerate(states):
        leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(st.value)
        keys = tuple(tuple(_key_name(k) for k in kp) for kp, _ in leaves_with_path)
        n = len(keys)
        path = paths.get(id(st), ("<external>", st.name or idx))
        written = id(st) in written_ids
        role = _role(st, path, written, [leaf for _, leaf in leaves_with_path], records)
        if role == HIDDEN and n != 1:
            raise NotSupportedError(
                f"The hidden state `{path_str(path)}` holds {n} arrays; a hidden state must hold one "
                "array (use one brainstate.HiddenState per variable, or a HiddenGroupState with the "
                "states stacked on the last axis)."
            )
        slots.append(
            StateSlot(
                path=path,
                state=st,
                role=role,
                treedef=treedef,
                leaf_keys=keys,
                invars=tuple(range(in_pos, in_pos + n)),
                outvars=tuple(range(out_pos, out_pos + n)),
                written=written,
            )
        )
        in_pos += n
        out_pos += n

    flat = inline_calls(closed)
    return ModuleInfo(
        model=model,
        closed_jaxpr=flat,
        arg_treedef=arg_treedef,
        out_treedef=out_treedef,
        num_arg_leaves=n_args,
        num_out_leaves=n_out,
        slots=tuple(slots),
        records=tuple(records),
    )
