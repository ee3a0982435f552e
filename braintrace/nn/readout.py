r"""Leaky read-out layers for spiking networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax.numpy as jnp
import numpy as np
import saiunit as u

from ..primitives import matmul
from .checks import check_batch, check_trailing, layer_label, to_size

__all__ = ["LeakyRateReadout"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any


class LeakyRateReadout(brainstate.nn.Module):
    r"""Leaky integrator read-out: a low-pass filtered linear projection of spikes.

    .. math::

        \kappa = e^{-\Delta t/\tau}, \qquad
        r^t = \kappa\, r^{t-1} + x^t W + b

    The product goes through :func:`braintrace.matmul` and :math:`r` is a
    ``brainstate.HiddenState``, so :math:`W` learns online (the recurrence is
    element-wise: D_RTRL is exact for it).

    Parameters
    ----------
    in_size : int
        :math:`I`.
    out_size : int
        :math:`O`.
    tau : float or Quantity, default 5 ms
        Time constant :math:`\tau`; ignored when ``decay`` is given.
    w_init : initializer or array, default ``KaimingNormal()``
        :math:`W`, shape ``(I, O)``.
    b_init : initializer, array or None, default None
        :math:`b`, shape ``(O,)``; none by default.
    r_init : initializer or array, default ``ZeroInit()``
        Initial :math:`r`.
    decay : float, optional
        :math:`\kappa` in (0, 1) directly, instead of ``tau`` and ``dt``.
    dt : float or Quantity, optional
        Step :math:`\Delta t` (same unit as ``tau``); default
        ``brainstate.environ.get_dt()`` at call time.
    name : str, optional
        Module name.

    Attributes
    ----------
    r : brainstate.HiddenState
        Shape ``(O,)`` or ``(B, O)``.
    weight : brainstate.ParamState
        ``dict(weight=(I, O))`` plus ``bias=(O,)`` if ``b_init`` is given; path ``('weight',)``.

    Raises
    ------
    ValueError
        ``decay`` outside (0, 1), ``dt`` and ``tau`` of different units, or an
        input of the wrong size.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> readout = braintrace.nn.LeakyRateReadout(3, 2, decay=0.5, w_init=jnp.ones((3, 2)))
    >>> _ = brainstate.nn.init_all_states(readout)
    >>> [readout(jnp.ones(3)).tolist() for _ in range(2)]
    [[3.0, 3.0], [4.5, 4.5]]
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        tau: Any = 5.0 * u.ms,
        w_init: Initializer = init.KaimingNormal(),
        b_init: Initializer | None = None,
        r_init: Initializer = init.ZeroInit(),
        decay: float | None = None,
        dt: Any = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        label = type(self).__name__
        self.in_size = to_size(in_size, label, "in_size")
        self.out_size = to_size(out_size, label, "out_size")
        for arg, size in (("in_size", self.in_size), ("out_size", self.out_size)):
            if len(size) != 1:
                raise ValueError(f"{self._label}: `{arg}` must be an int, got {size}.")
        if decay is not None and not (0.0 < float(decay) < 1.0):
            raise ValueError(f"{self._label}: decay={decay} must lie in (0, 1).")
        self.tau, self.decay, self.dt = tau, decay, dt
        self._r_init = r_init
        shape = (self.in_size[0], self.out_size[0])
        params = dict(weight=init.param(w_init, shape, allow_none=False))
        if b_init is not None:
            params["bias"] = init.param(b_init, (self.out_size[0],), allow_none=False)
        self.weight = brainstate.ParamState(params)

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size, out_size=self.out_size)

    def _initial_r(self, batch_size: int | None) -> Any:
        value = init.param(self._r_init, self.out_size, batch_size)
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

    def _kappa(self) -> Any:
        if self.decay is not None:
            return self.decay
        dt = self.dt if self.dt is not None else brainstate.environ.get_dt()
        ratio = dt / self.tau
        if isinstance(ratio, u.Quantity) and not u.get_unit(ratio).is_unitless:
            raise ValueError(
                f"{self._label}: dt={dt} and tau={self.tau} must have the same unit (dt/tau must be "
                "dimensionless); pass dt=... in the unit of tau, or give decay=... instead."
            )
        return jnp.exp(-jnp.asarray(ratio))

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
        check_batch(self._label, x, 1, jnp.shape(self.r.value), "r")
        params = self.weight.value
        r = self._kappa() * self.r.value + matmul(x, params["weight"], params.get("bias"))
        self.r.value = r
        return r
