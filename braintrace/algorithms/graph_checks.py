"""Compile-time checks that learners with scalar leaks share.

OTTT and OTPE replace the per-position Jacobian blocks ``D`` of the traces by
a scalar ``leak``. That is meaningful only for hidden groups with one state per
position, and their presynaptic traces need a data input.
"""

from __future__ import annotations

from typing import Any

from ..compiler.module_info import path_str
from ..errors import CompilationError
from .exact_traces import split_names
from .feedback import group_label

__all__ = ["check_single_state"]


def check_single_state(graph: Any, owner: str, why: str) -> None:
    """Refuse single-state-only rules on groups with ``S > 1`` and on x-free weights.

    Raises
    ------
    CompilationError
        Naming the weight and the hidden group, and what to use instead.
    """
    for r in graph.hidden_param_op_relations:
        for gi in r.hidden_groups:
            g = graph.hidden_groups[gi]
            if g.num_state > 1:
                raise CompilationError(
                    f"{owner}: `{path_str(r.weight_path)}` reaches the hidden group ({group_label(g)}) with "
                    f"num_state={g.num_state}. {why} The {g.num_state} coupled states of this group have "
                    f"{g.num_state}×{g.num_state} Jacobian blocks that a scalar `leak` cannot represent. "
                    "Use D_RTRL (exact per-position blocks) or ES_D_RTRL for this model."
                )
        fact = split_names(r)[1]
        if fact and not r.entry.x_linear:
            raise CompilationError(
                f"{owner}: ETP primitive {r.entry.name} (weight `{path_str(r.weight_path)}`) takes a data input "
                "that is not a vector it is linear in (e.g. the indices of braintrace.embedding): a trace of past "
                "inputs cannot stand in for it. Use D_RTRL or ES_D_RTRL, which keep this weight's exact trace."
            )
        if fact and r.entry.x_invar_index is None:
            raise CompilationError(
                f"{owner}: ETP primitive {r.entry.name} (weight `{path_str(r.weight_path)}`) has trainable "
                f"inputs {fact} that depend on no data input, so there is no presynaptic trace to keep. "
                "Use D_RTRL for this primitive, or register it with `x_invar_index`."
            )
