"""Small models and runners shared by the SNN-algorithm tests (test code, not shipped).

* :class:`LeakyLinear` — ``h = λ h + op(x, w)`` for every ETP primitive: OTTT
  (mode 'A') and OTPE are exact on it when their ``leak`` is ``λ``;
* :class:`TwoLayer` — a leaky tanh layer read out by a leaky readout; every
  quantity (``D``, ``df``, ``δ``) has a closed form, so the tests restate each
  rule by hand in NumPy on it;
* :class:`LIFNet` — ``braintrace.nn.Linear`` → ``LIF`` → ``LeakyRateReadout``.
"""

from __future__ import annotations

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp
import saiunit as u


@pytest.fixture
def f64():
    """float64 for jax *and* brainstate's default dtype (the LIF layers draw their states from it)."""
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    brainstate.environ.set(precision=64)
    try:
        yield
    finally:
        brainstate.environ.set(precision=32)
        jax.config.update("jax_enable_x64", prev)


def arr(rng, *shape, scale=0.5):
    return jnp.asarray(rng.randn(*shape) * scale)


class LeakyLinear(brainstate.nn.Module):
    """``h = λ h + op(x, w)``, ``out = pool(h) @ W_out`` (plain JAX readout: instantaneous gradient).

    ``op``: 'dense' (matmul with bias), 'conv' (NHWC, bias), 'sparse' (CSR, bias),
    'lora' (bias), 'elementwise' (``matmul(x, W) + element_wise(c, tanh)``).
    """

    X_SHAPE = {"dense": (3,), "conv": (4, 4, 2), "sparse": (3,), "lora": (3,), "elementwise": (3,)}

    def __init__(self, op="dense", leak=0.7, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.op, self.leak = op, leak
        n = 4
        if op == "dense":
            self.w = brainstate.ParamState({"weight": arr(rng, 3, n), "bias": arr(rng, n, scale=0.1)})
        elif op == "conv":
            self.w = brainstate.ParamState({"weight": arr(rng, 3, 3, 2, 2), "bias": arr(rng, 2, scale=0.1)})
            n = 2
        elif op == "sparse":
            dense = rng.randn(3, n) * (rng.rand(3, n) < 0.6)
            dense[0] = 1.0  # every column has a non-zero
            self.mat = u.sparse.CSR.fromdense(jnp.asarray(dense))
            self.w = brainstate.ParamState({"weight": jnp.asarray(self.mat.data), "bias": arr(rng, n, scale=0.1)})
        elif op == "lora":
            self.w = brainstate.ParamState({"B": arr(rng, 3, 2), "A": arr(rng, 2, n), "bias": arr(rng, n, scale=0.1)})
        elif op == "elementwise":
            self.w = brainstate.ParamState({"weight": arr(rng, 3, n), "c": arr(rng, n)})
        else:
            raise ValueError(op)
        self.w_out = brainstate.ParamState(arr(rng, n, 2))
        hshape = (4, 4, 2) if op == "conv" else (n,)
        self.h = brainstate.HiddenState(arr(rng, *(hshape if batch is None else (batch,) + hshape)))

    def update(self, x):
        p = self.w.value
        if self.op == "dense":
            y = braintrace.matmul(x, p["weight"], p["bias"])
        elif self.op == "conv":
            y = braintrace.conv(x, p["weight"], p["bias"], padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        elif self.op == "sparse":
            y = braintrace.sparse_matmul(x, p["weight"], sparse_mat=self.mat, bias=p["bias"])
        elif self.op == "lora":
            y = braintrace.lora_matmul(x, p["B"], p["A"], alpha=0.7, bias=p["bias"])
        else:
            y = braintrace.matmul(x, p["weight"]) + braintrace.element_wise(p["c"], jnp.tanh)
        self.h.value = self.leak * self.h.value + y
        h = self.h.value.mean(axis=(-3, -2)) if self.op == "conv" else self.h.value
        return h @ self.w_out.value


class TwoLayer(brainstate.nn.Module):
    """``h = a h + (1-a) tanh(matmul(x, W, b))``; ``r = κ_r r + matmul(h, U)``; ``out = r + matmul(h, V)``.

    ``h`` is a non-output group (it reaches the output only through the data
    inputs of ``U`` and ``V``), ``r`` an output group. ``V``'s product reaches
    no hidden state (instantaneous gradient). Per step, with ``e = ∂L/∂out``:
    ``D_h = a``, ``df_h = (1-a)(1 - tanh²(y))``, ``D_r = κ_r``, ``df_r = 1``;
    the learners' ``δ`` (other new hidden values fixed) is ``δ_r = e``,
    ``δ_h = e (U + V)ᵀ`` (the readout, another group, responds within the step).
    """

    def __init__(self, n_in=3, n_h=4, n_out=2, batch=None, seed=0, kappa_r=0.6):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.W = brainstate.ParamState({"weight": arr(rng, n_in, n_h, scale=0.8), "bias": arr(rng, n_h, scale=0.2)})
        self.U = brainstate.ParamState({"weight": arr(rng, n_h, n_out, scale=0.8)})
        self.V = brainstate.ParamState(arr(rng, n_h, n_out, scale=0.8))
        self.a = jnp.asarray(rng.uniform(0.5, 0.9, n_h))
        self.kappa_r = kappa_r
        lead = () if batch is None else (batch,)
        self.h = brainstate.HiddenState(arr(rng, *lead, n_h))
        self.r = brainstate.HiddenState(arr(rng, *lead, n_out))

    def update(self, x):
        y = braintrace.matmul(x, self.W.value["weight"], self.W.value["bias"])
        self.h.value = self.a * self.h.value + (1 - self.a) * jnp.tanh(y)
        self.r.value = self.kappa_r * self.r.value + braintrace.matmul(self.h.value, self.U.value["weight"])
        return self.r.value + braintrace.matmul(self.h.value, self.V.value)

    def numpy(self):
        """``(W, b, U, V, a, κ_r, h0, r0)`` as NumPy arrays."""
        return (
            np.asarray(self.W.value["weight"]),
            np.asarray(self.W.value["bias"]),
            np.asarray(self.U.value["weight"]),
            np.asarray(self.V.value),
            np.asarray(self.a),
            self.kappa_r,
            np.asarray(self.h.value),
            np.asarray(self.r.value),
        )


class LIFNet(brainstate.nn.Module):
    """``braintrace.nn.Linear`` → ``braintrace.nn.LIF`` → ``braintrace.nn.LeakyRateReadout``."""

    def __init__(self, n_in=6, n_h=8, n_out=2, batch=None, seed=0, tau=10.0, kappa=0.8, neuron="LIF"):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.inp = braintrace.nn.Linear(n_in, n_h, w_init=arr(rng, n_in, n_h, scale=0.6), b_init=jnp.full(n_h, 0.1))
        kw = dict(tau=tau, dt=1.0)
        if neuron == "ALIF":
            kw.update(tau_a=50.0, beta=0.5)
        self.lif = getattr(braintrace.nn, neuron)(n_h, **kw)
        self.readout = braintrace.nn.LeakyRateReadout(n_h, n_out, decay=kappa, w_init=arr(rng, n_h, n_out, scale=0.5))
        self.leak = float(np.exp(-1.0 / tau))
        brainstate.nn.init_all_states(self, batch_size=batch)
        self.lif.v.value = jnp.asarray(rng.rand(*self.lif.v.value.shape) * 0.5, self.lif.v.value.dtype)

    def update(self, x):
        return self.readout(self.lif(self.inp(x)))


class SummedLeaky(brainstate.nn.Module):
    """``h = a h + (1-a) tanh(x W_in + b + h W_rec)``: two relations summed into one current.

    With ``gate=True`` the recurrent current passes through ``tanh`` before the
    sum, so the two relations no longer share their output derivative.
    """

    def __init__(self, n_in=3, n_h=4, n_out=2, seed=0, batch=None, gate=False):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w_in = brainstate.ParamState(
            {"weight": jnp.asarray(rng.randn(n_in, n_h) / np.sqrt(n_in)), "bias": jnp.asarray(0.1 * rng.randn(n_h))}
        )
        self.w_rec = brainstate.ParamState(jnp.asarray(rng.randn(n_h, n_h) / np.sqrt(n_h)))
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(n_h, n_out) / np.sqrt(n_h)))
        self.a = jnp.asarray(jax.nn.sigmoid(rng.randn(n_h) + 1.0))
        self.gate = gate
        self.h = brainstate.HiddenState(jnp.asarray(0.5 * rng.randn(*((n_h,) if batch is None else (batch, n_h)))))

    def update(self, x):
        rec = braintrace.matmul(self.h.value, self.w_rec.value)
        y = braintrace.matmul(x, self.w_in.value["weight"], self.w_in.value["bias"]) + (jnp.tanh(rec) if self.gate else rec)
        self.h.value = self.a * self.h.value + (1.0 - self.a) * jnp.tanh(y)
        return self.h.value @ self.w_out.value


