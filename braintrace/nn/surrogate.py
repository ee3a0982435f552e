r"""Spike functions with surrogate gradients.

Each function returns the Heaviside step of its (dimensionless) argument in the
forward pass,

.. math:: s = H(x) = \begin{cases} 1 & x \ge 0 \\ 0 & x < 0 \end{cases}

and replaces the derivative :math:`H'(x) = \delta(x)` by a smooth pseudo-derivative
:math:`g_\alpha(x)` whose sharpness is set by ``alpha``. They are
:func:`jax.custom_jvp` functions, so forward-mode and reverse-mode differentiation
(and therefore the eligibility-trace Jacobians) both use :math:`g_\alpha`.

========================  ===================================================  ==============
name                      pseudo-derivative :math:`g_\alpha(x)`                 default alpha
========================  ===================================================  ==============
``'sigmoid'``             :math:`\alpha\, \sigma(\alpha x)(1 - \sigma(\alpha x))`  4
``'fast_sigmoid'``        :math:`1 / (1 + \alpha |x|)^2` (SuperSpike)           10
``'arctan'``              :math:`\alpha / \big(2 (1 + (\pi \alpha x / 2)^2)\big)`  2
========================  ===================================================  ==============

``'super_spike'`` is accepted as a name for ``'fast_sigmoid'``. :data:`SURROGATES`
maps each name to its function (read-only).

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from braintrace.nn import surrogate
>>> sorted(surrogate.SURROGATES)
['arctan', 'fast_sigmoid', 'sigmoid', 'super_spike']
>>> x = jnp.array([-1.0, 0.0, 2.0])
>>> surrogate.SURROGATES["sigmoid"](x).tolist()
[0.0, 1.0, 1.0]
>>> float(jax.grad(lambda v: surrogate.sigmoid(v, alpha=4.0))(0.0))   # alpha * 1/2 * 1/2
1.0
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["sigmoid", "fast_sigmoid", "arctan", "get_surrogate", "SURROGATES"]


def _heaviside(x: jax.Array) -> jax.Array:
    return (x >= 0).astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _sigmoid_spike(x, alpha):
    return _heaviside(x)


@_sigmoid_spike.defjvp
def _sigmoid_spike_jvp(alpha, primals, tangents):
    (x,), (t,) = primals, tangents
    sg = jax.nn.sigmoid(alpha * x)
    return _heaviside(x), t * (alpha * sg * (1 - sg))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _fast_sigmoid_spike(x, alpha):
    return _heaviside(x)


@_fast_sigmoid_spike.defjvp
def _fast_sigmoid_spike_jvp(alpha, primals, tangents):
    (x,), (t,) = primals, tangents
    return _heaviside(x), t / (1 + alpha * jnp.abs(x)) ** 2


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _arctan_spike(x, alpha):
    return _heaviside(x)


@_arctan_spike.defjvp
def _arctan_spike_jvp(alpha, primals, tangents):
    (x,), (t,) = primals, tangents
    return _heaviside(x), t * (alpha / (2 * (1 + (math.pi / 2 * alpha * x) ** 2)))


def _as_float_array(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def sigmoid(x: Any, alpha: float = 4.0) -> jax.Array:
    r"""Heaviside spike with the sigmoid surrogate gradient.

    .. math:: s = H(x), \qquad \frac{\partial s}{\partial x} := \alpha\, \sigma(\alpha x)\big(1 - \sigma(\alpha x)\big)

    Parameters
    ----------
    x : array
        Dimensionless distance to threshold, e.g. :math:`(v - v_{th}) / v_{th}`.
    alpha : float, default 4.0
        Sharpness; the pseudo-derivative peaks at :math:`\alpha / 4`.

    Returns
    -------
    array
        Spikes in {0, 1}, shape and float dtype of ``x``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.nn import surrogate
    >>> surrogate.sigmoid(jnp.array([-0.5, 0.0, 0.5])).tolist()
    [0.0, 1.0, 1.0]
    >>> float(jax.grad(surrogate.sigmoid)(0.0))
    1.0
    """
    return _sigmoid_spike(_as_float_array(x), alpha)


def fast_sigmoid(x: Any, alpha: float = 10.0) -> jax.Array:
    r"""Heaviside spike with the fast-sigmoid (SuperSpike) surrogate gradient.

    .. math:: s = H(x), \qquad \frac{\partial s}{\partial x} := \frac{1}{(1 + \alpha |x|)^2}

    Parameters
    ----------
    x : array
        Dimensionless distance to threshold.
    alpha : float, default 10.0
        Sharpness (larger is narrower); the peak value is 1.

    Returns
    -------
    array
        Spikes in {0, 1}.

    Examples
    --------
    >>> import jax
    >>> from braintrace.nn import surrogate
    >>> float(jax.grad(surrogate.fast_sigmoid)(0.1))
    0.25

    References
    ----------
    .. [1] Zenke, F., & Ganguli, S. (2018). SuperSpike: Supervised learning in
       multilayer spiking neural networks. Neural Computation, 30(6), 1514-1541.
    """
    return _fast_sigmoid_spike(_as_float_array(x), alpha)


def arctan(x: Any, alpha: float = 2.0) -> jax.Array:
    r"""Heaviside spike with the arctangent surrogate gradient.

    .. math:: s = H(x), \qquad \frac{\partial s}{\partial x} := \frac{\alpha}{2\big(1 + (\frac{\pi}{2} \alpha x)^2\big)}

    the derivative of :math:`\frac{1}{\pi}\arctan(\frac{\pi}{2}\alpha x) + \frac12`.

    Parameters
    ----------
    x : array
        Dimensionless distance to threshold.
    alpha : float, default 2.0
        Sharpness; the peak value is :math:`\alpha / 2`.

    Returns
    -------
    array
        Spikes in {0, 1}.

    Examples
    --------
    >>> import jax
    >>> from braintrace.nn import surrogate
    >>> float(jax.grad(surrogate.arctan)(0.0))
    1.0

    References
    ----------
    .. [1] Fang, W., Yu, Z., Chen, Y., Masquelier, T., Huang, T., & Tian, Y.
       (2021). Incorporating learnable membrane time constant to enhance
       learning of spiking neural networks. ICCV.
    """
    return _arctan_spike(_as_float_array(x), alpha)


SURROGATES: MappingProxyType = MappingProxyType(
    {"sigmoid": sigmoid, "fast_sigmoid": fast_sigmoid, "super_spike": fast_sigmoid, "arctan": arctan}
)
"""The named spike functions accepted by ``surrogate=`` (read-only)."""


def get_surrogate(spec: str | Callable[[Any], Any], label: str = "surrogate") -> Callable[[Any], Any]:
    """Resolve ``spec`` (a key of :data:`SURROGATES` or a callable ``x -> spikes``).

    Examples
    --------
    >>> from braintrace.nn import surrogate
    >>> surrogate.get_surrogate('arctan') is surrogate.arctan
    True
    """
    if isinstance(spec, str):
        try:
            return SURROGATES[spec]
        except KeyError:
            raise ValueError(
                f"{label}: unknown surrogate {spec!r}; use one of {sorted(SURROGATES)} or a callable "
                "x -> spikes (e.g. functools.partial(braintrace.nn.surrogate.sigmoid, alpha=10.0))."
            ) from None
    if callable(spec):
        return spec
    raise TypeError(f"{label}: `surrogate` must be a name or a callable, got {type(spec).__name__}.")
