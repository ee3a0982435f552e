"""Input wrappers: one time step or a window of time steps."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax

__all__ = ["SingleStepData", "MultiStepData"]


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, init=False)
class SingleStepData:
    """A container marking input data as belonging to a single time step.

    A learner called with plain arrays treats them as one step; wrapping them in
    ``SingleStepData`` says so explicitly.

    Parameters
    ----------
    *data
        The step's positional inputs (arrays or pytrees).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> d = braintrace.SingleStepData(jnp.zeros(3))
    >>> d.data[0].shape
    (3,)
    """

    data: tuple

    def __init__(self, *data: Any) -> None:
        object.__setattr__(self, "data", tuple(data))

    def tree_flatten(self) -> tuple[tuple[tuple[Any, ...]], None]:
        return (self.data,), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Sequence[Any]) -> SingleStepData:
        return cls(*children[0])


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, init=False)
class MultiStepData:
    """A container marking input data as spanning multiple time steps.

    The first axis of every leaf is time. A learner runs the whole window in
    one ``jax.lax.scan``; with ``vjp_method='multi-step'`` the gradient of the
    window's summed loss is exact inside the window.

    Parameters
    ----------
    *data
        The window's positional inputs, each with a leading time axis ``K``.

    Raises
    ------
    ValueError
        If the leaves disagree on the length of the time axis.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> w = braintrace.MultiStepData(jnp.zeros((5, 3)))
    >>> w.num_steps
    5
    """

    data: tuple

    def __init__(self, *data: Any) -> None:
        leaves = jax.tree.leaves(data)
        lengths = {int(jax.numpy.shape(x)[0]) for x in leaves if jax.numpy.ndim(x) > 0}
        if any(jax.numpy.ndim(x) == 0 for x in leaves) or len(lengths) > 1:
            raise ValueError(
                "MultiStepData: every input must have the same leading time axis; got shapes "
                f"{[tuple(jax.numpy.shape(x)) for x in leaves]}."
            )
        object.__setattr__(self, "data", tuple(data))

    @property
    def num_steps(self) -> int:
        leaves = jax.tree.leaves(self.data)
        return int(jax.numpy.shape(leaves[0])[0]) if leaves else 0

    def tree_flatten(self) -> tuple[tuple[tuple[Any, ...]], None]:
        return (self.data,), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Sequence[Any]) -> MultiStepData:
        obj = object.__new__(cls)
        object.__setattr__(obj, "data", tuple(children[0]))
        return obj
