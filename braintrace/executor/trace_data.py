"""What one step, or a window of steps, hands to the learners' trace rules.

:class:`StepTraceData` holds one step's outputs, the operands of every online
relation, the per-position Jacobian blocks ``D`` of every hidden group and the
output derivatives ``df`` of every relation; :class:`WindowTraceData` holds
the same for ``K`` steps, stacked on a leading axis (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..compiler import HiddenParamOpRelation

__all__ = ["StepTraceData", "WindowTraceData", "zeros_cotangent"]


class WindowTraceData(NamedTuple):
    """What a window of ``K`` steps hands to the trace updates.

    Attributes
    ----------
    operands : dict
        ``{relation index: operands}`` at the window's first step (the
        trainable inputs and any structure are the same at every step).
    x : dict
        ``{relation index: (K, *x.shape)}`` data inputs (x-free relations absent).
    D : dict
        ``{group index: (K, *V, S, S)}``.
    df : dict
        ``{(relation index, group index): (K, *V, S)}``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.executor import WindowTraceData
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> relations = braintrace.compile_etrace_graph(cell, jnp.zeros(2)).hidden_param_op_relations
    >>> K = 4                                                  # a window of 4 steps
    >>> seq = WindowTraceData(operands={0: (jnp.zeros(5), jnp.ones((5, 3)))},
    ...                       x={0: jnp.arange(20.0).reshape(K, 5)},
    ...                       D={0: jnp.zeros((K, 3, 1, 1))}, df={(0, 0): jnp.ones((K, 3, 1))})
    >>> step = seq.step(2, relations)                          # the StepTraceData of step 2
    >>> step.operands[0][0].tolist(), step.D[0].shape
    ([10.0, 11.0, 12.0, 13.0, 14.0], (3, 1, 1))
    """

    operands: dict
    x: dict
    D: dict
    df: dict

    @property
    def num_steps(self) -> int:
        """``K``, the length of the window (0 if it holds no stacked value)."""
        for v in (*self.D.values(), *self.df.values(), *self.x.values()):
            return int(v.shape[0])
        return 0

    def step(self, k: Any, relations: Sequence[HiddenParamOpRelation]) -> "StepTraceData":
        """The :class:`StepTraceData` of step ``k`` (without ``outvals``)."""
        ops = {}
        for r in relations:
            o = list(self.operands[r.index])
            if r.index in self.x:
                xi = r.entry.x_invar_index
                assert xi is not None  # x-free relations have no entry in x
                o[xi] = self.x[r.index][k]
            ops[r.index] = o
        return StepTraceData(
            outvals=[],
            operands=ops,
            D={g: v[k] for g, v in self.D.items()},
            df={key: v[k] for key, v in self.df.items()},
        )


class StepTraceData(NamedTuple):
    """Everything one step hands to the trace updates.

    Attributes
    ----------
    outvals : list
        Values of the jaxpr outputs (model output leaves, then state leaves).
    operands : dict
        ``{relation index: operands of its ETP equation}``.
    D : dict
        ``{group index: (*V, S, S) blocks}``.
    df : dict
        ``{(relation index, group index): (*V, S)}``.
    tangent : StepTangent or None
        For the influence learners (RTRL, SnAp, UORO): the step linearised with
        respect to ``(h^{t-1}, θ)`` (see :mod:`braintrace.executor.influence`);
        ``None`` otherwise.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    VanillaRNNCell(...)
    >>> ex = braintrace.ETraceGraphExecutor(braintrace.compile_etrace_graph(cell, jnp.zeros(2)))
    >>> data = ex.trace_data(ex.current_invals(jnp.zeros(2)))
    >>> type(data).__name__, {k: v.shape for k, v in data.df.items()}
    ('StepTraceData', {(0, 0): (3, 1)})
    """

    outvals: list
    operands: dict
    D: dict
    df: dict
    tangent: Any = None


def zeros_cotangent(x: Any) -> Any:
    """A zero cotangent for ``x`` (``float0`` for integer and boolean values).

    Parameters
    ----------
    x : array or scalar
        A primal value.

    Returns
    -------
    array
        Zeros shaped like ``x``: of ``x``'s dtype if it is inexact, else of
        dtype ``jax.dtypes.float0`` (what JAX expects for non-differentiable values).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.executor import zeros_cotangent
    >>> zeros_cotangent(jnp.ones(2)).tolist()
    [0.0, 0.0]
    >>> zeros_cotangent(jnp.arange(3)).dtype == jax.dtypes.float0
    True
    """
    dtype = x.dtype if hasattr(x, "dtype") else jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros(jnp.shape(x), dtype)
    return jnp.zeros(jnp.shape(x), jax.dtypes.float0)
