r"""Evaluating a compiled step with the hooks the learners need.

:func:`evaluate_step` runs the flat jaxpr of a :class:`ModuleInfo` and can

* *cut* the data input of every ETP primitive (``stop_gradient``), so that
  derivatives see weight interactions as inputs, not dynamics (DESIGN.md §3);
* add a perturbation to chosen ETP outputs ``y`` (for ``df = ∂h/∂y``);
* add zero perturbations ``p`` to the hidden states' new values (the learning
  signal ``δ = ∂L/∂h^t`` is the cotangent of ``p``). For each hidden group the
  states are computed from unperturbed values and everything downstream of the
  group's new values (readouts, later layers, the other groups' new values,
  the returned state values) is recomputed from the perturbed ones, while the
  group's own other members stay fixed. ``δ_g`` is thus the derivative of the
  step's loss with respect to group ``g``'s state, the rest of the step
  responding, which is what the per-group traces (whose ``D`` and ``df`` hold
  the other groups' new values constant) need;
* give the *direct* reads of chosen hidden states' old values their own input
  (``hidden_direct``): the new hidden values are computed from ``invals``,
  every other use of ``h^{t-1}`` (an output or a spike computed from the old
  value before the write) reads the separate value. The derivative with
  respect to it is ``δ_prev = ∂L^t/∂h^{t-1}`` with ``h^t`` held fixed, the
  learning signal of the *bypass* term (DESIGN.md §3);
* record the operands of chosen ETP equations (``x`` and trainable inputs).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import jax

from ..primitives import REGISTRY
from .jaxpr_tools import UseDef, eval_eqn, is_literal
from .module_info import ModuleInfo

__all__ = ["evaluate_step", "evaluate_operands"]


def evaluate_step(
    minfo: ModuleInfo,
    invals: Sequence[Any],
    *,
    cut: bool = False,
    y_perturb: Mapping[int, Any] | None = None,
    hidden_perturb: Mapping[Any, Any] | None = None,
    perturb_groups: Sequence[Sequence[Any]] | None = None,
    stop_hidden: Collection[Any] = (),
    hidden_direct: Mapping[Any, Any] | None = None,
    record: Sequence[int] = (),
    outputs: Collection[int] | None = None,
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
    perturb_groups : sequence of sequences of paths, optional
        The hidden groups. The derivative with respect to a perturbation of
        group ``g`` sees every other group respond within the step but holds
        the other members of ``g`` fixed. Default: one group of all states
        (every state held fixed).
    stop_hidden : collection of paths
        Hidden states whose new values are treated as constants by
        derivatives (``stop_gradient`` where they are computed).
    hidden_direct : mapping, optional
        ``{hidden path: value}``: the value that every read of that state's old
        value sees, except the reads that compute the hidden states' new values
        (those see ``invals``). Numerically equal values give the same result;
        derivatives with respect to these values are the step's dependence on
        ``h^{t-1}`` with ``h^t`` held fixed.
    record : sequence of int
        ETP equation indices whose operands are returned.
    outputs : collection of int, optional
        Indices of the jaxpr outputs wanted: only the equations they depend on
        are evaluated and the other outputs are ``None`` (with neither
        ``hidden_perturb`` nor ``hidden_direct``). Default: every output.

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
    stop_vars = {jaxpr.outvars[slot.outvars[0]] for slot in minfo.hidden_slots if slot.path in stop_hidden}
    pass_one = _PassOne(minfo, cut=cut, y_perturb=dict(y_perturb or {}), stop_vars=stop_vars, record=record)
    if outputs is not None:
        if hidden_perturb or hidden_direct:
            raise ValueError("evaluate_step: `outputs` does not combine with hidden_perturb or hidden_direct")
        wanted = [v for k, v in enumerate(jaxpr.outvars) if k in outputs and not is_literal(v)]
        env, recorded = pass_one.run_env(invals, only=_needed_for(minfo, wanted))
        return [(v.val if is_literal(v) else env[v]) if k in outputs else None
                for k, v in enumerate(jaxpr.outvars)], recorded
    if hidden_direct:
        new_values = pass_one.run(invals, only=_dynamics(minfo))
        direct = _with_direct(minfo, invals, hidden_direct)
        env, recorded = pass_one.run_env(direct, pinned=new_values)
    else:
        env, recorded = pass_one.run_env(invals)
    outvals = [v.val if is_literal(v) else env[v] for v in jaxpr.outvars]
    if hidden_perturb:
        _add_perturbation(minfo, env, outvals, hidden_perturb, perturb_groups)
    return outvals, recorded


def evaluate_operands(
    minfo: ModuleInfo,
    invals: Sequence[Any],
    eqns: Sequence[int],
    positions: Mapping[int, Collection[int]] | None = None,
) -> dict[int, list[Any]]:
    """The operands of the equations ``eqns``, evaluating only what they depend on.

    Parameters
    ----------
    minfo : ModuleInfo
        The traced step.
    invals : sequence
        Values of ``minfo.jaxpr.invars``.
    eqns : sequence of int
        Equation indices (e.g. the ETP equations of the relations).
    positions : mapping, optional
        ``{eqn_index: operand positions}``: only those operands are needed
        (the others are ``None``); default all.

    Returns
    -------
    dict
        ``{eqn_index: operands}``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.compiler import evaluate_operands
    >>> layer = braintrace.nn.Linear(3, 2, w_init=jnp.ones((3, 2)))
    >>> info = braintrace.extract_module_info(layer, jnp.zeros(3))
    >>> params = [layer.weight.value["bias"], layer.weight.value["weight"]]
    >>> [op.shape for op in evaluate_operands(info, [jnp.ones(3), *params], [0])[0]]
    [(3,), (3, 2), (2,)]
    """
    jaxpr = minfo.jaxpr

    def wanted(i: int) -> list[bool]:
        keep = None if positions is None else set(positions.get(i, ()))
        return [keep is None or k in keep for k in range(len(jaxpr.eqns[i].invars))]

    targets = [v for i in eqns for v, w in zip(jaxpr.eqns[i].invars, wanted(i)) if w and not is_literal(v)]
    needed = UseDef(jaxpr).backward(targets)
    only = {i for i, eqn in enumerate(jaxpr.eqns) if any(o in needed for o in eqn.outvars)}
    env, _ = _PassOne(minfo, cut=False, y_perturb={}, stop_vars=set(), record=()).run_env(invals, only=only)
    return {
        i: [(v.val if is_literal(v) else env[v]) if w else None for v, w in zip(jaxpr.eqns[i].invars, wanted(i))]
        for i in eqns
    }


class _PassOne:
    """The plain evaluation of the step's equations, with the cut, ``y`` perturbations and recording."""

    def __init__(self, minfo: ModuleInfo, *, cut: bool, y_perturb: dict, stop_vars: set, record: Sequence[int]):
        self.minfo = minfo
        self.cut = cut
        self.y_perturb = y_perturb
        self.stop_vars = stop_vars
        self.record = set(record)

    def run(self, invals: Sequence[Any], only: set[int]) -> dict[Any, Any]:
        """The values of the hidden states' new values, evaluating only the equations in ``only``."""
        env, _ = self.run_env(invals, only=only)
        return {v: env[v] for v in _hidden_out_vars(self.minfo) if v in env}

    def run_env(
        self, invals: Sequence[Any], *, only: set[int] | None = None, pinned: Mapping[Any, Any] | None = None
    ) -> tuple[dict[Any, Any], dict[int, list[Any]]]:
        """``(variable -> value, recorded operands)``; ``pinned`` values replace variables where defined."""
        jaxpr = self.minfo.jaxpr
        pinned = pinned or {}
        env: dict[Any, Any] = dict(zip(jaxpr.constvars, self.minfo.closed_jaxpr.consts))
        for v, a in zip(jaxpr.invars, invals):
            env[v] = pinned.get(v, a)
        recorded: dict[int, list[Any]] = {}
        for i, eqn in enumerate(jaxpr.eqns):
            if only is not None and i not in only:
                continue
            ops = [v.val if is_literal(v) else env[v] for v in eqn.invars]
            entry = REGISTRY.get(eqn.primitive)
            if entry is not None:
                if i in self.record:
                    recorded[i] = list(ops)
                if self.cut and entry.x_invar_index is not None:
                    ops[entry.x_invar_index] = jax.lax.stop_gradient(ops[entry.x_invar_index])
            outs = eval_eqn(eqn, ops)
            if i in self.y_perturb:
                k = entry.y_outvar_index if entry is not None else 0
                outs[k] = outs[k] + self.y_perturb[i]
            for v, o in zip(eqn.outvars, outs):
                o = pinned.get(v, o)
                env[v] = jax.lax.stop_gradient(o) if v in self.stop_vars else o
        for v in jaxpr.invars:
            if v in self.stop_vars:
                env[v] = jax.lax.stop_gradient(env[v])
        return env, recorded


