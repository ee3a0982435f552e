"""Coupled models for the influence learners' tests (RTRL, SnAp, UORO; test code, not shipped).

* :class:`TwoLayerSNN` — two spiking layers: the first recurrent through a
  ``matmul`` of its own spikes, the second fed by the first's new spikes,
  a readout of the second's voltage: the hidden states are coupled across
  positions and across layers;
* :class:`EarlyRNN` — a vanilla RNN whose output reads ``h^{t-1}`` before the
  write (the bypass term) and whose recurrence is a plain ``jnp`` product;
* :class:`Chain` — three leaky units in a chain ``h0 -> h1 -> h2`` (each reads
  the previous unit's old value), whose input weight needs three steps to
  reach ``h2``: its diameter is 3.
"""

from __future__ import annotations

import numpy as np

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O


def arr(rng, *shape, scale=0.5):
    return jnp.asarray(rng.randn(*shape) * scale)


class TwoLayerSNN(brainstate.nn.Module):
    """``v1 = 0.9 v1 + matmul(x, W1) + matmul(s1_old, R) - s1_old``, ``v2 = 0.8 v2 + matmul(s1, W2) - s2_old``;
    spikes ``s = sigmoid-surrogate(v - 1)``; ``out = v2 @ W_out``."""

    def __init__(self, n_in=3, n1=4, n2=3, n_out=2, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.W1 = brainstate.ParamState(arr(rng, n_in, n1, scale=0.8))
        self.R = brainstate.ParamState(arr(rng, n1, n1, scale=0.6))
        self.W2 = brainstate.ParamState({"weight": arr(rng, n1, n2, scale=0.8), "bias": arr(rng, n2, scale=0.1)})
        self.W_out = brainstate.ParamState(arr(rng, n2, n_out))
        lead = () if batch is None else (batch,)
        self.v1 = brainstate.HiddenState(jnp.asarray(rng.rand(*lead, n1)))
        self.v2 = brainstate.HiddenState(jnp.asarray(rng.rand(*lead, n2)))

    def update(self, x):
        spike = braintrace.nn.surrogate.sigmoid
        s1_old, s2_old = spike(self.v1.value - 1.0), spike(self.v2.value - 1.0)
        self.v1.value = 0.9 * self.v1.value + braintrace.matmul(x, self.W1.value) \
            + braintrace.matmul(s1_old, self.R.value) - s1_old
        s1 = spike(self.v1.value - 1.0)
        self.v2.value = 0.8 * self.v2.value + braintrace.matmul(s1, self.W2.value["weight"], self.W2.value["bias"]) \
            - s2_old
        return self.v2.value @ self.W_out.value


class EarlyRNN(brainstate.nn.Module):
    """``out = tanh(h^{t-1}) W_out`` read before ``h^t = tanh(x W + h^{t-1} U)`` (``U`` a plain product)."""

    def __init__(self, n_in=3, n_h=4, n_out=2, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.W = brainstate.ParamState(arr(rng, n_in, n_h, scale=0.8))
        self.U = brainstate.ParamState(arr(rng, n_h, n_h, scale=0.6))
        self.W_out = brainstate.ParamState(arr(rng, n_h, n_out))
        lead = () if batch is None else (batch,)
        self.h = brainstate.HiddenState(arr(rng, *lead, n_h))

    def update(self, x):
        old = self.h.value
        out = jnp.tanh(old) @ self.W_out.value
        self.h.value = jnp.tanh(braintrace.matmul(x, self.W.value) + old @ self.U.value)
        return out


class Chain(brainstate.nn.Module):
    """``h0 = 0.5 h0 + tanh(x w)``, ``h1 = 0.5 h1 + c1 h0_old``, ``h2 = 0.5 h2 + c2 h1_old``; ``out = h2``."""

    def __init__(self, n_in=2, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w = brainstate.ParamState(arr(rng, n_in, 1))
        self.c = brainstate.ParamState(jnp.asarray([0.9, 0.8]))
        self.h0 = brainstate.HiddenState(jnp.zeros(1))
        self.h1 = brainstate.HiddenState(jnp.zeros(1))
        self.h2 = brainstate.HiddenState(jnp.zeros(1))

    def update(self, x):
        h0, h1, h2 = self.h0.value, self.h1.value, self.h2.value
        self.h0.value = 0.5 * h0 + jnp.tanh(braintrace.matmul(x, self.w.value))
        self.h1.value = 0.5 * h1 + self.c.value[0] * h0
        self.h2.value = 0.5 * h2 + self.c.value[1] * h1
        return self.h2.value


MAKERS = {
    "gru": lambda batch=None: O.make_gru(3, 4, 2, seed=0, batch=batch),
    "rnn": lambda batch=None: O.make_rnn(3, 4, 2, seed=0, batch=batch),
    "snn2": lambda batch=None: TwoLayerSNN(batch=batch),
    "early_rnn": lambda batch=None: EarlyRNN(batch=batch),
}


def make_data(n_in=3, n_out=2, steps=5, batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (steps,) if batch is None else (steps, batch)
    xs = jnp.asarray(rng.randn(*lead, n_in))
    targets = jnp.asarray(rng.randn(*lead, n_out))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, loss


def assert_float(tree, dtype):
    for leaf in jax.tree.leaves(tree):
        assert jnp.result_type(leaf) == dtype


def masked_rtrl(learner, xs, loss, mask=None):
    """Plain-JAX RTRL, ``P^t = (J^t P^{t-1} + M^t) ⊙ mask``, in the learner's flat orders (an independent reference).

    ``J`` and ``M`` are dense ``jax.jacfwd`` Jacobians of the oracle's pure step
    (:func:`oracle.make_step`); ``λ^t = ∂L^t/∂h^{t-1}`` and the instantaneous
    gradient are ``jax.grad`` of one step's loss. Only the *orders* of the flat
    ``h`` (the graph's groups, packed) and ``θ`` (``learner.flat.theta_pos``)
    are taken from the learner, so that ``mask`` (default: all entries, i.e.
    exact RTRL) can be its pattern. Returns ``(grads, total)`` keyed like the oracle's.
    """
    model, graph = learner.model, learner.graph
    step = O.make_step(model)
    params, hidden = O.get_params(model), O.get_hidden(model)
    leaves = [(s.path, key) for s in graph.module_info.param_slots for key in s.leaf_keys]
    theta = [leaves[k] for k in learner.flat.theta_pos]
    groups = graph.hidden_groups
    shapes = [tuple(g.varshape) + (g.num_state,) for g in groups]

    def get(tree, key):
        for k in key:
            tree = tree[k]
        return tree

    def put(tree, key, val):
        if not key:
            return val
        return {**tree, key[0]: put(tree[key[0]], key[1:], val)}

    def h_vec(h):
        return jnp.concatenate([jnp.ravel(g.pack({p: h[p] for p in g.hidden_paths})) for g in groups])

    def vec_h(v):
        out, start = {}, 0
        for g, shape in zip(groups, shapes):
            n = int(np.prod(shape))
            out.update(g.unpack(jnp.reshape(v[start: start + n], shape)))
            start += n
        return out

    def th_vec(p):
        return jnp.concatenate([jnp.ravel(get(p[path], key)) for path, key in theta])

    def vec_th(v, p):
        p, start = dict(p), 0
        for path, key in theta:
            ref = get(p[path], key)
            p[path] = put(p[path], key, jnp.reshape(v[start: start + ref.size], ref.shape))
            start += ref.size
        return p

    th0 = th_vec(params)
    h = h_vec(hidden)
    P = jnp.zeros((h.size, th0.size), th0.dtype)
    mask = jnp.ones_like(P) if mask is None else jnp.asarray(mask, P.dtype)
    grads = jax.tree.map(jnp.zeros_like, params)
    total = 0.0
    def new_h(tv, hv, x):
        return h_vec(step(vec_th(tv, params), vec_h(hv), x)[1])

    @jax.jit
    def parts(P, hv, x, t):
        def step_loss(p, hv):
            return loss(step(p, vec_h(hv), x)[0], t)

        J = jax.jacfwd(new_h, argnums=1)(th0, hv, x)
        M = jax.jacfwd(new_h, argnums=0)(th0, hv, x)
        value, (g_imm, lam) = jax.value_and_grad(step_loss, argnums=(0, 1))(params, hv)
        credit = vec_th(lam @ P, jax.tree.map(jnp.zeros_like, params))
        return jax.tree.map(jnp.add, g_imm, credit), value, (J @ P + M) * mask, new_h(th0, hv, x)

    for t in range(jax.tree.leaves(xs)[0].shape[0]):
        g, value, P, h = parts(P, h, jax.tree.map(lambda a: a[t], xs), t)
        grads = jax.tree.map(jnp.add, grads, g)
        total = total + value
    return grads, total


def stepwise_grads(learner, xs, loss):
    """Σ_t of the learner's online gradient of ``loss(out_t, t)``, one step at a time, compiled once
    (``t`` is traced: ``loss`` must index with it, not branch on it)."""
    params = learner.model.states(brainstate.ParamState)

    def f(x, t):
        return loss(learner(x), t)

    gfn = brainstate.transform.jit(brainstate.transform.grad(f, params, return_value=True))
    acc, total = None, 0.0
    for t in range(jax.tree.leaves(xs)[0].shape[0]):
        g, value = gfn(jax.tree.map(lambda a: a[t], xs), jnp.asarray(t))
        acc = g if acc is None else jax.tree.map(jnp.add, acc, g)
        total = total + value
    return {k: acc[k] for k in acc}, total


def windowed_grads(learner, xs, loss, K):
    """Online gradient of the summed loss over ``MultiStepData`` windows of ``K`` steps, compiled once per
    window length (``t`` traced, as in :func:`stepwise_grads`)."""
    params = learner.model.states(brainstate.ParamState)

    def f(win, t0):
        outs = learner(braintrace.MultiStepData(win))
        n = jax.tree.leaves(win)[0].shape[0]
        return sum(loss(jax.tree.map(lambda o: o[k], outs), t0 + k) for k in range(n))

    gfn = brainstate.transform.jit(brainstate.transform.grad(f, params, return_value=True))
    acc, total = None, 0.0
    for t0 in range(0, jax.tree.leaves(xs)[0].shape[0], K):
        g, value = gfn(jax.tree.map(lambda a: a[t0: t0 + K], xs), jnp.asarray(t0))
        acc = g if acc is None else jax.tree.map(jnp.add, acc, g)
        total = total + value
    return {k: acc[k] for k in acc}, total
