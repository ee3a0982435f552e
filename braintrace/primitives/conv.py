r"""N-d convolution: ``y = conv(x, K) + b``.

Two primitives: ``etp_conv`` (``x`` without a batch axis, rank ``n + 1`` for
``n`` spatial dimensions) and ``etp_conv_batched`` (``x`` with one leading
batch axis ``N``, rank ``n + 2``). ``jax.vmap`` of ``etp_conv`` binds
``etp_conv_batched``. Both wrap :func:`jax.lax.conv_general_dilated`; their
static parameters are hashable (tuples and a
:class:`jax.lax.ConvDimensionNumbers`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .definition import define_primitive
from .record import ETPPrimitive
from .trace_rules import Array, DiagonalRule, FullJacobianRule, broadcast_leading
from .units import check_float, mantissa_in, split_unit, unit_product, with_unit

__all__ = ["conv", "etp_conv_p", "etp_conv_batched_p", "ConvRule"]

_DEFAULT_LAYOUTS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}
_PADDING_STRINGS = ("SAME", "VALID", "SAME_LOWER")


def _bias_view(bias: jax.Array, ndim: int, axis: int) -> jax.Array:
    shape = [1] * ndim
    shape[axis] = bias.shape[0]
    return bias.reshape(shape)


def _conv_batched(x, kernel, *bias, window_strides, padding, lhs_dilation, rhs_dilation,
                  dimension_numbers, feature_group_count, batch_group_count):
    y = lax.conv_general_dilated(
        x, kernel, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count,
    )
    if bias:
        y = y + _bias_view(bias[0], y.ndim, dimension_numbers.out_spec[1])
    return y


def _conv_unbatched(x, *rest, **params):
    # the batch axis of both layouts is axis 0 (checked by ``conv``)
    return _conv_batched(x[None], *rest, **params)[0]


def _fan_in(operands, params, batched: bool) -> jax.Array:
    """Per output element, the input values its kernel column multiplies.

    Returns an array of shape ``y.shape + (Kin,)`` with ``Kin = (C_in / G) ·
    prod(kernel spatial)``, ordered ``(c_in_of_group, *kernel spatial)`` in the
    canonical (``OI`` + spatial) kernel order, so that
    ``y[p, c_o] = Σ_k fan[p, c_o, k] K_canon[c_o, k]`` (without bias).
    """
    x, kernel = operands[0], operands[1]
    dn = params["dimension_numbers"]
    if not batched:
        x = x[None]
    xc = jnp.transpose(x, dn.lhs_spec)  # (N, C_in, *spatial)
    ksp = tuple(kernel.shape[d] for d in dn.rhs_spec[2:])
    c_out = kernel.shape[dn.rhs_spec[0]]
    groups = params["feature_group_count"]
    patches = lax.conv_general_dilated_patches(
        xc, ksp, params["window_strides"], params["padding"], params["lhs_dilation"],
        params["rhs_dilation"], precision=lax.Precision.HIGHEST,
    )  # (N, C_in * prod(ksp), *out_spatial), channel-major
    n, _, *osp = patches.shape
    kin = patches.shape[1] // groups
    p = patches.reshape((n, groups, kin, *osp))
    p = jnp.moveaxis(p, 2, -1)  # (N, G, *osp, Kin)
    p = jnp.repeat(p, c_out // groups, axis=1)  # (N, C_out, *osp, Kin)
    nd = len(dn.out_spec)
    perm = [0] * nd
    for j, pos in enumerate(dn.out_spec):
        perm[pos] = j
    p = jnp.transpose(p, tuple(perm) + (nd,))  # y layout + (Kin,)
    return p if batched else p[0]


def _feature_axis(params, batched: bool) -> int:
    """Axis of ``C_out`` in ``y`` (``y`` has the rank of ``x``)."""
    return params["dimension_numbers"].out_spec[1] - (0 if batched else 1)


class ConvRule:
    r"""Exact D_RTRL trace of a convolution kernel, one entry per output element.

    A kernel column ``K[:, c_o]`` (fan-in ``Kin = (C_in/G)·k_1⋯k_n``) reaches
    output channel ``c_o`` at every output position ``p``, multiplied by the
    input patch ``P^t[p, c_o, ·]`` seen there. The trace keeps the position:
    its layout is ``(*V, Kin, S)``, with ``V`` the hidden group's shape (batch
    axes, then ``y``'s axes in ``y``'s layout),

    .. math::

        ε^t[v, k, s] = \sum_{s'} D^t[v, s, s'] ε^{t-1}[v, k, s']
                       + df^t[v, s]\, P^t[v, k], \qquad
        \bar K[k, c_o] = \sum_{v:\,c(v) = c_o} \sum_s δ[v, s]\, ε[v, k, s],

    mapped back to the kernel's layout. Summing the trace over positions before
    the contraction (a kernel-shaped trace) would give the product of sums
    instead of the sum of products: a wrong gradient whenever ``D`` or ``δ``
    vary across positions. Memory is ``|V|·Kin·S``.

    ``feature_group_count > 1`` is handled (each output channel sees its group's
    input channels); with ``batch_group_count > 1`` the rule falls back to
    :class:`FullJacobianRule`. A bias handed to this rule gets the diagonal trace
    of :class:`DiagonalRule`, summed back along the output's channel axis.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> P = braintrace.primitives
    >>> x, k = jnp.ones((5, 5, 2)), jnp.ones((3, 3, 2, 4))     # HWC input, HWIO kernel
    >>> eqn = jax.make_jaxpr(lambda x, k: braintrace.conv(x, k))(x, k).eqns[-1]
    >>> entry = P.get_etp_primitive(eqn.primitive)
    >>> isinstance(entry.trace_rule, P.ConvRule)
    True
    >>> trace = entry.trace_rule.init(entry, (x, k), eqn.params, ("weight",), (5, 5, 4), 1, jnp.float32)
    >>> trace["weight"].shape                                   # (*V, Kin = 2·3·3, S)
    (5, 5, 4, 18, 1)
    """

    _full = FullJacobianRule()
    _diag = DiagonalRule()

    @staticmethod
    def _split(params, names):
        w = tuple(n for n in names if n == "weight")
        return w, tuple(n for n in names if n != "weight")

    def _fallback(self, params) -> bool:
        return params["batch_group_count"] != 1

    def init(
        self,
        entry: ETPPrimitive,
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        varshape: tuple[int, ...],
        num_state: int,
        dtype: Any,
    ) -> dict[str, Array]:
        w, rest = self._split(params, names)
        if self._fallback(params):
            return self._full.init(entry, operands, params, names, varshape, num_state, dtype)
        out = self._diag.init(entry, operands, params, rest, varshape, num_state, dtype)
        if w:
            kernel = operands[1]
            kin = kernel.size // kernel.shape[params["dimension_numbers"].rhs_spec[0]]
            out["weight"] = jnp.zeros(tuple(varshape) + (kin, num_state), dtype)
        return out

    def update(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        D: Array,
        df: Array,
    ) -> dict[str, Array]:
        if self._fallback(params):
            return self._full.update(entry, trace, operands, params, names, D, df)
        w, rest = self._split(params, names)
        out = self._diag.update(entry, trace, operands, params, rest, D, df)
        if w:
            # computed on (positions, ...) views: XLA:CPU rejects some rank-8 fusions
            varshape, S = df.shape[:-1], df.shape[-1]
            fan = _fan_in(operands, params, entry.batched)
            kin = fan.shape[-1]
            fan = broadcast_leading(fan, varshape, fan.ndim - 1).astype(df.dtype).reshape(-1, kin)
            eps = trace["weight"]
            e = eps.astype(D.dtype).reshape(-1, kin, S)
            d = D.reshape(-1, S, S)
            if S == 1:
                new = d[:, None, 0, :] * e
            else:
                new = jnp.einsum("mst,mkt->mks", d, e)
            new = new + fan[:, :, None] * df.reshape(-1, 1, S)
            out["weight"] = new.reshape(eps.shape).astype(eps.dtype)
        return out

    def contract(
        self,
        entry: ETPPrimitive,
        trace: Mapping[str, Array],
        operands: Sequence[Array],
        params: Mapping[str, Any],
        names: tuple[str, ...],
        delta: Array,
    ) -> dict[str, Array]:
        if self._fallback(params):
            return self._full.contract(entry, trace, operands, params, names, delta)
        w, rest = self._split(params, names)
        out = self._diag.contract(entry, trace, operands, params, rest, delta)
        if w:
            kernel = operands[1]
            dn = params["dimension_numbers"]
            eps = trace["weight"].astype(delta.dtype)
            pre, c_out, post = _around_channel(delta.shape[:-1], operands, params, entry.batched)
            kin, S = eps.shape[-2:]
            g = jnp.einsum(
                "acbks,acbs->ck", eps.reshape(pre, c_out, post, kin, S), delta.reshape(pre, c_out, post, S)
            )  # (C_out, Kin)
            ksp = tuple(kernel.shape[d] for d in dn.rhs_spec[2:])
            g = g.reshape((g.shape[0], -1) + ksp)  # canonical (O, I, *spatial)
            perm = [0] * kernel.ndim
            for j, pos in enumerate(dn.rhs_spec):
                perm[pos] = j
            out["weight"] = jnp.transpose(g, perm)
        return out

    def diagonal_to_param(
        self, entry: ETPPrimitive, operands: Sequence[Array], params: Mapping[str, Any], name: str, g: Array
    ) -> Array:
        """Sum a hidden-shaped ``g`` to the bias ``(C_out,)``: all axes but ``y``'s channel axis."""
        pre, c_out, post = _around_channel(g.shape, operands, params, entry.batched)
        return g.reshape(pre, c_out, post).sum(axis=(0, 2))


def _around_channel(varshape, operands, params, batched: bool) -> tuple[int, int, int]:
    """``(prod before, C_out, prod after)`` of the hidden shape around ``y``'s channel axis."""
    c_axis = len(varshape) - jnp.ndim(operands[0]) + _feature_axis(params, batched)
    return math.prod(varshape[:c_axis]), varshape[c_axis], math.prod(varshape[c_axis + 1:])


_rule = ConvRule()
_batched = define_primitive("etp_conv_batched", _conv_batched, batched=True, trace_rule=_rule)
_unbatched = define_primitive(
    "etp_conv", _conv_unbatched, batched=False, trace_rule=_rule, batched_partner=_batched
)
etp_conv_batched_p = _batched.primitive
etp_conv_p = _unbatched.primitive


# --------------------------------------------------------------------------
# argument normalisation
# --------------------------------------------------------------------------


def _int_tuple(value, n: int, arg: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value),) * n
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(
            f"braintrace.conv: `{arg}` must be an int or a sequence of {n} ints, got {value!r}."
        ) from None
    if len(out) != n or any(v < 1 for v in out):
        raise ValueError(
            f"braintrace.conv: `{arg}`={value!r} must give {n} positive ints, one per spatial dimension."
        )
    return out


