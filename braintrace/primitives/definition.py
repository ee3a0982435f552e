"""Defining an ETP primitive: the JAX primitive, every rule JAX needs, and its registration.

:func:`define_primitive` is the one place where ETP primitives are made: it
creates the ``jax.extend.core.Primitive``, installs its impl, abstract
evaluation, lowering, JVP, transpose and batching rules (the batching rule
re-binds an ETP primitive, so its identity survives ``jax.vmap``), and adds
its :class:`~braintrace.primitives.ETPPrimitive` record to the registry. The
built-in primitives and :func:`register_primitive` both call it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from .record import ETPPrimitive, TrainableFn, default_trainable_invars
from .registry import REGISTRY
from .trace_rules import FullJacobianRule, TraceRule

__all__ = ["RegisteredPrimitive", "define_primitive", "register_primitive"]


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _install_rules(
    prim: Primitive, impl: Callable[..., jax.Array], transpose_impl: Callable[..., jax.Array] | None = None
) -> None:
    """impl, abstract eval, lowering, JVP and transpose of ``prim``.

    The transpose rule transposes ``transpose_impl`` (``impl`` by default): an
    impl whose work depends on the values of ``x`` (an event-driven product)
    cannot be transposed with respect to ``x`` itself.
    """
    linear_impl = impl if transpose_impl is None else transpose_impl

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
                return linear_impl(*ops, **params)

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
    x_linear: bool = True,
    batched_partner: ETPPrimitive | None = None,
    transpose_impl: Callable[..., jax.Array] | None = None,
    event_driven: bool = False,
    window_rule: Callable[..., Any] | None = None,
    primitive_type: type[Primitive] = Primitive,
) -> ETPPrimitive:
    """Create a JAX primitive with every rule, register it, return its entry.

    This is the one place where ETP primitives are made; the built-in
    primitives and :func:`register_primitive` both call it. ``transpose_impl``
    (default ``impl``) computes the same values as ``impl`` with ordinary
    operations linear in each operand; the transpose rule uses it.
    ``event_driven`` and ``window_rule``: see :class:`ETPPrimitive`. ``primitive_type``
    is the class of the JAX primitive (:class:`RegisteredPrimitive` for
    :func:`register_primitive`).
    """
    if y_outvar_index != 0:
        raise ValueError(
            f"ETP primitive {name!r}: y_outvar_index={y_outvar_index}, but ETP primitives have a "
            "single output; use y_outvar_index=0."
        )
    prim = primitive_type(name)
    _install_rules(prim, impl, transpose_impl)
    partner = batched_partner.primitive if batched_partner is not None else None
    _install_batching(prim, impl, x_invar_index, partner, batched, gradient_enabled)
    entry = ETPPrimitive(
        primitive=prim,
        impl=impl,
        batched=batched,
        gradient_enabled=gradient_enabled,
        trainable_invars_fn=trainable_invars_fn or default_trainable_invars,
        x_invar_index=x_invar_index,
        y_outvar_index=y_outvar_index,
        diagonal_names=frozenset(diagonal_names),
        trace_rule=trace_rule if trace_rule is not None else FullJacobianRule(),
        batched_partner=batched_partner,
        x_linear=x_linear,
        event_driven=event_driven,
        window_rule=window_rule,
    )
    REGISTRY.add(entry)
    return entry


_RULES = ("yw_to_w", "xy_to_dw", "init_drtrl", "init_pp")


class RegisteredPrimitive(Primitive):
    """The JAX primitive :func:`register_primitive` returns.

    Bind it (``prim.bind(x, w, ...)``) like any JAX primitive. It also has the
    rule-registration methods of braintrace 0.2.0 (``register_yw_to_w``,
    ``register_xy_to_dw``, ``register_init_drtrl``, ``register_init_pp``,
    ``register_etp_rules``), so code written for 0.2.0 runs unchanged.
    braintrace does not need these rules: it derives every one of them from
    ``impl_fn``, exactly (``xy_to_dw`` is the VJP of ``impl_fn``, the traces
    of D_RTRL and ES_D_RTRL come from its derivatives, their initial values
    are zeros), so the primitive learns correctly whether or not rules were
    registered. A registered function is kept in :attr:`rules` but never
    called, and registering one warns (``UserWarning``) saying so: if the
    gradient you want is not the derivative of ``impl_fn`` (a
    straight-through estimator, say), write that derivative into ``impl_fn``
    with ``jax.custom_jvp``.

    Parameters
    ----------
    name : str
        Primitive name (made by :func:`register_primitive`, not directly).

    Attributes
    ----------
    rules : dict
        ``{rule name: function}`` of the functions registered (not used).
    entry : ETPPrimitive
        The primitive's record in the registry.

    Examples
    --------
    >>> import warnings
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> prim = braintrace.register_primitive('doc_registered_mv', lambda x, w: x @ w)
    >>> prim.bind(jnp.ones(3), jnp.ones((3, 2))).tolist()
    [3.0, 3.0]
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter('ignore', UserWarning)
    ...     prim.register_etp_rules(xy_to_dw=lambda x, dy, w: {'weight': jnp.outer(x, dy)})
    >>> sorted(prim.rules), prim.entry.name
    (['xy_to_dw'], 'doc_registered_mv')
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.rules: dict[str, Callable[..., Any]] = {}

    @property
    def entry(self) -> ETPPrimitive:
        """The registry record (:class:`~braintrace.primitives.ETPPrimitive`) of this primitive."""
        entry = REGISTRY.get(self)
        if entry is None:
            raise LookupError(f"primitive {self.name!r} is not registered; create it with register_primitive().")
        return entry

    def _register(self, rules: dict[str, Any]) -> None:
        given = {k: fn for k, fn in rules.items() if fn is not None}
        for rule, fn in given.items():
            if not callable(fn):
                raise TypeError(f"{self.name}.register_{rule}: the rule must be callable, got {type(fn).__name__}.")
        if not given:
            return
        self.rules.update(given)
        names = ", ".join(given)
        warnings.warn(
            f"ETP primitive {self.name!r}: braintrace derives the {names} rule(s) from impl_fn, exactly (the VJP "
            "of impl_fn, the D_RTRL / ES_D_RTRL traces from its derivatives, zero initial traces); the function(s) "
            "registered are kept in `.rules` but not called. If the gradient you want is not the derivative of "
            "impl_fn (e.g. a straight-through estimator), write it into impl_fn with jax.custom_jvp.",
            UserWarning,
            stacklevel=3,
        )

    def register_yw_to_w(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Record 0.2.0's ``yw_to_w`` rule (not called; see the class docstring); returns ``fn``.

        Parameters
        ----------
        fn : callable
            The rule.
        """
        self._register({"yw_to_w": fn})
        return fn

    def register_xy_to_dw(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Record 0.2.0's ``xy_to_dw`` rule (not called; see the class docstring); returns ``fn``.

        Parameters
        ----------
        fn : callable
            The rule.
        """
        self._register({"xy_to_dw": fn})
        return fn

    def register_init_drtrl(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Record 0.2.0's ``init_drtrl`` rule (not called; see the class docstring); returns ``fn``.

        Parameters
        ----------
        fn : callable
            The rule.
        """
        self._register({"init_drtrl": fn})
        return fn

    def register_init_pp(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Record 0.2.0's ``init_pp`` rule (not called; see the class docstring); returns ``fn``.

        Parameters
        ----------
        fn : callable
            The rule.
        """
        self._register({"init_pp": fn})
        return fn

    def register_etp_rules(
        self,
        *,
        yw_to_w: Callable[..., Any] | None = None,
        xy_to_dw: Callable[..., Any] | None = None,
        init_drtrl: Callable[..., Any] | None = None,
        init_pp: Callable[..., Any] | None = None,
    ) -> None:
        """Record several of 0.2.0's rules at once (not called; see the class docstring).

        Parameters
        ----------
        yw_to_w, xy_to_dw, init_drtrl, init_pp : callable, optional
            The rules; ``None`` leaves a rule unregistered.
        """
        self._register({"yw_to_w": yw_to_w, "xy_to_dw": xy_to_dw, "init_drtrl": init_drtrl, "init_pp": init_pp})


def register_primitive(
    name: str,
    impl_fn: Callable[..., jax.Array],
    *,
    batched: bool = False,
    gradient_enabled: bool = False,
    trainable_invars_fn: TrainableFn | None = None,
    x_invar_index: int | None = 0,
    y_outvar_index: int = 0,
    diagonal_names: tuple[str, ...] = ("bias",),
    trace_rule: TraceRule | None = None,
    x_linear: bool = True,
) -> RegisteredPrimitive:
    r"""Register a custom ETP primitive and return the JAX primitive to bind.

    The primitive computes ``y = impl_fn(*operands, **params)``. ``impl_fn`` must be
    written with ordinary JAX operations; it gives the primitive its evaluation,
    shape rule, lowering, JVP and transpose. A weight used through the returned
    primitive participates in online learning exactly like one used through
    :func:`braintrace.matmul`.

    Parameters
    ----------
    name : str
        Primitive name (shown in jaxprs and diagnostics).
    impl_fn : callable
        ``impl_fn(*operands, **params) -> y``; linear in each trainable input
        that is not listed in ``diagonal_names``. Every rule the learners need
        is derived from it (its derivative is the gradient; give it a
        ``jax.custom_jvp`` for another one).
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
        Whether ``impl_fn`` is linear in the data input. Learners that keep a
        trace of past inputs (ES_D_RTRL, OTTT, OTPE) substitute it for ``x``
        only when this holds; give ``False`` for a primitive whose data input
        is an index or enters non-linearly.

    Returns
    -------
    RegisteredPrimitive
        A ``jax.extend.core.Primitive``: bind it with
        ``prim.bind(x, w, ..., **params)``. Its ``register_*`` methods
        (braintrace 0.2.0's way of giving the rules) are accepted and not
        needed: see :class:`RegisteredPrimitive`.

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
    if not callable(impl_fn):
        raise TypeError(f"register_primitive({name!r}): impl_fn must be callable, got {type(impl_fn).__name__}")
    if x_invar_index is not None and not batched:
        partner = define_primitive(
            name + "_batched",
            _leading_vmap(impl_fn, x_invar_index),
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
        impl_fn,
        batched=batched,
        gradient_enabled=gradient_enabled,
        trainable_invars_fn=trainable_invars_fn,
        x_invar_index=x_invar_index,
        y_outvar_index=y_outvar_index,
        diagonal_names=diagonal_names,
        trace_rule=trace_rule,
        batched_partner=partner,
        x_linear=x_linear,
        primitive_type=RegisteredPrimitive,
    )
    return cast(RegisteredPrimitive, entry.primitive)
