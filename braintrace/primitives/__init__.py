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
    "etp_mm_p",
    "etp_mv_p",
    "etp_elemwise_p",
]
