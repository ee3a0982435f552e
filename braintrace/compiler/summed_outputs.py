r"""Relations whose outputs are summed before anything else touches them.

Two relations ``y_1 = f_1(x_1, w_1)`` and ``y_2 = f_2(x_2, w_2)`` whose outputs
enter the step only through a chain of additions, ``m = y_1 + y_2 (+ ...)``,
reach the hidden states through ``m`` alone. Their output derivatives are
then equal for every hidden group:

.. math::

    \frac{\partial h^t}{\partial y_1} = \frac{\partial h^t}{\partial m}
    = \frac{\partial h^t}{\partial y_2}.

The usual case is a neuron fed by an input and a recurrent current,
``v' = f(v, W_{in} x + W_{rec} s)``. A learner whose traces depend on the
relation only through ``df`` (the output traces of ES_D_RTRL) keeps one trace
per class instead of one per relation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jax.extend.core import primitives as P

from .jaxpr_tools import UseDef, is_literal

__all__ = ["summed_output_classes"]

_ADD = frozenset(getattr(P, n) for n in ("add_p", "add_jaxvals_p", "add_any_p") if hasattr(P, n))


def _merge_point(jaxpr: Any, usedef: UseDef, outvars: set, var: Any) -> Any:
    """The last variable of the addition chain that starts at ``var``.

    The chain moves from a variable to the output of its consumer while that
    variable is not a jaxpr output, has exactly one consumer, and the consumer
    is an addition of same-shaped operands (so the tangent passes unchanged).
    """
    while var not in outvars:  # a jaxpr is acyclic: the chain ends
        uses = usedef.consumers.get(var, [])
        if len(uses) != 1:
            break
        eqn = jaxpr.eqns[uses[0][0]]
        if eqn.primitive not in _ADD or len(eqn.outvars) != 1:
            break
        out = eqn.outvars[0]
        if out.aval.shape != var.aval.shape or out.aval.dtype != var.aval.dtype:
            break
        if sum(1 for v in eqn.invars if v is var) != 1:  # y + y doubles the tangent
            break
        var = out
    return var


def summed_output_classes(jaxpr: Any, relations: Sequence[Any]) -> tuple[int, ...]:
    """For each relation (by ``relation.index``), the index of the first relation of its class.

    Relations of one class have their ETP outputs summed, through additions
    only, into one variable before any other use, so their output derivatives
    ``df`` are equal for every hidden group. A relation summed with no other
    is its own class.

    Parameters
    ----------
    jaxpr : jax.extend.core.Jaxpr
        The step's flat jaxpr.
    relations : sequence of HiddenParamOpRelation
        With ``index`` equal to their position.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> class Leaky(brainstate.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w_in = braintrace.nn.Linear(3, 4)
    ...         self.w_rec = braintrace.nn.Linear(4, 4, b_init=None)
    ...         self.h = brainstate.HiddenState(jnp.zeros(4))
    ...     def update(self, x):
    ...         self.h.value = jnp.tanh(0.9 * self.h.value + self.w_in(x) + self.w_rec(self.h.value))
    ...         return self.h.value
    >>> graph = braintrace.compile_etrace_graph(Leaky(), jnp.zeros(3))
    >>> [r.weight_path for r in graph.relations], graph.output_classes
    ([('w_in', 'weight'), ('w_rec', 'weight')], (0, 0))
    """
    usedef = UseDef(jaxpr)
    outvars = {v for v in jaxpr.outvars if not is_literal(v)}
    first: dict[Any, int] = {}
    classes = []
    for r in relations:
        eqn = jaxpr.eqns[r.eqn_index]
        point = _merge_point(jaxpr, usedef, outvars, eqn.outvars[r.entry.y_outvar_index])
        classes.append(first.setdefault(point, r.index))
    return tuple(classes)
