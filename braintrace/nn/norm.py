r"""Batch and layer normalisation.

The statistics are plain JAX (means over axes, written with flat primitives).
The learnable scale :math:`\gamma` and shift :math:`\beta` enter through
:func:`braintrace.element_wise` (identity), so when the normalised output feeds a
hidden state they take part in online learning like any element-wise
parameter; otherwise they receive their instantaneous gradient. Both sit in one
``ParamState`` called ``weight``: ``dict(scale=..., bias=...)``, as in brainstate.

Note that normalisation mixes positions (features for :class:`LayerNorm`, batch
elements for :class:`BatchNorm1d`): an ETP product normalised on its way to a
hidden state no longer reaches each state position through that position alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..primitives import element_wise
from .checks import check_trailing, layer_label, to_size

__all__ = ["BatchNorm1d", "LayerNorm"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any


def _negative_axes(axes: int | Sequence[int], ndim: int, label: str, arg: str) -> tuple[int, ...]:
    """Axes of a tensor of ``ndim`` (non-batch) axes, as negative indices."""
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    out = []
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"{label}: `{arg}` contains axis {ax}, out of range for in_size of {ndim} axes.")
        out.append(ax - ndim if ax >= 0 else ax)
    return tuple(sorted(set(out)))


def _affine(in_size: tuple[int, ...], feature_axes: tuple[int, ...], scale_init, bias_init):
    shape = tuple(s if (i - len(in_size)) in feature_axes else 1 for i, s in enumerate(in_size))
    params = {}
    if scale_init is not None:
        params["scale"] = init.param(scale_init, shape, allow_scalar=False)
    if bias_init is not None:
        params["bias"] = init.param(bias_init, shape, allow_scalar=False)
    return shape, params


def _normalize(x, mean, var, eps, params):
    y = (x - mean) * jax.lax.rsqrt(var + eps)
    if "scale" in params:
        y = y * element_wise(params["scale"])
    if "bias" in params:
        y = y + element_wise(params["bias"])
    return y


class LayerNorm(brainstate.nn.Module):
    r"""Layer normalisation (Ba et al., 2016): each sample normalised over its own features.

    .. math::

        \mu = \langle x \rangle_{\mathcal R}, \quad
        \sigma^2 = \langle (x - \mu)^2 \rangle_{\mathcal R}, \quad
        y = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    with :math:`\langle\cdot\rangle_{\mathcal R}` the mean over ``reduction_axes``.

    Parameters
    ----------
    in_size : int or tuple of int
        Shape of one sample (without batch axes).
    reduction_axes : int or tuple of int, default -1
        Axes of ``in_size`` averaged over, :math:`\mathcal R`.
    feature_axes : int or tuple of int, default -1
        Axes of ``in_size`` along which :math:`\gamma, \beta` vary.
    epsilon : float, default 1e-6
        :math:`\epsilon`.
    use_bias, use_scale : bool, default True
        Learn :math:`\beta` / :math:`\gamma`.
    bias_init, scale_init : initializer
        Defaults ``ZeroInit()`` and ``Constant(1.0)``.
    name : str, optional
        Module name.

    Attributes
    ----------
    weight : brainstate.ParamState or None
        ``dict(scale=..., bias=...)`` of the feature shape (``in_size`` with 1
        on non-feature axes).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> ln = braintrace.nn.LayerNorm(4)
    >>> y = ln(jnp.array([[1., 2., 3., 4.]]))
    >>> round(float(y.mean()), 6), y.shape
    (0.0, (1, 4))

    References
    ----------
    .. [1] Ba, J. L., Kiros, J. R., & Hinton, G. E. (2016). Layer normalization.
       arXiv:1607.06450.
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        reduction_axes: int | Sequence[int] = -1,
        feature_axes: int | Sequence[int] = -1,
        *,
        epsilon: float = 1e-6,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Initializer = init.ZeroInit(),
        scale_init: Initializer = init.Constant(1.0),
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.in_size = to_size(in_size, type(self).__name__, "in_size")
        self.out_size = self.in_size
        n = len(self.in_size)
        self.reduction_axes = _negative_axes(reduction_axes, n, self._label, "reduction_axes")
        self.feature_axes = _negative_axes(feature_axes, n, self._label, "feature_axes")
        self.epsilon = epsilon
        _, params = _affine(
            self.in_size, self.feature_axes,
            scale_init if use_scale else None, bias_init if use_bias else None,
        )
        self.weight = brainstate.ParamState(params) if params else None

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size)

    def update(self, x: Any) -> Any:
        """Normalise ``x`` of shape ``(..., *in_size)``; same output shape."""
        check_trailing(self._label, x, self.in_size)
        mean = jnp.mean(x, axis=self.reduction_axes, keepdims=True)
        var = jnp.mean((x - mean) ** 2, axis=self.reduction_axes, keepdims=True)
        params = self.weight.value if self.weight is not None else {}
        return _normalize(x, mean, var, self.epsilon, params)


