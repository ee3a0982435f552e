"""Position-wise dependence: does element ``v`` of an output depend only on element ``v`` of a source?

A hidden group has per-position shape ``V``. A variable is *aligned* with
``V`` when its shape is ``V[m:] + E`` (``m`` missing leading batch axes, ``E``
empty or one trailing state axis) and each of its elements depends on the
sources at the same position only. The D_RTRL blocks and ``df`` are exact when
every variable on the way from the sources to the hidden outputs is aligned;
this module decides that by walking the jaxpr with one rule per primitive kind.

What matters is the *derivative*: a block of ``∂h^t/∂h^{t-1}`` is exact when
each step's Jacobian is position-wise. A custom-derivative call
(``jax.custom_jvp``/``custom_vjp``, e.g. a surrogate spike) and a primitive
defined outside JAX (``braintools``' ``heaviside_surrogate_gradient``,
``saiunit``'s ``exprel``) are therefore decided from the rule JAX would
differentiate them with: the equation's JVP (for a ``custom_vjp``, its VJP) is
traced and walked with the same rules, tangents as sources. Anything else the
rules do not know is treated as mixing positions (conservative).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.extend.core as jcore
import jax.numpy as jnp
from jax.extend.core import primitives as P

from ..primitives import REGISTRY
from .jaxpr_tools import (
    CUSTOM_RULE_PRIMITIVES,
    ELEMENTWISE_PRIMITIVES,
    INLINE_PRIMITIVES,
    UseDef,
    custom_rule_body,
    is_literal,
    jvp_jaxpr,
    vjp_jaxpr,
)

__all__ = ["Align", "layout_of", "propagate_alignment"]

Align = tuple[int, int]  # (m, e): shape == V[m:] + E with len(E) == e
MIXED = None
_ABSENT = object()

# JAX's own primitives: those outside ELEMENTWISE_PRIMITIVES and the structural
# rules below mix positions (reductions, products, gathers, ...)
_JAX_PRIMITIVES = frozenset(
    p for p in (getattr(P, n) for n in dir(P) if n.endswith("_p")) if isinstance(p, jcore.Primitive)
)


_MAX_NESTING = 8  # rules walked inside rules: deeper counts as mixing (a rule may call its own function)


def _rule_key(eqn) -> Any:
    """What a rule is recognised by when met again inside itself: the primitive, or the custom function."""
    if eqn.primitive in CUSTOM_RULE_PRIMITIVES:
        body = eqn.params.get("call_jaxpr")
        debug = getattr(getattr(body, "jaxpr", None), "debug_info", None)
        return eqn.primitive, getattr(debug, "func_src_info", None)
    return eqn.primitive


#: structural primitives :func:`_rule` knows by name (some, like ``stack`` in jax 0.10, are not
#: listed in ``jax.extend.core.primitives``)
_STRUCTURAL = frozenset((
    "broadcast_in_dim", "reshape", "squeeze", "slice", "split", "unstack", "concatenate", "stack",
    "transpose", "copy", "copy_p", "optimization_barrier",
))


def _by_derivative(prim) -> bool:
    """Decided from its differentiation rule: a custom-derivative call or a primitive from outside JAX."""
    if prim in CUSTOM_RULE_PRIMITIVES:
        return True
    return prim not in _JAX_PRIMITIVES and prim.name not in _STRUCTURAL and REGISTRY.get(prim) is None


def _fits(shape, varshape, m: int, e: int) -> bool:
    """``shape`` is ``V[m:] + E`` up to size-1 (broadcast) axes."""
    shape = tuple(shape)
    if m < 0 or len(shape) < e:
        return False
    core = shape[: len(shape) - e]
    if len(core) != len(varshape) - m:
        return False
    return all(c == v or c == 1 for c, v in zip(core, varshape[m:]))


def layout_of(shape: tuple[int, ...], varshape: tuple[int, ...], state_axis: bool) -> Align | None:
    """Alignment of a variable of ``shape`` (with or without a trailing state axis)."""
    e = 1 if state_axis else 0
    m = len(varshape) - (len(tuple(shape)) - e)
    return (m, e) if _fits(shape, varshape, m, e) else None


def _shape_of(align: Align, varshape, shape) -> bool:
    return _fits(shape, varshape, align[0], align[1])


def _rule(eqn, deps: Mapping[int, Align | None], varshape) -> list[Align | None]:
    prim = eqn.primitive
    outs = eqn.outvars
    if any(a is MIXED for a in deps.values()):
        return [MIXED] * len(outs)
    aligns = {a for a in deps.values() if a is not None}  # none is MIXED here
    out_shape = tuple(outs[0].aval.shape) if outs and hasattr(outs[0].aval, "shape") else ()

    entry = REGISTRY.get(prim)
    if prim in ELEMENTWISE_PRIMITIVES or (entry is not None and entry.gradient_enabled and entry.x_invar_index is None):
        es = {a[1] for a in aligns}
        if len(es) == 1:
            (e,) = es
            new = (len(varshape) - (len(out_shape) - e), e)
            same_rank = all(len(eqn.invars[k].aval.shape) == len(out_shape) for k in deps)
            if same_rank and _shape_of(new, varshape, out_shape):
                return [new] * len(outs)
        return [MIXED] * len(outs)

    name = prim.name
    if len(deps) != 1:
        if name in ("concatenate", "stack") and len(aligns) == 1:
            (a,) = aligns
            return _concat(eqn, a, varshape, out_shape)
        return [MIXED] * len(outs)
    ((k, dep),) = deps.items()
    assert dep is not None  # MIXED returned above
    a = dep
    in_shape = tuple(eqn.invars[k].aval.shape)
    m, e = a
    if name == "broadcast_in_dim":
        bd = tuple(eqn.params["broadcast_dimensions"])
        nd = len(out_shape) - len(in_shape)
        if bd == tuple(range(nd, len(out_shape))) and all(
            i == o or i == 1 for i, o in zip(in_shape, out_shape[nd:])
        ):
            new = (m - nd, e)
            if _shape_of(new, varshape, out_shape):
                return [new]
        if e == 0 and bd == tuple(range(len(in_shape))) and len(out_shape) == len(in_shape) + 1:
            return [(m, 1)]
        return [MIXED]
    if name == "reshape":
        if e == 0 and out_shape == in_shape + (1,):
            return [(m, 1)]
        if e == 1 and in_shape[-1] == 1 and out_shape == in_shape[:-1]:
            return [(m, 0)]
        if out_shape == in_shape:
            return [a]
        return [MIXED]
    if name == "squeeze":
        if e == 1 and tuple(eqn.params["dimensions"]) == (len(in_shape) - 1,):
            return [(m, 0)]
        return [MIXED]
    if name == "slice":
        strides = eqn.params.get("strides")
        starts, limits = eqn.params["start_indices"], eqn.params["limit_indices"]
        lead_ok = all(s == 0 and l == d for s, l, d in zip(starts[:-1], limits[:-1], in_shape[:-1]))
        stride_ok = strides is None or all(s == 1 for s in strides[:-1])
        if e == 1 and lead_ok and stride_ok:
            return [(m, 1)]
        return [MIXED]
    if name in ("split", "unstack"):
        axis = eqn.params.get("axis", eqn.params.get("dimension"))
        if e == 1 and axis in (len(in_shape) - 1, -1):
            return [(m, 1) if len(o.aval.shape) == len(in_shape) else (m, 0) for o in outs]
        return [MIXED] * len(outs)
    if name in ("concatenate", "stack"):
        return _concat(eqn, a, varshape, out_shape)
    if name == "transpose":
        perm = tuple(eqn.params["permutation"])
        return [a] if perm == tuple(range(len(perm))) else [MIXED]
    if name in ("copy", "copy_p", "optimization_barrier"):
        return [a] * len(outs)
    return [MIXED] * len(outs)


def _concat(eqn, a, varshape, out_shape):
    m, e = a
    if eqn.primitive.name == "concatenate":
        if e == 1 and eqn.params["dimension"] == len(out_shape) - 1:
            return [(m, 1)]
        return [MIXED]
    axis = eqn.params.get("axis", 0)
    if e == 0 and axis in (len(out_shape) - 1, -1):
        return [(m, 1)]
    return [MIXED]


def propagate_alignment(
    usedef: UseDef,
    sources: Mapping[Any, Align],
    varshape: tuple[int, ...],
    *,
    through: Callable[[int, int], bool] = lambda i, k: True,
    stop: frozenset | set = frozenset(),
) -> dict[Any, Align | None]:
    """Alignment of every variable that depends on ``sources``.

    Returns ``{var: (m, e)}`` for aligned variables and ``{var: None}`` for
    variables that depend on the sources through a position-mixing operation.

    Examples
    --------
    A surrogate spike (a ``jax.custom_jvp`` whose rule is element-wise) keeps
    positions; a sum mixes them:

    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.compiler.jaxpr_tools import UseDef
    >>> from braintrace.compiler.positions import propagate_alignment
    >>> def step(v):
    ...     s = braintrace.nn.surrogate.sigmoid(v - 1.0)
    ...     return 0.9 * v - s, v - v.sum()
    >>> jaxpr = jax.make_jaxpr(step)(jnp.zeros(4)).jaxpr
    >>> align = propagate_alignment(UseDef(jaxpr), {jaxpr.invars[0]: (0, 0)}, (4,))
    >>> [align[v] for v in jaxpr.outvars]
    [(0, 0), None]
    """
    return _propagate(usedef, sources, varshape, through, stop, ())


def _propagate(usedef, sources, varshape, through, stop, deciding: tuple) -> dict[Any, Align | None]:
    """:func:`propagate_alignment`; ``deciding`` holds the rules (:func:`_rule_key`) being walked
    further up: met again inside their own rule, or nested too deep, a call counts as mixing."""
    align: dict[Any, Align | None] = dict(sources)
    for i, eqn in enumerate(usedef.jaxpr.eqns):
        deps = {
            k: align[v]
            for k, v in enumerate(eqn.invars)
            if not is_literal(v) and v in align and v not in stop and through(i, k)
        }
        if not deps:
            continue
        if eqn.primitive in INLINE_PRIMITIVES:
            outs = _propagate_body(custom_rule_body(eqn), eqn, deps, varshape, deciding)
        elif _by_derivative(eqn.primitive):
            outs = _derivative_rule(eqn, deps, varshape, deciding)
        else:
            outs = _rule(eqn, deps, varshape)
        for v, a in zip(eqn.outvars, outs):
            if a is not _ABSENT:
                align[v] = a
    return align


def _propagate_body(body, eqn, deps, varshape, deciding):
    n_extra = len(body.jaxpr.invars) - len(eqn.invars)
    inner = UseDef(body.jaxpr)
    src = {}
    for k, a in deps.items():
        src[body.jaxpr.invars[k + n_extra]] = a
    res = _propagate(inner, src, varshape, lambda i, k: True, frozenset(), deciding)
    return [_ABSENT if is_literal(v) else res.get(v, _ABSENT) for v in body.jaxpr.outvars]


def _walk(closed, sources: dict[int, Align], varshape, deciding) -> list[Any]:
    """Alignment of every output of ``closed`` given its inputs ``{index: alignment}``."""
    jaxpr = closed.jaxpr
    src = {jaxpr.invars[i]: a for i, a in sources.items()}
    res = _propagate(UseDef(jaxpr), src, varshape, lambda i, k: True, frozenset(), deciding)
    return [_ABSENT if is_literal(v) else res.get(v, _ABSENT) for v in jaxpr.outvars]


def _derivative_rule(eqn, deps, varshape, deciding) -> list[Any]:
    """Outputs' alignment from the equation's differentiation rule (JVP, or VJP for ``custom_vjp``).

    An output is aligned when its tangent depends position-wise on the
    operands' tangents; one whose tangent does not depend on them at all has
    no derivative with respect to the sources (absent). Primal values only set
    the coefficients of the linear map, so they are not walked.
    """
    n_out = len(eqn.outvars)
    key = _rule_key(eqn)
    if key in deciding or len(deciding) >= _MAX_NESTING or any(a is MIXED for a in deps.values()):
        return [MIXED] * n_out
    diff = [k for k in deps if jnp.issubdtype(eqn.invars[k].aval.dtype, jnp.inexact)]
    if not diff:
        return [_ABSENT] * n_out
    deciding = (*deciding, key)
    n_in = len(eqn.invars)
    try:
        if eqn.primitive.name.startswith("custom_vjp"):
            return _vjp_alignment(eqn, deps, diff, varshape, deciding)
        tangents = {n_in + j: deps[k] for j, k in enumerate(diff)}
        walked = _walk(jvp_jaxpr(eqn, diff), tangents, varshape, deciding)
    except Exception:  # noqa: BLE001 - no usable rule (e.g. non-differentiable): conservative
        return [MIXED] * n_out
    return walked[n_out:]


def _vjp_alignment(eqn, deps, diff, varshape, deciding) -> list[Any]:
    """``custom_vjp``: outputs laid out like the operands, checked through the VJP's cotangents."""
    es = {a[1] for a in deps.values()}
    outs: list[Any] = []
    for v in eqn.outvars:
        shape = tuple(v.aval.shape)
        new = (len(varshape) - (len(shape) - next(iter(es))), next(iter(es))) if len(es) == 1 else None
        ok = new is not None and _shape_of(new, varshape, shape) and jnp.issubdtype(v.aval.dtype, jnp.inexact)
        if not ok:
            return [MIXED] * len(eqn.outvars)
        outs.append(new)
    n_in = len(eqn.invars)
    walked = _walk(vjp_jaxpr(eqn, diff), {n_in + j: a for j, a in enumerate(outs)}, varshape, deciding)
    if any(a is not _ABSENT and a != deps[k] for k, a in zip(diff, walked)):
        return [MIXED] * len(eqn.outvars)
    return outs
