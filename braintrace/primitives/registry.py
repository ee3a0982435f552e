"""The ETP primitive registry: how the compiler recognises a weight operation.

An *ETP primitive* is a real JAX primitive (``jax.extend.core.Primitive``) that
computes ``y = op(x, w_1, ..., w_k)`` from one data input ``x`` and named
trainable inputs (``weight``, ``bias``, LoRA's ``B`` and ``A`` ...). The compiler
finds these primitives in a model's jaxpr by *identity* (``eqn.primitive is p``)
and reads here what it needs to know about each: where the data input and the
trainable inputs sit among the operands, whether the output may lie on another
primitive's tail (``gradient_enabled``), and the eligibility-trace rules.

There is exactly one registry object, :data:`REGISTRY`, filled by one
:func:`register_primitive` call per primitive. Every rule JAX needs (impl,
abstract evaluation, lowering, JVP, transpose and batching) is installed by that
same call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from .trace_rules import FullJacobianRule, TraceRule

__all__ = [
    "ETPPrimitive",
    "PrimitiveRegistry",
    "REGISTRY",
    "register_primitive",
    "get_etp_primitive",
    "is_etp_primitive",
]

TrainableFn = Callable[[Mapping[str, Any], int], Mapping[str, int]]


def _default_trainable_invars(params: Mapping[str, Any], num_invars: int) -> dict[str, int]:
    """Operand 1 is ``weight``; a third operand, if any, is ``bias``."""
    names = {"weight": 1}
    if num_invars > 2:
        names["bias"] = 2
    return names


@dataclasses.dataclass(frozen=True, eq=False)
class ETPPrimitive:
    """What the compiler and the learners know about one ETP primitive.

    Attributes
    ----------
    primitive : jax.extend.core.Primitive
        The JAX primitive; equations are matched by identity with it.
    impl : callable
        ``impl(*operands, **params) -> y``, the plain-JAX computation.
    batched : bool
        Whether the data input carries leading batch axes.
    gradient_enabled : bool
        Whether an upstream ETP weight may reach a hidden state through this
        primitive's output (only sound for identity-like, x-free primitives such
        as :func:`braintrace.element_wise`).
    trainable_invars_fn : callable
        ``fn(params, num_invars) -> {name: operand index}``.
    x_invar_index : int or None
        Operand index of the data input ``x``; ``None`` for x-free primitives.
    y_outvar_index : int
        Output index of ``y`` (always 0 for the built-in primitives).
    diagonal_names : frozenset of str
        Trainable inputs whose Jacobian is diagonal after broadcasting
        (``y[v]`` depends only on ``w[broadcast(v)]``): biases and element-wise
        weights. Their D_RTRL trace has the hidden state's shape.
    trace_rule : TraceRule
        The D_RTRL trace rule of the other (x-dependent) trainable inputs.
    batched_partner : ETPPrimitive or None
        For an unbatched primitive, the batched form that ``jax.vmap`` binds.
    x_linear : bool
        Whether ``y`` is linear in the data input ``x``, so that a running sum
        of past inputs may stand in for ``x`` in :meth:`xy_to_dw` (the
        presynaptic traces of ES_D_RTRL, OTTT and OTPE). ``False`` for an index
        input (:func:`braintrace.embedding`): a sum of indices is no index.

    Examples
    --------
    >>> import braintrace
    >>> entry = braintrace.primitives.get_etp_primitive(braintrace.primitives.etp_mv_p)
    >>> entry.name, entry.x_invar_index, entry.batched_partner.name
    ('etp_mv', 0, 'etp_mm')
    >>> entry.trainable_invars({}, 3)
    {'weight': 1, 'bias': 2}
    """

    primitive: Primitive
    impl: Callable[..., jax.Array]
    batched: bool
    gradient_enabled: bool
    trainable_invars_fn: TrainableFn
    x_invar_index: int | None
    y_outvar_index: int
    diagonal_names: frozenset[str]
    trace_rule: TraceRule
    batched_partner: "ETPPrimitive | None" = None
    x_linear: bool = True

    @property
    def name(self) -> str:
        return self.primitive.name

    def trainable_invars(self, params: Mapping[str, Any], num_invars: int) -> dict[str, int]:
        """``{name: operand index}`` of the trainable inputs of one equation."""
        return dict(self.trainable_invars_fn(params, num_invars))

    def call(self, operands: tuple, params: Mapping[str, Any]) -> jax.Array:
        """Evaluate the plain-JAX implementation."""
        return self.impl(*operands, **params)

    def xy_to_dw(
        self,
        operands: tuple,
        params: Mapping[str, Any],
        dy: jax.Array,
        names: tuple[str, ...] | None = None,
    ) -> dict[str, jax.Array]:
        r"""The VJP of ``y`` w.r.t. each trainable input, given ``x``.

        .. math:: \bar w = \left(\frac{\partial y}{\partial w}\right)^\top \bar y

        Parameters
        ----------
        operands : tuple
            All operands of the equation (``x`` and the trainable inputs).
        params : mapping
            The equation's static parameters.
        dy : array
            Cotangent of ``y``, shaped like ``y``.
        names : tuple of str, optional
            Restrict to these trainable inputs (default: all).

        Returns
        -------
        dict
            ``{name: cotangent}``, each shaped like its trainable input.
        """
        index = self.trainable_invars(params, len(operands))
        if names is not None:
            index = {k: v for k, v in index.items() if k in names}
        base = list(operands)

        def f(trainables):
            ops = list(base)
            for name, i in index.items():
                ops[i] = trainables[name]
            return self.impl(*ops, **params)

        _, vjp = jax.vjp(f, {name: base[i] for name, i in index.items()})
        return vjp(dy.astype(jnp.result_type(dy)))[0]

    def xy_to_dw_seq(
        self,
        operands: tuple,
        x_seq: jax.Array,
        params: Mapping[str, Any],
        dy_seq: jax.Array,
        names: tuple[str, ...] | None = None,
    ) -> dict[str, jax.Array]:
        r"""``Σ_k xy_to_dw(x_k, dy_k)`` over a leading window axis, as one VJP.

        .. math:: \bar w = \sum_k \left(\frac{\partial y_k}{\partial w}\right)^\top \bar y_k

        The trainable inputs are those of ``operands``; ``x_seq`` (``K`` data
        inputs) replaces the data input. The window axis becomes a batch axis,
        so dense products become one large matrix product: a batched primitive
        takes it merged into its leading batch axis (as under ``jax.vmap``), an
        unbatched one hands the window to its batched partner, and any other
        primitive is vmapped over it with the weights unmapped.
        """
        index = self.trainable_invars(params, len(operands))
        if names is not None:
            index = {k: v for k, v in index.items() if k in names}
        if self.x_invar_index is None:
            return self.xy_to_dw(operands, params, jnp.sum(dy_seq, axis=0), tuple(index))
        base = list(operands)
        xi = self.x_invar_index
        if self.batched and x_seq.ndim >= 2 and dy_seq.ndim >= 2:
            base[xi] = x_seq.reshape((-1,) + x_seq.shape[2:])
            return self.xy_to_dw(tuple(base), params, dy_seq.reshape((-1,) + dy_seq.shape[2:]), tuple(index))
        if self.batched_partner is not None:
            base[xi] = x_seq
            return self.batched_partner.xy_to_dw(tuple(base), params, dy_seq, tuple(index))

        def f(trainables):
            ops = list(base)
            for name, i in index.items():
                ops[i] = trainables[name]

            def one(xk):
                o = list(ops)
                o[xi] = xk
                return self.impl(*o, **params)

            return jax.vmap(one)(x_seq)

        _, vjp = jax.vjp(f, {name: base[i] for name, i in index.items()})
        return vjp(dy_seq)[0]

    def diagonal_factor(self, operands: tuple, params: Mapping[str, Any], name: str) -> jax.Array:
        r"""``∂y[v]/∂w[broadcast(v)]`` of a diagonal trainable input, shaped like ``y``."""
        i = self.trainable_invars(params, len(operands))[name]
        base = list(operands)

        def f(w):
            ops = list(base)
            ops[i] = w
            return self.impl(*ops, **params)

        _, dy = jax.jvp(f, (base[i],), (jnp.ones_like(base[i]),))
        return dy


class PrimitiveRegistry:
    """The one table from JAX primitive to :class:`ETPPrimitive`.

    Examples
    --------
    >>> import braintrace
    >>> from braintrace.primitives import REGISTRY
    >>> entry = REGISTRY.get(braintrace.primitives.etp_mm_p)
    >>> entry.name, sorted(entry.trainable_invars({}, 3))
    ('etp_mm', ['bias', 'weight'])
    """

    def __init__(self) -> None:
        self._entries: dict[Primitive, ETPPrimitive] = {}

    def add(self, entry: ETPPrimitive) -> None:
        if entry.primitive in self._entries:
            raise ValueError(f"primitive {entry.name!r} is already registered")
        self._entries[entry.primitive] = entry

    def get(self, primitive: Any) -> ETPPrimitive | None:
        """The entry of ``primitive``, or ``None`` if it is not an ETP primitive."""
        try:
            return self._entries.get(primitive)
        except TypeError:  # unhashable
            return None

    def __contains__(self, primitive: Any) -> bool:
        return self.get(primitive) is not None

    def __iter__(self) -> Iterator[ETPPrimitive]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


REGISTRY = PrimitiveRegistry()


def get_etp_primitive(primitive: Any) -> ETPPrimitive | None:
    """Return the registry entry of ``primitive`` (``None`` for ordinary primitives).

    Parameters
    ----------
    primitive : jax.extend.core.Primitive
        Any JAX primitive, e.g. ``eqn.primitive`` of a jaxpr equation.

    Returns
    -------
    ETPPrimitive or None

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> jaxpr = jax.make_jaxpr(braintrace.matmul)(jnp.ones(3), jnp.ones((3, 2)))
    >>> braintrace.primitives.get_etp_primitive(jaxpr.eqns[0].primitive).name
    'etp_mv'
    >>> braintrace.primitives.get_etp_primitive(jax.lax.add_p) is None
    True
    """
    return REGISTRY.get(primitive)


def is_etp_primitive(primitive: Any) -> bool:
    """Whether ``primitive`` is a registered ETP primitive.

    Parameters
    ----------
    primitive : jax.extend.core.Primitive
        Any JAX primitive.

    Returns
    -------
    bool

    Examples
    --------
    >>> import jax
    >>> import braintrace
    >>> braintrace.primitives.is_etp_primitive(braintrace.primitives.etp_conv_p)
    True
    >>> braintrace.primitives.is_etp_primitive(jax.lax.dot_general_p)
    False
    """
    return primitive in REGISTRY


# --------------------------------------------------------------------------
# JAX rules
# --------------------------------------------------------------------------


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _install_rules(prim: Primitive, impl: Callable[..., jax.Array]) -> None:
    """impl, abstract eval, lowering, JVP and transpose of ``prim``."""

    prim.def_impl(impl)

    def abstract_eval(*avals, **params):
        args = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals]
        out = jax.eval_shape(lambda *a: impl(*a, **params), *args)
        return jax.core.ShapedArray(out.shape, out.dtype)

    prim.def_abstract_eval(abstract_eval)
    mlir.register_lowering(prim, mlir.lower_fun(impl, multiple_results=False))

    def jvp_rule(primals, tangents, **params):
        y = prim.bind(*primals, **params)
        live = [
            i for i, (p, t) in enumerate(zip(primals, tangents))
            if type(t) is not ad.Zero and _is_float(p)
        ]
        if not live:
            return y, ad.Zero.from_primal_value(y)

        def f(*live_vals):
            ops = list(primals)
            for i, v in zip(live, live_vals):
                ops[i] = v
            return impl(*ops, **params)

        _, ty = jax.jvp(f, tuple(primals[i] for i in live), tuple(tangents[i] for i in live))
        return y, ty

    ad.primitive_jvps[prim] = jvp_rule

    def transpose_rule(ct, *args, **params):
        undefined = [i for i, a in enumerate(args) if ad.is_undefined_primal(a)]
        if type(ct) is ad.Zero:
            return [None] * len(args)
        defined = [None if ad.is_undefined_primal(a) else a for a in args]
        out: list[Any] = [None] * len(args)
        for i in undefined:
            # the op is linear in each undefined input (bilinear ops are linear
            # in one input at a time); the value at which we linearise is 0.
            aval = args[i].aval

            def f(v, i=i):
                ops = list(defined)
                for j in undefined:
                    ops[j] = jnp.zeros(args[j].aval.shape, args[j].aval.dtype)
                ops[i] = v
                return impl(*ops, **params)

            (out[i],) = jax.linear_transpose(f, jax.ShapeDtypeStruct(aval.shape, aval.dtype))(ct)
        return out

    ad.primitive_transposes[prim] = transpose_rule


def _install_batching(
    prim: Primitive,
    impl: Callable[..., jax.Array],
    x_index: int | None,
    partner: Primitive | None,
    batched: bool,
    gradient_enabled: bool = False,
) -> None:
    """Batching that keeps the primitive's identity.

    When only the data input is mapped, the mapped axis is moved to the front.
    An unbatched primitive then binds its batched ``partner``; a batched
    primitive (whose data input leads with one batch axis) merges the new axis
    into its batch axis and binds itself. Otherwise (mapped weights, e.g. an
    ensemble of parameter sets) it is evaluated by ``jax.vmap`` of its impl.
    """

    def batch_rule(args, dims, **params):
        mapped = [i for i, d in enumerate(dims) if d is not None]
        if x_index is not None and mapped == [x_index] and (partner is not None or batched):
            x = jnp.moveaxis(args[x_index], dims[x_index], 0)
            ops = list(args)
            if partner is not None:
                ops[x_index] = x
                return partner.bind(*ops, **params), 0
            lead = x.shape[:2]
            ops[x_index] = x.reshape((lead[0] * lead[1],) + x.shape[2:])
            y = prim.bind(*ops, **params)
            return y.reshape(lead + y.shape[1:]), 0
        if x_index is None and gradient_enabled and len(mapped) == len(args) == 1:
            # an x-free, identity-like primitive (element_wise): y = fn(w) element by
            # element, so a mapped weight maps its output the same way.
            return prim.bind(*args, **params), dims[0]
        in_axes = tuple(d for d in dims)
        return jax.vmap(lambda *a: impl(*a, **params), in_axes=in_axes)(*args), 0

    batching.primitive_batchers[prim] = batch_rule


def _leading_vmap(impl: Callable[..., jax.Array], x_index: int) -> Callable[..., jax.Array]:
    """The batched form of an unbatched impl: ``x`` gains one leading batch axis."""

    def batched_impl(*ops, **params):
        in_axes = [None] * len(ops)
        in_axes[x_index] = 0
        return jax.vmap(lambda *a: impl(*a, **params), in_axes=tuple(in_axes))(*ops)

    return batched_impl


def define_primitive(
    name: str,
    impl: Callable[..., jax.Array],
    *,
    batched: bool,
    gradient_enabled: bool = False,
    trainable_invars_fn: TrainableFn | None = None,
    x_invar_index: int | None = 0,
    y_outvar_index: int = 0,
    diagonal_names: tuple[str, ...] = ("bias",),
    trace_rule: TraceRule | None = None,
    batched_partner: ETPPrimitive | None = None,
    x_linear: bool = True,
) -> ETPPrimitive:
    """Create a JAX primitive with every rule, register it, return its entry.

    This is the one place where ETP primitives are made; the built-in
    primitives and :func:`register_primitive` both call it.
    """
    if y_outvar_index != 0:
        raise ValueError(
            f"ETP primitive {name!r}: y_outvar_index={y_outvar_index}, but ETP primitives have a "
            "single output; use y_outvar_index=0."
        )
    prim = Primitive(name)
    _install_rules(prim, impl)
    partner = batched_partner.primitive if batched_partner is not None else None
    _install_batching(prim, impl, x_invar_index, partner, batched, gradient_enabled)
    entry = ETPPrimitive(
        primitive=prim,
        impl=impl,
        batched=batched,
        gradient_enabled=gradient_enabled,
        trainable_invars_fn=trainable_invars_fn or _default_trainable_invars,
        x_invar_index=x_invar_index,
        y_outvar_index=y_outvar_index,
        diagonal_names=frozenset(diagonal_names),
        trace_rule=trace_rule if trace_rule is not None else FullJacobianRule(),
        batched_partner=batched_partner,
        x_linear=x_linear,
    )
    REGISTRY.add(entry)
    return entry


def register_primitive(
    name: str,
    impl: Callable[..., jax.Array],
    *,
    batched: bool = False,
    gradient_enabled: bool = False,
    trainable_invars_fn: TrainableFn | None = None,
    x_invar_index: int | None = 0,
    y_outvar_index: int = 0,
    diagonal_names: tuple[str, ...] = ("bias",),
    trace_rule: TraceRule | None = None,
    x_linear: bool = True,
) -> Primitive:
    r"""Register a custom ETP primitive and return the JAX primitive to bind.

    The primitive computes ``y = impl(*operands, **params)``. ``impl`` must be
    written with ordinary JAX operations; it gives the primitive its evaluation,
    shape rule, lowering, JVP and transpose. A weight used through the returned
    primitive participates in online learning exactly like one used through
    :func:`braintrace.matmul`.

    Parameters
    ----------
    name : str
        Primitive name (shown in jaxprs and diagnostics).
    impl : callable
        ``impl(*operands, **params) -> y``; linear in each trainable input that
        is not listed in ``diagonal_names``.
    batched : bool, default False
        ``True`` if the data input carries leading batch axes already. For an
        unbatched primitive, a batched partner ``name + '_batched'`` is
        registered too; ``jax.vmap`` over the data input binds it, so the
        primitive keeps its identity under ``vmap``.
    gradient_enabled : bool, default False
        Leave ``False`` unless the primitive is identity-like and x-free (see
        the limitations guide: ``True`` on a primitive with both ``x`` and ``w``
        double-counts gradients).
    trainable_invars_fn : callable, optional
        ``fn(params, num_operands) -> {name: operand index}``. Default: operand
        1 is ``weight`` and operand 2, if present, ``bias``.
    x_invar_index : int or None, default 0
        Operand index of the data input, ``None`` if there is none.
    y_outvar_index : int, default 0
        Output index of ``y``; ETP primitives have one output.
    diagonal_names : tuple of str, default ('bias',)
        Trainable inputs that enter by broadcasting (``y[v]`` depends on one
        element of them).
    trace_rule : TraceRule, optional
        D_RTRL trace rule for the x-dependent trainable inputs. The default,
        :class:`FullJacobianRule`, is exact for any primitive but stores the
        full per-position Jacobian; give a compact rule for large weights.
    x_linear : bool, default True
        Whether ``impl`` is linear in the data input. Learners that keep a
        trace of past inputs (ES_D_RTRL, OTTT, OTPE) substitute it for ``x``
        only when this holds; give ``False`` for a primitive whose data input
        is an index or enters non-linearly.

    Returns
    -------
    jax.extend.core.Primitive
        Bind it with ``prim.bind(x, w, ..., **params)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> scale_p = braintrace.register_primitive(
    ...     'doc_scaled_mv', lambda x, w: 2.0 * (x @ w))
    >>> y = scale_p.bind(jnp.ones(3), jnp.ones((3, 2)))
    >>> y.tolist()
    [6.0, 6.0]
    >>> braintrace.primitives.is_etp_primitive(scale_p)
    True
    """
    if not callable(impl):
        raise TypeError(f"register_primitive({name!r}): impl must be callable, got {type(impl).__name__}")
    if x_invar_index is not None and not batched:
        partner = define_primitive(
            name + "_batched",
            _leading_vmap(impl, x_invar_index),
            batched=True,
            gradient_enabled=gradient_enabled,
            trainable_invars_fn=trainable_invars_fn,
            x_invar_index=x_invar_index,
            y_outvar_index=y_outvar_index,
            diagonal_names=diagonal_names,
            trace_rule=trace_rule,
            x_linear=x_linear,
        )
    else:
        partner = None
    entry = define_primitive(
        name,
        impl,
        batched=batched,
        gradient_enabled=gradient_enabled,
        trainable_invars_fn=trainable_invars_fn,
        x_invar_index=x_invar_index,
        y_outvar_index=y_outvar_index,
        diagonal_names=diagonal_names,
        trace_rule=trace_rule,
        batched_partner=partner,
        x_linear=x_linear,
    )
    return entry.primitive
