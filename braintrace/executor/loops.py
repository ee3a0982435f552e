"""How the learners run their loops over a window's steps.

On GPUs and other accelerators every iteration of an XLA loop pays a fixed
launch (and command-buffer update) cost, which dominates small per-step bodies:
the loops over a window's steps are unrolled there. On CPUs unrolling only
lengthens compilation. There too, a window's stacked inputs are pinned to the
row-major layout (:func:`window_local`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental.layout import Layout, with_layout_constraint

__all__ = ["ACCELERATOR_UNROLL", "window_local", "window_unroll"]

#: Steps per loop iteration on accelerators (on an H100 it took LIF-4096
#: ES_D_RTRL from 77 to 52 µs per step with 10-step windows).
ACCELERATOR_UNROLL = 10


def window_unroll(K: int) -> int:
    """The ``unroll`` of a ``jax.lax.scan`` over ``K`` steps of a window.

    Examples
    --------
    >>> import jax
    >>> from braintrace.executor.loops import window_unroll
    >>> window_unroll(32) == (1 if jax.default_backend() == "cpu" else 10)
    True
    """
    if jax.default_backend() == "cpu":
        return 1
    return max(1, min(int(K), ACCELERATOR_UNROLL))


def window_local(tree: Any, pin: bool | None = None) -> Any:
    """Pin a window's stacked per-step values (``(K, ...)`` arrays) to the row-major layout.

    A window's inputs are slices of the whole sequence. Left free, XLA's GPU
    layout assignment may give them the layout that suits a product over the
    window (its step axis minor) and push that layout back to the sequence,
    transposing the whole input once before the loop: temp memory growing with
    the sequence length (seen on an H200, D_RTRL with 50-step windows on LIF-256:
    11 MiB at T=1000, 29 MiB at T=10000). Pinned, the transposition happens per
    window, on ``K`` steps (9.4 MiB at both T, the same time per step).

    ``pin``: whether to pin; by default on every backend but the CPU, where
    arrays are row-major anyway and this is the identity.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from braintrace.executor.loops import window_local
    >>> window_local({"x": jnp.ones((4, 2, 3))}, pin=True)["x"].shape
    (4, 2, 3)
    """
    if pin is None:
        pin = jax.default_backend() != "cpu"
    if not pin:
        return tree

    def pinned(v):
        if jnp.ndim(v) < 2:
            return v
        return with_layout_constraint(v, Layout(major_to_minor=tuple(range(jnp.ndim(v)))))

    return jax.tree.map(pinned, tree)
