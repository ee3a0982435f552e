"""Small tools over flat jaxprs: inlining, use-def maps, reachability.

Everything here works on one compile pass; jaxpr ``Var`` objects are used as
dict keys only inside a pass, never stored in long-lived records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore
from jax.extend.core import primitives as P

__all__ = [
    "ELEMENTWISE_PRIMITIVES",
    "CONTROL_FLOW_PRIMITIVES",
    "CUSTOM_RULE_PRIMITIVES",
    "INLINE_PRIMITIVES",
    "inline_calls",
    "jvp_jaxpr",
    "vjp_jaxpr",
    "eval_eqn",
    "is_literal",
    "UseDef",
]

# primitives whose output element [i] depends only on operand elements [i]
# (operands have the output's shape, or are scalars)
ELEMENTWISE_PRIMITIVES = frozenset(
    getattr(P, name)
    for name in (
        "abs_p acos_p acosh_p add_p add_jaxvals_p and_p asin_p asinh_p atan2_p atan_p atanh_p "
        "cbrt_p ceil_p clamp_p convert_element_type_p copy_p cos_p cosh_p digamma_p div_p "
        "eq_p erf_inv_p erf_p erfc_p exp2_p exp_p expm1_p floor_p ge_p gt_p igamma_p igammac_p "
        "integer_pow_p is_finite_p le_p lgamma_p log1p_p log_p logistic_p lt_p max_p min_p mul_p name_p "
        "ne_p neg_p nextafter_p not_p one_minus_square_p or_p polygamma_p pow_p real_p imag_p reduce_precision_p "
        "rem_p round_p rsqrt_p select_n_p sign_p sin_p sinh_p sqrt_p square_p stop_gradient_p "
        "sub_p tan_p tanh_p xor_p zeta_p"
    ).split()
    if hasattr(P, name)
)

CONTROL_FLOW_PRIMITIVES = frozenset(getattr(P, n) for n in ("cond_p", "scan_p", "while_p") if hasattr(P, n))
CUSTOM_RULE_PRIMITIVES = frozenset(
    getattr(P, n) for n in ("custom_jvp_call_p", "custom_vjp_call_p") if hasattr(P, n)
)
# calls whose body is evaluated as it is (``jax.checkpoint``/remat only changes
# what is stored for the backward pass): inlining them preserves every value and
# every derivative
INLINE_PRIMITIVES = frozenset(
    getattr(P, n) for n in ("jit_p", "closed_call_p", "call_p", "remat_p") if hasattr(P, n)
)


def is_literal(v: Any) -> bool:
    return isinstance(v, jcore.Literal)


def _sub_closed_jaxpr(eqn) -> jcore.ClosedJaxpr | None:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if isinstance(sub, jcore.ClosedJaxpr):
            return sub
        if isinstance(sub, jcore.Jaxpr):
            return jcore.ClosedJaxpr(sub, ())
    return None


def custom_rule_body(eqn) -> jcore.ClosedJaxpr | None:
    """The body of a call-like equation: ``custom_jvp_call``/``custom_vjp_call``
    (primal body) or a nested ``jit``/``checkpoint`` (e.g. inside a
    custom-derivative body)."""
    if eqn.primitive in CUSTOM_RULE_PRIMITIVES or eqn.primitive in INLINE_PRIMITIVES:
        return _sub_closed_jaxpr(eqn)
    return None


def eval_eqn(eqn, invals: Sequence[Any]) -> list[Any]:
    """Evaluate one equation with the given input values; always returns a list."""
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _eval_inlining(jaxpr: jcore.Jaxpr, consts: Sequence[Any], *args: Any) -> list[Any]:
    env: dict[Any, Any] = {}

    def read(v):
        return v.val if is_literal(v) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if eqn.primitive in INLINE_PRIMITIVES:
            sub = _sub_closed_jaxpr(eqn)
            assert sub is not None  # every inlined primitive carries a sub-jaxpr
            outs = _eval_inlining(sub.jaxpr, sub.consts, *invals)
        else:
            outs = eval_eqn(eqn, invals)
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def inline_calls(closed: jcore.ClosedJaxpr) -> jcore.ClosedJaxpr:
    """Re-trace ``closed`` with nested ``jit``/``pjit`` and ``checkpoint`` calls inlined.

    ``jnp.where``, ``jnp.clip`` and many library functions wrap themselves in
    ``jit``; inlining makes their bodies visible to the compiler. A
    ``jax.checkpoint`` (remat, also ``brainstate.transform.remat``) changes only
    what the backward pass stores, never a value or a derivative, so it is
    inlined too (the compiled step then stores its intermediates). Custom
    derivative calls (``custom_jvp_call``, ``custom_vjp_call``) are kept as they
    are, so surrogate gradients keep their rules.
    """
    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]
    return jax.make_jaxpr(lambda *a: _eval_inlining(closed.jaxpr, closed.consts, *a))(*avals)


def _operand_structs(eqn) -> list[jax.ShapeDtypeStruct]:
    return [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]


def _with_operands(eqn, ops: Sequence[Any], diff: Sequence[int]) -> Callable[..., list[Any]]:
    """``g(*d)``: ``eqn`` evaluated with ``ops``, the operands ``diff`` replaced by ``d``."""

    def g(*d):
        a = list(ops)
        for k, x in zip(diff, d):
            a[k] = x
        return eval_eqn(eqn, a)

    return g


def jvp_jaxpr(eqn, diff: Sequence[int]) -> jcore.ClosedJaxpr:
    """One equation's forward derivative, traced with its own JVP rule.

    The jaxpr takes the equation's operands, then tangents of the operands
    ``diff``; it returns the outputs, then their tangents. A custom-derivative
    call is differentiated by its custom rule, a primitive by its registered
    JVP rule.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.compiler.jaxpr_tools import jvp_jaxpr
    >>> (eqn,) = jax.make_jaxpr(jnp.sin)(jnp.ones(3)).jaxpr.eqns
    >>> closed = jvp_jaxpr(eqn, [0])
    >>> len(closed.jaxpr.invars), len(closed.jaxpr.outvars)   # (x, dx) -> (sin x, cos x * dx)
    (2, 2)
    """
    structs = _operand_structs(eqn)

    def f(ops, tangents):
        return jax.jvp(_with_operands(eqn, ops, diff), [ops[k] for k in diff], list(tangents))

    return jax.make_jaxpr(f)(structs, [structs[k] for k in diff])


def vjp_jaxpr(eqn, diff: Sequence[int]) -> jcore.ClosedJaxpr:
    """One equation's reverse derivative (for ``custom_vjp`` calls, which have no JVP).

    The jaxpr takes the equation's operands, then cotangents of its outputs;
    it returns the cotangents of the operands ``diff``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.compiler.jaxpr_tools import vjp_jaxpr
    >>> (eqn,) = jax.make_jaxpr(lambda x, y: x * y)(jnp.ones(3), jnp.ones(3)).jaxpr.eqns
    >>> closed = vjp_jaxpr(eqn, [1])
    >>> len(closed.jaxpr.invars), len(closed.jaxpr.outvars)   # (x, y, ct) -> (x * ct,)
    (3, 1)
    """
    structs = _operand_structs(eqn)
    out_structs = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.outvars]

    def f(ops, cotangents):
        _, pullback = jax.vjp(_with_operands(eqn, ops, diff), *[ops[k] for k in diff])
        return pullback(list(cotangents))

    return jax.make_jaxpr(f)(structs, out_structs)


class UseDef:
    """Producers and consumers of the variables of one flat jaxpr."""

    def __init__(self, jaxpr: jcore.Jaxpr):
        self.jaxpr = jaxpr
        self.producer: dict[Any, int] = {}
        self.consumers: dict[Any, list[tuple[int, int]]] = {}
        for i, eqn in enumerate(jaxpr.eqns):
            for v in eqn.outvars:
                self.producer[v] = i
            for k, iv in enumerate(eqn.invars):
                if not is_literal(iv):
                    self.consumers.setdefault(iv, []).append((i, k))

    def forward(
        self,
        sources: Iterable[Any],
        *,
        through: Callable[[int, int], bool] = lambda i, k: True,
        stop: frozenset | set = frozenset(),
    ) -> set[Any]:
        """Variables reachable from ``sources``.

        ``through(eqn_index, operand_index)`` says whether dependence flows from
        that operand to the equation's outputs; variables in ``stop`` are
        reached but not walked past.
        """
        seen: set[Any] = set()
        todo = [v for v in sources if not is_literal(v)]
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in stop:
                continue
            for i, k in self.consumers.get(v, ()):
                if through(i, k):
                    for o in self.jaxpr.eqns[i].outvars:
                        if o not in seen:
                            todo.append(o)
        return seen

    def backward(self, targets: Iterable[Any], *, stop: frozenset | set = frozenset()) -> set[Any]:
        """Variables that ``targets`` depend on (stopping at ``stop``)."""
        seen: set[Any] = set()
        todo = [v for v in targets if not is_literal(v)]
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in stop or v not in self.producer:
                continue
            for u in self.jaxpr.eqns[self.producer[v]].invars:
                if not is_literal(u) and u not in seen:
                    todo.append(u)
        return seen
