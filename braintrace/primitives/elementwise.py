r"""Element-wise parameter operations: ``y = fn(w)``.

For learnable time constants, thresholds and gating vectors. The primitive is
registered with ``gradient_enabled=True``: an upstream ETP weight whose output
passes through an element-wise operation is still learned online.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import saiunit as u

from .definition import define_primitive
from .trace_rules import DiagonalRule
from .units import check_float, split_unit, with_unit

__all__ = ["element_wise", "etp_elemwise_p"]


def _impl(weight, *, fn):
    return fn(weight)


def _trainables(params, num_invars):
    return {"weight": 0}


_entry = define_primitive(
    "etp_elemwise",
    _impl,
    batched=False,
    gradient_enabled=True,
    trainable_invars_fn=_trainables,
    x_invar_index=None,
    diagonal_names=("weight",),
    trace_rule=DiagonalRule(),
)
etp_elemwise_p = _entry.primitive


class _MantissaFn:
    """``fn`` lifted to mantissas: ``m -> mantissa(fn(Quantity(m, unit)), out_unit)``.

    Hashable by ``(fn, unit, out_unit)`` so equal calls give equal equations.
    """

    def __init__(self, fn: Callable, unit: u.Unit, out_unit: u.Unit):
        self.fn, self.unit, self.out_unit = fn, unit, out_unit

    def __call__(self, m):
        out = self.fn(m if self.unit.is_unitless else u.Quantity(m, unit=self.unit))
        om, _ = split_unit(out)
        return om

    def __hash__(self):
        return hash((self.fn, str(self.unit), str(self.out_unit)))

    def __eq__(self, other):
        return (
            isinstance(other, _MantissaFn)
            and self.fn is other.fn
            and str(self.unit) == str(other.unit)
            and str(self.out_unit) == str(other.out_unit)
        )


def _identity(w):
    return w


def element_wise(weight: Any, fn: Callable[[Any], Any] = _identity) -> Any:
    r"""ETP-aware element-wise operation on a weight, ``y = fn(w)``.

    .. math:: y_v = f(w_v)

    ``fn`` must act element by element (``y.shape == w.shape``); the result
    typically broadcasts into a hidden state (``tau`` of shape ``(N,)`` into a
    membrane potential of shape ``(B, N)``).

    Parameters
    ----------
    weight : array or Quantity
        Floating-point parameter.
    fn : callable, default identity
        Element-wise function, e.g. ``jax.nn.sigmoid`` or ``lambda t: jnp.exp(-dt / t)``.
        With a Quantity weight it receives the Quantity.

    Returns
    -------
    array or Quantity, shape ``weight.shape``

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> braintrace.element_wise(jnp.zeros(3), jax.nn.sigmoid).tolist()
    [0.5, 0.5, 0.5]
    """
    if not callable(fn):
        raise TypeError(f"braintrace.element_wise: `fn` must be callable, got {type(fn).__name__}.")
    wm, wu = split_unit(weight)
    check_float(wm, op="element_wise", arg="weight")
    probe = jax.eval_shape(lambda m: fn(m if wu.is_unitless else u.Quantity(m, unit=wu)), wm)
    out_unit = u.get_unit(probe) if isinstance(probe, u.Quantity) else u.UNITLESS
    out_shape = probe.shape if not isinstance(probe, u.Quantity) else probe.mantissa.shape
    if tuple(out_shape) != tuple(wm.shape):
        raise ValueError(
            f"braintrace.element_wise: `fn` maps a weight of shape {wm.shape} to shape {tuple(out_shape)}; "
            "it must act element by element and keep the shape."
        )
    mfn = _MantissaFn(fn, wu, out_unit)
    return with_unit(etp_elemwise_p.bind(wm, fn=mfn), out_unit)
