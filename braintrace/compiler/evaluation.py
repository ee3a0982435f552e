r"""Evaluating a compiled step with the hooks the learners need.

:func:`evaluate_step` runs the flat jaxpr of a :class:`ModuleInfo` and can

* *cut* the data input of every ETP primitive (``stop_gradient``), so that
  derivatives see weight interactions as inputs, not dynamics (DESIGN.md §3);
* add a perturbation to chosen ETP outputs ``y`` (for ``df = ∂h/∂y``);
* add zero perturbations ``p`` to the hidden states' new values (the learning
  signal ``δ = ∂L/∂h^t`` is the cotangent of ``p``); this is a two-pass
  rewrite: the states are computed from unperturbed values, and everything
  downstream of them (readouts, the returned state values) is recomputed from
  the perturbed ones. ``δ`` is thus the partial derivative with respect to each
  hidden state, holding the other hidden states of the same step fixed, as the
  RTRL state-space formula requires;
* record the operands of chosen ETP equations (``x`` and trainable inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax

from ..primitives import REGISTRY
from .jaxpr_tools import eval_eqn, is_literal
from .module_info import ModuleInfo

__all__ = ["evaluate_step"]


def evaluate_step(
    minfo: ModuleInfo,
    invals: Sequence[Any],
    *,
    cut: bool = False,
    y_perturb: Mapping[int, Any] | None = None,
    hidden_perturb: Mapping[Any, Any] | None = None,
    record: Sequence[int] = (),
) -> tuple[list[Any], dict[int, list[Any]]]:
    """Evaluate the step.

    Parameters
    ----------
    minfo : ModuleInfo
        The traced step.
    invals : sequence
        Values of ``minfo.jaxpr.invars`` (argument leaves, then state leaves).
    cut : bool
        Wrap every ETP data input in ``stop_gradient``.
    y_perturb : mapping, optional
        ``{eqn_index: value}`` added to the output of those ETP equations.
    hidden_perturb : mapping, optional
        ``{hidden path: value}`` added to the hidden states' new values (two-pass).
    record : sequence of int
        ETP equation indices whose operands are returned.

    Returns
    -------
    outvals : list
        Values of ``minfo.jaxpr.outvars``.
    recorded : dict
        ``{eqn_index: operands}`` for the recorded equations.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.Linear(3, 2, w_init=jnp.ones((3, 2)))
    >>> info = braintrace.extract_module_info(layer, jnp.zeros(3))
    >>> params = [layer.weight.value["bias"], layer.weight.value["weight"]]  # the state leaves, in order
    >>> outs, recorded = braintrace.compiler.evaluate_step(info, [jnp.ones(3), *params], record=[0])
    >>> outs[0].tolist(), [op.shape for op in recorded[0]]
    ([3.0, 3.0], [(3,), (3, 2), (2,)])
    """
    jaxpr = minfo.jaxpr
    y_perturb = dict(y_perturb or {})
    record_set = set(record)
    env: dict[Any, Any] = {}

    def read(e, v):
        return v.val if is_literal(v) else e[v]

    for v, c in zip(jaxpr.constvars, minfo.closed_jaxpr.consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, invals):
        env[v] = a

    recorded: dict[int, list[Any]] = {}
    for i, eqn in enumerate(jaxpr.eqns):
        ops = [read(env, v) for v in eqn.invars]
        entry = REGISTRY.get(eqn.primitive)
        if entry is not None:
            if i in record_set:
                recorded[i] = list(ops)
            if cut and entry.x_invar_index is not None:
                ops[entry.x_invar_index] = jax.lax.stop_gradient(ops[entry.x_invar_index])
        outs = eval_eqn(eqn, ops)
        if i in y_perturb:
            k = entry.y_outvar_index if entry is not None else 0
            outs[k] = outs[k] + y_perturb[i]
        for v, o in zip(eqn.outvars, outs):
            env[v] = o

    if not hidden_perturb:
        return [read(env, v) for v in jaxpr.outvars], recorded

    # pass 2: hidden states' new values perturbed, downstream recomputed
    hidden_out = {}
    for slot in minfo.hidden_slots:
        if slot.path in hidden_perturb:
            hidden_out[slot.outvars[0]] = slot.path
    env2: dict[Any, Any] = {}
    pinned = set()
    for k, path in hidden_out.items():
        v = jaxpr.outvars[k]
        if is_literal(v):
            continue
        env2[v] = env[v] + hidden_perturb[path]
        pinned.add(v)

    def read2(v):
        if is_literal(v):
            return v.val
        return env2[v] if v in env2 else env[v]

    for eqn in jaxpr.eqns:
        if not any((not is_literal(v)) and v in env2 for v in eqn.invars):
            continue
        outs = eval_eqn(eqn, [read2(v) for v in eqn.invars])
        for v, o in zip(eqn.outvars, outs):
            if v not in pinned:
                env2[v] = o

    outvals = []
    for k, v in enumerate(jaxpr.outvars):
        if is_literal(v) and k in hidden_out:
            outvals.append(v.val + hidden_perturb[hidden_out[k]])
        else:
            outvals.append(read2(v))
    return outvals, recorded
