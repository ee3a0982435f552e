r"""Gradients of a sequence loss: online (traces, one ``scan``) and by backpropagation through time.

Both functions return the gradient of the same sequence loss (see
:mod:`braintrace.training.losses` for masks and reductions),

.. math:: \mathcal{L} = \sum_{t=0}^{T-1} \sum_i m_i^t\, \ell_i(o^t, y^t)
          \quad (\text{divided by } \textstyle\sum_t \sum_i m_i^t \text{ for } {\rm reduction='mean'}).

:func:`online_gradients` accumulates a learner's online gradients step by step
inside one ``scan`` (memory independent of ``T``); :func:`bptt_gradients`
differentiates the same loss through the unrolled model (memory growing with
``T``), for comparison. With a mask, both freeze the hidden states (and the
traces) of a batch element at its masked steps
(:mod:`braintrace.training.masking`), so they stay comparable: on models whose
cut Jacobian is element-wise, masked D_RTRL equals masked BPTT.
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
from .losses import SequenceLoss, check_mask, check_sequences, mask_count
from .masking import Freezer, states_to_freeze

__all__ = ["online_gradients", "bptt_gradients", "accumulate", "resolve_window"]

LossFn = Callable[[Any, Any], Any]


def resolve_window(owner: str, learner: Any, window: int | str | None, T: int, masked: bool) -> int | None:
    """The window length for ``T`` steps: ``'auto'`` resolved, checked against ``T`` and a mask."""
    if window == "auto":
        if masked:
            return None
        limit = getattr(learner, "default_window", None)
        if not limit or getattr(learner, "vjp_method", "single-step") != "single-step":
            return None
        best = max(k for k in range(1, min(int(limit), T) + 1) if T % k == 0)
        return best if best > 1 else None
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or T % window:
        raise ValueError(f"{owner}: window={window!r} must be a positive divisor of the sequence length {T}.")
    if masked and window > 1:
        raise ValueError(
            f"{owner}: window={window} with a `mask`: a window runs its steps inside the learner, where the states "
            "and traces of finished sequences cannot be held still step by step. Pass window=None (or 'auto')."
        )
    return window


def accumulate(
    learner: ETraceAlgorithm,
    params: dict,
    inputs: Any,
    targets: Any,
    mask: Any,
    loss: SequenceLoss,
    *,
    window: int | None,
    count: Any,
    per_step: bool = False,
) -> tuple[dict, jax.Array, Any, Any]:
    """Sum the online gradients of ``T`` steps inside one ``scan`` (no reset).

    Returns ``(grads, loss, step losses, aux)``: ``step losses`` (``(T,)``)
    only with ``per_step``, ``aux`` (stacked over ``T``) only with
    ``loss.has_aux``; ``None`` otherwise. ``count``: the mask count of the
    ``T`` steps (:func:`~braintrace.training.losses.mask_count`).
    """
    T = check_sequences(loss.owner, inputs, targets)
    if mask is not None and window is not None:
        raise ValueError(f"{loss.owner}: a mask runs step by step; window must be None here, got {window}.")
    freezer = Freezer(states_to_freeze(learner.model, learner)) if mask is not None else None

    def step(carry, xym):
        acc, total = carry
        x, y, m = xym
        before = freezer.values() if freezer is not None else None

        def loss_t():
            if window is None:
                obj, step_loss, aux = loss(learner(x), y, m, count)
                return obj, (step_loss, aux)
            outs = learner(MultiStepData(x))
            obj, step_loss, aux = jax.vmap(lambda o, yk: loss(o, yk, None, count))(outs, y)
            return jnp.sum(obj), (step_loss, aux)

        g, value, (step_loss, aux) = brainstate.transform.grad(loss_t, params, return_value=True, has_aux=True)()
        if freezer is not None:
            freezer.restore(before, m)
        return (jax.tree.map(jnp.add, acc, g), total + value), (step_loss if per_step else None, aux)

    if window is not None:
        inputs, targets = jax.tree.map(lambda a: a.reshape((T // window, window) + a.shape[1:]), (inputs, targets))
    zeros = jax.tree.map(jnp.zeros_like, {k: v.value for k, v in params.items()})
    total0 = jnp.zeros((), jnp.result_type(float))
    # the loss is summed in the carry: nothing in this loop grows with T (but the per-step outputs asked for)
    (grads, total), (steps, aux) = brainstate.transform.scan(step, (zeros, total0), (inputs, targets, mask))
    if window is not None:
        steps, aux = jax.tree.map(lambda a: a.reshape((T,) + a.shape[2:]), (steps, aux))
    return grads, total, steps, aux


def online_gradients(
    learner: ETraceAlgorithm,
    inputs: Any,
    targets: Any,
    loss_fn: LossFn,
    *,
    mask: Any = None,
    reduction: str = "sum",
    has_aux: bool = False,
    reset: bool = True,
    batch_size: int | None = None,
    window: int | str | None = "auto",
) -> tuple[dict, Any]:
    r"""Online gradients of a sequence loss, accumulated inside one ``scan``.

    At every step ``t`` the learner runs the model, updates its traces and
    gives ``∇_θ ℓ(o^t, y^t)`` through its online rule; the gradients are summed
    over time (see the module docstring for the loss and its reductions).

    Parameters
    ----------
    learner : ETraceAlgorithm
        A compiled learner (``learner.compile_graph(...)`` done).
    inputs : pytree of arrays
        Time-major inputs, leading axis ``T``.
    targets : pytree of arrays
        Time-major targets (anything ``loss_fn`` needs).
    loss_fn : callable
        ``loss_fn(output_t, target_t)``: the loss of one step, a scalar or an
        array (summed, or averaged by ``reduction='mean'``); with a ``mask`` of
        shape ``(T, B)``, one loss per batch element (shape ``(B,)`` or
        ``(B, ...)``). With ``has_aux``, a pair ``(loss, aux)``.
    mask : array of shape (T,) or (T, B), optional
        Which steps count, for sequences of different lengths in one batch
        (``1``/``True``: the step counts; ``0``: padding). A masked step adds
        nothing to the loss or the gradients, and the hidden states and
        traces of its batch element stay as they were
        (:mod:`braintrace.training.masking`). Runs step by step.
    reduction : {'sum', 'mean'}, default 'sum'
        ``'mean'`` divides by the number of loss entries that count (steps
        times entries of ``ℓ``, or the mask's sum times the entries each mask
        entry covers).
    has_aux : bool, default False
        ``loss_fn`` returns ``(loss, aux)``; the ``aux`` of every step is
        returned stacked over time (per-step outputs or metrics).
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
        for the others and with a mask).

    Returns
    -------
    grads : dict
        ``{ParamState path: gradient}`` of the sequence loss.
    loss : scalar, or (scalar, aux)
        The sequence loss; with ``has_aux``, the pair ``(loss, aux)``, ``aux``
        stacked over the ``T`` steps.

    Raises
    ------
    ValueError
        If ``window`` does not divide the sequence length, inputs, targets and
        mask disagree on it, a window is asked for with a mask, or the loss
        of a step does not fit the mask.

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

    Variable lengths (three steps, then padding) and the per-step outputs:

    >>> mask = jnp.array([1, 1, 1, 0, 0])
    >>> grads, (loss, outs) = braintrace.online_gradients(
    ...     learner, jnp.ones((5, 2)), jnp.zeros((5, 3)),
    ...     lambda o, y: (jnp.sum((o - y) ** 2), o), mask=mask, has_aux=True)
    >>> outs.shape, bool(jnp.allclose(cell.h.value, outs[2]))  # the state stood still at the padding
    ((5, 3), True)
    """
    learner.check_compiled()
    loss = SequenceLoss(loss_fn, reduction, has_aux, "online_gradients").check()
    T = check_sequences("online_gradients", inputs, targets)
    mask = check_mask("online_gradients", mask, T)
    K = resolve_window("online_gradients", learner, window, T, mask is not None)
    params = learner.model.states(brainstate.ParamState)
    if reset:
        learner.reset(batch_size)
    grads, total, _, aux = accumulate(
        learner, params, inputs, targets, mask, loss, window=K, count=mask_count(mask, T)
    )
    return grads, ((total, aux) if has_aux else total)


def bptt_gradients(
    model: brainstate.nn.Module,
    inputs: Any,
    targets: Any,
    loss_fn: LossFn,
    *,
    mask: Any = None,
    reduction: str = "sum",
    has_aux: bool = False,
    reset: bool = True,
    batch_size: int | None = None,
) -> tuple[dict, Any]:
    r"""Backpropagation-through-time gradients of the same sequence loss.

    The plain model in place of a learner (no ``window``): the loss of the
    ``T`` steps is differentiated through the unrolled ``scan``, so memory
    grows with the sequence length. With a mask, the hidden states of a batch
    element stand still at its masked steps, as in :func:`online_gradients`.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; ``model(x_t)`` advances one time step. Its states must be
        initialised (``brainstate.nn.init_all_states``).
    inputs : pytree of arrays
        Time-major inputs, leading axis ``T``.
    targets : pytree of arrays
        Time-major targets (anything ``loss_fn`` needs), leading axis ``T``.
    loss_fn : callable
        ``loss_fn(output_t, target_t)``: the loss of one step, as for
        :func:`online_gradients` (a scalar or an array; one loss per batch
        element with a ``(T, B)`` mask; a pair ``(loss, aux)`` with ``has_aux``).
    mask : array of shape (T,) or (T, B), optional
        Which steps count (``1``/``True``) and which are padding (``0``); a
        masked step adds nothing to the loss and the hidden states of its
        batch element stay as they were (:mod:`braintrace.training.masking`).
    reduction : {'sum', 'mean'}, default 'sum'
        ``'mean'`` divides by the number of loss entries that count, as in
        :func:`online_gradients`.
    has_aux : bool, default False
        ``loss_fn`` returns ``(loss, aux)``; the ``aux`` of every step is
        returned stacked over time.
    reset : bool, default True
        Reset the model's states before the sequence (every module's
        ``reset_state``). A state that no module resets raises
        :class:`~braintrace.NotSupportedError`; pass ``reset=False`` and set
        it yourself.
    batch_size : int, optional
        Batch size used by the reset (``None`` for unbatched models).

    Returns
    -------
    grads : dict
        ``{ParamState path: gradient}`` of the sequence loss.
    loss : scalar, or (scalar, aux)
        The sequence loss; with ``has_aux``, the pair ``(loss, aux)``, ``aux``
        stacked over the ``T`` steps.

    Raises
    ------
    ValueError
        If inputs, targets and mask disagree on the sequence length, or the
        loss of a step does not fit the mask.
    NotSupportedError
        With ``reset``, a state of the model that no module resets.

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
    loss = SequenceLoss(loss_fn, reduction, has_aux, "bptt_gradients").check()
    T = check_sequences("bptt_gradients", inputs, targets)
    mask = check_mask("bptt_gradients", mask, T)
    params = model.states(brainstate.ParamState)
    if reset:
        reset_model(model, batch_size, owner="bptt_gradients")
    freezer = Freezer(states_to_freeze(model)) if mask is not None else None
    count = mask_count(mask, T)

    def total_loss():
        def step(total, xym):
            x, y, m = xym
            before = freezer.values() if freezer is not None else None
            out = model(x)
            if freezer is not None:
                freezer.restore(before, m)
            obj, _, aux = loss(out, y, m, count)
            return total + obj, aux

        total, aux = brainstate.transform.scan(
            step, jnp.zeros((), jnp.result_type(float)), (inputs, targets, mask)
        )
        return total, aux

    grads, total, aux = brainstate.transform.grad(total_loss, params, return_value=True, has_aux=True)()
    return grads, ((total, aux) if has_aux else total)
