"""How the learners run their loops over a window's steps.

On GPUs and other accelerators every iteration of an XLA loop pays a fixed
launch (and command-buffer update) cost, which dominates small per-step bodies:
the loops over a window's steps are unrolled there. Unrolling multiplies the
loop body's compile time, and a large step runs long enough that the
per-iteration cost is negligible: a step whose equations handle more than
:data:`UNROLL_MAX_STEP_ELEMENTS` array elements (:func:`step_elements`) is not
unrolled (a 139,000-neuron network with 50 million synapses compiled in 121 s
with 10-step unrolling on an H200, 16 s without windows; on a CPU 37.5 s unrolled
and 14.2 s not). On CPUs unrolling
only lengthens compilation. There too, a window's stacked inputs are pinned to
the row-major layout (:func:`window_local`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental.layout import Layout, with_layout_constraint

__all__ = ["ACCELERATOR_UNROLL", "UNROLL_MAX_STEP_ELEMENTS", "step_elements", "window_local", "window_unroll"]

#: Steps per loop iteration on accelerators (on an H100 it took LIF-4096
#: ES_D_RTRL from 77 to 52 µs per step with 10-step windows).
ACCELERATOR_UNROLL = 10


#: Above this many elements handled per step (:func:`step_elements`) a window's
#: loop is not unrolled. LIF-4096 at batch 16 (a dense 4096 x 4096 recurrent
#: weight, about 1.7e7 elements per step) is below it and keeps its unrolling.
UNROLL_MAX_STEP_ELEMENTS = 2**25


def step_elements(jaxpr: Any) -> int:
    """The elements of the arrays the equations of a step's jaxpr read and write (a size of its body).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from braintrace.executor.loops import step_elements
    >>> step_elements(jax.make_jaxpr(lambda x, w: jnp.tanh(x @ w))(jnp.ones(3), jnp.ones((3, 4))).jaxpr)
    27
    """
    total = 0
    for eqn in jaxpr.eqns:
        for v in (*eqn.invars, *eqn.outvars):
            shape = getattr(getattr(v, "aval", None), "shape", None)
            if shape is not None:
                total += math.prod(shape)
    return total


def window_unroll(K: int, step_size: int = 0) -> int:
    """The ``unroll`` of a ``jax.lax.scan`` over ``K`` steps of a window.

    ``step_size``: the elements one step handles (:func:`step_elements`);
    above :data:`UNROLL_MAX_STEP_ELEMENTS` the loop is not unrolled.

    Examples
    --------
    >>> import jax
    >>> from braintrace.executor.loops import window_unroll
    >>> window_unroll(32) == (1 if jax.default_backend() == "cpu" else 10)
    True
    >>> window_unroll(32, step_size=10**8)
    1
    """
    if jax.default_backend() == "cpu" or step_size > UNROLL_MAX_STEP_ELEMENTS:
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
