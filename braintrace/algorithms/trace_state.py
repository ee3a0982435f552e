"""The eligibility-trace state and a leaky gradient accumulator."""

from __future__ import annotations

from typing import Any

import brainstate
import jax
import jax.numpy as jnp

__all__ = ["EligibilityTrace", "GradExpon"]


class EligibilityTrace(brainstate.ShortTermState):
    """The state for storing the eligibility trace during online learning.

    A learner keeps one ``EligibilityTrace`` per (relation, hidden group); its
    value is a dict of arrays whose layout is chosen by the algorithm and the
    primitive (see :mod:`braintrace.primitives.trace_rules`). Like every
    short-term state it is reset to zeros by ``reset_state``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> tr = braintrace.EligibilityTrace({'weight': jnp.zeros((3, 2, 1))})
    >>> tr.value['weight'].shape
    (3, 2, 1)
    """

    __module__ = "braintrace"


class GradExpon(brainstate.nn.Module):
    r"""Accumulate gradients with an exponential (leaky) running sum.

    .. math:: G^t = \lambda\, G^{t-1} + g^t

    Useful to smooth per-step online gradients before an optimizer step, or to
    accumulate them over a sequence with ``decay=1`` (a plain sum).

    Parameters
    ----------
    params : pytree
        Example gradients (e.g. the ``ParamState`` values); gives the shapes.
    decay : float, default 1.0
        ``λ`` in ``[0, 1]``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> acc = braintrace.GradExpon({'w': jnp.zeros(2)}, decay=0.5)
    >>> _ = acc.update({'w': jnp.ones(2)})
    >>> acc.update({'w': jnp.ones(2)})['w'].tolist()
    [1.5, 1.5]
    """

    def __init__(self, params: Any, decay: float = 1.0, name: str | None = None) -> None:
        super().__init__(name=name)
        if not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"GradExpon: `decay` must lie in [0, 1], got {decay}.")
        self.decay = float(decay)
        self.total = brainstate.ShortTermState(jax.tree.map(jnp.zeros_like, params))

    def update(self, grads: Any) -> Any:
        """Add ``grads`` to the decayed running sum and return it."""
        self.total.value = jax.tree.map(lambda a, g: self.decay * a + g, self.total.value, grads)
        return self.total.value

    def reset_state(self, *args: Any, **kwargs: Any) -> None:
        self.total.value = jax.tree.map(jnp.zeros_like, self.total.value)
