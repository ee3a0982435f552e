"""Layer 1: the ETP primitives, their JAX rules and eligibility-trace rules.

Each operator binds a real JAX primitive that the compiler recognises by
identity. :data:`REGISTRY` is the one table describing them.
"""

from .registry import (
    REGISTRY as REGISTRY,
    ETPPrimitive as ETPPrimitive,
    PrimitiveRegistry as PrimitiveRegistry,
    get_etp_primitive as get_etp_primitive,
    is_etp_primitive as is_etp_primitive,
    register_primitive as register_primitive,
)
from .trace_rules import (
    DiagonalRule as DiagonalRule,
    FullJacobianRule as FullJacobianRule,
    TraceRule as TraceRule,
)
from .dense import matmul as matmul, etp_mm_p as etp_mm_p, etp_mv_p as etp_mv_p
from .elementwise import element_wise as element_wise, etp_elemwise_p as etp_elemwise_p
from .conv import (
    ConvRule as ConvRule,
    conv as conv,
    etp_conv_batched_p as etp_conv_batched_p,
    etp_conv_p as etp_conv_p,
)
from .sparse import (
    SparseRule as SparseRule,
    etp_sparse_mm_p as etp_sparse_mm_p,
    etp_sparse_mv_p as etp_sparse_mv_p,
    sparse_matmul as sparse_matmul,
)
from .lora import (
    LoraRule as LoraRule,
    etp_lora_mm_p as etp_lora_mm_p,
    etp_lora_mv_p as etp_lora_mv_p,
    lora_matmul as lora_matmul,
)

__all__ = [
    "REGISTRY",
    "ETPPrimitive",
    "PrimitiveRegistry",
    "get_etp_primitive",
    "is_etp_primitive",
    "register_primitive",
    "TraceRule",
    "DiagonalRule",
    "FullJacobianRule",
    "matmul",
    "element_wise",
    "conv",
    "sparse_matmul",
    "lora_matmul",
    "ConvRule",
    "SparseRule",
    "LoraRule",
    "etp_mm_p",
    "etp_mv_p",
    "etp_elemwise_p",
    "etp_conv_p",
    "etp_conv_batched_p",
    "etp_sparse_mv_p",
    "etp_sparse_mm_p",
    "etp_lora_mv_p",
    "etp_lora_mm_p",
]
