r"""True online training: weights that change while the sequence runs.

:func:`online_fit` runs a learner over a sequence, or over a stream of chunks,
and applies an optimizer update every ``K`` steps, carrying the hidden states
and the eligibility traces across the updates: there is no end of sequence to
wait for. With ``G_j`` the ``j``-th group of ``K`` steps and :math:`\mathcal{L}_j`
its loss (:mod:`braintrace.training.losses`),

.. math::

    g_j = \sum_{t\in G_j} \hat\nabla_\theta\, \ell^t(\theta_j), \qquad
    (u_j, s_{j+1}) = \mathrm{opt.update}(g_j, s_j, \theta_j), \qquad
    \theta_{j+1} = \theta_j + u_j,

``\hat\nabla`` the learner's online gradient (divided by the group's number of
loss entries for ``reduction='mean'``). The traces of step ``t`` were built
under the weights of the steps before it, as in every online learner that
updates its weights while it runs (Williams and Zipser, 1989).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import brainstate
import jax
import jax.numpy as jnp

from ..algorithms.base import ETraceAlgorithm
from .gradients import accumulate, resolve_window
from .losses import SequenceLoss, check_mask, check_sequences, mask_count

__all__ = ["online_fit", "OnlineFitResult", "FitStep"]


class OnlineFitResult(NamedTuple):
    """What :func:`online_fit` returns.

    Attributes
    ----------
    params : dict
        ``{ParamState path: value}`` after the last update (also written into
        the model's ``ParamState`` objects).
    opt_state : pytree
        The optimizer state after the last update (pass it to the next call).
    losses : array of shape (T,), or (losses, aux)
        Every step's loss (the step's entries reduced by ``reduction``),
        over all chunks; with ``has_aux``, ``(losses, aux)``, ``aux`` stacked
        over the steps.

    Examples
    --------
    >>> from braintrace.training import OnlineFitResult
    >>> OnlineFitResult._fields
    ('params', 'opt_state', 'losses')
    """

    params: dict
    opt_state: Any
    losses: Any


def online_fit(
    learner: ETraceAlgorithm,
    optimizer: Any,
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], Any],
    *,
    update_every: int,
    opt_state: Any = None,
    mask: Any = None,
    reduction: str = "sum",
    has_aux: bool = False,
    reset: bool = True,
    batch_size: int | None = None,
    window: int | str | None = "auto",
) -> OnlineFitResult:
    r"""Train online: an optimizer update every ``update_every`` steps, inside one jitted ``scan``.

    Parameters
    ----------
    learner : ETraceAlgorithm
        A compiled learner.
    optimizer : optax.GradientTransformation
        Anything with optax's ``init(params)`` and
        ``update(grads, state, params)``.
    inputs : pytree of arrays, or iterator of chunks
        Time-major inputs, leading axis ``T``; or, for streams that do not fit
        in memory, an *iterator* whose items are chunks ``(x, y)`` or
        ``(x, y, mask)`` (then ``targets`` and ``mask`` are ``None``). The
        states and traces run on from one chunk to the next.
    targets : pytree of arrays or None
        Time-major targets (``None`` with an iterator).
    loss_fn : callable
        ``loss_fn(output_t, target_t)``, as in
        :func:`~braintrace.online_gradients`.
    update_every : int
        ``K``: steps per optimizer update. ``T`` (every chunk's length) must
        be a multiple of ``K``.
    opt_state : pytree, optional
        The optimizer state to start from (default ``optimizer.init`` of the
        current parameters); pass the returned one to continue.
    mask, reduction, has_aux : optional
        As in :func:`~braintrace.online_gradients`; ``reduction='mean'``
        averages over each update's ``K`` steps.
    reset : bool, default True
        Reset the model's states and the traces before the first chunk
        (``False`` continues from where the last run, or a restored
        checkpoint, left off).
    batch_size : int, optional
        Batch size used by the reset.
    window : int, None or 'auto', default 'auto'
        Feed the learner ``window`` steps at a time inside each update
        (a divisor of ``K``; see :func:`~braintrace.online_gradients`).

    Returns
    -------
    OnlineFitResult
        ``(params, opt_state, losses)``.

    Raises
    ------
    ValueError
        ``update_every`` does not divide a chunk's length, or the options
        are invalid (see :func:`~braintrace.online_gradients`).
    TypeError
        ``optimizer`` lacks ``init``/``update``, or a stream item is not a
        chunk.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp, optax
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.D_RTRL(cell).compile_graph(jnp.zeros(2))
    >>> xs, ys = jnp.ones((20, 2)), jnp.full((20, 3), 0.5)
    >>> loss_fn = lambda o, y: jnp.mean((o - y) ** 2)
    >>> params, opt_state, losses = braintrace.online_fit(
    ...     learner, optax.sgd(0.5), xs, ys, loss_fn, update_every=5)
    >>> losses.shape, bool(losses[-1] < losses[0])
    ((20,), True)

    A stream of chunks (the states and traces run on across them):

    >>> chunks = iter([(xs[:10], ys[:10]), (xs[10:], ys[10:])])
    >>> result = braintrace.online_fit(learner, optax.sgd(0.5), chunks, None, loss_fn, update_every=5)
    >>> result.losses.shape
    (20,)
    """
    learner.check_compiled()
    loss = SequenceLoss(loss_fn, reduction, has_aux, "online_fit").check()
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            f"online_fit: `optimizer` must be an optax.GradientTransformation (with init and update), got "
            f"{type(optimizer).__name__}."
        )
    if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
        raise ValueError(f"online_fit: update_every must be a positive int, got {update_every!r}.")
    K = update_every
    chunks = _Chunks(inputs, targets, mask)
    W = resolve_window("online_fit", learner, window, K, _first_masked(chunks))
    if opt_state is None:
        opt_state = optimizer.init({k: v.value for k, v in learner.model.states(brainstate.ParamState).items()})
    step_fn = FitStep(learner, optimizer, loss, K, W)
    if reset:
        learner.reset(batch_size)
    outs = []
    for i, (x, y, m) in enumerate(chunks):
        T = check_sequences("online_fit", x, y)
        if T % K:
            where = "" if i == 0 and not isinstance(inputs, Iterator) else f"chunk {i} of the stream: "
            raise ValueError(
                f"online_fit: {where}{T} steps is not a multiple of update_every={K}; give chunks whose length is "
                "a multiple of update_every (or pick an update_every that divides the sequence length)."
            )
        m = check_mask("online_fit", m, T)
        if m is not None and W is not None:
            raise ValueError(
                f"online_fit: chunk {i} has a mask but the first had none, so its updates run in windows of {W} "
                "steps; a mask runs step by step. Pass window=None."
            )
        opt_state, out = step_fn(opt_state, x, y, m)
        outs.append(out)
    if not outs:
        raise ValueError("online_fit: the stream gave no chunk.")
    steps, aux = jax.tree.map(lambda *a: jnp.concatenate(a), *outs) if len(outs) > 1 else outs[0]
    values = {k: v.value for k, v in learner.model.states(brainstate.ParamState).items()}
    return OnlineFitResult(values, opt_state, (steps, aux) if has_aux else steps)


class FitStep:
    """The jitted body of :func:`online_fit`: one chunk of ``T`` steps, an update every ``K``.

    Compiled on the first call for each chunk shape; calling it again on
    chunks of the same shape reuses the compiled function (``online_fit``
    builds one per call and feeds it every chunk of a stream).

    Parameters
    ----------
    learner : ETraceAlgorithm
    optimizer : optax.GradientTransformation
    loss : SequenceLoss
    update_every : int
    window : int or None
        The window inside each update (already resolved).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp, optax
    >>> import braintrace
    >>> from braintrace.training.fit import FitStep
    >>> from braintrace.training.losses import SequenceLoss
    >>> cell = braintrace.nn.MGUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.D_RTRL(cell).compile_graph(jnp.zeros(2))
    >>> opt = optax.sgd(0.1)
    >>> step = FitStep(learner, opt, SequenceLoss(lambda o, y: jnp.sum((o - y) ** 2)), 2, None)
    >>> opt_state = opt.init({k: v.value for k, v in cell.states(brainstate.ParamState).items()})
    >>> opt_state, (losses, aux) = step(opt_state, jnp.ones((4, 2)), jnp.zeros((4, 3)), None)
    >>> losses.shape, aux
    ((4,), None)
    """

    def __init__(self, learner: ETraceAlgorithm, optimizer: Any, loss: SequenceLoss, update_every: int,
                 window: int | None) -> None:
        self.learner, self.optimizer, self.loss = learner, optimizer, loss
        self.update_every, self.window = update_every, window
        self.params = learner.model.states(brainstate.ParamState)
        self.compiled = brainstate.transform.jit(self._chunk)

    def __call__(self, opt_state: Any, xs: Any, ys: Any, mask: Any) -> tuple[Any, tuple[Any, Any]]:
        """``(new optimizer state, (per-step losses, aux))`` after the chunk; parameters, states and traces updated."""
        return self.compiled(opt_state, xs, ys, mask)

    def _group(self, opt_state, xym):
        x, y, m = xym
        K, params = self.update_every, self.params
        grads, _, steps, aux = accumulate(
            self.learner, params, x, y, m, self.loss, window=self.window, count=mask_count(m, K), per_step=True
        )
        values = {k: v.value for k, v in params.items()}
        updates, opt_state = self.optimizer.update(grads, opt_state, values)
        for k, st in params.items():
            st.value = jax.tree.map(lambda p, u: (p + u).astype(jnp.result_type(p)), values[k], updates[k])
        return opt_state, (steps, aux)

    def _chunk(self, opt_state, xs, ys, ms):
        T, K = check_sequences(self.loss.owner, xs, ys), self.update_every
        grouped = jax.tree.map(lambda a: a.reshape((T // K, K) + a.shape[1:]), (xs, ys, ms))
        opt_state, out = brainstate.transform.scan(self._group, opt_state, grouped)
        return opt_state, jax.tree.map(lambda a: a.reshape((T,) + a.shape[2:]), out)


class _Chunks:
    """The chunks of an ``online_fit`` call: one ``(x, y, mask)`` or those of an iterator."""

    def __init__(self, inputs: Any, targets: Any, mask: Any) -> None:
        if isinstance(inputs, Iterator):
            if targets is not None or mask is not None:
                raise TypeError(
                    "online_fit: with an iterator of chunks, give the targets (and masks) inside the chunks, "
                    "`(x, y)` or `(x, y, mask)`, and pass targets=None and no mask."
                )
            self.stream: Iterator | None = inputs
            self.first: tuple | None = None
        else:
            self.stream, self.first = None, (inputs, targets, mask)

    def peek(self) -> tuple | None:
        if self.first is None and self.stream is not None:
            self.first = _chunk(next(self.stream, None), 0)
        return self.first

    def __iter__(self):
        first = self.peek()
        if first is None:
            return
        yield first
        if self.stream is not None:
            for i, item in enumerate(self.stream, start=1):
                yield _chunk(item, i)


def _chunk(item: Any, i: int) -> tuple | None:
    if item is None:
        return None
    if not isinstance(item, tuple) or len(item) not in (2, 3):
        raise TypeError(
            f"online_fit: item {i} of the stream is a {type(item).__name__}; each chunk must be a tuple (x, y) or "
            "(x, y, mask) of time-major arrays."
        )
    return item if len(item) == 3 else (item[0], item[1], None)


def _first_masked(chunks: _Chunks) -> bool:
    first = chunks.peek()
    return first is not None and first[2] is not None