def summed_leaky_by_hand(model, xs, targets, *, x_decay, f_decay, f_gain, bias_decay, norm):
    """A factored rule on :class:`SummedLeaky`, in NumPy (ES_D_RTRL and OTPE 'approx' are instances).

    ``h = a h + (1-a) tanh(y)``, ``y = x W_in + b + r`` with ``r = h W_rec``
    (``tanh(h W_rec)`` with ``gate``), ``out = h W_out``, ``L^t = ½|out - target|²``.
    ``df = (1-a)(1 - tanh(y)²)`` for ``W_in`` and, without ``gate``, for
    ``W_rec`` too (their outputs are summed: one output trace ``f`` serves
    both); with ``gate`` ``W_rec``'s is ``df ⊙ (1 - tanh(h W_rec)²)``, in a trace
    ``g`` of its own. Per step: ``x̂ = x_decay·x̂ + x`` for each weight's input,
    ``f = f_decay ⊙ f + f_gain·df``, the bias's trace ``e = bias_decay ⊙ e + df``,
    ``∇W += x̂ ⊗ (f / norm(t) ⊙ δ)``, ``∇b += e ⊙ δ``; ``W_out`` gets ``h ⊗ err``.
    """
    W, b = (np.asarray(model.w_in.value[k]) for k in ("weight", "bias"))
    Wr, Wo, a = np.asarray(model.w_rec.value), np.asarray(model.w_out.value), np.asarray(model.a)
    h = np.asarray(model.h.value)
    n_in, n_h, n_out = W.shape[0], h.shape[-1], Wo.shape[1]
    ex, er = np.zeros_like(np.asarray(xs[0])), np.zeros_like(h)
    f, f_rec, e = np.zeros_like(h), np.zeros_like(h), np.zeros_like(h)
    fd = f_decay(a) if callable(f_decay) else f_decay
    bd = bias_decay(a) if callable(bias_decay) else bias_decay
    g = {"weight": np.zeros_like(W), "bias": np.zeros_like(b), "rec": np.zeros_like(Wr), "out": np.zeros_like(Wo)}
    for t in range(len(xs)):
        x = np.asarray(xs[t])
        rec = h @ Wr
        y = x @ W + b + (np.tanh(rec) if model.gate else rec)
        ex, er = x_decay * ex + x, x_decay * er + h
        h = a * h + (1 - a) * np.tanh(y)
        err = h @ Wo - np.asarray(targets[t])
        delta = err @ Wo.T
        df = (1 - a) * (1 - np.tanh(y) ** 2)
        f = fd * f + f_gain * df
        f_rec = fd * f_rec + f_gain * df * ((1 - np.tanh(rec) ** 2) if model.gate else 1.0)
        e = bd * e + df
        n = norm(t)
        g["weight"] += ex.reshape(-1, n_in).T @ (f / n * delta).reshape(-1, n_h)
        g["rec"] += er.reshape(-1, n_h).T @ (f_rec / n * delta).reshape(-1, n_h)
        g["bias"] += (e * delta).reshape(-1, n_h).sum(0)
        g["out"] += h.reshape(-1, n_h).T @ err.reshape(-1, n_out)
    return {("w_in",): {"weight": g["weight"], "bias": g["bias"]}, ("w_rec",): g["rec"], ("w_out",): g["out"]}


