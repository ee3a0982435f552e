"""What is timed: one whole sequence per call, as a stateful function ``body(xs, ys)``.

Methods (``K`` a window length):

- ``forward``: inference only, the summed loss of the sequence (no gradient);
- ``bptt``: :func:`braintrace.bptt_gradients` (``jax.grad`` through a scan);
- ``d_rtrl`` / ``es_d_rtrl``: :func:`braintrace.online_gradients` with
  ``window=None``, single-step accumulation inside one scan (by default
  ``online_gradients`` feeds D_RTRL 32-step windows: that is ``d_rtrl_win32``);
- ``d_rtrl_msK`` / ``es_d_rtrl_msK``: ``vjp_method='multi-step'``, a scan over
  ``T/K`` :class:`braintrace.MultiStepData` windows, each window's summed loss
  differentiated at once (BPTT inside the window, trace credit before it);
- ``d_rtrl_winK`` / ``es_d_rtrl_winK``: the single-step rule (same gradient as
  ``d_rtrl`` / ``es_d_rtrl``) fed ``MultiStepData`` windows of ``K`` steps, which
  the learners advance once per window when they can (``learner.window_fusion``).

Every body resets the model's states (and the traces) first, so one call is one
independent sequence; every gradient method returns ``(grads, loss)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

import brainstate
import jax
import jax.numpy as jnp

import braintrace
from braintrace.algorithms.catalog import learner_class

from .models import ModelSpec, mse_loss

__all__ = ["ES_DECAY", "LEARNER_KWARGS", "method_names", "parse_method", "build_body", "method_family", "split_windows"]

ES_DECAY = 0.9
#: The learners timed here (catalog names, see ``braintrace.algorithms.catalog``) and their keyword arguments.
LEARNER_KWARGS: Mapping[str, Mapping] = MappingProxyType({
    "d_rtrl": MappingProxyType({}),
    "es_d_rtrl": MappingProxyType({"decay_or_rank": ES_DECAY}),
})
_WINDOWED = re.compile(rf"^({'|'.join(LEARNER_KWARGS)})_(ms|win)(\d+)$")
_VJP = MappingProxyType({"ms": "multi-step", "win": "single-step"})
_BASE = ("forward", "bptt", *LEARNER_KWARGS)


def method_names(windows: tuple[int, ...] | list[int] = (10,), kinds: tuple[str, ...] | list[str] = ("ms",)) -> list[str]:
    """All method names for the window lengths and kinds (``'ms'``, ``'win'``), roughly cheapest first."""
    win = [f"{alg}_{kind}{k}" for k in windows for kind in kinds for alg in ("es_d_rtrl", "d_rtrl")]
    return ["forward", "es_d_rtrl", *win, "d_rtrl", "bptt"]


def parse_method(name: str) -> tuple[str, int | None, str | None]:
    """``'d_rtrl_ms10' -> ('d_rtrl', 10, 'multi-step')``, ``'bptt' -> ('bptt', None, None)``."""
    if name in _BASE:
        return name, None, None
    m = _WINDOWED.match(name)
    if m is None or int(m.group(3)) < 1:
        raise ValueError(
            f"unknown method {name!r}; use one of {_BASE}, or d_rtrl / es_d_rtrl followed by _msK "
            "(vjp_method='multi-step') or _winK (single-step rule on K-step windows), K >= 1."
        )
    return m.group(1), int(m.group(3)), _VJP[m.group(2)]


def method_family(name: str) -> str:
    """The algorithm a method belongs to (``'d_rtrl_ms10' -> 'd_rtrl'``)."""
    return parse_method(name)[0]


def _learner(alg: str, model, spec: ModelSpec, vjp_method: str):
    learner = learner_class(alg)(model, vjp_method=vjp_method, **LEARNER_KWARGS[alg])
    learner.compile_graph(jnp.zeros((spec.batch, spec.n_in), jnp.float32))
    return learner


def _forward_body(model, spec: ModelSpec) -> Callable:
    def body(xs, ys):
        brainstate.nn.reset_all_states(model, batch_size=spec.batch)

        def step(total, xy):
            return total + mse_loss(model(xy[0]), xy[1]), None

        total, _ = brainstate.transform.scan(step, jnp.zeros((), jnp.float32), (xs, ys))
        return total

    return body


def split_windows(xs, ys, K: int) -> tuple:
    """``(T, ...)`` inputs and targets as ``(T // K, K, ...)`` windows."""
    n = xs.shape[0] // K
    return xs.reshape((n, K) + xs.shape[1:]), ys.reshape((n, K) + ys.shape[1:])


def _window_body(learner, spec: ModelSpec, K: int) -> Callable:
    model = learner.model
    params = model.states(brainstate.ParamState)

    def body(xs, ys):
        brainstate.nn.reset_all_states(model, batch_size=spec.batch)
        learner.reset_state(spec.batch)
        xw, yw = split_windows(xs, ys, K)

        def step(acc, xy):
            x, y = xy

            def window_loss():
                outs = learner(braintrace.MultiStepData(x))
                return jnp.sum(jax.vmap(mse_loss)(outs, y))

            g, value = brainstate.transform.grad(window_loss, params, return_value=True)()
            return jax.tree.map(jnp.add, acc, g), value

        zeros = jax.tree.map(jnp.zeros_like, {k: v.value for k, v in params.items()})
        grads, losses = brainstate.transform.scan(step, zeros, (xw, yw))
        return grads, jnp.sum(losses)

    return body


def build_body(method: str, model, spec: ModelSpec) -> Callable:
    """The stateful function ``body(xs, ys)`` that runs ``method`` over one sequence of ``spec``.

    Raises ``ValueError`` for an unknown method or a window ``K`` that does not divide ``T``.
    """
    alg, K, vjp_method = parse_method(method)
    if alg == "forward":
        return _forward_body(model, spec)
    if alg == "bptt":
        return lambda xs, ys: braintrace.bptt_gradients(model, xs, ys, mse_loss, batch_size=spec.batch)
    if K is None:
        learner = _learner(alg, model, spec, "single-step")
        # one step at a time (window=None): the per-step path, not online_gradients' default windows
        return lambda xs, ys: braintrace.online_gradients(
            learner, xs, ys, mse_loss, batch_size=spec.batch, window=None
        )
    if spec.T % K:
        raise ValueError(f"window K={K} does not divide T={spec.T}")
    return _window_body(_learner(alg, model, spec, vjp_method), spec, K)
