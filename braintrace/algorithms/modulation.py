r"""Three-factor learning: a modulatory signal in place of the learning signal.

A learner's gradient contribution at step ``t`` contracts a learning signal
with its eligibility traces, :math:`\nabla_w L \mathrel{+}= δ^t \cdot ε_w^t`
(``δ^t = ∂L^t/∂h^t``, or what the learner puts in its place: a random
projection of the output error, a projected target). A *modulator* ``m^t``
(a reward, a neuromodulator, any third factor) replaces it:

.. math::

    \nabla_w L \mathrel{+}= m^t \cdot ε_w^t,

for every trace the learner keeps (D_RTRL's exact trace, ES_D_RTRL's
factored ``ε_x ⊗ ε_f / c``, OTTT's presynaptic trace with the step's ``df``,
...). Every learner takes it as a call keyword, ``learner(x, modulator=m)``
(:meth:`~braintrace.ETraceVjpAlgorithm.update`). This module turns the
argument into per-group arrays (:func:`modulator_signal`) and applies them
(:func:`apply_modulator`).

The influence learners (RTRL, SnAp, UORO) keep ``P^t = dh^t/dθ`` of every
parameter reaching a hidden state, so there :math:`\nabla_θ L \mathrel{+}= m^t
\cdot P^t` for those parameters (computed as ``m^t · M^t + (J^{t⊤} m^t) ·
P^{t-1}``: the step's own part exact, the history through the traces), the
others keep their instantaneous gradient of the loss; the modulator must give
every hidden group a value, and ``m^t = ∂L^t/∂h^t`` with the other new hidden
values held fixed gives their own gradient. For the relation-based learners
``m = δ`` (the learning signal the other groups respond to within the step)
does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import saiunit as u

from ..compiler.module_info import path_str
from ..errors import ArgumentTypeError, InvalidArgumentError
from .feedback import group_label

__all__ = ["modulator_signal", "apply_modulator"]


def _array(owner: str, what: str, value: Any) -> jax.Array:
    if isinstance(value, u.Quantity):
        if not value.is_unitless:
            raise ArgumentTypeError(
                f"{owner}: {what} has unit {value.unit}; a modulator replaces the learning signal and must be "
                "dimensionless (divide it by its unit)."
            )
        value = value.mantissa
    try:
        arr = jnp.asarray(value)
    except TypeError as err:
        raise ArgumentTypeError(f"{owner}: {what} must be a number or an array, got {type(value).__name__}.") from err
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def _fit(owner: str, what: str, m: jax.Array, shape: tuple[int, ...], lead: tuple[int, ...], label: str) -> jax.Array:
    """``m`` (shape ``lead + prefix``) broadcast to ``lead + shape``; a ``ValueError`` if the prefix does not fit."""
    full = lead + shape
    ok = m.shape[: len(lead)] == lead and len(m.shape) <= len(full) and m.shape == full[: len(m.shape)]
    if not ok:
        window = f"a leading axis of {lead[0]} steps (one value per step of the window), then " if lead else ""
        examples = ", ".join(str(full[: len(lead) + k]) for k in range(min(len(shape), 2) + 1))
        raise InvalidArgumentError(
            f"{owner}: {what} has shape {tuple(m.shape)}, which does not fit {label} of shape {full}. Give "
            f"{window}a leading part of the state's shape {shape} (broadcast over the rest), e.g. {examples}."
        )
    return jnp.broadcast_to(m.reshape(m.shape + (1,) * (len(full) - m.ndim)), full)


def _member_shape(group: Any, k: int) -> tuple[int, ...]:
    if group.member_state_axis[k]:
        return tuple(group.varshape) + (group.member_num_states[k],)
    return tuple(group.varshape)


def modulator_signal(
    graph: Any, modulator: Any, steps: int | None, owner: str, *, exact_window: bool = False,
    every_group: bool = False,
) -> dict[int, jax.Array]:
    """``{group index: m}``, each of the group's signal shape ``(*V, S)`` (``(K, *V, S)`` for a window).

    Parameters
    ----------
    graph : ETraceGraph
        The learner's compiled graph.
    modulator : None, scalar, array or mapping
        ``None``: no modulation (``{}``). A scalar or an array: the modulator
        of every hidden group learned online; its shape must be a leading part
        of the group's shape ``(*V, S)`` (``V`` including the batch axes), and
        it is broadcast over the remaining axes (a scalar reward, one reward
        per batch element ``(B,)``, one value per neuron ``(B, N)``). A
        mapping ``{hidden path: array}``: the modulator of the groups whose
        members it names (``'lif.v'`` or ``('lif', 'v')``), each shaped by the
        same rule against that state; members of a named group that the
        mapping leaves out get zero, groups it does not name keep the
        learner's own signal.
    steps : int or None
        ``K`` for a ``MultiStepData`` window (every array then has a leading
        axis of ``K`` steps), ``None`` for one step.
    owner : str
        The learner's name, for messages.
    exact_window : bool, default False
        The window is differentiated exactly (``vjp_method='multi-step'``):
        a modulator is refused there.
    every_group : bool, default False
        Modulate every hidden group, not only those an ETP primitive reaches,
        and require a mapping to name them all (the influence learners: their
        own signal cannot be kept for some groups and replaced for others).

    Returns
    -------
    dict
        ``{group index: array}``.

    Raises
    ------
    ValueError
        A shape that does not fit, a path that is not a hidden state learned
        online, or a modulator for an exactly differentiated window.
    TypeError
        A modulator with a physical unit, or not numeric.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.modulation import modulator_signal
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell, batch_size=4)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros((4, 2)))
    >>> modulator_signal(graph, 0.5, None, "D_RTRL")[0].shape
    (4, 3, 1)
    >>> modulator_signal(graph, jnp.ones((5, 4)), 5, "D_RTRL")[0].shape  # a window: one reward per step and sequence
    (5, 4, 3, 1)
    """
    if modulator is None:
        return {}
    if exact_window:
        raise InvalidArgumentError(
            f"{owner}: a modulator replaces the learning signal, but vjp_method='multi-step' differentiates "
            "a window exactly with the true error. Use vjp_method='single-step' for three-factor learning."
        )
    lead = () if steps is None else (int(steps),)
    groups = graph.hidden_groups
    online = list(range(len(groups))) if every_group else sorted(
        {gi for r in graph.hidden_param_op_relations for gi in r.hidden_groups}
    )
    if not isinstance(modulator, Mapping):
        m = _array(owner, "the modulator", modulator)
        out = {}
        for gi in online:
            g = groups[gi]
            shape = tuple(g.varshape) + (g.num_state,)
            out[gi] = _fit(owner, "the modulator", m, shape, lead, f"hidden group ({group_label(g)})")
        return out
    member = {path_str(p): (gi, k) for gi in online for k, p in enumerate(groups[gi].hidden_paths)}
    named: dict[int, dict[int, jax.Array]] = {}
    for key, value in modulator.items():
        name = key if isinstance(key, str) else path_str(tuple(key))
        if name not in member:
            known = ", ".join(f"`{n}`" for n in member) or "none"
            raise InvalidArgumentError(
                f"{owner}: the modulator names `{name}`, which is not a hidden state learned online. "
                f"Hidden states learned online: {known}."
            )
        gi, k = member[name]
        what = f"the modulator of `{name}`"
        named.setdefault(gi, {})[k] = _fit(owner, what, _array(owner, what, value), _member_shape(groups[gi], k),
                                           lead, f"`{name}`")
    missing = [gi for gi in online if gi not in named]
    if every_group and missing:
        raise InvalidArgumentError(
            f"{owner}: the modulator names no member of the hidden group(s) "
            + "; ".join(f"({group_label(groups[gi])})" for gi in missing)
            + "; this learner contracts one signal with the influence of every hidden state, so a modulator "
            "must give every group a value (a scalar or an array modulates them all)."
        )
    out = {}
    for gi, given in named.items():
        g = groups[gi]
        ref = next(iter(given.values()))
        vals = {
            p: given[k] if k in given else jnp.zeros(lead + _member_shape(g, k), ref.dtype)
            for k, p in enumerate(g.hidden_paths)
        }
        out[gi] = g.pack(vals)
    return out


def apply_modulator(signal: Mapping, signal_prev: Mapping, modulators: Mapping) -> tuple[dict, dict]:
    """``(signal, signal_prev)`` with ``m`` in place of the signal of every modulated group.

    The modulator stands for the whole credit of the step: the bypass signal
    (``∂L^t/∂h^{t-1}``) of a modulated group is set to zero.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.algorithms.modulation import apply_modulator
    >>> sig, prev = apply_modulator({0: jnp.ones((3, 1)), 1: jnp.ones(2)}, {0: jnp.ones((3, 1))}, {0: jnp.full((3, 1), 2.0)})
    >>> sig[0].ravel().tolist(), sig[1].tolist(), prev[0].ravel().tolist()
    ([2.0, 2.0, 2.0], [1.0, 1.0], [0.0, 0.0, 0.0])
    """
    out, prev = dict(signal), dict(signal_prev)
    for gi, m in modulators.items():
        dtype = out[gi].dtype if gi in out else m.dtype
        out[gi] = m.astype(dtype)
        if gi in prev:
            prev[gi] = jnp.zeros_like(prev[gi])
    return out, prev