class BatchNorm1d(brainstate.nn.Module):
    r"""Batch normalisation (Ioffe & Szegedy, 2015) of each feature over the batch.

    In fitting mode (``brainstate.environ`` key ``fit``; ``True`` when unset) the
    statistics are those of the current input over every axis except the
    feature axes (batch axes included), and running statistics are updated;
    otherwise the running statistics are used:

    .. math::

        \mu, \sigma^2 &= \text{mean and variance of } x \text{ over all non-feature axes} \\
        \bar\mu &\leftarrow m \bar\mu + (1 - m) \mu, \qquad
        \bar\sigma^2 \leftarrow m \bar\sigma^2 + (1 - m) \sigma^2 \\
        y &= \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    Parameters
    ----------
    in_size : int or tuple of int
        Shape of one sample, e.g. ``(C,)`` for inputs ``(B, C)`` or ``(L, C)``
        for inputs ``(B, L, C)``.
    feature_axis : int or tuple of int, default -1
        Axes of ``in_size`` that are features (normalised separately).
    track_running_stats : bool, default True
        Keep running statistics (``BatchState`` s ``running_mean``,
        ``running_var``) and use them outside fitting mode.
    epsilon : float, default 1e-5
        :math:`\epsilon`.
    momentum : float, default 0.99
        :math:`m`.
    affine : bool, default True
        Learn :math:`\gamma, \beta`.
    bias_initializer, scale_initializer : initializer
        Defaults ``Constant(0.)`` and ``Constant(1.)``.
    name : str, optional
        Module name.

    Attributes
    ----------
    weight : brainstate.ParamState or None
        ``dict(scale=..., bias=...)`` of the feature shape.
    running_mean, running_var : brainstate.BatchState or None
        Running statistics of the feature shape.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> bn = braintrace.nn.BatchNorm1d(2)
    >>> bn(jnp.array([[1., 10.], [3., 30.]])).round(3).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]

    References
    ----------
    .. [1] Ioffe, S., & Szegedy, C. (2015). Batch normalization: Accelerating deep
       network training by reducing internal covariate shift. ICML.
    """

    def __init__(
        self,
        in_size: int | tuple[int, ...],
        feature_axis: int | Sequence[int] = -1,
        *,
        track_running_stats: bool = True,
        epsilon: float = 1e-5,
        momentum: float = 0.99,
        affine: bool = True,
        bias_initializer: Initializer = init.Constant(0.0),
        scale_initializer: Initializer = init.Constant(1.0),
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.in_size = to_size(in_size, type(self).__name__, "in_size")
        self.out_size = self.in_size
        self.feature_axes = _negative_axes(feature_axis, len(self.in_size), self._label, "feature_axis")
        self.epsilon = epsilon
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        shape, params = _affine(
            self.in_size, self.feature_axes,
            scale_initializer if affine else None, bias_initializer if affine else None,
        )
        self.weight = brainstate.ParamState(params) if params else None
        if track_running_stats:
            dtype = brainstate.environ.dftype()
            self.running_mean = brainstate.BatchState(jnp.zeros(shape, dtype))
            self.running_var = brainstate.BatchState(jnp.ones(shape, dtype))
        else:
            self.running_mean = self.running_var = None

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size)

    def update(self, x: Any) -> Any:
        """Normalise ``x`` of shape ``(..., *in_size)``; same output shape."""
        check_trailing(self._label, x, self.in_size)
        fit = brainstate.environ.get("fit", True)
        if fit or not self.track_running_stats:
            axes = tuple(ax for ax in range(-x.ndim, 0) if ax not in self.feature_axes)
            mean = jnp.mean(x, axis=axes, keepdims=True)
            var = jnp.mean((x - mean) ** 2, axis=axes, keepdims=True)
            if self.track_running_stats:
                m = self.momentum
                self.running_mean.value = m * self.running_mean.value + (1 - m) * mean.reshape(
                    self.running_mean.value.shape
                )
                self.running_var.value = m * self.running_var.value + (1 - m) * var.reshape(
                    self.running_var.value.shape
                )
        else:
            mean, var = self.running_mean.value, self.running_var.value
        params = self.weight.value if self.weight is not None else {}
        return _normalize(x, mean, var, self.epsilon, params)
