r"""Hidden perturbations: the rewrite that yields the learning signal ``δ = ∂L/∂h``.

A zero perturbation ``p`` is added to every hidden state's new value; the
readout and the returned state values are recomputed from ``h^t + p``. The
cotangent of ``p`` under ``jax.vjp`` is the learning signal ``δ^t``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from .evaluation import evaluate_step
from .hidden_groups import find_hidden_groups_from_minfo
from .module_info import ModuleInfo, extract_module_info

__all__ = ["HiddenPerturbation", "add_hidden_perturbation_from_minfo", "add_hidden_perturbation_in_module"]

Path = tuple[Any, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class HiddenPerturbation:
    """The hidden-perturbation information.

    Attributes
    ----------
    minfo : ModuleInfo
        The traced step.
    hidden_paths : tuple of tuple
        Paths of the perturbed hidden states.
    shapes : tuple of tuple of int
        Shape (and dtype) of each perturbation.
    groups : tuple of tuple
        The hidden groups' paths: a group's learning signal lets the other
        groups respond within the step and holds its own other states fixed.

    Examples
    --------
    >>> import brainstate, jax, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    GRUCell(...)
    >>> pert = braintrace.add_hidden_perturbation_in_module(cell, jnp.zeros(2))
    >>> pert.hidden_paths
    (('h',),)
    >>> [p.shape for p in pert.zeros().values()]
    [(3,)]
    """

    minfo: ModuleInfo
    hidden_paths: tuple[Path, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]
    groups: tuple[tuple[Path, ...], ...] = ()

    def zeros(self) -> dict[Path, Any]:
        """Zero perturbations ``{path: zeros}``."""
        return {p: jnp.zeros(s, d) for p, s, d in zip(self.hidden_paths, self.shapes, self.dtypes)}

    def apply(self, invals: Sequence[Any], perturbations: Mapping[Path, Any]) -> list[Any]:
        """Evaluate the step with ``perturbations`` added to the hidden states' new values."""
        groups = self.groups or None
        return evaluate_step(self.minfo, invals, hidden_perturb=perturbations, perturb_groups=groups)[0]


def add_hidden_perturbation_from_minfo(minfo: ModuleInfo) -> HiddenPerturbation:
    """Add hidden-state perturbations from a ModuleInfo (see :class:`HiddenPerturbation`).

    Parameters
    ----------
    minfo : ModuleInfo
        The traced step (:func:`braintrace.extract_module_info`).

    Returns
    -------
    HiddenPerturbation
        One perturbation per hidden state, shaped like its new value.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.LSTMCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    LSTMCell(...)
    >>> info = braintrace.extract_module_info(cell, jnp.zeros(2))
    >>> braintrace.add_hidden_perturbation_from_minfo(info).shapes
    ((3,), (3,))
    """
    slots = minfo.hidden_slots
    outs = [minfo.hidden_out_var(s) for s in slots]
    return HiddenPerturbation(
        minfo=minfo,
        hidden_paths=tuple(s.path for s in slots),
        shapes=tuple(tuple(v.aval.shape) for v in outs),
        dtypes=tuple(v.aval.dtype for v in outs),
        groups=tuple(g.hidden_paths for g in find_hidden_groups_from_minfo(minfo)),
    )


def add_hidden_perturbation_in_module(model: Any, *args: Any) -> HiddenPerturbation:
    """Add hidden-state perturbations from a model (see :class:`HiddenPerturbation`).

    Parameters
    ----------
    model : brainstate.nn.Module
        The model, its states initialised.
    *args
        Inputs of one time step.

    Returns
    -------
    HiddenPerturbation

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell, batch_size=4)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> pert = braintrace.add_hidden_perturbation_in_module(cell, jnp.zeros((4, 2)))
    >>> pert.hidden_paths, pert.shapes
    ((('h',),), ((4, 3),))
    """
    return add_hidden_perturbation_from_minfo(extract_module_info(model, *args))
