"""braintrace: online learning of recurrent and spiking networks by eligibility-trace propagation."""

__version__ = "0.2.0.dev0"

from . import primitives as primitives
from . import nn as nn
from . import compiler as compiler
from . import executor as executor
from . import algorithms as algorithms
from .errors import (
    BraintraceError as BraintraceError,
    CompilationError as CompilationError,
    NotCompiledError as NotCompiledError,
    NotSupportedError as NotSupportedError,
)
from .data import MultiStepData as MultiStepData, SingleStepData as SingleStepData
from .compiler import (
    CompilationRecord as CompilationRecord,
    DiagnosticKind as DiagnosticKind,
    DiagnosticLevel as DiagnosticLevel,
    ETraceGraph as ETraceGraph,
    HiddenGroup as HiddenGroup,
    HiddenParamOpRelation as HiddenParamOpRelation,
    HiddenPerturbation as HiddenPerturbation,
    ModuleInfo as ModuleInfo,
    add_hidden_perturbation_from_minfo as add_hidden_perturbation_from_minfo,
    add_hidden_perturbation_in_module as add_hidden_perturbation_in_module,
    compile_etrace_graph as compile_etrace_graph,
    extract_module_info as extract_module_info,
    find_hidden_groups_from_minfo as find_hidden_groups_from_minfo,
    find_hidden_groups_from_module as find_hidden_groups_from_module,
    find_hidden_param_op_relations_from_minfo as find_hidden_param_op_relations_from_minfo,
    find_hidden_param_op_relations_from_module as find_hidden_param_op_relations_from_module,
)
from .training import bptt_gradients as bptt_gradients, online_gradients as online_gradients
from .executor import ETraceGraphExecutor as ETraceGraphExecutor, ETraceVjpGraphExecutor as ETraceVjpGraphExecutor
from .algorithms import (
    D_RTRL as D_RTRL,
    ES_D_RTRL as ES_D_RTRL,
    EligibilityTrace as EligibilityTrace,
    ETraceAlgorithm as ETraceAlgorithm,
    ETraceVjpAlgorithm as ETraceVjpAlgorithm,
    GradExpon as GradExpon,
    IODimVjpAlgorithm as IODimVjpAlgorithm,
    ParamDimVjpAlgorithm as ParamDimVjpAlgorithm,
    pp_prop as pp_prop,
)
from .primitives import (
    conv as conv,
    element_wise as element_wise,
    lora_matmul as lora_matmul,
    matmul as matmul,
    register_primitive as register_primitive,
    sparse_matmul as sparse_matmul,
)

__all__ = [
    "__version__",
    "primitives",
    "nn",
    "compiler",
    "executor",
    "algorithms",
    "BraintraceError",
    "CompilationError",
    "NotCompiledError",
    "NotSupportedError",
    "SingleStepData",
    "MultiStepData",
    "CompilationRecord",
    "DiagnosticKind",
    "DiagnosticLevel",
    "ETraceGraph",
    "HiddenGroup",
    "HiddenParamOpRelation",
    "HiddenPerturbation",
    "ModuleInfo",
    "add_hidden_perturbation_from_minfo",
    "add_hidden_perturbation_in_module",
    "compile_etrace_graph",
    "extract_module_info",
    "find_hidden_groups_from_minfo",
    "find_hidden_groups_from_module",
    "find_hidden_param_op_relations_from_minfo",
    "find_hidden_param_op_relations_from_module",
    "ETraceGraphExecutor",
    "ETraceVjpGraphExecutor",
    "ETraceAlgorithm",
    "ETraceVjpAlgorithm",
    "ParamDimVjpAlgorithm",
    "D_RTRL",
    "IODimVjpAlgorithm",
    "ES_D_RTRL",
    "pp_prop",
    "EligibilityTrace",
    "GradExpon",
    "online_gradients",
    "bptt_gradients",
    "conv",
    "element_wise",
    "lora_matmul",
    "matmul",
    "register_primitive",
    "sparse_matmul",
]
