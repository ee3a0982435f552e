"""Checks for constructs the compiler cannot see through.

``cond``, ``scan`` and ``while`` bodies are opaque to the compiler. They are
fine in the step as long as they touch no weight and no hidden state; if they
do, compilation stops with a :class:`~braintrace.NotSupportedError` naming the
construct, the state involved and the workaround. An ETP primitive inside a
custom-derivative function (``jax.custom_jvp``/``custom_vjp``) is not seen
either; its weight then learns from its instantaneous gradient only.
"""

from __future__ import annotations

from typing import Any

import jax.extend.core as jcore

from ..errors import NotSupportedError
from ..primitives import REGISTRY
from .diagnostics import CompilationRecord, DiagnosticKind, DiagnosticLevel
from .jaxpr_tools import CONTROL_FLOW_PRIMITIVES, CUSTOM_RULE_PRIMITIVES, UseDef, is_literal
from .module_info import ModuleInfo, path_str

__all__ = ["check_control_flow"]

_WORKAROUND = (
    "Inside update, replace it with branch-free code: `jax.lax.select(pred, a, b)` or `jnp.where`, "
    "or a mask such as `v * (1 - spike) + v_reset * spike`. Control flow over time steps belongs "
    "outside the model (e.g. jax.lax.scan over the learner's calls)."
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


def check_control_flow(minfo: ModuleInfo) -> tuple[CompilationRecord, ...]:
    """Raise for control flow touching weights or hidden states; return records for the rest."""
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
                raise NotSupportedError(
                    f"`{eqn.primitive.name}` inside the model's update touches {', '.join(touched)}. "
                    f"The compiler cannot see through its body, so it cannot build eligibility traces. "
                    + _WORKAROUND
                )
        if eqn.primitive in CUSTOM_RULE_PRIMITIVES:
            names = [n for sub in _sub_jaxprs(eqn.params) for n in _contains_etp(sub)]
            if names:
                records.append(
                    CompilationRecord(
                        DiagnosticKind.PRIMITIVE_INSIDE_CONTROL_FLOW,
                        DiagnosticLevel.WARNING,
                        f"ETP primitive(s) {', '.join(sorted(set(names)))} sit inside a function with a custom "
                        "derivative (jax.custom_jvp/custom_vjp); the compiler cannot see them, so their weights "
                        "are not learned online and receive their instantaneous gradient only. Call the ETP "
                        "primitive outside the custom-derivative function.",
                        primitive=names[0],
                    )
                )
    return tuple(records)