def _padding(padding, n: int):
    if isinstance(padding, str):
        if padding.upper() not in _PADDING_STRINGS:
            raise ValueError(
                f"braintrace.conv: `padding`={padding!r}; expected one of {_PADDING_STRINGS} or "
                f"{n} (low, high) pairs."
            )
        return padding.upper()
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        return ((int(padding), int(padding)),) * n
    try:
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        raise ValueError(
            f"braintrace.conv: `padding`={padding!r}; expected a string or {n} (low, high) pairs."
        ) from None
    if len(pads) != n:
        raise ValueError(f"braintrace.conv: `padding` has {len(pads)} pairs; expected {n}.")
    return pads


def _dimension_numbers(dn, n: int) -> lax.ConvDimensionNumbers:
    if dn is None:
        dn = _DEFAULT_LAYOUTS[n]
    try:
        out = lax.conv_dimension_numbers((1,) * (n + 2), (1,) * (n + 2), dn)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"braintrace.conv: `dimension_numbers`={dn!r} does not describe a {n}-d convolution "
            f"(x and kernel of rank {n + 2}): {err}"
        ) from None
    if out.lhs_spec[0] != 0 or out.out_spec[0] != 0:
        raise ValueError(
            f"braintrace.conv: `dimension_numbers`={dn!r} puts the batch axis N of x or of the output "
            "elsewhere than first; use a batch-first layout such as 'NHWC' or 'NCHW'."
        )
    return out


