"""A leaky model around one ETP primitive and the gradient checks run on it (test code).

:class:`LeakyOp` is ``h = a ⊙ h + (1 - a) ⊙ tanh(op(inp, w))`` with ``inp = x``
(its cut transition is element-wise: D_RTRL must equal BPTT) or, with
``recurrent=True``, ``inp = [x, h]`` along the last axis (D_RTRL must equal the
oracle's diagonal RTRL reference, and differ from BPTT). The read-out
``out = flat(h) @ W_out`` is plain JAX. The checks use the public API only:
``braintrace.D_RTRL`` / ``ES_D_RTRL``, ``braintrace.online_gradients`` (one
step at a time and in windows) and ``braintrace.bptt_gradients``, against
``tests/oracle.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

import braintrace
import oracle as O

T = 6


class LeakyOp(brainstate.nn.Module):
    """``h = a h + (1-a) tanh(op(inp, **w))``, ``out = flat(h) @ W_out``.

    ``params`` is the dict handed to ``op`` as keyword arguments (one
    ``ParamState``), or ``None`` when ``op`` is a layer holding its own
    parameters; ``core`` the shape of ``h`` without batch axes.
    """

    def __init__(self, op: Callable[..., Any], params: dict | None, core: tuple[int, ...], *,
                 recurrent: bool = False, n_out: int = 2, seed: int = 0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.op, self.core, self.recurrent = op, tuple(core), recurrent
        if params is not None:
            self.w = brainstate.ParamState(params)
        self.readout = brainstate.ParamState(jnp.asarray(rng.randn(math.prod(core), n_out) / math.sqrt(math.prod(core))))
        self.a = jax.nn.sigmoid(jnp.asarray(rng.randn(*core)))
        self.h0 = jnp.asarray(rng.randn(*core) * 0.5)
        self.h = brainstate.HiddenState(self.h0)

    def reset_state(self, batch_size: int | None = None, **kwargs) -> None:
        lead = () if batch_size is None else (batch_size,)
        self.h.value = jnp.broadcast_to(self.h0, lead + self.core)

    def update(self, x):
        inp = jnp.concatenate([x, self.h.value], axis=-1) if self.recurrent else x
        y = self.op(inp, **self.w.value) if hasattr(self, "w") else self.op(inp)
        self.h.value = self.a * self.h.value + (1 - self.a) * jnp.tanh(y)
        flat = self.h.value.reshape(self.h.value.shape[: self.h.value.ndim - len(self.core)] + (-1,))
        return flat @ self.readout.value


def loss_fn(out, target):
    return 0.5 * jnp.sum((out - target) ** 2)


def targets(model: LeakyOp, batch: int | None, seed: int = 2) -> jax.Array:
    lead = (T,) if batch is None else (T, batch)
    return jnp.asarray(np.random.RandomState(seed).randn(*lead, model.readout.value.shape[1]))


def oracle_loss(ys):
    return lambda out, t: loss_fn(out, ys[t])


def compiled_oracle(fn: Callable[[], Any]) -> Any:
    """``fn()`` (an oracle computation on the model's current values) as one compiled program.

    The oracle's unrolled loops run op by op otherwise; the values and the code are the same.
    """
    return jax.jit(fn)()


def _f64(tree) -> None:
    for leaf in jax.tree.leaves(tree):
        assert leaf.dtype == jnp.float64, leaf.dtype


def reset(model: LeakyOp, batch: int | None) -> None:
    brainstate.nn.reset_all_states(model, batch_size=batch)


def compiled(learner, model: LeakyOp, xs, batch: int | None):
    """``learner`` compiled on the first input, the model's states reset to the batch first."""
    reset(model, batch)
    return learner.compile_graph(xs[0])


def check_d_rtrl_equals_bptt(model: LeakyOp, xs, batch: int | None, windows=(None, 3)) -> None:
    """D_RTRL's online gradient equals BPTT's (the public ``bptt_gradients`` and the oracle's), float64, 1e-10."""
    ys = targets(model, batch)
    bptt, _ = braintrace.bptt_gradients(model, xs, ys, loss_fn, batch_size=batch)
    reset(model, batch)
    oracle, _ = compiled_oracle(lambda: O.bptt_grads(model, xs, oracle_loss(ys)))
    assert O.tree_max_rel_err(bptt, oracle) < 1e-10
    _f64(bptt)
    for window in windows:
        learner = compiled(braintrace.D_RTRL(model), model, xs, batch)
        assert len(learner.graph.hidden_param_op_relations) == 1
        got, _ = braintrace.online_gradients(learner, xs, ys, loss_fn, batch_size=batch, window=window)
        _f64(got)
        err = O.tree_max_rel_err(got, oracle)
        assert err < 1e-10, f"window={window}: D_RTRL differs from BPTT by {err:.2e}"


def check_d_rtrl_equals_diagonal_reference(model: LeakyOp, xs, batch: int | None) -> None:
    """On the recurrent model: D_RTRL equals the oracle's diagonal RTRL (and is not BPTT)."""
    ys = targets(model, batch)
    reset(model, batch)
    # one hidden state, hence one group: what the oracle's brute-force search (O.hidden_groups) returns
    groups = [tuple(O.hidden_states(model))]
    assert len(groups[0]) == 1
    ref, _ = O.rtrl_reference(model, xs, oracle_loss(ys), mode="diagonal", groups=groups)
    reset(model, batch)
    bptt, _ = compiled_oracle(lambda: O.bptt_grads(model, xs, oracle_loss(ys)))
    learner = compiled(braintrace.D_RTRL(model), model, xs, batch)
    got, _ = braintrace.online_gradients(learner, xs, ys, loss_fn, batch_size=batch, window=3)
    _f64(got)
    assert O.tree_max_rel_err(got, ref) < 1e-10
    assert O.tree_max_rel_err(got, bptt) > 1e-4
    learner = compiled(braintrace.D_RTRL(model, vjp_method="multi-step"), model, xs, batch)
    got, _ = braintrace.online_gradients(learner, xs, ys, loss_fn, batch_size=batch, window=2)
    reset(model, batch)
    hybrid, _ = O.rtrl_reference(model, xs, oracle_loss(ys), mode="diagonal", windows=2, groups=groups)
    assert O.tree_max_rel_err(got, hybrid) < 1e-10


def es_by_hand(model: LeakyOp, xs, ys, alpha: float, ref_op: Callable[..., Any]) -> dict:
    r"""ES_D_RTRL on the (non-recurrent) :class:`LeakyOp`, restated with plain JAX.

    ``D = a``, ``df = (1-a)(1 - tanh(y)²)``, ``δ = unflat(err @ W_outᵀ)``;
    ``ε_x = α ε_x + x``, ``ε_f = α a ε_f + (1-α) df``, ``c = 1 - α^{t+1}``,
    ``∇w += vjp_w(ref_op)(ε_x)(ε_f δ / c)``; a ``bias`` keeps its exact trace
    ``e = a e + df`` and gets ``Σ e δ`` summed to its shape by the VJP of
    ``ref_op`` in the bias (which is linear in it).
    """
    params = dict(model.w.value)
    Wo, a = model.readout.value, model.a
    h = model.h.value
    ex = jnp.zeros_like(xs[0], dtype=Wo.dtype)
    ef = jnp.zeros_like(h)
    eb = jnp.zeros_like(h)
    grads = {k: jnp.zeros_like(v) for k, v in params.items()}
    g_out = jnp.zeros_like(Wo)
    lead = h.shape[: h.ndim - len(model.core)]
    for t in range(T):
        x = xs[t]
        y = ref_op(x, **params)
        h = a * h + (1 - a) * jnp.tanh(y)
        flat = h.reshape(lead + (-1,))
        err = flat @ Wo - ys[t]
        delta = (err @ Wo.T).reshape(h.shape)
        df = (1 - a) * (1 - jnp.tanh(y) ** 2)
        ex = alpha * ex + x
        ef = alpha * a * ef + (1 - alpha) * df
        eb = a * eb + df
        c = 1 - alpha ** (t + 1)
        weights = {k: v for k, v in params.items() if k != "bias"}
        _, vjp = jax.vjp(lambda w: ref_op(ex, **w, **({"bias": params["bias"]} if "bias" in params else {})), weights)
        for k, v in vjp(ef * delta / c)[0].items():
            grads[k] = grads[k] + v
        if "bias" in params:
            _, vjp_b = jax.vjp(lambda b: ref_op(x, **weights, bias=b), params["bias"])
            grads["bias"] = grads["bias"] + vjp_b(eb * delta)[0]
        g_out = g_out + flat.reshape(-1, flat.shape[-1]).T @ err.reshape(-1, err.shape[-1])
    return {("w",): grads, ("readout",): g_out}


def check_es_d_rtrl_equals_by_hand(model: LeakyOp, xs, batch: int | None, ref_op: Callable[..., Any],
                                   alpha: float = 0.7, windows=(None, 3)) -> None:
    """ES_D_RTRL (one step at a time and in windows) equals :func:`es_by_hand`, float64, 1e-10."""
    ys = targets(model, batch)
    reset(model, batch)
    want = compiled_oracle(lambda: es_by_hand(model, xs, ys, alpha, ref_op))
    for window in windows:
        learner = compiled(braintrace.ES_D_RTRL(model, alpha), model, xs, batch)
        got, _ = braintrace.online_gradients(learner, xs, ys, loss_fn, batch_size=batch, window=window)
        _f64(got)
        assert O.tree_max_rel_err(got, want) < 1e-10
