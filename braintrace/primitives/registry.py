"""The ETP primitive registry: how the compiler recognises a weight operation.

The compiler finds ETP primitives in a model's jaxpr by *identity*
(``eqn.primitive is p``) and reads here what it needs to know about each (its
:class:`~braintrace.primitives.ETPPrimitive` record). There is exactly one
registry object, :data:`REGISTRY`, filled by one
:func:`~braintrace.primitives.register_primitive` call per primitive
(:mod:`braintrace.primitives.definition`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jax.extend.core import Primitive

from .record import ETPPrimitive

__all__ = ["PrimitiveRegistry", "REGISTRY", "get_etp_primitive", "is_etp_primitive"]


class PrimitiveRegistry:
    """The one table from JAX primitive to :class:`ETPPrimitive`.

    Examples
    --------
    >>> import braintrace
    >>> from braintrace.primitives import REGISTRY
    >>> entry = REGISTRY.get(braintrace.primitives.etp_mm_p)
    >>> entry.name, sorted(entry.trainable_invars({}, 3))
    ('etp_mm', ['bias', 'weight'])
    """

    def __init__(self) -> None:
        self._entries: dict[Primitive, ETPPrimitive] = {}

    def add(self, entry: ETPPrimitive) -> None:
        if entry.primitive in self._entries:
            raise ValueError(f"primitive {entry.name!r} is already registered")
        self._entries[entry.primitive] = entry

    def get(self, primitive: Any) -> ETPPrimitive | None:
        """The entry of ``primitive``, or ``None`` if it is not an ETP primitive."""
        try:
            return self._entries.get(primitive)
        except TypeError:  # unhashable
            return None

    def __contains__(self, primitive: Any) -> bool:
        return self.get(primitive) is not None

    def __iter__(self) -> Iterator[ETPPrimitive]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


REGISTRY = PrimitiveRegistry()


def get_etp_primitive(primitive: Any) -> ETPPrimitive | None:
    """Return the registry entry of ``primitive`` (``None`` for ordinary primitives).

    Parameters
    ----------
    primitive : jax.extend.core.Primitive
        Any JAX primitive, e.g. ``eqn.primitive`` of a jaxpr equation.

    Returns
    -------
    ETPPrimitive or None

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> jaxpr = jax.make_jaxpr(braintrace.matmul)(jnp.ones(3), jnp.ones((3, 2)))
    >>> braintrace.primitives.get_etp_primitive(jaxpr.eqns[0].primitive).name
    'etp_mv'
    >>> braintrace.primitives.get_etp_primitive(jax.lax.add_p) is None
    True
    """
    return REGISTRY.get(primitive)


def is_etp_primitive(primitive: Any) -> bool:
    """Whether ``primitive`` is a registered ETP primitive.

    Parameters
    ----------
    primitive : jax.extend.core.Primitive
        Any JAX primitive.

    Returns
    -------
    bool

    Examples
    --------
    >>> import jax
    >>> import braintrace
    >>> braintrace.primitives.is_etp_primitive(braintrace.primitives.etp_conv_p)
    True
    >>> braintrace.primitives.is_etp_primitive(jax.lax.dot_general_p)
    False
    """
    return primitive in REGISTRY
