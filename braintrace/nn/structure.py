r"""A layer's fixed index arrays, held as a state so that compiled steps take them as arguments.

A sparse layer reads its pattern (the row and column of every nonzero, the
blocks of the event-driven product) at every step. Held as plain attributes,
those arrays are closed over by ``jit`` and embedded in the compiled program
as constants; XLA's compile time grows with them, at about three seconds per
80 MB on a CPU, and a whole-brain pattern (50 million synapses) is over
400 MB. A :class:`StructureState` is read like any state: ``jit`` (and
``brainstate.transform.jit``, the learners, ``scan`` and ``for_loop``) pass
its value to the compiled program as an argument, which costs nothing to
compile.

The learners treat it as what it is: a state the step reads and never writes.
Nothing differentiates it (its leaves are integers), a window of steps keeps
what derives from it once rather than per step
(:class:`braintrace.executor.window_residuals.WindowResiduals`), and a reset
leaves it as it is.
"""

from __future__ import annotations

from typing import Any

import brainstate
import jax
import jax.numpy as jnp

__all__ = ["StructureState"]


class StructureState(brainstate.LongTermState):
    """Fixed integer arrays a layer reads at every step (a sparse pattern), never written.

    Parameters
    ----------
    value : pytree of integer arrays
        The arrays (NumPy arrays are copied to the device once).
    name : str, optional
        The state's name.

    Raises
    ------
    TypeError
        A leaf that is not an integer array.

    Examples
    --------
    >>> import brainstate, jax, jax.numpy as jnp, numpy as np
    >>> from braintrace.nn import StructureState
    >>> class Gather(brainstate.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.index = StructureState(dict(rows=np.array([2, 0, 1])))
    ...     def __call__(self, x):
    ...         return x[self.index.value["rows"]]
    >>> g = Gather()
    >>> f = brainstate.transform.jit(g)
    >>> f(jnp.array([10., 20., 30.])).tolist()
    [30.0, 10.0, 20.0]
    >>> lowered = jax.jit(lambda x, s: x[s["rows"]]).lower(jnp.zeros(3), g.index.value)
    >>> lowered.compile().memory_analysis().argument_size_in_bytes > 12   # the indices are an argument
    True
    """

    def __init__(self, value: Any, name: str | None = None) -> None:
        leaves = jax.tree.leaves(value)
        bad = [jnp.result_type(v) for v in leaves if not jnp.issubdtype(jnp.result_type(v), jnp.integer)]
        if bad:
            raise TypeError(
                f"StructureState holds fixed integer index arrays; got a leaf of dtype {bad[0]}. Keep "
                "floating-point values in a brainstate.ParamState (trained) or another state."
            )
        super().__init__(jax.tree.map(jnp.asarray, value), name=name)
