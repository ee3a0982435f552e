"""Input wrappers: one time step or a window of time steps.

Each wrapper holds one payload (any pytree) in ``.data`` and is itself a
pytree node whose only child is the payload, so it crosses ``jax.jit`` and
``jax.grad`` like the payload would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["SingleStepData", "MultiStepData"]


class _StepData:
    """A pytree wrapper of one payload."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    def tree_flatten(self) -> tuple[tuple[Any], None]:
        return (self.data,), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Sequence[Any]) -> Any:
        obj = object.__new__(cls)
        obj.data = children[0]
        return obj

    def __repr__(self) -> str:
        shapes = jax.tree.map(lambda x: tuple(jnp.shape(x)), self.data)
        return f"{type(self).__name__}({shapes})"


@jax.tree_util.register_pytree_node_class
class SingleStepData(_StepData):
    """A container marking input data as belonging to a single time step.

    A learner called with plain arrays treats them as one step; wrapping them in
    ``SingleStepData`` says so explicitly. In a call that also has a
    :class:`MultiStepData` argument, a single-step argument is given to every
    step of the window.

    Parameters
    ----------
    data : pytree
        The step's input (an array or any pytree of arrays).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> d = braintrace.SingleStepData(jnp.zeros(3))
    >>> d.data.shape
    (3,)
    >>> jax.grad(lambda s: (s.data ** 2).sum())(braintrace.SingleStepData(3.0)).data
    Array(6., dtype=float32, weak_type=True)
    """


@jax.tree_util.register_pytree_node_class
class MultiStepData(_StepData):
    """A container marking input data as spanning multiple time steps.

    The first axis of every leaf is time. A learner runs the whole window in
    one ``jax.lax.scan``; with ``vjp_method='multi-step'`` the gradient of the
    window's summed loss is exact inside the window.

    Parameters
    ----------
    data : pytree
        The window's input, every leaf with the same leading time axis ``K``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> w = braintrace.MultiStepData(jnp.zeros((5, 3)))
    >>> w.num_steps
    5
    """

    @property
    def num_steps(self) -> int:
        """``K``, the length of the leading time axis.

        Raises
        ------
        ValueError
            A leaf without a time axis, or leaves with different lengths.
        """
        leaves = jax.tree.leaves(self.data)
        lengths = {int(jnp.shape(x)[0]) for x in leaves if jnp.ndim(x) > 0}
        if not leaves or any(jnp.ndim(x) == 0 for x in leaves) or len(lengths) != 1:
            raise ValueError(
                "MultiStepData: every input must have the same leading time axis; got shapes "
                f"{[tuple(jnp.shape(x)) for x in leaves]}."
            )
        return lengths.pop()
