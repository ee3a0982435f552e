"""Layer 3: running a compiled eligibility-trace graph.

An executor evaluates one step of a compiled :class:`~braintrace.ETraceGraph`
and returns what the trace updates need (:class:`StepTraceData`): the
per-position Jacobian blocks ``D`` of each hidden group and the output
derivatives ``df`` of each relation.

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

from .graph_executor import (
    ETraceGraphExecutor as ETraceGraphExecutor,
    ETraceVjpGraphExecutor as ETraceVjpGraphExecutor,
    StepTraceData as StepTraceData,
    WindowTraceData as WindowTraceData,
    zeros_cotangent as zeros_cotangent,
)

__all__ = ["ETraceGraphExecutor", "ETraceVjpGraphExecutor", "StepTraceData", "WindowTraceData", "zeros_cotangent"]
