"""Layer 1: the ETP primitives, their JAX rules and eligibility-trace rules.

Each operator binds a real JAX primitive that the compiler recognises by
identity. :data:`REGISTRY` is the one table describing them. The ``etp_*_p``
names are those :class:`jax.extend.core.Primitive` objects: ``etp_mv_p`` /
``etp_mm_p`` (:func:`matmul`, unbatched / batched ``x``), ``etp_elemwise_p``
(:func:`element_wise`), ``etp_conv_p`` / ``etp_conv_batched_p`` (:func:`conv`),
``etp_sparse_mv_p`` / ``etp_sparse_mm_p`` (:func:`sparse_matmul`),
``etp_event_sparse_mv_p`` / ``etp_event_sparse_mm_p`` (:func:`event_sparse_matmul`),
``etp_lora_mv_p`` / ``etp_lora_mm_p`` (:func:`lora_matmul`), ``etp_embed_p`` /
``etp_embed_batched_p`` (:func:`embedding`), ``etp_grouped_mv_p`` /
``etp_grouped_mm_p`` (:func:`grouped_matmul`) and ``etp_einsum_p`` /
``etp_einsum_batched_p`` (:func:`einsum`).

Examples
--------
>>> import jax, jax.numpy as jnp
>>> import braintrace
>>> from braintrace import primitives as P
>>> [e.primitive for e in jax.make_jaxpr(braintrace.matmul)(jnp.ones((2, 3)), jnp.ones((3, 4))).eqns]
[etp_mm]
>>> P.etp_mm_p in P.REGISTRY, P.etp_mv_p.name, P.etp_lora_mm_p.name
(True, 'etp_mv', 'etp_lora_mm')
>>> jax.vmap(braintrace.element_wise)(jnp.ones((2, 3))).shape   # vmap keeps the primitive
(2, 3)
"""

from .conv import (
    ConvRule as ConvRule,
)
from .conv import (
    conv as conv,
)
from .conv import (
    etp_conv_batched_p as etp_conv_batched_p,
)
from .conv import (
    etp_conv_p as etp_conv_p,
)
from .definition import RegisteredPrimitive as RegisteredPrimitive
from .definition import register_primitive as register_primitive
from .dense import etp_mm_p as etp_mm_p
from .dense import etp_mv_p as etp_mv_p
from .dense import matmul as matmul
from .einsum import (
    EinsumRule as EinsumRule,
)
from .einsum import (
    einsum as einsum,
)
from .einsum import (
    etp_einsum_batched_p as etp_einsum_batched_p,
)
from .einsum import (
    etp_einsum_p as etp_einsum_p,
)
from .elementwise import element_wise as element_wise
from .elementwise import etp_elemwise_p as etp_elemwise_p
from .embedding import (
    EmbeddingRule as EmbeddingRule,
)
from .embedding import (
    embedding as embedding,
)
from .embedding import (
    etp_embed_batched_p as etp_embed_batched_p,
)
from .embedding import (
    etp_embed_p as etp_embed_p,
)
from .grouped import (
    GroupedRule as GroupedRule,
)
from .grouped import (
    etp_grouped_mm_p as etp_grouped_mm_p,
)
from .grouped import (
    etp_grouped_mv_p as etp_grouped_mv_p,
)
from .grouped import (
    grouped_matmul as grouped_matmul,
)
from .event_sparse import (
    EventCSR as EventCSR,
    etp_event_sparse_mm_p as etp_event_sparse_mm_p,
    etp_event_sparse_mv_p as etp_event_sparse_mv_p,
    event_sparse_matmul as event_sparse_matmul,
)
from .lora import (
    LoraRule as LoraRule,
)
from .lora import (
    etp_lora_mm_p as etp_lora_mm_p,
)
from .lora import (
    etp_lora_mv_p as etp_lora_mv_p,
)
from .lora import (
    lora_matmul as lora_matmul,
)
from .record import ETPPrimitive as ETPPrimitive
from .registry import (
    REGISTRY as REGISTRY,
)
from .registry import (
    PrimitiveRegistry as PrimitiveRegistry,
)
from .registry import (
    get_etp_primitive as get_etp_primitive,
)
from .registry import (
    is_etp_primitive as is_etp_primitive,
)
from .sparse import (
    SparseRule as SparseRule,
)
from .sparse import (
    etp_sparse_mm_p as etp_sparse_mm_p,
)
from .sparse import (
    etp_sparse_mv_p as etp_sparse_mv_p,
)
from .sparse import (
    sparse_matmul as sparse_matmul,
)
from .structure_state import (
    StructureState as StructureState,
)
from .trace_rules import (
    DiagonalRule as DiagonalRule,
)
from .trace_rules import (
    FullJacobianRule as FullJacobianRule,
)
from .trace_rules import (
    TraceRule as TraceRule,
)

__all__ = [
    "REGISTRY",
    "ETPPrimitive",
    "PrimitiveRegistry",
    "get_etp_primitive",
    "is_etp_primitive",
    "register_primitive",
    "RegisteredPrimitive",
    "TraceRule",
    "DiagonalRule",
    "FullJacobianRule",
    "matmul",
    "element_wise",
    "conv",
    "sparse_matmul",
    "event_sparse_matmul",
    "EventCSR",
    "StructureState",
    "lora_matmul",
    "embedding",
    "grouped_matmul",
    "einsum",
    "ConvRule",
    "SparseRule",
    "LoraRule",
    "EmbeddingRule",
    "GroupedRule",
    "EinsumRule",
    "etp_mm_p",
    "etp_mv_p",
    "etp_elemwise_p",
    "etp_conv_p",
    "etp_conv_batched_p",
    "etp_sparse_mv_p",
    "etp_sparse_mm_p",
    "etp_event_sparse_mv_p",
    "etp_event_sparse_mm_p",
    "etp_lora_mv_p",
    "etp_lora_mm_p",
    "etp_embed_p",
    "etp_embed_batched_p",
    "etp_grouped_mv_p",
    "etp_grouped_mm_p",
    "etp_einsum_p",
    "etp_einsum_batched_p",
]
