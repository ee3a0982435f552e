"""braintrace: online learning of recurrent and spiking networks by eligibility-trace propagation.

Write the model with ``brainstate``, route each weight that should learn online
through an ETP primitive (:func:`matmul`, :func:`element_wise`, :func:`conv`,
:func:`sparse_matmul`, :func:`lora_matmul`, :func:`embedding`,
:func:`grouped_matmul`, :func:`einsum`), wrap the model in a learner
(:class:`D_RTRL`, :class:`ES_D_RTRL`, :class:`RFLO`, ...) and differentiate its output.
``__version__`` is the package version and ``__version_info__`` the same as a
tuple (integers for the numeric parts, e.g. ``(0, 2, 0, 'dev0')``). The
deprecated v0.1 class API
(``MatMulOp``, ``ETraceParam``, ...) is served lazily from
:mod:`braintrace.legacy`; importing braintrace does not warn.

Examples
--------
>>> import brainstate, jax.numpy as jnp
>>> import braintrace
>>> braintrace.__version__.startswith("0.")
True
>>> braintrace.__version_info__[:2] >= (0, 2)
True
>>> cell = braintrace.nn.VanillaRNNCell(2, 3)
>>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
VanillaRNNCell(...)
>>> learner = braintrace.D_RTRL(cell)
>>> _ = learner.compile_graph(jnp.zeros(2))
>>> grads = brainstate.transform.grad(lambda x: learner(x).sum(), cell.states(brainstate.ParamState))(jnp.ones(2))
>>> sorted(grads)
[('W', 'weight')]
"""

__version__ = "0.2.0.dev0"
__version_info__ = tuple(int(part) if part.isdigit() else part for part in __version__.split("."))

from . import primitives as primitives
from . import nn as nn
from . import compiler as compiler
from . import executor as executor
from . import algorithms as algorithms
from . import checkpoint as checkpoint
from .errors import (
    ArgumentTypeError as ArgumentTypeError,
    BraintraceError as BraintraceError,
    CompilationError as CompilationError,
    IncompatibleUnitsError as IncompatibleUnitsError,
    InvalidArgumentError as InvalidArgumentError,
    NotCompiledError as NotCompiledError,
    CheckpointError as CheckpointError,
    NotSupportedError as NotSupportedError,
    ShapeMismatchError as ShapeMismatchError,
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
from .training import (
    OnlineFitResult as OnlineFitResult,
    bptt_gradients as bptt_gradients,
    evaluate as evaluate,
    online_evolve as online_evolve,
    online_fit as online_fit,
    online_gradients as online_gradients,
    shard_batch as shard_batch,
)
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
from .algorithms import (
    EProp as EProp,
    FixedRandomFeedback as FixedRandomFeedback,
    KappaFilter as KappaFilter,
    OSTLFeedforward as OSTLFeedforward,
    OSTLRecurrent as OSTLRecurrent,
    OSTTP as OSTTP,
    OTPE as OTPE,
    OTTT as OTTT,
    PresynapticTrace as PresynapticTrace,
    RFLO as RFLO,
)
from .algorithms.compiling import compile as compile
from .algorithms import RTRL as RTRL, SnAp as SnAp, UORO as UORO
from .primitives import (
    conv as conv,
    einsum as einsum,
    element_wise as element_wise,
    embedding as embedding,
    grouped_matmul as grouped_matmul,
    lora_matmul as lora_matmul,
    matmul as matmul,
    register_primitive as register_primitive,
    sparse_matmul as sparse_matmul,
)

__all__ = [
    "__version__",
    "__version_info__",
    "primitives",
    "nn",
    "compiler",
    "executor",
    "algorithms",
    "checkpoint",
    "BraintraceError",
    "CompilationError",
    "NotCompiledError",
    "NotSupportedError",
    "InvalidArgumentError",
    "ArgumentTypeError",
    "ShapeMismatchError",
    "IncompatibleUnitsError",
    "CheckpointError",
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
    "EProp",
    "OSTLRecurrent",
    "OSTLFeedforward",
    "OTTT",
    "OTPE",
    "OSTTP",
    "RFLO",
    "RTRL",
    "SnAp",
    "UORO",
    "PresynapticTrace",
    "KappaFilter",
    "FixedRandomFeedback",
    "compile",
    "online_gradients",
    "bptt_gradients",
    "online_evolve",
    "evaluate",
    "online_fit",
    "OnlineFitResult",
    "shard_batch",
    "conv",
    "einsum",
    "element_wise",
    "embedding",
    "grouped_matmul",
    "lora_matmul",
    "matmul",
    "register_primitive",
    "sparse_matmul",
]


def __getattr__(name: str) -> object:
    """Serve the deprecated v0.1 names (``MatMulOp``, ``ETraceParam``, ...) lazily.

    They live in one table, :data:`braintrace.legacy.DEPRECATIONS`; the module
    (also reachable as ``braintrace.legacy``) is imported on the first miss, so
    ``import braintrace`` alone never warns. Each legacy class warns
    (``DeprecationWarning``) when first instantiated.
    """
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    legacy = importlib.import_module(f"{__name__}.legacy")
    return legacy if name == "legacy" else legacy.resolve(name, __name__)


def __dir__() -> list[str]:
    """The module's names plus the deprecated v0.1 names it serves lazily (as 0.2.0 listed them)."""
    import importlib

    legacy = importlib.import_module(f"{__name__}.legacy")
    return sorted(set(globals()) | set(legacy.DEPRECATIONS))