# -- runners --------------------------------------------------------------------------


def restore(model, h0):
    """Put the hidden states back to ``h0`` (``{path: value}``)."""
    for k, st in model.states(brainstate.HiddenState).items():
        st.value = h0[k]


def hidden(model):
    return {k: st.value for k, st in model.states(brainstate.HiddenState).items()}


def step_grads(learner, xs, loss, targets=None, jit=True):
    """Per-step online gradients ``[∇ loss(out_t, t)]`` (``learner(x, targets[t])`` if given)."""
    params = learner.model.states(brainstate.ParamState)

    def f(x, t, y):
        out = learner(x) if y is None else learner(x, y)
        return loss(out, t)

    gfn = brainstate.transform.grad(f, params, return_value=True)
    if jit:
        gfn = brainstate.transform.jit(gfn)
    out = []
    for t in range(jax.tree.leaves(xs)[0].shape[0]):
        g, _ = gfn(xs[t], jnp.asarray(t), None if targets is None else targets[t])
        out.append(dict(g))
    return out


def total(grads):
    return jax.tree.map(lambda *g: sum(g), *grads)


def to_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def online_sum(learner, xs, loss, targets=None):
    """``(Σ_t online gradient, Σ_t loss)`` with one compiled step (``t`` is traced)."""
    params = learner.model.states(brainstate.ParamState)

    def f(x, t, y):
        out = learner(x) if y is None else learner(x, y)
        return loss(out, t)

    gfn = brainstate.transform.jit(brainstate.transform.grad(f, params, return_value=True))
    acc, tot = None, 0.0
    for t in range(jax.tree.leaves(xs)[0].shape[0]):
        g, v = gfn(xs[t], jnp.asarray(t), None if targets is None else targets[t])
        acc = dict(g) if acc is None else jax.tree.map(jnp.add, acc, dict(g))
        tot = tot + v
    return acc, tot


def window_sum(learner, xs, loss, K):
    """Online gradient of the summed loss over ``MultiStepData`` windows of ``K`` steps (``T % K == 0``)."""
    params = learner.model.states(brainstate.ParamState)
    T = jax.tree.leaves(xs)[0].shape[0]
    assert T % K == 0

    def f(win, t0):
        outs = learner(braintrace.MultiStepData(win))
        return sum(loss(jax.tree.map(lambda o, k=k: o[k], outs), t0 + k) for k in range(K))

    gfn = brainstate.transform.jit(brainstate.transform.grad(f, params, return_value=True))
    acc, tot = None, 0.0
    for t0 in range(0, T, K):
        g, v = gfn(jax.tree.map(lambda a, t0=t0: a[t0 : t0 + K], xs), jnp.asarray(t0))
        acc = dict(g) if acc is None else jax.tree.map(jnp.add, acc, dict(g))
        tot = tot + v
    return acc, tot
