r"""Leaky read-out layers for spiking networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax.numpy as jnp
import numpy as np
import saiunit as u

from ..errors import IncompatibleUnitsError, InvalidArgumentError
from ..primitives import matmul
from .checks import check_batch, check_trailing, layer_label, to_size

__all__ = ["LeakyRateReadout"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any


class LeakyRateReadout(brainstate.nn.Module):
    r"""Leaky integrator read-out: a low-pass filtered linear projection of spikes.

    .. math::

        \kappa = e^{-\Delta t/\tau}, \qquad
        r^t = \kappa\, r^{t-1} + x^t W

    The product goes through :func:`braintrace.matmul` and :math:`r` is a
    ``brainstate.HiddenState``, so :math:`W` learns online (the recurrence is
    element-wise: D_RTRL is exact for it).

    Parameters
    ----------
    in_size : int or tuple of int
        Input size; the last entry is :math:`I`, leading entries must equal
        those of ``out_size``.
    out_size : int or tuple of int
        Output size; the last entry is :math:`O`.
    tau : float, Quantity or array, default 5 ms
        Time constant :math:`\tau` (a scalar, or one per output unit); not used
        when ``decay`` is given.
    w_init : initializer or array, default ``KaimingNormal()``
        :math:`W`, shape ``(I, O)``.
    r_init : initializer or array, default ``ZeroInit()``
        Initial :math:`r`.
    name : str, optional
        Module name.
    decay : float, optional (keyword only)
        :math:`\kappa` in (0, 1) directly, instead of ``tau`` and ``dt``.
    dt : float or Quantity, optional (keyword only)
        Step :math:`\Delta t` (same unit as ``tau``); default
        ``brainstate.environ.get_dt()``, read whenever :attr:`decay` is.

    Attributes
    ----------
    in_size, out_size : tuple of int
    tau
        As given.
    decay : float or array
        :math:`\kappa` (the ``decay`` given, else :math:`e^{-\Delta t/\tau}`).
    r_init
        As given.
    W : brainstate.ParamState
        :math:`W`, a bare array of shape ``(I, O)``; path ``('W',)``.
    r : brainstate.HiddenState
        Shape ``out_size`` or ``(B, *out_size)``, made by :meth:`init_state`.

    Raises
    ------
    InvalidArgumentError
        ``decay`` outside (0, 1), or sizes whose leading entries differ
        (construction).
    IncompatibleUnitsError
        ``dt`` and ``tau`` whose ratio is not dimensionless (construction when
        ``dt`` is known then, else at the first call).
    ShapeMismatchError
        An input of the wrong size or batch shape (call).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp, saiunit as u
    >>> import braintrace
    >>> readout = braintrace.nn.LeakyRateReadout(3, 2, decay=0.5, w_init=jnp.ones((3, 2)))
    >>> _ = brainstate.nn.init_all_states(readout)
    >>> [readout(jnp.ones(3)).tolist() for _ in range(2)]
    [[3.0, 3.0], [4.5, 4.5]]
    >>> with brainstate.environ.context(dt=0.1 * u.ms):
    ...     print(round(float(braintrace.nn.LeakyRateReadout(256, 10).decay), 6))
    0.980199
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        out_size: int | tuple[int, ...],
        tau: Any = 5.0 * u.ms,
        w_init: Initializer = init.KaimingNormal(),
        r_init: Initializer = init.ZeroInit(),
        name: str | None = None,
        *,
        decay: float | None = None,
        dt: Any = None,
    ) -> None:
        super().__init__(name=name)
        label = type(self).__name__
        self.in_size = to_size(in_size, label, "in_size")
        self.out_size = to_size(out_size, label, "out_size")
        if self.in_size[:-1] != self.out_size[:-1]:
            raise InvalidArgumentError(
                f"{self._label}: all but the last axis of in_size and out_size must agree, got "
                f"in_size={self.in_size} and out_size={self.out_size}."
            )
        if decay is not None and not (0.0 < float(decay) < 1.0):
            raise InvalidArgumentError(f"{self._label}: decay={decay} must lie in (0, 1).")
        self.tau, self.dt, self.r_init = tau, dt, r_init
        self._decay = decay
        if decay is None and (dt is not None or "dt" in brainstate.environ.all()):
            _ = self.decay  # the unit check, now rather than at the first step
        self.W = brainstate.ParamState(
            init.param(w_init, (self.in_size[-1], self.out_size[-1]), allow_none=False)
        )

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size, out_size=self.out_size)

    @property
    def decay(self) -> Any:
        r""":math:`\kappa`: the ``decay`` given, else :math:`e^{-\Delta t/\tau}` (``dt`` or the environment's)."""
        if self._decay is not None:
            return self._decay
        dt = self.dt if self.dt is not None else brainstate.environ.get_dt()
        ratio = dt / self.tau
        if isinstance(ratio, u.Quantity) and not u.get_unit(ratio).is_unitless:
            raise IncompatibleUnitsError(
                f"{self._label}: dt={dt} and tau={self.tau} must have the same unit (dt/tau must be "
                "dimensionless); pass dt=... in the unit of tau, or give decay=... instead."
            )
        return jnp.exp(-jnp.asarray(u.get_magnitude(ratio)))

    def _initial_r(self, batch_size: int | None) -> Any:
        value = init.param(self.r_init, self.out_size, batch_size)
        if np.ndim(value) == 0:
            shape = self.out_size if batch_size is None else (batch_size,) + self.out_size
            value = jnp.full(shape, value, dtype=brainstate.environ.dftype())
        return value

    def init_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Create ``r``, shape ``(O,)`` or ``(batch_size, O)``.

        Parameters
        ----------
        batch_size : int, optional
            Size of a leading batch axis; ``None`` (default) for unbatched states.
        **kwargs
            Ignored (the ``brainstate.nn.Module`` signature).
        """
        self.r = brainstate.HiddenState(self._initial_r(batch_size))

    def reset_state(self, batch_size: int | None = None, **kwargs: Any) -> None:
        """Reset ``r`` in place (same object).

        Parameters
        ----------
        batch_size : int, optional
            Size of a leading batch axis; ``None`` (default) for unbatched states.
        **kwargs
            Ignored (the ``brainstate.nn.Module`` signature).
        """
        self.r.value = self._initial_r(batch_size)

    def update(self, x: Any) -> Any:
        """One time step.

        Parameters
        ----------
        x : array_like
            The input of this step, shape ``(I,)`` or ``(B, I)``.

        Returns
        -------
        jax.Array
            :math:`r^t`, the new read-out value.
        """
        check_trailing(self._label, x, self.in_size)
        check_batch(self._label, x, len(self.out_size), jnp.shape(self.r.value), "r")
        r = self.decay * self.r.value + matmul(x, self.W.value)
        self.r.value = r
        return r
