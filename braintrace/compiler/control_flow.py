"""Checks for constructs the compiler cannot see through.

``cond``, ``scan`` and ``while`` bodies are opaque to the compiler. They are
fine in the step as long as they touch no weight and no hidden state; if they
do, compilation stops with a :class:`~braintrace.NotSupportedError` naming the
construct, the state involved and the workaround.

A custom-derivative function (``jax.custom_jvp``/``custom_vjp``) is opaque in
another way: seeing through it would bypass its custom rule. If its body calls
an ETP primitive whose output reaches a hidden state, compilation stops too,
naming the function and the weight (the weight could not learn online). Nested
``jit`` and ``jax.checkpoint`` are inlined before this check
(:func:`~braintrace.compiler.jaxpr_tools.inline_calls`); any other call-like
construct that hides an ETP primitive is refused. A ``custom_vjp`` function on
the hidden update is refused as well: the learners differentiate that part of
the step in forward mode, which a ``custom_vjp`` does not allow.
"""

from __future__ import annotations

from typing import Any

import jax.extend.core as jcore

from ..errors import NotSupportedError
from ..primitives import REGISTRY
from .diagnostics import CompilationRecord, DiagnosticKind, DiagnosticLevel
from .hidden_groups import cut_data_inputs
from .jaxpr_tools import CONTROL_FLOW_PRIMITIVES, CUSTOM_RULE_PRIMITIVES, UseDef, is_literal
from .module_info import ModuleInfo, path_str

__all__ = ["check_control_flow"]

_WORKAROUND = (
    "Inside update, replace it with branch-free code: `jax.lax.select(pred, a, b)` or `jnp.where`, "
    "or a mask such as `v * (1 - spike) + v_reset * spike`. Control flow over time steps belongs "
    "outside the model (e.g. jax.lax.scan over the learner's calls)."
)

_CUSTOM_RULE_FIX = (
    "Seeing through the function would bypass its custom derivative rule, so the compiler refuses it. "
    "Call the ETP primitive outside the custom-derivative function (compute `y = braintrace.matmul(x, w)` "
    "first and pass `y` to it), or drop the custom rule (plain code, `jax.jit` and `jax.checkpoint` are "
    "seen through)."
)


def _sub_jaxprs(params: dict[str, Any]):
    for v in params.values():
        items = v if isinstance(v, (tuple, list)) else (v,)
        for it in items:
            if isinstance(it, jcore.ClosedJaxpr):
                yield it.jaxpr
            elif isinstance(it, jcore.Jaxpr):
                yield it


def _contains_etp(jaxpr) -> list[str]:
    found = []
    for eqn in jaxpr.eqns:
        if REGISTRY.get(eqn.primitive) is not None:
            found.append(eqn.primitive.name)
        for sub in _sub_jaxprs(eqn.params):
            found += _contains_etp(sub)
    return found


def _outer_invars(eqn, sub, inner: set[int]) -> list[Any]:
    """The operands of ``eqn`` behind the ``inner`` inputs of its sub-jaxpr ``sub``.

    Calls pass their operands one to one, a ``cond`` drops its predicate; for
    anything else every operand is returned (conservative).
    """
    shift = len(eqn.invars) - len(sub.invars)
    if shift in (0, 1):
        return [eqn.invars[j + shift] for j in inner]
    return list(eqn.invars) if inner else []


def _etp_weight_invars(jaxpr) -> set[int]:
    """Indices of ``jaxpr.invars`` that feed a trainable input of an ETP primitive, at any depth."""
    targets: list[Any] = []
    for eqn in jaxpr.eqns:
        entry = REGISTRY.get(eqn.primitive)
        if entry is not None:
            index = entry.trainable_invars(eqn.params, len(eqn.invars))
            targets += [eqn.invars[k] for k in index.values()]
            continue
        for sub in _sub_jaxprs(eqn.params):
            targets += _outer_invars(eqn, sub, _etp_weight_invars(sub))
    reach = UseDef(jaxpr).backward([v for v in targets if not is_literal(v)])
    return {i for i, v in enumerate(jaxpr.invars) if v in reach}


def _function_label(eqn) -> str:
    """``jax.custom_jvp function `f at file.py:12```, from the body's debug info."""
    kind = "jax.custom_jvp" if eqn.primitive.name.startswith("custom_jvp") else "jax.custom_vjp"
    body = eqn.params.get("call_jaxpr")
    debug = getattr(getattr(body, "jaxpr", body), "debug_info", None)
    where = getattr(debug, "func_src_info", None)
    return f"{kind} function `{where}`" if where else f"{kind} function"


def _refuse(kind: DiagnosticKind, message: str, **fields: Any) -> None:
    """Raise :class:`~braintrace.NotSupportedError` carrying the refusal as an ``ERROR`` record."""
    raise NotSupportedError(message, record=CompilationRecord(kind, DiagnosticLevel.ERROR, message, **fields))


