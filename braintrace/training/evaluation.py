r"""Running a learner or a model over a sequence without gradients.

:func:`online_evolve` advances the model and the eligibility traces (a
warm-up before :func:`~braintrace.online_gradients` with ``reset=False``, or
the forward half of an online deployment); :func:`evaluate` computes the
sequence loss of :mod:`braintrace.training.losses` with the same masks and
reductions as the gradient drivers, for a learner (traces advance) or a plain
model. Both run inside one ``scan``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from ..algorithms.base import ETraceAlgorithm
from ..algorithms.resetting import reset_model
from ..data import MultiStepData
from .gradients import resolve_window
from .losses import SequenceLoss, check_mask, check_sequences, mask_count
from .masking import Freezer, states_to_freeze

__all__ = ["online_evolve", "evaluate"]


def _run(owner, target, inputs, targets, mask, per_step, *, reset, batch_size, window):
    """Scan ``target`` (a learner or a model) over the inputs; ``per_step(out, y, m)`` is stacked."""
    learner = target if isinstance(target, ETraceAlgorithm) else None
    model = learner.model if learner is not None else target
    if learner is None and not isinstance(target, brainstate.nn.Module):
        raise TypeError(f"{owner}: expected a learner or a brainstate.nn.Module, got {type(target).__name__}.")
    if learner is not None:
        learner.check_compiled()
    T = check_sequences(owner, inputs, targets)
    mask = check_mask(owner, mask, T)
    K = resolve_window(owner, learner, window, T, mask is not None) if learner is not None else None
    if reset:
        if learner is not None:
            learner.reset(batch_size)
        else:
            reset_model(model, batch_size, owner=owner)
    freezer = Freezer(states_to_freeze(model, learner)) if mask is not None else None
    count = mask_count(mask, T)

    def step(carry, xym):
        x, y, m = xym
        if K is not None:
            outs = target(MultiStepData(x))
            return carry, jax.vmap(lambda o, yk: per_step(o, yk, None, count))(outs, y)
        before = freezer.values() if freezer is not None else None
        out = target(x)
        if freezer is not None:
            freezer.restore(before, m)
        return carry, per_step(out, y, m, count)

    if K is not None:
        inputs, targets = jax.tree.map(lambda a: a.reshape((T // K, K) + a.shape[1:]), (inputs, targets))
    _, ys = brainstate.transform.scan(step, None, (inputs, targets, mask))
    if K is not None:
        ys = jax.tree.map(lambda a: a.reshape((T,) + a.shape[2:]), ys)
    return jax.lax.stop_gradient(ys)


def online_evolve(
    learner: ETraceAlgorithm,
    inputs: Any,
    *,
    mask: Any = None,
    reset: bool = True,
    batch_size: int | None = None,
    window: int | str | None = "auto",
) -> Any:
    r"""Run a learner over a sequence, advancing the states and the traces, without gradients.

    Parameters
    ----------
    learner : ETraceAlgorithm
        A compiled learner.
    inputs : pytree of arrays
        Time-major inputs, leading axis ``T``.
    mask : array of shape (T,) or (T, B), optional
        Masked steps leave the states and traces of their batch element as
        they were (see :func:`~braintrace.online_gradients`).
    reset : bool, default True
        Reset the model's states and the traces first.
    batch_size : int, optional
        Batch size used by the reset.
    window : int, None or 'auto', default 'auto'
        As in :func:`~braintrace.online_gradients`.

    Returns
    -------
    pytree
        The model's outputs, stacked over the ``T`` steps.

    Examples
    --------
    A warm-up of 10 steps, then gradients from where it left off:

    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.ES_D_RTRL(cell, decay_or_rank=0.9).compile_graph(jnp.zeros(2))
    >>> braintrace.online_evolve(learner, jnp.ones((10, 2))).shape
    (10, 3)
    >>> int(learner.step_count.value)
    10
    >>> grads, loss = braintrace.online_gradients(
    ...     learner, jnp.ones((5, 2)), jnp.zeros((5, 3)), lambda o, y: jnp.sum((o - y) ** 2), reset=False)
    >>> int(learner.step_count.value)
    15
    """
    return _run("online_evolve", learner, inputs, None, mask, lambda o, y, m, c: o,
                reset=reset, batch_size=batch_size, window=window)


def evaluate(
    learner: ETraceAlgorithm | brainstate.nn.Module,
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], Any],
    *,
    mask: Any = None,
    reduction: str = "sum",
    has_aux: bool = False,
    reset: bool = True,
    batch_size: int | None = None,
    window: int | str | None = "auto",
) -> Any:
    r"""The sequence loss of a learner or a model, without gradients.

    The loss, mask and reduction are those of
    :func:`~braintrace.online_gradients` and
    :func:`~braintrace.bptt_gradients`: ``evaluate`` returns the ``loss``
    they return, without computing a gradient. A learner's traces advance as
    the sequence runs; a plain model runs alone.

    Parameters
    ----------
    learner : ETraceAlgorithm or brainstate.nn.Module
        A compiled learner, or the model itself.
    inputs, targets, loss_fn, mask, reduction, has_aux, reset, batch_size, window
        As in :func:`~braintrace.online_gradients` (``window`` is used for
        learners only).

    Returns
    -------
    scalar, or (scalar, aux)
        The sequence loss; with ``has_aux``, ``(loss, aux)`` with ``aux``
        stacked over the steps.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.D_RTRL(cell).compile_graph(jnp.zeros(2))
    >>> xs, ys = jnp.ones((5, 2)), jnp.zeros((5, 3))
    >>> loss_fn = lambda o, y: jnp.mean((o - y) ** 2)
    >>> a = braintrace.evaluate(learner, xs, ys, loss_fn)
    >>> b = braintrace.evaluate(cell, xs, ys, loss_fn)
    >>> _, c = braintrace.online_gradients(learner, xs, ys, loss_fn)
    >>> bool(jnp.allclose(a, b)) and bool(jnp.allclose(a, c))
    True
    """
    loss = SequenceLoss(loss_fn, reduction, has_aux, "evaluate").check()

    def per_step(out, y, m, count):
        objective, _, aux = loss(out, y, m, count)
        return objective, aux

    objectives, aux = _run("evaluate", learner, inputs, targets, mask, per_step,
                           reset=reset, batch_size=batch_size, window=window)
    total = jnp.sum(objectives)
    return (total, aux) if has_aux else total
