r"""Spiking neurons: integrate-and-fire, leaky and adaptive leaky integrate-and-fire.

A neuron has no input weights: ``update(x)`` takes the input already projected
by a layer (e.g. :class:`braintrace.nn.Linear`), in the unit of the membrane
potential, and returns spikes in {0, 1}. The membrane potential ``v`` (and the
adaptation ``a`` of :class:`ALIF`) are ``brainstate.HiddenState`` s.

Notation: :math:`v^t` membrane potential, :math:`x^t` input, :math:`s^t` spike,
:math:`v_{th}` threshold, :math:`H` the Heaviside step with the surrogate
gradient chosen by ``surrogate=`` (see :mod:`braintrace.nn.surrogate`),
:math:`\alpha = e^{-\Delta t/\tau}` the membrane decay per step.

The state ``v`` holds the potential *before* the reset; a step first resets by
the spike of the previous step, then integrates:

.. math::

    s^{t-1} &= H\big((v^{t-1} - \theta^{t-1}) / v_{th}\big) \\
    \tilde v^{t-1} &= \begin{cases}
        v^{t-1} - v_{th}\, s^{t-1} & \text{reset='subtract'} \\
        (1 - s^{t-1})\, v^{t-1} + s^{t-1} v_{reset} & \text{reset='zero'}
    \end{cases} \\
    s^t &= H\big((v^t - \theta^t) / v_{th}\big)

so ``get_spike()`` gives the last spike from the state alone (handy for
recurrent input). The reset is written with masks, never with ``cond``; with
``detach_reset=True`` the spike in the reset is wrapped in
``jax.lax.stop_gradient``. :math:`\theta = v_{th}` except for :class:`ALIF`.

Time constants are floats or saiunit quantities; the step :math:`\Delta t` is
the ``dt=`` argument or, if that is ``None``, ``brainstate.environ.get_dt()``
read at every call. ``dt`` and ``tau`` must have the same unit. With
``tau_learnable=True`` the decay :math:`\alpha` is computed from a per-neuron
``ParamState`` through :func:`braintrace.element_wise`, so :math:`\tau` learns
online.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import saiunit as u

from ..primitives import element_wise
from .checks import check_batch, check_trailing, layer_label, to_size
from .surrogate import get_surrogate

__all__ = ["IF", "LIF", "ALIF"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any
_RESETS = ("subtract", "zero")


def _exp_decay(tau: Any, dt: Any) -> Any:
    """:math:`e^{-\\Delta t/\\tau}` (dimensionless)."""
    return jnp.exp(-jnp.asarray(dt / tau))


class _Neuron(brainstate.nn.Module):
    """Threshold, reset, spike function and the ``v`` state shared by the neurons."""

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        v_th: Any,
        v_reset: Any,
        reset: str,
        surrogate: str | Callable[[Any], Any],
        detach_reset: bool,
        state_init: Initializer,
        name: str | None,
    ) -> None:
        super().__init__(name=name)
        self.in_size = to_size(in_size, type(self).__name__, "in_size")
        self.out_size = self.in_size
        if reset not in _RESETS:
            raise ValueError(f"{self._label}: reset={reset!r}; use one of {_RESETS}.")
        if np.any(np.asarray(u.get_mantissa(v_th)) == 0):
            raise ValueError(f"{self._label}: v_th must be non-zero (spikes are measured in units of v_th).")
        self._v_unit = u.get_unit(v_th)
        self.v_th = v_th
        self.v_reset = self._in_v_unit(v_reset, "v_reset")
        self.reset = reset
        self.spike_fn = get_surrogate(surrogate, self._label)
        self.detach_reset = detach_reset
        self._state_initializer = state_init

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size)

    def _in_v_unit(self, value: Any, arg: str) -> Any:
        """``value`` in the unit of ``v_th``; a plain number gets that unit."""
        if isinstance(value, u.Quantity):
            if u.get_unit(value).dim != self._v_unit.dim:
                raise ValueError(
                    f"{self._label}: `{arg}` has unit {u.get_unit(value)}, but the membrane potential "
                    f"has the unit of v_th ({self._v_unit}); give both the same dimension."
                )
            return value
        return value if self._v_unit.is_unitless else u.Quantity(value, unit=self._v_unit)

    def _dt_over(self, dt: Any, tau: Any, arg: str) -> Any:
        ratio = dt / tau
        if isinstance(ratio, u.Quantity) and not u.get_unit(ratio).is_unitless:
            raise ValueError(
                f"{self._label}: dt={dt} and {arg}={tau} must have the same unit (dt/{arg} must be "
                f"dimensionless); pass dt=... in the unit of {arg}, or set it with "
                "brainstate.environ.set(dt=...)."
            )
        return ratio

    def _dt(self) -> Any:
        return self.dt if self.dt is not None else brainstate.environ.get_dt()

    def _decay(self, tau_attr: str) -> Any:
        """:math:`e^{-\\Delta t/\\tau}` of ``self.<tau_attr>`` (a constant or a ParamState)."""
        dt = self._dt()
        tau = getattr(self, tau_attr)
        if isinstance(tau, brainstate.ParamState):
            self._dt_over(dt, tau.value, tau_attr)
            return element_wise(tau.value, functools.partial(_exp_decay, dt=dt))
        return jnp.exp(-jnp.asarray(self._dt_over(dt, tau, tau_attr)))

    def _tau_param(self, tau: Any, learnable: bool, arg: str) -> Any:
        if not learnable:
            return tau
        try:
            value = u.math.ones(self.in_size, dtype=brainstate.environ.dftype()) * tau
            ok = u.math.shape(value) == self.in_size
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"{self._label}: `{arg}` of shape {u.math.shape(tau)} does not broadcast to in_size {self.in_size}."
            )
        return brainstate.ParamState(value)

    def _initial_v(self, batch_size: int | None) -> Any:
        value = init.param(self._state_initializer, self.in_size, batch_size)
        shape = self.in_size if batch_size is None else (batch_size,) + self.in_size
        if np.ndim(u.get_mantissa(value)) == 0:
            value = u.math.ones(shape) * value
        return self._in_v_unit(value, "state_init")

    def init_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Create ``v``, shape ``in_size`` or ``(batch_size, *in_size)``.

        Parameters
        ----------
        batch_size : int, optional
            Size of a leading batch axis; ``None`` (default) for unbatched states.
        **kwargs
            Ignored (the ``brainstate.nn.Module`` signature).
        """
        self.v = brainstate.HiddenState(self._initial_v(batch_size))

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Reset ``v`` in place (same object).

        Parameters
        ----------
        batch_size : int, optional
            Size of a leading batch axis; ``None`` (default) for unbatched states.
        **kwargs
            Ignored (the ``brainstate.nn.Module`` signature).
        """
        self.v.value = self._initial_v(batch_size)

    def _threshold(self) -> Any:
        return self.v_th

    def _spike(self, v: Any, theta: Any) -> jax.Array:
        return self.spike_fn(u.maybe_decimal((v - theta) / self.v_th))

    def get_spike(self) -> jax.Array:
        """The spike of the last step, :math:`H((v - \\theta)/v_{th})`, from the current state."""
        return self._spike(self.v.value, self._threshold())

    def _reset(self, v: Any, s: jax.Array) -> Any:
        if self.detach_reset:
            s = jax.lax.stop_gradient(s)
        if self.reset == "subtract":
            return v - self.v_th * s
        return v * (1 - s) + self.v_reset * s

    def _check(self, x: Any) -> None:
        check_trailing(self._label, x, self.in_size)
        check_batch(self._label, x, len(self.in_size), u.math.shape(self.v.value), "v")


class IF(_Neuron):
    r"""Integrate-and-fire neuron (no leak).

    .. math:: v^t = \tilde v^{t-1} + x^t, \qquad s^t = H\big((v^t - v_{th}) / v_{th}\big)

    with :math:`\tilde v` the reset potential (module docstring).

    Parameters
    ----------
    in_size : int or tuple of int
        Number (shape) of neurons :math:`N`.
    v_th : float or Quantity, default 1.0
        Threshold; sets the unit of ``v`` and of the input.
    v_reset : float or Quantity, default 0.0
        Reset potential for ``reset='zero'``.
    reset : {'subtract', 'zero'}, default 'subtract'
        Reset by subtraction of :math:`v_{th}` or to :math:`v_{reset}`.
    surrogate : str or callable, default 'sigmoid'
        Spike function (see :mod:`braintrace.nn.surrogate`).
    detach_reset : bool, default False
        Stop the gradient through the spike in the reset.
    state_init : initializer or array, default ``ZeroInit()``
        Initial ``v``.
    name : str, optional
        Module name.

    Attributes
    ----------
    v : brainstate.HiddenState
        Shape ``(*in_size)`` or ``(B, *in_size)``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> neu = braintrace.nn.IF(2)
    >>> _ = brainstate.nn.init_all_states(neu)
    >>> [neu(jnp.array([0.6, 0.2])).tolist() for _ in range(2)]
    [[0.0, 0.0], [1.0, 0.0]]
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        v_th: Any = 1.0,
        v_reset: Any = 0.0,
        reset: str = "subtract",
        surrogate: str | Callable[[Any], Any] = "sigmoid",
        detach_reset: bool = False,
        state_init: Initializer = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, v_th, v_reset, reset, surrogate, detach_reset, state_init, name)

    def update(self, x: Any) -> jax.Array:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(..., *in_size)``, in the unit of ``v``.

        Returns
        -------
        jax.Array
            :math:`s^t`, the spikes of this step.
        """
        self._check(x)
        v = self.v.value
        v = self._reset(v, self._spike(v, self.v_th)) + x
        self.v.value = v
        return self._spike(v, self.v_th)


class LIF(_Neuron):
    r"""Leaky integrate-and-fire neuron.

    .. math::

        \alpha = e^{-\Delta t / \tau}, \qquad
        v^t = \alpha\, \tilde v^{t-1} + x^t, \qquad
        s^t = H\big((v^t - v_{th}) / v_{th}\big)

    The input enters per step (no :math:`1-\alpha` factor), as in e-prop
    (Bellec et al., 2020); scale it through the input layer's weights.

    Parameters
    ----------
    in_size : int or tuple of int
        Number (shape) of neurons :math:`N`.
    tau : float or Quantity, default 20 ms
        Membrane time constant :math:`\tau`, scalar or shape ``in_size``.
    v_th, v_reset, reset, surrogate, detach_reset, state_init, name
        As in :class:`IF`.
    tau_learnable : bool, default False
        Keep :math:`\tau` as ParamState ``tau`` (shape ``in_size``) used through
        :func:`braintrace.element_wise`.
    dt : float or Quantity, optional
        Step :math:`\Delta t`; default ``brainstate.environ.get_dt()`` at call time.

    Attributes
    ----------
    v : brainstate.HiddenState
        Shape ``(*in_size)`` or ``(B, *in_size)``.
    tau : brainstate.ParamState or constant
        A ParamState (path ``('tau',)``) when ``tau_learnable=True``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp, saiunit as u
    >>> import braintrace
    >>> neu = braintrace.nn.LIF(3, tau=10. * u.ms, dt=1. * u.ms)
    >>> _ = brainstate.nn.init_all_states(neu, 2)
    >>> neu(jnp.full((2, 3), 1.5)).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]

    References
    ----------
    .. [1] Bellec, G. et al. (2020). A solution to the learning dilemma for
       recurrent networks of spiking neurons. Nature Communications, 11, 3625.
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        tau: Any = 20.0 * u.ms,
        v_th: Any = 1.0,
        v_reset: Any = 0.0,
        reset: str = "subtract",
        surrogate: str | Callable[[Any], Any] = "sigmoid",
        detach_reset: bool = False,
        tau_learnable: bool = False,
        dt: Any = None,
        state_init: Initializer = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, v_th, v_reset, reset, surrogate, detach_reset, state_init, name)
        self.dt = dt
        self.tau = self._tau_param(tau, tau_learnable, "tau")

    def update(self, x: Any) -> jax.Array:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(..., *in_size)``, in the unit of ``v``.

        Returns
        -------
        jax.Array
            :math:`s^t`, the spikes of this step.
        """
        self._check(x)
        alpha = self._decay("tau")
        v = self.v.value
        v = alpha * self._reset(v, self._spike(v, self.v_th)) + x
        self.v.value = v
        return self._spike(v, self.v_th)


class ALIF(_Neuron):
    r"""Adaptive leaky integrate-and-fire neuron (Bellec et al., 2018; 2020).

    An adaptation variable :math:`a` counts recent spikes and raises the threshold:

    .. math::

        \theta^{t} &= v_{th}\,(1 + \beta a^{t}) \\
        s^{t-1} &= H\big((v^{t-1} - \theta^{t-1}) / v_{th}\big) \\
        a^t &= \rho\, a^{t-1} + s^{t-1}, \qquad \rho = e^{-\Delta t/\tau_a} \\
        v^t &= \alpha\, \tilde v^{t-1} + x^t, \qquad \alpha = e^{-\Delta t/\tau} \\
        s^t &= H\big((v^t - \theta^t) / v_{th}\big)

    with :math:`\tilde v` reset by :math:`v_{th}` (``'subtract'``) or to
    :math:`v_{reset}` (``'zero'``). :math:`v` and :math:`a` are two hidden states
    coupled element-wise through the spike. :math:`\beta` is relative to
    :math:`v_{th}` (e-prop's :math:`\beta` divided by :math:`v_{th}`), so it is
    dimensionless.

    Parameters
    ----------
    in_size : int or tuple of int
        Number (shape) of neurons :math:`N`.
    tau : float or Quantity, default 20 ms
        Membrane time constant :math:`\tau`.
    tau_a : float or Quantity, default 200 ms
        Adaptation time constant :math:`\tau_a` (same unit as ``tau``).
    beta : float, default 0.2
        Adaptation strength :math:`\beta` (dimensionless).
    v_th, v_reset, reset, surrogate, detach_reset, state_init, name
        As in :class:`IF`.
    tau_learnable : bool, default False
        Keep :math:`\tau` and :math:`\tau_a` as ParamStates ``tau`` and ``tau_a``
        (shape ``in_size``) used through :func:`braintrace.element_wise`.
    dt : float or Quantity, optional
        Step :math:`\Delta t`; default ``brainstate.environ.get_dt()`` at call time.

    Attributes
    ----------
    v : brainstate.HiddenState
        Membrane potential, shape ``(*in_size)`` or ``(B, *in_size)``.
    a : brainstate.HiddenState
        Adaptation (dimensionless), same shape.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> neu = braintrace.nn.ALIF(1, tau=10., tau_a=100., beta=1.0, dt=1.)
    >>> _ = brainstate.nn.init_all_states(neu)
    >>> [float(neu(jnp.array([1.2]))[0]) for _ in range(3)]
    [1.0, 0.0, 1.0]
    >>> neu.a.value.shape
    (1,)

    References
    ----------
    .. [1] Bellec, G., Salaj, D., Subramoney, A., Legenstein, R., & Maass, W.
       (2018). Long short-term memory and learning-to-learn in networks of
       spiking neurons. NeurIPS.
    .. [2] Bellec, G. et al. (2020). A solution to the learning dilemma for
       recurrent networks of spiking neurons. Nature Communications, 11, 3625.
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        tau: Any = 20.0 * u.ms,
        tau_a: Any = 200.0 * u.ms,
        beta: float = 0.2,
        v_th: Any = 1.0,
        v_reset: Any = 0.0,
        reset: str = "subtract",
        surrogate: str | Callable[[Any], Any] = "sigmoid",
        detach_reset: bool = False,
        tau_learnable: bool = False,
        dt: Any = None,
        state_init: Initializer = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(in_size, v_th, v_reset, reset, surrogate, detach_reset, state_init, name)
        self.dt = dt
        self.beta = beta
        self.tau = self._tau_param(tau, tau_learnable, "tau")
        self.tau_a = self._tau_param(tau_a, tau_learnable, "tau_a")

    def init_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Create ``v`` and ``a``, shape ``in_size`` or ``(batch_size, *in_size)``.

        Parameters
        ----------
        batch_size : int, optional
            Size of a leading batch axis; ``None`` (default) for unbatched states.
        **kwargs
            Ignored (the ``brainstate.nn.Module`` signature).
        """
        super().init_state(batch_size)
        self.a = brainstate.HiddenState(jnp.zeros(u.math.shape(self.v.value), brainstate.environ.dftype()))

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Reset ``v`` and ``a`` in place (same objects).

        Parameters
        ----------
        batch_size : int, optional
            Size of a leading batch axis; ``None`` (default) for unbatched states.
        **kwargs
            Ignored (the ``brainstate.nn.Module`` signature).
        """
        super().reset_state(batch_size)
        self.a.value = jnp.zeros(u.math.shape(self.v.value), brainstate.environ.dftype())

    def _threshold(self, a: Any = None) -> Any:
        return self.v_th * (1 + self.beta * (self.a.value if a is None else a))

    def update(self, x: Any) -> jax.Array:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(..., *in_size)``, in the unit of ``v``.

        Returns
        -------
        jax.Array
            :math:`s^t`, the spikes of this step.
        """
        self._check(x)
        alpha, rho = self._decay("tau"), self._decay("tau_a")
        v, a = self.v.value, self.a.value
        s_prev = self._spike(v, self._threshold(a))
        v = alpha * self._reset(v, s_prev) + x
        a = rho * a + s_prev
        self.v.value = v
        self.a.value = a
        return self._spike(v, self._threshold(a))
