"""Physical units at the boundary of the ETP primitives.

Primitives compute on plain arrays. The public operators split each
``saiunit.Quantity`` into mantissa and unit, compute on mantissas, and give the
result its unit back. Everything inside the compiler and the learners is
dimensionless.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, cast

import jax
import jax.numpy as jnp
import saiunit as u

__all__ = ["split_unit", "with_unit", "mantissa_in", "check_float", "unit_product"]


def split_unit(x: Any) -> tuple[jax.Array, u.Unit]:
    """``(mantissa, unit)`` of an array or quantity (unit is unitless for arrays)."""
    m, unit = u.split_mantissa_unit(x)
    return jnp.asarray(m), unit


def unit_product(*units: u.Unit) -> u.Unit:
    """The unit of a product of values with ``units`` (saiunit types ``Unit * Unit`` as ``Unit | Quantity``)."""
    return cast(u.Unit, functools.reduce(operator.mul, units))


def with_unit(y: jax.Array, unit: u.Unit) -> Any:
    """Attach ``unit`` to ``y``; a unitless result stays a plain array."""
    if unit.is_unitless:
        return y
    return u.Quantity(y, unit=unit)


def mantissa_in(value: Any, unit: u.Unit, *, op: str, arg: str) -> jax.Array:
    """The mantissa of ``value`` expressed in ``unit``; a clear error if the dimensions differ."""
    m, vunit = u.split_mantissa_unit(value)
    if vunit.is_unitless and unit.is_unitless:
        return jnp.asarray(m)
    try:
        return jnp.asarray(u.Quantity(m, unit=vunit).to_decimal(unit))
    except Exception as err:  # saiunit.UnitMismatchError and friends
        raise ValueError(
            f"braintrace.{op}: `{arg}` has unit {vunit}, which cannot be converted to {unit}, "
            f"the unit of the output. Give `{arg}` a unit of the same dimension as the output."
        ) from err


def check_float(value: jax.Array, *, op: str, arg: str) -> None:
    """Trainable inputs must be floating point (gradients are undefined otherwise)."""
    if not jnp.issubdtype(value.dtype, jnp.inexact):
        raise TypeError(
            f"braintrace.{op}: `{arg}` has dtype {value.dtype}; trainable inputs must be floating "
            f"point (e.g. float32) to receive gradients. Cast it with `.astype(jnp.float32)`."
        )
