r"""Finished sequences stand still: masked steps leave states and traces as they were.

With a mask ``m`` of shape ``(T, B)`` (or ``(T,)``), a step at which ``m^t_b``
is zero is *skipped* for batch element ``b``: after the step, every hidden
state and every eligibility trace of that element is set back to its value
before the step,

.. math:: h_b^t \leftarrow m_b^t\,?\; h_b^t : h_b^{t-1}, \qquad
          ε_b^t \leftarrow m_b^t\,?\; ε_b^t : ε_b^{t-1},

so a sequence that has ended does not drift while the longer ones of its
batch run on, and its loss adds nothing (the loss is masked too, see
:mod:`braintrace.training.losses`). What is frozen: the model's
``brainstate.HiddenState`` leaves and the learner's traces whose leading axis
is the batch axis ``B`` (with a ``(T,)`` mask, all of them). Other states
(``ShortTermState`` counters, ``BatchState`` running statistics, random keys)
and the learner's step counter advance as usual.

Examples
--------
>>> import brainstate, jax.numpy as jnp
>>> from braintrace.training.masking import Freezer
>>> h = brainstate.HiddenState(jnp.zeros((2, 3)))
>>> freezer = Freezer([h])
>>> before = freezer.values()
>>> h.value = jnp.ones((2, 3))
>>> freezer.restore(before, jnp.array([True, False]))
>>> h.value.tolist()
[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

__all__ = ["Freezer", "states_to_freeze"]


def states_to_freeze(model: brainstate.nn.Module, learner: Any = None) -> list[brainstate.State]:
    """The model's hidden states, then the learner's traces (if a learner is given).

    Examples
    --------
    >>> import brainstate
    >>> import braintrace
    >>> from braintrace.training.masking import states_to_freeze
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell, 4)
    >>> [st.value.shape for st in states_to_freeze(cell)]
    [(4, 3)]
    """
    out: list[brainstate.State] = list(model.states(brainstate.HiddenState).values())
    if learner is not None:
        out.extend(learner.etraces.values())
    return out


class Freezer:
    """Sets the states of masked batch elements back to their values before a step.

    Parameters
    ----------
    states : iterable of brainstate.State
        The states to freeze (see :func:`states_to_freeze`).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> from braintrace.training.masking import Freezer
    >>> h = brainstate.HiddenState(jnp.zeros(3))
    >>> freezer = Freezer([h])
    >>> before = freezer.values()
    >>> h.value = jnp.ones(3)
    >>> freezer.restore(before, jnp.asarray(False))  # an unbatched model: the whole step is skipped
    >>> h.value.tolist()
    [0.0, 0.0, 0.0]
    """

    def __init__(self, states: Iterable[brainstate.State]) -> None:
        self.states = tuple(states)

    def values(self) -> tuple:
        """The states' current values."""
        return tuple(st.value for st in self.states)

    def restore(self, before: Sequence[Any], mask_t: Any) -> None:
        """Keep the new values where ``mask_t`` is set, the ``before`` values elsewhere.

        ``mask_t``: a scalar (every leaf follows it) or shape ``(B,)`` (leaves
        whose leading axis has length ``B`` follow it per element; the others
        keep their new values).
        """
        keep = jnp.asarray(mask_t) != 0
        for st, old in zip(self.states, before):
            st.value = jax.tree.map(lambda new, prev: _select(keep, new, prev), st.value, old)


def _select(keep: jax.Array, new: Any, old: Any) -> Any:
    if keep.ndim == 0:
        return jnp.where(keep, new, old)
    (B,) = keep.shape
    if jnp.ndim(new) == 0 or jnp.shape(new)[0] != B:
        return new
    return jnp.where(jnp.reshape(keep, (B,) + (1,) * (jnp.ndim(new) - 1)), new, old)
