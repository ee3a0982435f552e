"""Shared checks for the braintrace.nn tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from braintrace.primitives import REGISTRY

#: primitives that open a sub-jaxpr the compiler cannot walk (custom_jvp of surrogates is allowed)
FORBIDDEN = ("jit", "pjit", "cond", "scan", "while", "custom_vjp_call", "closed_call", "core_call")


def assert_close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-6, err_msg: str = "") -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{err_msg}: shapes {a.shape} vs {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=err_msg)


def trace(fn, *args):
    """The closed jaxpr of a stateful ``fn`` (states read and written become in/outputs)."""
    jaxpr, _ = brainstate.transform.make_jaxpr(fn)(*args)
    return jaxpr


def etp_counts(fn, *args) -> Counter:
    """``Counter`` of ETP primitive names bound at the top level of ``fn``'s jaxpr."""
    jaxpr = trace(fn, *args).jaxpr
    return Counter(REGISTRY.get(e.primitive).name for e in jaxpr.eqns if REGISTRY.get(e.primitive) is not None)


def forbidden_prims(fn, *args) -> list[str]:
    """Names of top-level primitives that open a sub-jaxpr other than ``custom_jvp_call``."""
    jaxpr = trace(fn, *args).jaxpr
    return [e.primitive.name for e in jaxpr.eqns if e.primitive.name in FORBIDDEN]


def weights_of(module) -> dict:
    """``{path: value}`` of every ParamState."""
    return {k: v.value for k, v in module.states(brainstate.ParamState).items()}


def randomize(module, seed: int = 0, scale: float = 0.5) -> None:
    """Give every ParamState leaf random values (so that zero biases cannot hide bugs)."""
    rng = np.random.default_rng(seed)
    for state in module.states(brainstate.ParamState).values():
        state.value = jax.tree.map(
            lambda v: jnp.asarray(rng.normal(size=np.shape(v)) * scale, dtype=jnp.asarray(v).dtype), state.value
        )
