"""Layer 2: from a model's step to an eligibility-trace graph, with diagnostics.

The compiler traces one step of a model, finds which weights (through which
ETP primitives) reach which hidden states (:class:`HiddenParamOpRelation`),
groups coupled hidden states (:class:`HiddenGroup`) and records every decision
(:class:`CompilationRecord`). :func:`compile_etrace_graph` runs it all.

Examples
--------
>>> import brainstate, jax.numpy as jnp
>>> import braintrace
>>> cell = braintrace.nn.LSTMCell(2, 3)
>>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
LSTMCell(...)
>>> graph = braintrace.compiler.compile_etrace_graph(cell, jnp.zeros(2))
>>> len(graph.hidden_groups), len(graph.hidden_param_op_relations)
(1, 4)
"""

from .diagnostics import (
    CompilationRecord as CompilationRecord,
    DiagnosticKind as DiagnosticKind,
    DiagnosticLevel as DiagnosticLevel,
)
from .evaluation import evaluate_operands as evaluate_operands, evaluate_step as evaluate_step
from .graph import ETraceGraph as ETraceGraph, compile_etrace_graph as compile_etrace_graph
from .hidden_groups import (
    HiddenGroup as HiddenGroup,
    find_hidden_groups_from_minfo as find_hidden_groups_from_minfo,
    find_hidden_groups_from_module as find_hidden_groups_from_module,
)
from .module_info import ModuleInfo as ModuleInfo, StateSlot as StateSlot, extract_module_info as extract_module_info
from .perturbation import (
    HiddenPerturbation as HiddenPerturbation,
    add_hidden_perturbation_from_minfo as add_hidden_perturbation_from_minfo,
    add_hidden_perturbation_in_module as add_hidden_perturbation_in_module,
)
from .relations import (
    HiddenParamOpRelation as HiddenParamOpRelation,
    find_hidden_param_op_relations_from_minfo as find_hidden_param_op_relations_from_minfo,
    find_hidden_param_op_relations_from_module as find_hidden_param_op_relations_from_module,
)

__all__ = [
    "CompilationRecord",
    "DiagnosticKind",
    "DiagnosticLevel",
    "ETraceGraph",
    "compile_etrace_graph",
    "evaluate_step",
    "evaluate_operands",
    "HiddenGroup",
    "find_hidden_groups_from_minfo",
    "find_hidden_groups_from_module",
    "ModuleInfo",
    "StateSlot",
    "extract_module_info",
    "HiddenPerturbation",
    "add_hidden_perturbation_from_minfo",
    "add_hidden_perturbation_in_module",
    "HiddenParamOpRelation",
    "find_hidden_param_op_relations_from_minfo",
    "find_hidden_param_op_relations_from_module",
]
