"""Test helpers that run a learner over a sequence (test code, not shipped)."""

from __future__ import annotations

import contextlib
import warnings

import brainstate
import jax
import jax.numpy as jnp
import pytest


@contextlib.contextmanager
def x64_mode():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", prev)


@pytest.fixture
def x64():
    with x64_mode():
        yield


def online_grads(learner, xs, loss, *, jit=True):
    """Σ_t of the learner's online gradient of ``loss(out_t, t)``, one step at a time.

    Returns ``(grads, total)`` with ``grads`` keyed by ParamState path, as the oracle.
    With ``jit`` the step is compiled once for the whole sequence: ``t`` reaches ``loss``
    as a traced integer (index with it, e.g. ``targets[t]``).
    """
    model = learner.model
    params = model.states(brainstate.ParamState)
    T = jax.tree.leaves(xs)[0].shape[0]

    def f(x, t):
        return loss(learner(x), t)

    gfn = brainstate.transform.grad(f, params, return_value=True)
    if jit:
        gfn = brainstate.transform.jit(gfn)
    acc, total = None, 0.0
    for t in range(T):
        x = jax.tree.map(lambda a: a[t], xs)
        g, value = gfn(x, jnp.asarray(t) if jit else t)
        acc = g if acc is None else jax.tree.map(jnp.add, acc, g)
        total = total + value
    return {k: acc[k] for k in acc}, total


def window_grads(learner, xs, loss, K):
    """Online gradient of the summed loss over windows of ``K`` steps (``MultiStepData``).

    One compiled program per window length (a shorter last window compiles its own):
    the window's first step ``t0`` is traced, ``loss`` gets ``t0 + k``.
    """
    import braintrace

    model = learner.model
    params = model.states(brainstate.ParamState)
    T = jax.tree.leaves(xs)[0].shape[0]

    def f(win, t0):
        n = jax.tree.leaves(win)[0].shape[0]
        outs = learner(braintrace.MultiStepData(win))
        return sum(loss(jax.tree.map(lambda o, k=k: o[k], outs), t0 + k) for k in range(n))

    gfn = brainstate.transform.jit(brainstate.transform.grad(f, params, return_value=True))
    acc, total = None, 0.0
    for t0 in range(0, T, K):
        win = jax.tree.map(lambda a, t0=t0: a[t0 : t0 + K], xs)
        g, value = gfn(win, jnp.asarray(t0))
        acc = g if acc is None else jax.tree.map(jnp.add, acc, g)
        total = total + value
    return {k: acc[k] for k in acc}, total


def compile_recording_warnings(model, x):
    """``(D_RTRL(model) compiled on x, [warning messages])``: every compiler warning, none filtered."""
    import braintrace

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learner = braintrace.D_RTRL(model).compile_graph(x)
    return learner, [str(w.message) for w in caught]
