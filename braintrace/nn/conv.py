r"""1-, 2- and 3-d convolution layers whose kernels learn online.

The convolution goes through :func:`braintrace.conv`. Inputs are channel-last
(``(N, *spatial, C)``) by default and channel-first (``(N, C, *spatial)``) with
``channel_first=True``; the batch axis ``N`` is optional. The kernel is laid out
``(*kernel_size, C_in / groups, C_out)`` in both cases (as in
``brainstate.nn.Conv2d``), so the same kernel serves either data layout. The
bias (off by default) is stored broadcastable against one output:
``(1, ..., 1, C_out)`` channel-last, ``(C_out, 1, ..., 1)`` channel-first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import brainstate
import jax

from ..errors import ArgumentTypeError, InvalidArgumentError, ShapeMismatchError
from ..primitives import conv
from .checks import check_trailing, layer_label, make_param, to_size

__all__ = ["Conv1d", "Conv2d", "Conv3d"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any

_SPATIAL = ("", "W", "HW", "DHW")  # spatial layout letters, indexed by the number of spatial dims


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tuple(value: int | Sequence[int], n: int, label: str, arg: str) -> tuple[int, ...]:
    """An int or 1 or ``n`` positive ints, as ``n`` ints."""
    if _is_int(value) and cast(int, value) >= 1:
        return (cast(int, value),) * n
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= 1 for v in value):
        raise InvalidArgumentError(f"{label}: `{arg}`={value!r} must be a positive int or {n} positive ints.")
    out = tuple(value)
    if len(out) == 1:
        return out * n
    if len(out) != n:
        raise ShapeMismatchError(
            f"{label}: `{arg}`={value!r} has {len(out)} entries; give 1 or {n} (one per spatial axis)."
        )
    return out


def _padding(padding: Any, n: int, label: str) -> str | tuple[tuple[int, int], ...]:
    """``'SAME'``, ``'VALID'`` or ``n`` ``(low, high)`` pairs.

    An int pads every axis by it on both sides; a sequence of 1 or ``n`` ints
    pads each axis symmetrically (for a 1-d convolution, two ints are one
    ``(low, high)`` pair); a sequence of 1 or ``n`` pairs is used as is.
    """
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise InvalidArgumentError(
                f"{label}: padding={padding!r} is not a padding mode; use 'SAME' or 'VALID' (upper case), "
                "an int, or (low, high) pairs."
            )
        return padding
    if _is_int(padding):
        return ((padding, padding),) * n
    if isinstance(padding, (tuple, list)) and padding:
        pairs: tuple[tuple[int, int], ...]
        if all(_is_int(p) for p in padding):
            if n == 1 and len(padding) == 2:
                pairs = ((padding[0], padding[1]),)
            else:
                pairs = tuple((p, p) for p in padding)
        elif all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(q) for q in p) for p in padding):
            pairs = tuple((int(p[0]), int(p[1])) for p in padding)
        else:
            pairs = ()
        if len(pairs) == 1:
            return pairs * n
        if len(pairs) == n:
            return pairs
    raise InvalidArgumentError(
        f"{label}: padding={padding!r} must be 'SAME', 'VALID', an int, 1 or {n} ints, or 1 or {n} "
        "(low, high) pairs of ints."
    )


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
        param_type: type = brainstate.ParamState,
    ) -> None:
        super().__init__(name=name)
        n = self.num_spatial_dims
        cls = type(self).__name__
        if not isinstance(in_size, (tuple, list)):
            raise ArgumentTypeError(
                f"{cls}: `in_size` must be a tuple of {n + 1} ints ({n} spatial plus channels), got {in_size!r}."
            )
        self.in_size = to_size(in_size, cls, "in_size")
        if not _is_int(out_channels) or out_channels < 1:
            raise InvalidArgumentError(f"{cls}: `out_channels` must be a positive int, got {out_channels!r}.")
        self.out_channels = int(out_channels)
        self.channel_first = channel_first
        self.channels_last = not channel_first
        if len(self.in_size) != n + 1:
            raise InvalidArgumentError(
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
        self.padding = _padding(padding, n, label)
        if not _is_int(groups) or groups < 1 or self.in_channels % groups or out_channels % groups:
            raise InvalidArgumentError(
                f"{label}: groups={groups!r} must be a positive int dividing in_channels={self.in_channels} "
                f"and out_channels={out_channels}."
            )
        sp = _SPATIAL[n]
        data = "NC" + sp if channel_first else "N" + sp + "C"
        self.dimension_numbers = (data, sp + "IO", data)
        self.kernel_shape = self.kernel_size + (self.in_channels // groups, self.out_channels)
        self.w_initializer, self.b_initializer = w_init, b_init
        self.w_mask = init.param(w_mask, self.kernel_shape)
        params = dict(weight=init.param(w_init, self.kernel_shape, allow_none=False))
        if b_init is not None:
            ones = (1,) * n
            bias_shape = (self.out_channels,) + ones if channel_first else ones + (self.out_channels,)
            params["bias"] = init.param(b_init, bias_shape, allow_none=False)
        self.weight = make_param(param_type, params, label)
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
        bias = params.get("bias")
        if bias is not None:
            bias = bias.reshape((self.out_channels,))
        return conv(
            x, w, bias,
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
            raise ShapeMismatchError(
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
        Bias :math:`b`, shape ``(1, ..., 1, C_out)`` (channel-last) or
        ``(C_out, 1, ..., 1)`` (channel-first).
    w_mask : array or initializer, optional
        Fixed mask multiplied into the kernel.
    channel_first : bool, default False
        ``True`` for ``(N, C, *spatial)`` data.
    name : str, optional
        Module name.
    param_type : type, default ``brainstate.ParamState``
        The state class holding the parameters.

    Attributes
    ----------
    weight : brainstate.ParamState
        ``dict(weight=kernel)`` plus ``bias`` if ``b_init`` is given.
    in_size, out_size : tuple of int
        Shape of one input and of one output, without the batch axis.
    in_channels, out_channels, groups, num_spatial_dims : int
    kernel_size, stride, lhs_dilation, rhs_dilation : tuple of int
        One entry per spatial axis.
    padding : str or tuple of (int, int)
        ``'SAME'``, ``'VALID'`` or one ``(low, high)`` pair per spatial axis.
    kernel_shape : tuple of int
        ``(*kernel_size, C_in / G, C_out)``.
    channel_first, channels_last : bool
    dimension_numbers : tuple of str
        ``(input, kernel, output)`` layouts, e.g. ``('NHWC', 'HWIO', 'NHWC')``.
    w_initializer, b_initializer, w_mask
        As given.

    Raises
    ------
    InvalidArgumentError
        At construction (a ``ValueError`` and an ``AssertionError``):
        ``in_size`` without exactly one entry per spatial axis plus channels,
        ``groups`` not dividing both channel counts, a padding string other
        than ``'SAME'``/``'VALID'``, or padding of another form.
    ArgumentTypeError
        ``in_size`` given as an int (construction).
    ShapeMismatchError
        ``kernel_size``, ``stride`` or a dilation with neither 1 nor one entry
        per spatial axis (construction); an input whose trailing axes are not
        ``in_size`` or with more than one batch axis (call).
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