def _hidden_out_vars(minfo: ModuleInfo) -> list[Any]:
    return [minfo.hidden_out_var(s) for s in minfo.hidden_slots if not is_literal(minfo.hidden_out_var(s))]


def _needed_for(minfo: ModuleInfo, targets: Sequence[Any]) -> set[int]:
    """Indices of the equations ``targets`` depend on."""
    needed = UseDef(minfo.jaxpr).backward(targets)
    return {i for i, eqn in enumerate(minfo.jaxpr.eqns) if any(o in needed for o in eqn.outvars)}


def _dynamics(minfo: ModuleInfo) -> set[int]:
    """Indices of the equations the hidden states' new values depend on."""
    return _needed_for(minfo, _hidden_out_vars(minfo))


def _with_direct(minfo: ModuleInfo, invals: Sequence[Any], hidden_direct: Mapping[Any, Any]) -> list[Any]:
    iv = list(invals)
    for slot in minfo.hidden_slots:
        if slot.path in hidden_direct:
            iv[slot.invars[0]] = hidden_direct[slot.path]
    return iv


def _add_perturbation(
    minfo: ModuleInfo,
    env: Mapping[Any, Any],
    outvals: list[Any],
    hidden_perturb: Mapping[Any, Any],
    perturb_groups: Sequence[Sequence[Any]] | None,
) -> None:
    """Pass 2, once per group: the group's new values perturbed (its members held
    fixed), everything downstream recomputed from stopped pass-1 values; the
    result enters the outputs as ``o2 - stop_gradient(o2)`` (zero in value, the
    perturbation's derivative in gradient)."""
    jaxpr = minfo.jaxpr
    slot_of = {slot.path: slot for slot in minfo.hidden_slots}
    groups = [tuple(hidden_perturb)] if perturb_groups is None else [tuple(g) for g in perturb_groups]
    for group in groups:
        members = [p for p in group if p in hidden_perturb and p in slot_of]
        if not members:
            continue
        pinned_k = {slot_of[p].outvars[0]: p for p in group if p in slot_of}
        env2: dict[Any, Any] = {}
        pinned = set()
        for k, path in pinned_k.items():
            v = jaxpr.outvars[k]
            if is_literal(v):
                continue
            pinned.add(v)
            if path in hidden_perturb:
                env2[v] = jax.lax.stop_gradient(env[v]) + hidden_perturb[path]

        def read2(v, env2=env2):
            if is_literal(v):
                return v.val
            return env2[v] if v in env2 else jax.lax.stop_gradient(env[v])

        for eqn in jaxpr.eqns:
            if not any((not is_literal(v)) and v in env2 for v in eqn.invars):
                continue
            outs = eval_eqn(eqn, [read2(v) for v in eqn.invars])
            for v, o in zip(eqn.outvars, outs):
                if v not in pinned:
                    env2[v] = o
        for k, v in enumerate(jaxpr.outvars):
            if is_literal(v):
                if k in pinned_k and pinned_k[k] in hidden_perturb:
                    p = hidden_perturb[pinned_k[k]]
                    outvals[k] = outvals[k] + (p - jax.lax.stop_gradient(p))
            elif v in env2:
                o2 = env2[v]
                outvals[k] = outvals[k] + (o2 - jax.lax.stop_gradient(o2))
