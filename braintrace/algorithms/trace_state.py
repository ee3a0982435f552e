"""The eligibility-trace state and a leaky gradient accumulator."""

from __future__ import annotations

import numbers
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import saiunit as u

from ..errors import ArgumentTypeError, IncompatibleUnitsError, InvalidArgumentError

__all__ = ["EligibilityTrace", "GradExpon"]


class EligibilityTrace(brainstate.ShortTermState):
    """The state for storing the eligibility trace during online learning.

    A learner keeps one ``EligibilityTrace`` per (relation, hidden group); its
    value is a dict of arrays whose layout is chosen by the algorithm and the
    primitive (see :mod:`braintrace.primitives.trace_rules`). Like every
    short-term state it is reset to zeros by ``reset_state``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> tr = braintrace.EligibilityTrace({'weight': jnp.zeros((3, 2, 1))})
    >>> tr.value['weight'].shape
    (3, 2, 1)
    """

    __module__ = "braintrace"


class GradExpon(brainstate.nn.Module):
    r"""Accumulate gradients with an exponential (leaky) running sum.

    .. math:: G^t = λ\, G^{t-1} + g^t

    with the decay ``λ`` given, or :math:`λ = e^{-\Delta t / τ}` from a time
    constant ``τ``. Useful to smooth per-step online gradients before an
    optimizer step. The sum is held in :attr:`gradients`, a
    ``brainstate.LongTermState``; :meth:`reset_state` zeroes it.

    Parameters
    ----------
    grad_shape : pytree
        Example gradients (e.g. the ``ParamState`` values, or
        ``jax.ShapeDtypeStruct`` leaves); gives the shapes and dtypes.
    tau_or_decay : float or saiunit.Quantity
        A float is the decay ``λ``, in the open interval ``(0, 1)``. A time
        constant with units (``10. * u.ms``) gives
        ``λ = exp(-dt / τ)`` with ``dt = brainstate.environ.get_dt()`` (set
        it first, with units). An ``int`` (or any other type) is refused.
    name : str, optional
        Module name.

    Attributes
    ----------
    gradients : brainstate.LongTermState
        :math:`G`, a pytree of the structure of ``grad_shape``.
    decay : float
        ``λ``.

    Raises
    ------
    InvalidArgumentError
        A decay (given or computed from ``τ``) outside ``(0, 1)``; it is also
        an ``AssertionError`` (braintrace 0.2.0 asserted it) and a
        ``ValueError``.
    ArgumentTypeError
        ``tau_or_decay`` is an ``int``, a ``bool`` or not a number (also a
        ``TypeError``).
    IncompatibleUnitsError
        ``dt / τ`` is not dimensionless (e.g. ``τ`` in ms and a unitless
        ``dt``); also a ``TypeError``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp, saiunit as u
    >>> import braintrace
    >>> acc = braintrace.GradExpon({'w': jnp.zeros(2)}, 0.5)
    >>> acc.update({'w': jnp.ones(2)})
    >>> acc.update({'w': jnp.ones(2)})
    >>> acc.gradients.value['w'].tolist()
    [1.5, 1.5]
    >>> with brainstate.environ.context(dt=1.0 * u.ms):
    ...     round(braintrace.GradExpon({'w': jnp.zeros(2)}, 10.0 * u.ms).decay, 6)
    0.904837
    """

    def __init__(self, grad_shape: Any, tau_or_decay: Any, name: str | None = None) -> None:
        super().__init__(name=name)
        self.decay: float = _decay_of(tau_or_decay)
        self.gradients = brainstate.LongTermState(jax.tree.map(_zeros, grad_shape))

    def update(self, grads: Any) -> None:
        """``G = decay * G + grads``; returns ``None`` (read :attr:`gradients`).

        Parameters
        ----------
        grads : pytree
            Gradients of the structure and shapes of ``grad_shape``.
        """
        self.gradients.value = jax.tree.map(lambda a, g: self.decay * a + g, self.gradients.value, grads)

    def reset_state(self, *args: Any, **kwargs: Any) -> None:
        """Zero :attr:`gradients`.

        Parameters
        ----------
        *args, **kwargs
            Ignored (accepted as by ``brainstate.nn.Module.reset_state``).
        """
        self.gradients.value = jax.tree.map(jnp.zeros_like, self.gradients.value)

    @property
    def total(self) -> Any:
        """The running sum, ``gradients.value`` (the name before 0.2.0 compatibility)."""
        return self.gradients.value


def _zeros(leaf: Any) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jnp.zeros(leaf.shape, leaf.dtype)
    return jnp.zeros_like(leaf)


def _decay_of(tau_or_decay: Any) -> float:
    """``λ`` from a float decay or a time constant with units (see :class:`GradExpon`)."""
    if isinstance(tau_or_decay, u.Quantity):
        tau = jnp.asarray(u.get_magnitude(tau_or_decay))
        if tau.size != 1 or not bool(tau.reshape(()) > 0):
            raise InvalidArgumentError(f"GradExpon: `tau_or_decay` must be one positive time constant, got {tau_or_decay}.")
        ratio = brainstate.environ.get_dt() / tau_or_decay
        if isinstance(ratio, u.Quantity) and not ratio.is_unitless:
            raise IncompatibleUnitsError(
                f"GradExpon: `tau_or_decay`={tau_or_decay} and brainstate.environ's dt="
                f"{brainstate.environ.get_dt()} give dt / tau = {ratio}, which is not dimensionless; give dt "
                "with the unit of time of tau (brainstate.environ.set(dt=0.1 * u.ms)), or a float decay."
            )
        decay = float(jnp.exp(-jnp.asarray(u.get_magnitude(ratio)).reshape(())))
        if not 0.0 < decay < 1.0:
            raise InvalidArgumentError(
                f"GradExpon: `tau_or_decay`={tau_or_decay} with dt={brainstate.environ.get_dt()} gives the decay "
                f"exp(-dt / tau) = {decay}, outside (0, 1); dt must be positive and tau not much smaller than dt."
            )
        return decay
    if isinstance(tau_or_decay, numbers.Integral) or not isinstance(tau_or_decay, numbers.Real):
        raise ArgumentTypeError(
            f"GradExpon: `tau_or_decay` must be a float decay in (0, 1) or a time constant with units "
            f"(e.g. 10. * u.ms), got {tau_or_decay!r} of type {type(tau_or_decay).__name__}."
        )
    decay = float(tau_or_decay)
    if not 0.0 < decay < 1.0:
        raise InvalidArgumentError(f"GradExpon: the decay `tau_or_decay` must lie in (0, 1), got {decay}.")
    return decay
