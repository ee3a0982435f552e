r"""Running a learner over whole sequences: the loop users otherwise write by hand.

Both functions return the gradient of the *summed* sequence loss

.. math:: \mathcal{L} = \sum_{t=0}^{T-1} \ell(o^t, y^t)

(divide by ``T`` yourself for a time average; ``loss_fn`` decides how the batch
is reduced). :func:`online_gradients` accumulates a learner's online gradients
step by step inside one ``scan`` (memory independent of ``T``);
:func:`bptt_gradients` differentiates the same loss through the unrolled model
(memory growing with ``T``), for comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from .algorithms.base import ETraceAlgorithm
from .algorithms.resetting import reset_model
from .data import MultiStepData

__all__ = ["online_gradients", "bptt_gradients"]

LossFn = Callable[[Any, Any], jax.Array]


def _check_sequences(owner: str, inputs: Any, targets: Any) -> int:
    """``T``, after checking that every input and target leaf has the same leading time axis."""
    leaves = [("inputs", x) for x in jax.tree.leaves(inputs)] + [("targets", y) for y in jax.tree.leaves(targets)]
    if not leaves or not jax.tree.leaves(inputs):
        raise ValueError(f"{owner}: `inputs` holds no array; give time-major inputs of shape (T, ...).")
    lengths: dict[str, set[int]] = {name: set() for name, _ in leaves}
    for name, x in leaves:
        if jnp.ndim(x) == 0:
            raise ValueError(f"{owner}: `{name}` has a 0-d leaf; inputs and targets are time-major, (T, ...).")
        lengths[name].add(int(jnp.shape(x)[0]))
    every = lengths["inputs"] | lengths.get("targets", set())
    if len(every) != 1:
        raise ValueError(
            f"{owner}: the leading (time) axes of `inputs` {sorted(lengths['inputs'])} and `targets` "
            f"{sorted(lengths.get('targets', set()))} differ; give one target per input step (time-major)."
        )
    T = every.pop()
    if T == 0:
        raise ValueError(f"{owner}: the sequence has 0 steps.")
    return T


def online_gradients(
    learner: ETraceAlgorithm,
    inputs: Any,
    targets: Any,
    loss_fn: LossFn,
    *,
    reset: bool = True,
    batch_size: int | None = None,
    window: int | str | None = "auto",
) -> tuple[dict, jax.Array]:
    r"""Online gradients of a sequence loss, accumulated inside one ``scan``.

    At every step ``t`` the learner runs the model, updates its traces and
    gives ``∇_θ ℓ(o^t, y^t)`` through its online rule; the gradients are summed
    over time.

    Parameters
    ----------
    learner : ETraceAlgorithm
        A compiled learner (``learner.compile_graph(...)`` done).
    inputs : pytree of arrays
        Time-major inputs, leading axis ``T``.
    targets : pytree of arrays
        Time-major targets (anything ``loss_fn`` needs, masks included).
    loss_fn : callable
        ``loss_fn(output_t, target_t) -> scalar``.
    reset : bool, default True
        Reset the model's states and the traces before the sequence
        (:meth:`~braintrace.ETraceAlgorithm.reset`: states no module resets are
        restored to their values when the learner was compiled).
    batch_size : int, optional
        Batch size used by the reset (``None`` for unbatched models).
    window : int, None or 'auto', default 'auto'
        Feed the learner ``window`` steps at a time as :class:`MultiStepData`.
        With ``vjp_method='single-step'`` the gradient is the same, but D_RTRL
        and ES_D_RTRL read and write their traces once per window instead of
        once per step (much faster for large traces). With
        ``vjp_method='multi-step'`` each window is differentiated exactly. ``T``
        must be a multiple of ``window``. ``None``: one step at a time.
        ``'auto'``: the learner's ``default_window`` (the largest divisor of
        ``T`` up to 64 for D_RTRL, up to 32 for ES_D_RTRL; one step at a time
        for the others).

    Returns
    -------
    grads : dict
        ``{ParamState path: gradient}`` of the summed loss.
    loss : scalar
        The summed loss.

    Raises
    ------
    ValueError
        If ``window`` does not divide the sequence length, or inputs and
        targets disagree on it.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    MGUCell(...)
    >>> learner = braintrace.D_RTRL(cell)
    >>> learner = learner.compile_graph(jnp.zeros(2))
    >>> grads, loss = braintrace.online_gradients(
    ...     learner, jnp.ones((5, 2)), jnp.zeros((5, 3)),
    ...     lambda o, y: jnp.sum((o - y) ** 2))
    >>> sorted(grads), loss.shape
    ([('Wf', 'weight'), ('Wh', 'weight')], ())
    """
    learner.check_compiled()
    T = _check_sequences("online_gradients", inputs, targets)
    params = learner.model.states(brainstate.ParamState)
    if reset:
        learner.reset(batch_size)

    if window == "auto":
        window = _auto_window(learner, T)
    if window is not None:
        if int(window) < 1 or T % int(window):
            raise ValueError(
                f"online_gradients: window={window} must be a positive divisor of the sequence length {T}."
            )
        K = int(window)
        inputs, targets = jax.tree.map(lambda a: a.reshape((T // K, K) + a.shape[1:]), (inputs, targets))

    def step(carry, xy):
        acc, total = carry
        x, y = xy

        def loss_t():
            if window is None:
                return loss_fn(learner(x), y)
            outs = learner(MultiStepData(x))
            return jnp.sum(jax.vmap(loss_fn)(outs, y))

        g, value = brainstate.transform.grad(loss_t, params, return_value=True)()
        return (jax.tree.map(jnp.add, acc, g), total + value), None

    zeros = jax.tree.map(jnp.zeros_like, {k: v.value for k, v in params.items()})
    # the loss is summed in the carry: nothing in this loop grows with T
    (grads, total), _ = brainstate.transform.scan(step, (zeros, jnp.zeros(())), (inputs, targets))
    return grads, total


def _auto_window(learner: ETraceAlgorithm, T: int) -> int | None:
    """The largest divisor of ``T`` up to the learner's ``default_window`` (``None`` if it has none)."""
    limit = getattr(learner, "default_window", None)
    if not limit or getattr(learner, "vjp_method", "single-step") != "single-step":
        return None
    best = max(k for k in range(1, min(int(limit), T) + 1) if T % k == 0)
    return best if best > 1 else None


def bptt_gradients(
    model: brainstate.nn.Module,
    inputs: Any,
    targets: Any,
    loss_fn: LossFn,
    *,
    reset: bool = True,
    batch_size: int | None = None,
) -> tuple[dict, jax.Array]:
    r"""Backpropagation-through-time gradients of the same summed loss.

    Parameters and return values as :func:`online_gradients`, with the plain
    model in place of a learner. Memory grows with the sequence length.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
    GRUCell(...)
    >>> grads, loss = braintrace.bptt_gradients(
    ...     cell, jnp.ones((5, 2)), jnp.zeros((5, 3)), lambda o, y: jnp.sum((o - y) ** 2))
    >>> sorted(grads)
    [('Wh', 'weight'), ('Wr', 'weight'), ('Wz', 'weight')]
    """
    _check_sequences("bptt_gradients", inputs, targets)
    params = model.states(brainstate.ParamState)
    if reset:
        reset_model(model, batch_size, owner="bptt_gradients")

    def total_loss():
        def step(carry, xy):
            x, y = xy
            return carry + loss_fn(model(x), y), None

        total, _ = brainstate.transform.scan(step, jnp.zeros((), jnp.result_type(float)), (inputs, targets))
        return total

    return brainstate.transform.grad(total_loss, params, return_value=True)()
