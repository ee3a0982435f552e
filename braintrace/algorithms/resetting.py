"""Resetting a model's states before a sequence, including states no module knows how to reset.

``brainstate.nn.reset_all_states(model, batch_size)`` calls every module's
``reset_state``. A state created in ``__init__`` of a module that defines no
``reset_state`` (the README's hand-written RNN) is left as it is: a second
sequence would silently start from where the first ended. :func:`reset_model`
resets what the modules reset and restores the others to a snapshot taken
when the learner was compiled, or refuses, naming the state, when there is no
snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import brainstate
import jax

from ..compiler.module_info import path_str
from ..errors import NotSupportedError
from ..primitives import StructureState

__all__ = ["unresettable_states", "reset_model"]

Path = tuple[Any, ...]


def _owner(nodes: Mapping[Path, Any], path: Path) -> Any:
    """The module holding the state at ``path`` (the longest module path that prefixes it)."""
    for cut in range(len(path) - 1, -1, -1):
        if tuple(path[:cut]) in nodes:
            return nodes[tuple(path[:cut])]
    return None


def unresettable_states(model: brainstate.nn.Module) -> dict[Path, brainstate.State]:
    """The non-parameter states whose module defines no ``reset_state``.

    A :class:`~braintrace.primitives.StructureState` (a fixed pattern, never
    written) needs no reset and is not among them.

    Parameters
    ----------
    model : brainstate.nn.Module

    Returns
    -------
    dict
        ``{state path: state}``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.resetting import unresettable_states
    >>> class Plain(brainstate.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.h = brainstate.HiddenState(jnp.zeros(2))
    >>> list(unresettable_states(Plain())), list(unresettable_states(braintrace.nn.GRUCell(2, 3)))
    ([('h',)], [])
    """
    nodes = {tuple(p): m for p, m in model.nodes().items()}
    out = {}
    for path, st in model.states().items():
        if isinstance(st, (brainstate.ParamState, StructureState)):
            continue
        owner = _owner(nodes, tuple(path))
        if owner is None or type(owner).reset_state is brainstate.nn.Module.reset_state:
            out[tuple(path)] = st
    return out


def reset_model(
    model: brainstate.nn.Module,
    batch_size: int | None,
    snapshot: Mapping[Path, Any] | None = None,
    *,
    owner: str = "reset",
) -> None:
    """Reset every non-parameter state of ``model``.

    States whose module defines ``reset_state`` are reset by it (with
    ``batch_size``); the others are restored from ``snapshot`` (``{path:
    value}``).

    Raises
    ------
    NotSupportedError
        A state that no module resets and ``snapshot`` does not hold.
    """
    missing = [p for p in unresettable_states(model) if snapshot is None or p not in snapshot]
    if missing:
        names = ", ".join(f"`{path_str(p)}`" for p in missing)
        raise NotSupportedError(
            f"{owner}: cannot reset {names}: the module holding it defines no `reset_state`, so "
            "brainstate.nn.reset_all_states leaves it as it is and every sequence would start where the last "
            "one ended. Give the module `init_state(self, batch_size=None, **kwargs)` and "
            "`reset_state(self, batch_size=None, **kwargs)` that create and reset it (see brainstate.nn.GRUCell), "
            "or pass reset=False and set the state yourself."
        )
    brainstate.nn.reset_all_states(model, batch_size=batch_size)
    states = model.states()
    for path in unresettable_states(model):
        states[path].value = jax.tree.map(lambda v: v, snapshot[path])  # type: ignore[index]
