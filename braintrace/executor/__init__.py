"""Layer 3: running a compiled eligibility-trace graph; the executor owns differentiation.

An executor evaluates one step of a compiled :class:`~braintrace.ETraceGraph`
and returns what the trace updates need (:class:`StepTraceData`): the
per-position Jacobian blocks ``D`` of each hidden group and the output
derivatives ``df`` of each relation. :class:`ETraceVjpGraphExecutor` also
linearises a step and transposes one or ``K`` stacked linearisations;
:class:`OnlineDriver` is the one ``custom_vjp`` through which every learner
step is differentiated (modes ``online`` and ``hybrid``). For the influence
learners (RTRL, SnAp, UORO), :class:`InfluenceLayout` and :class:`StepTangent`
give the step's full Jacobians with respect to the hidden state and the
parameters (:mod:`braintrace.executor.influence`, :mod:`braintrace.executor.sparsity`).

Examples
--------
>>> import brainstate, jax.numpy as jnp
>>> import braintrace
>>> cell = braintrace.nn.VanillaRNNCell(2, 3)
>>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
VanillaRNNCell(...)
>>> ex = braintrace.executor.ETraceVjpGraphExecutor(braintrace.compile_etrace_graph(cell, jnp.zeros(2)))
>>> [d.shape for d in ex.trace_data(ex.current_invals(jnp.zeros(2))).D.values()]
[(3, 1, 1)]
"""

from .driver import OnlineDriver as OnlineDriver, add_contributions as add_contributions
from .graph_executor import (
    ETraceGraphExecutor as ETraceGraphExecutor,
    ETraceVjpGraphExecutor as ETraceVjpGraphExecutor,
)
from .influence import InfluenceLayout as InfluenceLayout, StepTangent as StepTangent
from .layout import StepLayout as StepLayout
from .trace_data import (
    StepTraceData as StepTraceData,
    WindowTraceData as WindowTraceData,
    zeros_cotangent as zeros_cotangent,
)

__all__ = [
    "ETraceGraphExecutor",
    "ETraceVjpGraphExecutor",
    "InfluenceLayout",
    "OnlineDriver",
    "StepLayout",
    "StepTangent",
    "StepTraceData",
    "WindowTraceData",
    "add_contributions",
    "zeros_cotangent",
]