def _check_custom_rule(eqn, usedef: UseDef, minfo: ModuleInfo, names: list[str]) -> CompilationRecord:
    """Raise if an ETP primitive in a custom-derivative call reaches a hidden state; else a record."""
    jaxpr = minfo.jaxpr
    param_of = minfo.param_leaf_of_invar()
    subs = list(_sub_jaxprs(eqn.params))
    sources = [v for sub in subs for v in _outer_invars(eqn, sub, _etp_weight_invars(sub))]
    feeding = usedef.backward([v for v in sources if not is_literal(v)])
    paths = [param_of[u][0].path for u in feeding if u in param_of]
    weights = sorted({path_str(p) for p in paths})
    hidden_out = {jaxpr.outvars[s.outvars[0]]: s.path for s in minfo.hidden_slots}
    reached = sorted({path_str(hidden_out[v]) for v in usedef.forward(eqn.outvars) if v in hidden_out})
    label = _function_label(eqn)
    prims = ", ".join(sorted(set(names)))
    wtext = ", ".join(f"`{w}`" for w in weights) or "a weight"
    if reached:
        _refuse(
            DiagnosticKind.PRIMITIVE_INSIDE_CONTROL_FLOW,
            f"The {label} calls ETP primitive(s) {prims} on weight {wtext}, and its output reaches hidden "
            f"state {', '.join(f'`{p}`' for p in reached)}. The compiler cannot see inside a "
            "custom-derivative "
            f"function, so {wtext} could not learn online (it would receive only its instantaneous "
            "gradient). " + _CUSTOM_RULE_FIX,
            primitive=names[0], weight_path=paths[0] if paths else None,
        )
    return CompilationRecord(
        DiagnosticKind.PRIMITIVE_INSIDE_CONTROL_FLOW,
        DiagnosticLevel.INFO,
        f"The {label} calls ETP primitive(s) {prims} on weight {wtext}; its output reaches no hidden "
        "state, so the weight receives its instantaneous gradient, as it would outside the function.",
        primitive=names[0],
        weight_path=paths[0] if paths else None,
    )


def _check_custom_vjp_on_transition(minfo: ModuleInfo, usedef: UseDef) -> None:
    """Refuse a ``custom_vjp`` between the old hidden values (or an ETP output) and the new ones.

    The learners differentiate that part of the step forward (``jax.jvp``), with
    every ETP data input cut, to get the Jacobian blocks and ``df``; JAX cannot
    push a tangent through a ``custom_vjp``, so the first step would fail inside
    JAX. A ``custom_vjp`` that feeds only ETP data inputs (a spike sent to the
    next layer) or only the output is not on that path and is allowed.
    """
    jaxpr = minfo.jaxpr
    cut = cut_data_inputs(minfo)  # what the learners differentiate forward stops at every ETP data input
    starts = [minfo.hidden_in_var(s) for s in minfo.hidden_slots]
    for e in jaxpr.eqns:
        entry = REGISTRY.get(e.primitive)
        if entry is not None:
            starts.append(e.outvars[entry.y_outvar_index])
    after = usedef.forward(starts, through=cut)
    hidden_out = {minfo.hidden_out_var(s): s.path for s in minfo.hidden_slots}
    for i, eqn in enumerate(jaxpr.eqns):
        if not eqn.primitive.name.startswith("custom_vjp") or not any(
            v in after and cut(i, k) for k, v in enumerate(eqn.invars) if not is_literal(v)
        ):
            continue
        downstream = usedef.forward(eqn.outvars, through=cut)
        reached = sorted({path_str(hidden_out[v]) for v in downstream if v in hidden_out})
        if reached:
            raise NotSupportedError(
                f"The {_function_label(eqn)} lies on the update of hidden state "
                f"{', '.join(f'`{p}`' for p in reached)}. The learners differentiate the hidden update in "
                "forward mode (jax.jvp) to build the eligibility traces, and JAX cannot differentiate a "
                "custom_vjp function in forward mode. Define it with jax.custom_jvp instead "
                "(braintrace.nn.surrogate and braintools.surrogate spike functions already are "
                "forward-differentiable)."
            )


def check_control_flow(minfo: ModuleInfo) -> tuple[CompilationRecord, ...]:
    """Refuse constructs that would hide a weight's online gradient; return records for the rest.

    Raises :class:`~braintrace.NotSupportedError` for control flow touching
    weights or hidden states, for a custom-derivative function whose ETP
    primitive reaches a hidden state, for any other call-like construct
    hiding an ETP primitive, and for a ``custom_vjp`` function on the hidden
    update (which cannot be differentiated forward).
    """
    jaxpr = minfo.jaxpr
    usedef = UseDef(jaxpr)
    owner: dict[Any, str] = {}
    for slot in minfo.param_slots + minfo.hidden_slots:
        for i in slot.invars:
            owner[jaxpr.invars[i]] = f"{'weight' if slot.role == 'param' else 'hidden state'} `{path_str(slot.path)}`"
    records: list[CompilationRecord] = []
    for eqn in jaxpr.eqns:
        if eqn.primitive in CONTROL_FLOW_PRIMITIVES:
            touched = sorted(
                {
                    owner[u]
                    for v in eqn.invars
                    if not is_literal(v)
                    for u in usedef.backward([v])
                    if u in owner
                }
            )
            if touched:
                _refuse(
                    DiagnosticKind.WEIGHT_IN_CONTROL_FLOW,
                    f"`{eqn.primitive.name}` inside the model's update touches {', '.join(touched)}. "
                    f"The compiler cannot see through its body, so it cannot build eligibility traces. "
                    + _WORKAROUND,
                    primitive=eqn.primitive.name,
                )
            continue
        if REGISTRY.get(eqn.primitive) is not None:
            continue
        names = [n for sub in _sub_jaxprs(eqn.params) for n in _contains_etp(sub)]
        if not names:
            continue
        if eqn.primitive in CUSTOM_RULE_PRIMITIVES:
            records.append(_check_custom_rule(eqn, usedef, minfo, names))
        else:
            _refuse(
                DiagnosticKind.PRIMITIVE_INSIDE_CONTROL_FLOW,
                f"`{eqn.primitive.name}` inside the model's update hides ETP primitive(s) "
                f"{', '.join(sorted(set(names)))} from the compiler, so their weights could not learn "
                "online. Call the ETP primitives outside it (plain code, `jax.jit` and `jax.checkpoint` "
                "are seen through).",
                primitive=names[0],
            )
    _check_custom_vjp_on_transition(minfo, usedef)
    return tuple(records)
