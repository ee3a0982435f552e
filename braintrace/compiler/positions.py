"""Position-wise dependence: does element ``v`` of an output depend only on element ``v`` of a source?

A hidden group has per-position shape ``V``. A variable is *aligned* with
``V`` when its shape is ``V[m:] + E`` (``m`` missing leading batch axes, ``E``
empty or one trailing state axis) and each of its elements depends on the
sources at the same position only. The D_RTRL blocks and ``df`` are exact when
every variable on the way from the sources to the hidden outputs is aligned;
this module decides that by walking the jaxpr with one rule per primitive kind.
Anything it does not know is treated as mixing positions (conservative).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jax.extend.core import primitives as P

from ..primitives import REGISTRY
from .jaxpr_tools import ELEMENTWISE_PRIMITIVES, UseDef, custom_rule_body, is_literal

__all__ = ["Align", "layout_of", "propagate_alignment"]

Align = tuple[int, int]  # (m, e): shape == V[m:] + E with len(E) == e
MIXED = None
_ABSENT = object()


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
    """
    align: dict[Any, Align | None] = dict(sources)
    for i, eqn in enumerate(usedef.jaxpr.eqns):
        deps = {
            k: align[v]
            for k, v in enumerate(eqn.invars)
            if not is_literal(v) and v in align and v not in stop and through(i, k)
        }
        if not deps:
            continue
        body = custom_rule_body(eqn)
        if body is not None:
            outs = _propagate_body(body, eqn, deps, varshape)
        else:
            outs = _rule(eqn, deps, varshape)
        for v, a in zip(eqn.outvars, outs):
            if a is not _ABSENT:
                align[v] = a
    return align


def _propagate_body(body, eqn, deps, varshape):
    n_extra = len(body.jaxpr.invars) - len(eqn.invars)
    inner = UseDef(body.jaxpr)
    src = {}
    for k, a in deps.items():
        src[body.jaxpr.invars[k + n_extra]] = a
    res = propagate_alignment(inner, src, varshape)
    return [_ABSENT if is_literal(v) else res.get(v, _ABSENT) for v in body.jaxpr.outvars]
