"""How the learners run their loops over a window's steps.

On GPUs and other accelerators every iteration of an XLA loop pays a fixed
launch (and command-buffer update) cost, which dominates small per-step bodies:
the loops over a window's steps are unrolled there. On CPUs unrolling only
lengthens compilation.
"""

from __future__ import annotations

import jax

__all__ = ["ACCELERATOR_UNROLL", "window_unroll"]

#: Steps per loop iteration on accelerators (on an H100 it took LIF-4096
#: ES_D_RTRL from 77 to 52 µs per step with 10-step windows).
ACCELERATOR_UNROLL = 10


def window_unroll(K: int) -> int:
    """The ``unroll`` of a ``jax.lax.scan`` over ``K`` steps of a window.

    Examples
    --------
    >>> import jax
    >>> from braintrace.algorithms.loops import window_unroll
    >>> window_unroll(32) == (1 if jax.default_backend() == "cpu" else 10)
    True
    """
    if jax.default_backend() == "cpu":
        return 1
    return max(1, min(int(K), ACCELERATOR_UNROLL))
