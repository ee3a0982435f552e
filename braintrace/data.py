r"""Input wrappers: one time step or a window of time steps.

A learner's positional arguments are the model's inputs. Each may be a plain
array (or pytree), a :class:`SingleStepData` or a :class:`MultiStepData`; the
wrappers hold exactly one payload, ``.data``, which is passed to the model as
that argument. Plain values and ``SingleStepData`` are one time step. If any
argument is a ``MultiStepData``, the call is a window of ``K`` steps: every
``MultiStepData`` payload carries the time axis first (all of length ``K``),
the other arguments are used unchanged at every step, and the outputs come
back stacked along a leading axis of length ``K``.

Both wrappers are pytree nodes whose only child is the payload, so they pass
through ``jax.jit``, ``jax.grad`` and ``jax.tree.map`` and come back as the same
wrapper class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

__all__ = ["ETraceInputData", "SingleStepData", "MultiStepData", "unwrap_step_args"]


class ETraceInputData:
    """Base class of :class:`SingleStepData` and :class:`MultiStepData`: one payload, a pytree node.

    Parameters
    ----------
    data : pytree
        The payload (an array, a scalar or any pytree); stored unchanged as
        ``.data`` and never validated here.

    Examples
    --------
    >>> import braintrace
    >>> issubclass(braintrace.MultiStepData, braintrace.data.ETraceInputData)
    True
    """

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"

    def tree_flatten(self) -> tuple[tuple[Any], None]:
        return (self.data,), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Sequence[Any]) -> ETraceInputData:
        return cls(children[0])


@jax.tree_util.register_pytree_node_class
class SingleStepData(ETraceInputData):
    """A container marking input data as belonging to a single time step.

    A learner called with plain arrays treats them as one step; wrapping an
    argument in ``SingleStepData`` says so explicitly. In a call with a
    :class:`MultiStepData` argument, a ``SingleStepData`` argument is used
    unchanged at every step of the window.

    Parameters
    ----------
    data : pytree
        The step's input for one positional argument of the model.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> d = braintrace.SingleStepData(jnp.zeros(3))
    >>> d.data.shape
    (3,)
    >>> g = jax.grad(lambda d: d.data ** 2)(braintrace.SingleStepData(3.0))
    >>> type(g).__name__, float(g.data)
    ('SingleStepData', 6.0)
    """

    __slots__ = ()


@jax.tree_util.register_pytree_node_class
class MultiStepData(ETraceInputData):
    """A container marking input data as spanning multiple time steps.

    The first axis of every leaf of ``data`` is time. A learner called with a
    ``MultiStepData`` argument runs the whole window in one ``jax.lax.scan``
    (the other arguments are used at every step) and returns the outputs
    stacked along time; with ``vjp_method='multi-step'`` the gradient of the
    window's summed loss is exact inside the window.

    Nothing is checked at construction (a scalar payload is accepted); the
    learner checks, when called, that every ``MultiStepData`` leaf has the same
    leading length.

    Parameters
    ----------
    data : pytree
        The window's input for one positional argument of the model, each leaf
        with a leading time axis ``K``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> w = braintrace.MultiStepData(jnp.zeros((5, 3)))
    >>> w.data.shape, w.num_steps
    ((5, 3), 5)
    """

    __slots__ = ()

    @property
    def num_steps(self) -> int:
        """Length of the leading (time) axis of the first leaf (0 for an empty payload)."""
        leaves = jax.tree.leaves(self.data)
        return int(jax.numpy.shape(leaves[0])[0]) if leaves and jax.numpy.ndim(leaves[0]) else 0


def unwrap_step_args(args: tuple, caller: str = "learner") -> tuple[tuple, bool]:
    """Unwrap a learner's positional arguments: ``(payloads, is_window)``.

    Every :class:`SingleStepData` or :class:`MultiStepData` argument is replaced
    by its ``.data``. If any argument is a ``MultiStepData`` the call is a window
    (``is_window`` is True) and the other arguments are broadcast along a new
    leading time axis, so that every returned payload is time-major.

    Parameters
    ----------
    args : tuple
        The positional arguments of one learner call.
    caller : str, default ``'learner'``
        Named in the error message.

    Returns
    -------
    tuple
        The payloads, in order.
    bool
        Whether the call is a window of time steps.

    Raises
    ------
    ValueError
        The ``MultiStepData`` leaves disagree on the length of their leading
        (time) axis, or one of them is a scalar.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.data import MultiStepData, SingleStepData, unwrap_step_args
    >>> (x, y), window = unwrap_step_args((MultiStepData(jnp.zeros((4, 3))), SingleStepData(jnp.ones(2))))
    >>> x.shape, y.shape, window
    ((4, 3), (4, 2), True)
    """
    multi = [a for a in args if isinstance(a, MultiStepData)]
    payloads = tuple(a.data if isinstance(a, ETraceInputData) else a for a in args)
    if not multi:
        return payloads, False
    shapes = [tuple(jax.numpy.shape(x)) for a in multi for x in jax.tree.leaves(a.data)]
    lengths = {s[0] if s else None for s in shapes}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(
            f"{caller}: the sequence size should be the same for every MultiStepData input (the leading "
            f"axis is time), got leaf shapes {shapes}."
        )
    (K,) = lengths
    out = tuple(
        a.data if isinstance(a, MultiStepData)
        else jax.tree.map(lambda x: jax.numpy.broadcast_to(x, (K,) + tuple(jax.numpy.shape(x))), p)
        for a, p in zip(args, payloads)
    )
    return out, True
