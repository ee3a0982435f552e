r"""The loss of a sequence: per-step losses, masks of variable-length sequences, reductions.

Notation: ``ℓ^t = loss_fn(o^t, y^t)`` is the loss array of step ``t`` (a
scalar, or one entry per batch element, ...), ``m^t`` the mask of step ``t``
(``mask[t]``: a scalar, or one entry per batch element) broadcast over the
trailing axes of ``ℓ^t``. Over a group of steps ``G`` (the whole sequence, or
the ``K`` steps of one optimizer update of :func:`braintrace.online_fit`)

.. math::

    \mathcal{L}_{\rm sum} = \sum_{t\in G} \sum_i m_i^t \ell_i^t, \qquad
    \mathcal{L}_{\rm mean} = \frac{\mathcal{L}_{\rm sum}}{\sum_{t\in G} \sum_i m_i^t}

(without a mask ``m = 1``: ``'mean'`` averages over the steps and the entries
of ``ℓ``). The per-step losses reported by the drivers are the same reductions
over one step (``0`` for a step with no valid entry under ``'mean'``).

Examples
--------
>>> import jax.numpy as jnp
>>> from braintrace.training.losses import SequenceLoss
>>> loss = SequenceLoss(lambda o, y: (o - y) ** 2, reduction="mean")
>>> objective, step, aux = loss(jnp.array([1.0, 3.0]), jnp.zeros(2), jnp.array([1.0, 0.0]), jnp.asarray(2.0))
>>> float(objective), float(step)
(0.5, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["REDUCTIONS", "SequenceLoss", "check_sequences", "check_mask", "mask_count"]

#: The reductions of a sequence loss.
REDUCTIONS = ("sum", "mean")


class SequenceLoss(NamedTuple):
    """A user's ``loss_fn`` with its reduction, mask and auxiliary outputs.

    Attributes
    ----------
    loss_fn : callable
        ``loss_fn(o_t, y_t)``: the loss array of one step, or ``(loss, aux)``
        with ``has_aux``.
    reduction : {'sum', 'mean'}
    has_aux : bool
    owner : str
        The public function's name, for error messages.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.training.losses import SequenceLoss
    >>> loss = SequenceLoss(lambda o, y: (jnp.sum(o - y), o), has_aux=True)
    >>> objective, step, aux = loss(jnp.ones(3), jnp.zeros(3), None, jnp.asarray(1.0))
    >>> float(objective), aux.shape
    (3.0, (3,))
    """

    loss_fn: Callable[[Any, Any], Any]
    reduction: str = "sum"
    has_aux: bool = False
    owner: str = "online_gradients"

    def check(self) -> "SequenceLoss":
        """``self``, after checking the options (raise before any work)."""
        if not callable(self.loss_fn):
            raise TypeError(f"{self.owner}: `loss_fn` must be callable, got {type(self.loss_fn).__name__}.")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"{self.owner}: reduction must be one of {REDUCTIONS}, got {self.reduction!r}.")
        return self

    def __call__(self, out: Any, target: Any, mask_t: Any, count: Any) -> tuple[jax.Array, jax.Array, Any]:
        """``(objective term, reported step loss, aux)`` of one step.

        ``mask_t``: the step's mask (``None``: every entry counts); ``count``:
        the number of mask entries of the group (see :func:`mask_count`), by
        which ``'mean'`` divides after scaling it by the entries of ``ℓ`` each
        mask entry stands for.
        """
        value = self.loss_fn(out, target)
        aux = None
        if self.has_aux:
            if not (isinstance(value, tuple) and len(value) == 2):
                raise TypeError(
                    f"{self.owner}: with has_aux=True, loss_fn must return a pair (loss, aux); got "
                    f"{type(value).__name__}."
                )
            value, aux = value
        value = jnp.asarray(value)
        if mask_t is None:
            summed, entries = jnp.sum(value), jnp.asarray(value.size, value.dtype)
        else:
            m = jnp.asarray(mask_t, value.dtype)
            if value.shape[: m.ndim] != m.shape:
                raise ValueError(
                    f"{self.owner}: the mask of one step has shape {m.shape}, but loss_fn returned a loss of shape "
                    f"{value.shape}. With a mask of shape (T, B), loss_fn must return one loss per batch element "
                    "(shape (B,) or (B, ...)), not their sum: e.g. `jnp.sum((o - y) ** 2, axis=-1)`."
                )
            m = jnp.reshape(m, m.shape + (1,) * (value.ndim - m.ndim))
            summed = jnp.sum(m * value)
            entries = jnp.sum(jnp.broadcast_to(m, value.shape))
        if self.reduction == "sum":
            return summed, summed, aux
        per_entry = value.size if mask_t is None else value.size // max(int(jnp.size(mask_t)), 1)
        total = jnp.asarray(count, value.dtype) * per_entry
        objective = summed / jnp.where(total > 0, total, 1)
        step = jnp.where(entries > 0, summed / jnp.where(entries > 0, entries, 1), 0)
        return objective, step, aux


def mask_count(mask: Any, steps: int) -> jax.Array:
    """The number of mask entries of a group of ``steps`` steps (``steps`` without a mask)."""
    if mask is None:
        return jnp.asarray(steps, jnp.result_type(float))
    return jnp.sum(jnp.asarray(mask, jnp.result_type(float)))


def check_sequences(owner: str, inputs: Any, targets: Any) -> int:
    """``T``, after checking that every input and target leaf has the same leading time axis."""
    leaves = [("inputs", x) for x in jax.tree.leaves(inputs)] + [("targets", y) for y in jax.tree.leaves(targets)]
    if not leaves or not jax.tree.leaves(inputs):
        raise ValueError(f"{owner}: `inputs` holds no array; give time-major inputs of shape (T, ...).")
    lengths: dict[str, set] = {name: set() for name, _ in leaves}
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


def check_mask(owner: str, mask: Any, T: int) -> Any:
    """The mask as an array of shape ``(T,)`` or ``(T, B)``, or ``None``."""
    if mask is None:
        return None
    try:
        m = jnp.asarray(mask)
    except TypeError as err:
        raise TypeError(f"{owner}: `mask` must be an array of shape (T,) or (T, B), got {type(mask).__name__}.") from err
    if m.ndim not in (1, 2) or m.shape[0] != T:
        raise ValueError(
            f"{owner}: `mask` has shape {m.shape}; give one entry per step (T,) = ({T},) or one per step and batch "
            f"element (T, B) = ({T}, B), time-major like the inputs."
        )
    if not (jnp.issubdtype(m.dtype, jnp.bool_) or jnp.issubdtype(m.dtype, jnp.number)):
        raise TypeError(f"{owner}: `mask` must be boolean or numeric, got dtype {m.dtype}.")
    return m
