r"""1-, 2- and 3-d convolution layers whose kernels learn online.

The convolution goes through :func:`braintrace.conv`. Inputs are channel-last
(``(N, *spatial, C)``) by default and channel-first (``(N, C, *spatial)``) with
``channel_first=True``; the batch axis ``N`` is optional. The kernel is laid out
``(*kernel_size, C_in / groups, C_out)`` in both cases (as in
``brainstate.nn.Conv2d``), so the same kernel serves either data layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import brainstate
import jax

from ..primitives import conv
from .checks import check_trailing, layer_label, to_size

__all__ = ["Conv1d", "Conv2d", "Conv3d"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any

_SPATIAL = ("", "W", "HW", "DHW")  # spatial layout letters, indexed by the number of spatial dims


def _tuple(value: int | Sequence[int], n: int, label: str, arg: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    out = tuple(cast(Sequence[int], value))
    if len(out) != n or not all(isinstance(v, int) and v >= 1 for v in out):
        raise ValueError(f"{label}: `{arg}`={value!r} must be a positive int or {n} positive ints.")
    return out


def _padding(padding: Any, n: int) -> Any:
    """brainstate's padding forms; a sequence of n ints means symmetric padding per axis."""
    if isinstance(padding, (tuple, list)) and len(padding) and all(isinstance(p, int) for p in padding):
        if n == 1 and len(padding) == 2:
            return (tuple(padding),)
        return tuple((p, p) for p in padding)
    return padding


