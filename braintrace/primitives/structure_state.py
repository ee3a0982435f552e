r"""A layer's fixed index arrays, held as a state so that compiled steps take them as arguments.

A sparse layer reads its pattern (the row and column of every nonzero, the
blocks of the event-driven product) at every step. Held as plain attributes,
those arrays are closed over by ``jit`` and embedded in the compiled program
as constants, and XLA's compile time grows with them: about three seconds per
80 MB on a CPU; 29 s for the whole-brain network of ``docs/benchmarks.md``
(50 million synapses, 1 GB of compiled constants) on an H200, against 1.5 s
with the pattern as an argument. A :class:`StructureState` is read like any
state: ``brainstate.transform.jit``, the learners, ``scan`` and ``for_loop``
pass its value to the compiled program as an argument.

The learners treat it as what it is: a state the step reads and never writes.
Nothing differentiates it (its leaves are integers), a window of steps keeps
what derives from it once rather than per step (as every state the step never
writes: :class:`braintrace.executor.window_residuals.WindowResiduals`), a reset
leaves it as it is, and SnAp reads its indices as fixed (a pattern that does
not change with the data). It is saved in checkpoints with the other states.
"""

from __future__ import annotations

from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import saiunit as u

from .sparse import nonzero_indices

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
    >>> from braintrace.primitives import StructureState
    >>> class Gather(brainstate.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.index = StructureState(dict(rows=np.array([2, 0, 1])))
    ...     def __call__(self, x):
    ...         return x[self.index.value["rows"]]
    >>> g = Gather()
    >>> brainstate.transform.jit(g)(jnp.array([10., 20., 30.])).tolist()
    [30.0, 10.0, 20.0]
    """

    def __init__(self, value: Any, name: str | None = None) -> None:
        dtypes = [jnp.result_type(v) for v in jax.tree.leaves(value)]
        bad = [d for d in dtypes if not jnp.issubdtype(d, jnp.integer)]
        if bad:
            raise TypeError(
                f"StructureState holds fixed integer index arrays; got a leaf of dtype {bad[0]}. Keep "
                "floating-point values in a brainstate.ParamState (trained) or another state."
            )
        super().__init__(jax.tree.map(jnp.asarray, value), name=name)

    @classmethod
    def of_matrix(cls, sparse_mat: Any, name: str | None = None) -> StructureState:
        """The pattern of a sparse matrix: ``dict(rows=..., cols=...)`` of its nonzeros, in its data order.

        Parameters
        ----------
        sparse_mat : saiunit.sparse.CSR, CSC or COO
            With concrete indices.
        name : str, optional
            The state's name.

        Examples
        --------
        >>> import jax.numpy as jnp, saiunit as u
        >>> from braintrace.primitives import StructureState
        >>> s = StructureState.of_matrix(u.sparse.CSR.fromdense(jnp.array([[1., 0.], [2., 3.]])))
        >>> s.value["rows"].tolist(), s.value["cols"].tolist()
        ([0, 1, 1], [0, 0, 1])
        """
        rows, cols = nonzero_indices(sparse_mat)
        return cls(dict(rows=rows, cols=cols), name=name)

    def matrix(self, data: Any, shape: tuple[int, int]) -> u.sparse.COO:
        """The COO matrix with the pattern of :meth:`of_matrix` (read now: traced inside ``jit``) and ``data``.

        Parameters
        ----------
        data : array or Quantity, shape ``(nnz,)``
            The values of the nonzeros, in the pattern's data order.
        shape : tuple of int
            ``(n_rows, n_cols)``.

        Examples
        --------
        >>> import jax.numpy as jnp, saiunit as u
        >>> from braintrace.primitives import StructureState
        >>> s = StructureState.of_matrix(u.sparse.CSR.fromdense(jnp.array([[1., 0.], [2., 3.]])))
        >>> s.matrix(jnp.array([4., 5., 6.]), (2, 2)).todense().tolist()
        [[4.0, 0.0], [5.0, 6.0]]
        """
        indices = self.value
        return u.sparse.COO((data, indices["rows"], indices["cols"]), shape=shape)
