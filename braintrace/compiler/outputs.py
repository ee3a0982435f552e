"""Output groups: hidden groups whose new value reaches the model's output directly.

A hidden group is an *output group* when its new value reaches a model output
without passing through the data input of an ETP primitive (a leaky readout
is one; a spiking layer read out through a trainable weight is not). Learners
that replace the learning signal of hidden layers by a projection of the
output error or of the target (e-prop with random feedback, OSTTP) keep the
true signal for output groups.
"""

from __future__ import annotations

from typing import Any

from .hidden_groups import cut_data_inputs
from .jaxpr_tools import UseDef, is_literal

__all__ = ["output_groups"]


def output_groups(graph: Any) -> frozenset[int]:
    """Indices of the output groups of a compiled graph.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.compiler.outputs import output_groups
    >>> net = brainstate.nn.Sequential(braintrace.nn.LIF(3, tau=10., dt=1.),
    ...                                braintrace.nn.LeakyRateReadout(3, 2, decay=0.8))
    >>> _ = brainstate.nn.init_all_states(net)
    >>> graph = braintrace.compile_etrace_graph(net, jnp.zeros(3))
    >>> [graph.hidden_groups[i].hidden_paths for i in sorted(output_groups(graph))]
    [(('layers', 1, 'r'),)]
    """
    minfo = graph.module_info
    jaxpr = minfo.jaxpr
    usedef = UseDef(jaxpr)
    through = cut_data_inputs(minfo)
    outs = {v for v in jaxpr.outvars[: minfo.num_out_leaves] if not is_literal(v)}
    slots = {s.path: s for s in minfo.hidden_slots}
    found = set()
    for g in graph.hidden_groups:
        sources = [minfo.hidden_out_var(slots[p]) for p in g.hidden_paths]
        if usedef.forward(sources, through=through) & outs:
            found.add(g.index)
    return frozenset(found)