def _check_groups(xm, km, dn, batched: bool, feature_group_count: Any, batch_group_count: Any) -> None:
    """The group counts are positive ints, batch groups are 1, and the channels divide into the groups."""
    for name, val in (("feature_group_count", feature_group_count), ("batch_group_count", batch_group_count)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"braintrace.conv: `{name}` must be a positive int, got {val!r}.")
    if batch_group_count != 1:
        raise ValueError(
            f"braintrace.conv: `batch_group_count`={batch_group_count} is not supported: it convolves "
            "groups of batch elements together, mixing the examples a recurrent state keeps apart. "
            "Use batch_group_count=1."
        )
    shift = 0 if batched else 1
    c_in = xm.shape[dn.lhs_spec[1] - shift]
    k_in, c_out = km.shape[dn.rhs_spec[1]], km.shape[dn.rhs_spec[0]]
    g = feature_group_count
    if c_in % g or c_out % g or k_in * g != c_in:
        raise ValueError(
            f"braintrace.conv: `x` has shape {xm.shape} ({c_in} input channels) and `kernel` has shape "
            f"{km.shape} ({k_in} input, {c_out} output channels) with feature_group_count={g}; need "
            f"C_in = {g}·kernel's I and both channel counts divisible by {g}."
        )


def conv(
    x: Any,
    kernel: Any,
    bias: Any = None,
    *,
    strides: int | Sequence[int] = 1,
    padding: str | int | Sequence[tuple[int, int]] = "SAME",
    lhs_dilation: int | Sequence[int] | None = None,
    rhs_dilation: int | Sequence[int] | None = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    dimension_numbers: Any = None,
) -> Any:
    r"""ETP-aware N-d convolution, ``y = conv(x, K) + b``.

    Use it instead of :func:`jax.lax.conv_general_dilated` to make the kernel
    (and ``bias``) learn online. With ``G = feature_group_count`` and ``P_p``
    the (strided, padded, dilated) input window of output position ``p``:

    .. math::

        y_{p, o} = \sum_{k} \sum_{c \in \mathrm{group}(o)} x_{P_p(k), c}\,
                   K_{k, c, o} + b_o

    Parameters
    ----------
    x : array or Quantity
        Input of rank ``n + 2`` (batched, ``N`` first, e.g. ``(N, H, W, C_in)``
        for ``'NHWC'``), binding ``etp_conv_batched``; or of rank ``n + 1``
        without ``N`` (``(H, W, C_in)``), binding ``etp_conv``. Cast to the
        kernel's dtype (spikes may be given as integers or booleans).
    kernel : array or Quantity, rank ``n + 2``
        Floating-point kernel, ``n`` = 1, 2 or 3 spatial dimensions, e.g.
        ``(kh, kw, C_in/G, C_out)`` for ``'HWIO'`` or ``(C_out, C_in/G, kh, kw)``
        for ``'OIHW'``.
    bias : array or Quantity, shape ``(C_out,)``, optional
        Added along the output's channel axis; unit ``unit(x)·unit(kernel)``.
    strides : int or sequence of n ints, default 1
    padding : {'SAME', 'VALID', 'SAME_LOWER'}, int or n (low, high) pairs, default 'SAME'
    lhs_dilation, rhs_dilation : int or sequence of n ints, optional
        Input (transposed convolution) and kernel (atrous) dilation.
    feature_group_count : int, default 1
        ``G``; must divide ``C_in`` and ``C_out``, and ``kernel``'s ``I`` axis is ``C_in/G``.
    batch_group_count : int, default 1
        Only 1: grouping batch elements mixes the examples a recurrent state keeps apart.
    dimension_numbers : tuple of 3 str or jax.lax.ConvDimensionNumbers, optional
        ``(lhs, rhs, out)`` layouts written with ``N`` (even for unbatched ``x``),
        e.g. ``('NCHW', 'OIHW', 'NCHW')``. Default channel-last:
        ``('NWC', 'WIO', 'NWC')``, ``('NHWC', 'HWIO', 'NHWC')`` or ``('NDHWC', 'DHWIO', 'NDHWC')``.

    Returns
    -------
    array or Quantity
        The convolution in the output layout (without ``N`` for unbatched
        ``x``), with unit ``unit(x)·unit(kernel)``.

    Raises
    ------
    ValueError
        Wrong ranks, channel counts that do not fit the kernel or the groups,
        bad strides/padding/dilation/layouts, a bias of the wrong shape or unit,
        ``batch_group_count != 1``.
    TypeError
        A non-floating-point kernel or bias.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> x = jnp.ones((2, 8, 8, 3))                   # NHWC
    >>> k = jnp.ones((3, 3, 3, 4))                   # HWIO
    >>> braintrace.conv(x, k, jnp.zeros(4), strides=2).shape
    (2, 4, 4, 4)
    >>> braintrace.conv(jnp.ones((3, 8, 8)), jnp.ones((4, 3, 3, 3)),
    ...                 dimension_numbers=('NCHW', 'OIHW', 'NCHW')).shape
    (4, 8, 8)
    """
    xm, xu = split_unit(x)
    km, ku = split_unit(kernel)
    if km.ndim not in (3, 4, 5):
        raise ValueError(
            f"braintrace.conv: `kernel` must have rank 3, 4 or 5 (1-3 spatial dimensions plus I and O), "
            f"got shape {km.shape}."
        )
    n = km.ndim - 2
    if xm.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"braintrace.conv: `x` has shape {xm.shape} but `kernel` has shape {km.shape} ({n} spatial "
            f"dimensions); x must have rank {n + 2} (with batch axis N) or {n + 1} (without)."
        )
    check_float(km, op="conv", arg="kernel")
    batched = xm.ndim == n + 2
    dn = _dimension_numbers(dimension_numbers, n)
    _check_groups(xm, km, dn, batched, feature_group_count, batch_group_count)
    g, c_out = feature_group_count, km.shape[dn.rhs_spec[0]]
    params = dict(
        window_strides=_int_tuple(strides, n, "strides"),
        padding=_padding(padding, n),
        lhs_dilation=_int_tuple(lhs_dilation, n, "lhs_dilation", allow_none=True),
        rhs_dilation=_int_tuple(rhs_dilation, n, "rhs_dilation", allow_none=True),
        dimension_numbers=dn,
        feature_group_count=g,
        batch_group_count=1,
    )
    out_unit = unit_product(xu, ku)
    ops = [xm.astype(km.dtype), km]
    if bias is not None:
        bm = mantissa_in(bias, out_unit, op="conv", arg="bias")
        check_float(bm, op="conv", arg="bias")
        if bm.shape != (c_out,):
            raise ValueError(
                f"braintrace.conv: `bias` has shape {bm.shape}; expected ({c_out},) to match kernel of "
                f"shape {km.shape} ({c_out} output channels)."
            )
        ops.append(bm)
    impl = _conv_batched if batched else _conv_unbatched
    try:
        out = jax.eval_shape(lambda *a: impl(*a, **params), *ops)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"braintrace.conv: cannot convolve `x` of shape {xm.shape} with `kernel` of shape {km.shape} "
            f"under {params}: {err}"
        ) from None
    if math.prod(out.shape) == 0:
        raise ValueError(
            f"braintrace.conv: `x` of shape {xm.shape} and `kernel` of shape {km.shape} give an empty "
            f"output {out.shape}; use a smaller kernel, smaller strides or 'SAME' padding."
        )
    prim = etp_conv_batched_p if batched else etp_conv_p
    return with_unit(prim.bind(*ops, **params), out_unit)