class _Conv(brainstate.nn.Module):
    r"""Shared implementation; subclasses set ``num_spatial_dims``."""

    num_spatial_dims: int = 0

    def __init__(
        self,
        in_size: Sequence[int],
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] | Sequence[tuple[int, int]] = "SAME",
        lhs_dilation: int | Sequence[int] = 1,
        rhs_dilation: int | Sequence[int] = 1,
        groups: int = 1,
        w_init: Initializer = init.XavierNormal(),
        b_init: Initializer | None = None,
        w_mask: Any = None,
        channel_first: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        n = self.num_spatial_dims
        self.in_size = to_size(in_size, type(self).__name__, "in_size")
        self.out_channels = out_channels
        self.channel_first = channel_first
        if len(self.in_size) != n + 1:
            raise ValueError(
                f"{self._label}: `in_size` must have {n + 1} entries ({n} spatial plus channels), got "
                f"{self.in_size}."
            )
        label = self._label
        self.in_channels = self.in_size[0] if channel_first else self.in_size[-1]
        self.kernel_size = _tuple(kernel_size, n, label, "kernel_size")
        self.stride = _tuple(stride, n, label, "stride")
        self.lhs_dilation = _tuple(lhs_dilation, n, label, "lhs_dilation")
        self.rhs_dilation = _tuple(rhs_dilation, n, label, "rhs_dilation")
        self.groups = groups
        self.padding = _padding(padding, n)
        if not isinstance(groups, int) or groups < 1 or self.in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{label}: groups={groups!r} must be a positive int dividing in_channels={self.in_channels} "
                f"and out_channels={out_channels}."
            )
        sp = _SPATIAL[n]
        data = "NC" + sp if channel_first else "N" + sp + "C"
        self.dimension_numbers = (data, sp + "IO", data)
        self.kernel_shape = self.kernel_size + (self.in_channels // groups, out_channels)
        self.w_mask = init.param(w_mask, self.kernel_shape)
        params = dict(weight=init.param(w_init, self.kernel_shape, allow_none=False))
        if b_init is not None:
            params["bias"] = init.param(b_init, (out_channels,), allow_none=False)
        self.weight = brainstate.ParamState(params)
        probe = jax.eval_shape(lambda p, x: self._conv(x, p), params,
                               jax.ShapeDtypeStruct(self.in_size, params["weight"].dtype))
        self.out_size = probe.shape

    @property
    def _label(self) -> str:
        return layer_label(self, in_size=self.in_size, out_channels=self.out_channels)

    def _conv(self, x: Any, params: dict) -> Any:
        w = params["weight"]
        if self.w_mask is not None:
            w = w * self.w_mask
        return conv(
            x, w, params.get("bias"),
            strides=self.stride,
            padding=self.padding,
            lhs_dilation=self.lhs_dilation,
            rhs_dilation=self.rhs_dilation,
            feature_group_count=self.groups,
            dimension_numbers=self.dimension_numbers,
        )

    def update(self, x: Any) -> Any:
        """Convolve ``x`` of shape ``in_size`` or ``(N, *in_size)``; returns ``out_size`` or ``(N, *out_size)``."""
        batch = check_trailing(self._label, x, self.in_size)
        if len(batch) > 1:
            raise ValueError(
                f"{self._label}: expected input of shape {self.in_size} or (N, *{self.in_size}) with one "
                f"batch axis, got shape {tuple(x.shape)}; merge the leading axes first."
            )
        return self._conv(x, self.weight.value)


_PARAMS_DOC = r"""
    Parameters
    ----------
    in_size : tuple of int
        Shape of one input without the batch axis: ``(*spatial, C_in)``, or
        ``(C_in, *spatial)`` with ``channel_first=True``.
    out_channels : int
        :math:`C_{out}`.
    kernel_size : int or tuple of int
        Spatial extent of the kernel.
    stride : int or tuple of int, default 1
    padding : {'SAME', 'VALID'}, int, tuple of ints or of (low, high) pairs, default 'SAME'
    lhs_dilation, rhs_dilation : int or tuple of int, default 1
        Input and kernel dilation.
    groups : int, default 1
        Feature groups :math:`G`; must divide both channel counts.
    w_init : initializer or array, default ``XavierNormal()``
        Kernel :math:`K`, shape ``(*kernel_size, C_in / G, C_out)``.
    b_init : initializer, array or None, default None
        Bias :math:`b`, shape ``(C_out,)``.
    w_mask : array or initializer, optional
        Fixed mask multiplied into the kernel.
    channel_first : bool, default False
        ``True`` for ``(N, C, *spatial)`` data.
    name : str, optional
        Module name.

    Attributes
    ----------
    weight : brainstate.ParamState
        ``dict(weight=kernel)`` plus ``bias=(C_out,)`` if ``b_init`` is given.
    out_size : tuple of int
        Shape of one output without the batch axis.

    Raises
    ------
    ValueError
        Bad sizes or groups (construction); an input whose trailing axes are
        not ``in_size`` (call).
"""

_MATH = r"""
    .. math:: y_{p, o} = \sum_{k} \sum_{c \in \mathrm{group}(o)} x_{P_p(k), c}\, K_{k, c, o} + b_o

    with :math:`P_p(k)` the input position seen by kernel offset :math:`k` at
    output position :math:`p` (strides, padding and dilations applied).
"""


class Conv1d(_Conv):
    __doc__ = (
        "1-d convolution through :func:`braintrace.conv`; data ``(N, W, C)`` or ``(N, C, W)``.\n"
        + _MATH
        + _PARAMS_DOC
        + r"""
    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.Conv1d((16, 3), 8, kernel_size=3)
    >>> layer(jnp.ones((2, 16, 3))).shape
    (2, 16, 8)
"""
    )
    num_spatial_dims = 1


class Conv2d(_Conv):
    __doc__ = (
        "2-d convolution through :func:`braintrace.conv`; data ``(N, H, W, C)`` or ``(N, C, H, W)``.\n"
        + _MATH
        + _PARAMS_DOC
        + r"""
    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.Conv2d((8, 8, 3), 4, kernel_size=3, stride=2)
    >>> layer(jnp.ones((2, 8, 8, 3))).shape
    (2, 4, 4, 4)
    >>> nchw = braintrace.nn.Conv2d((3, 8, 8), 4, kernel_size=3, channel_first=True)
    >>> nchw(jnp.ones((3, 8, 8))).shape
    (4, 8, 8)
"""
    )
    num_spatial_dims = 2


class Conv3d(_Conv):
    __doc__ = (
        "3-d convolution through :func:`braintrace.conv`; data ``(N, D, H, W, C)`` or ``(N, C, D, H, W)``.\n"
        + _MATH
        + _PARAMS_DOC
        + r"""
    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.Conv3d((4, 4, 4, 2), 3, kernel_size=2, padding='VALID')
    >>> layer(jnp.ones((4, 4, 4, 2))).shape
    (3, 3, 3, 3)
"""
    )
    num_spatial_dims = 3
