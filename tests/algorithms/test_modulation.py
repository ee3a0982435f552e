"""Three-factor learning: ``learner(x, modulator=m)`` puts ``m`` in place of the learning signal.

Two oracles: with ``m = δ`` (computed by hand for the model) every learner gives
its own gradient; with a reward ``r^t`` (one per step, or one per batch element)
the gradient equals the three-factor rule ``Σ_t r^t · ε^t`` written out in NumPy.
"""

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp
import saiunit as u

import oracle as O
from .snn_models import TwoLayer, f64, hidden, restore, step_grads, to_numpy, total  # noqa: F401

T, N_IN, N_H, N_OUT = 6, 3, 4, 2


def data(batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, N_IN))
    targets = jnp.asarray(rng.randn(*lead, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, targets, loss


def modulated_grads(learner, xs, loss, mods):
    """Per-step gradients of ``loss(learner(x_t, modulator=m_t), t)``."""
    params = learner.model.states(brainstate.ParamState)

    def f(x, t, m):
        return loss(learner(x, modulator=m), t)

    gfn = brainstate.transform.jit(brainstate.transform.grad(f, params, return_value=True))
    out = []
    for t in range(xs.shape[0]):
        g, _ = gfn(xs[t], jnp.asarray(t), jax.tree.map(lambda a, t=t: a[t], mods))
        out.append(dict(g))
    return out


def modulated_window_grads(learner, xs, loss, mods, K):
    params = learner.model.states(brainstate.ParamState)

    def f(win, t0, m):
        outs = learner(braintrace.MultiStepData(win), modulator=m)
        return sum(loss(outs[k], t0 + k) for k in range(K))

    gfn = brainstate.transform.jit(brainstate.transform.grad(f, params, return_value=True))
    acc = None
    for t0 in range(0, xs.shape[0], K):
        m = jax.tree.map(lambda a, t0=t0: a[t0 : t0 + K], mods)
        g, _ = gfn(xs[t0 : t0 + K], jnp.asarray(t0), m)
        acc = dict(g) if acc is None else jax.tree.map(jnp.add, acc, dict(g))
    return acc


def per_step_err(got, want):
    return max(O.tree_max_rel_err(g, w) for g, w in zip(got, want))


# -- m = δ: every learner's own gradient -------------------------------------------------


def two_layer_deltas(model, xs, targets, partial=False):
    """``{'h': δ_h, 'r': δ_r}`` of :class:`TwoLayer` per step: ``δ_r = e``, ``δ_h = e (U + V)ᵀ`` (the
    relation learners' signal: the readout responds within the step), or with ``partial`` ``δ_h = e Vᵀ``
    (``∂L^t/∂h^t`` with ``r^t`` held fixed: the signal of the influence ``P^t = dh^t/dθ``, which carries
    the step's ``h → r`` path itself)."""
    W, b, U, V, a, kr, h, r = to_numpy(model.numpy())
    dh, dr = [], []
    for t in range(xs.shape[0]):
        h = a * h + (1 - a) * np.tanh(np.asarray(xs[t]) @ W + b)
        r = kr * r + h @ U
        e = r + h @ V - np.asarray(targets[t])
        dh.append(e @ (V if partial else U + V).T)
        dr.append(e)
    return {"h": jnp.asarray(np.stack(dh)), "r": jnp.asarray(np.stack(dr))}


LEARNERS = {
    "d_rtrl": lambda m: braintrace.D_RTRL(m),
    "d_rtrl_kappa": lambda m: braintrace.D_RTRL(m, kappa_filter_decay=0.7),
    "es_d_rtrl": lambda m: braintrace.ES_D_RTRL(m, 0.8),
    "es_d_rtrl_decays": lambda m: braintrace.ES_D_RTRL(m, None, decay_x=0.6, decay_f=0.3, kappa_filter_decay=0.5),
    "ottt": lambda m: braintrace.OTTT(m, leak=0.6),
    "otpe_approx": lambda m: braintrace.OTPE(m, "approx", leak=0.6),
    "rflo_vs_d_rtrl": lambda m: braintrace.RFLO(m, random_feedback_key=0),
}


_UNMODULATED = {}


def unmodulated(name, batch):
    """The per-step gradients of ``LEARNERS[name]`` without a modulator on ``TwoLayer(batch=batch)``
    over ``data(batch)`` (float64): the reference of several tests, computed once per module."""
    assert jax.config.jax_enable_x64
    if (name, batch) not in _UNMODULATED:
        model = TwoLayer(batch=batch)
        xs, _, loss = data(batch)
        _UNMODULATED[name, batch] = step_grads(LEARNERS[name](model).compile_graph(xs[0]), xs, loss)
    return _UNMODULATED[name, batch]


@pytest.mark.parametrize("name, batch", [(n, 2) for n in LEARNERS] + [("d_rtrl", None), ("es_d_rtrl", None)])
def test_the_true_signal_as_modulator_gives_the_learners_gradient(f64, name, batch):
    model = TwoLayer(batch=batch)
    xs, targets, loss = data(batch)
    mods = two_layer_deltas(model, xs, targets)
    got = modulated_grads(LEARNERS[name](model).compile_graph(xs[0]), xs, loss, mods)
    # RFLO replaces δ_h by random feedback: with the true δ as modulator it is D_RTRL
    want = unmodulated("d_rtrl" if name == "rflo_vs_d_rtrl" else name, batch)
    assert per_step_err(got, want) < 1e-10


def test_the_true_signal_of_one_group_keeps_the_others_signal(f64):
    """A mapping naming only the readout: the hidden layer keeps the learner's random feedback."""
    model = TwoLayer(batch=2)
    xs, targets, loss = data(2)
    h0 = hidden(model)
    mods = two_layer_deltas(model, xs, targets)
    got = modulated_grads(braintrace.RFLO(model, random_feedback_key=0).compile_graph(xs[0]), xs, loss,
                          {"r": mods["r"]})
    restore(model, h0)
    want = step_grads(braintrace.RFLO(model, random_feedback_key=0).compile_graph(xs[0]), xs, loss)
    assert per_step_err(got, want) < 1e-10


@pytest.mark.parametrize("name", ["d_rtrl", "d_rtrl_kappa", "es_d_rtrl"])
def test_windows_take_one_modulator_per_step(f64, name):
    model = TwoLayer(batch=2)
    xs, targets, loss = data(2)
    mods = two_layer_deltas(model, xs, targets)
    got = modulated_window_grads(LEARNERS[name](model).compile_graph(xs[0]), xs, loss, mods, 3)
    want = total(unmodulated(name, 2))
    assert O.tree_max_rel_err(got, want) < 1e-10


# -- a reward: the three-factor rule by hand ---------------------------------------------


def three_factor_by_hand(rule, model, xs, targets, rewards, *, alpha=0.8, leak=0.6):
    """``Σ_t r^t · ε^t`` on the leaky model ``h = a h + (1-a) tanh(x W + b)``, ``out = h W_out``, in NumPy.

    ``df = (1-a)(1 - tanh²)``; ``r^t`` is broadcast over the neurons (a scalar, or one value per
    batch element). D_RTRL: ``ε_W = a ε_W + x ⊗ df``, ``ε_b = a ε_b + df``. ES_D_RTRL:
    ``ε_x = α ε_x + x``, ``ε_f = α a ε_f + (1-α) df``, ``c = 1 - α^{t+1}``, ``∇W += ε_x ⊗ (ε_f / c) r``,
    the bias exact. OTTT ('A'): ``â = λ â + x``, ``â_b = λ â_b + 1``, ``∇W += â ⊗ df r``. ``W_out``: ``h ⊗ err``.
    """
    W = np.asarray(model.w_in.value["weight"])
    b = np.asarray(model.w_in.value["bias"])
    Wo, a, h = np.asarray(model.w_out.value), np.asarray(model.decay_const), np.asarray(model.h.value)
    lead = h.shape[:-1]
    eW, eb = np.zeros(lead + (N_IN, N_H)), np.zeros(lead + (N_H,))
    ex, ef, ab = np.zeros(lead + (N_IN,)), np.zeros(lead + (N_H,)), np.zeros(lead + (N_H,))
    gW, gb, gWo = np.zeros_like(W), np.zeros_like(b), np.zeros_like(Wo)
    for t in range(T):
        x = np.asarray(xs[t])
        y = x @ W + b
        h = a * h + (1 - a) * np.tanh(y)
        err = h @ Wo - np.asarray(targets[t])
        df = (1 - a) * (1 - np.tanh(y) ** 2)
        r = np.asarray(rewards[t]).reshape(np.shape(rewards[t]) + (1,))  # (…, 1): over the neurons
        if rule == "d_rtrl":
            eW = a[..., None, :] * eW + x[..., :, None] * df[..., None, :]
            eb = a * eb + df
            gW += (eW * r[..., None]).reshape(-1, N_IN, N_H).sum(0)
            gb += (eb * r).reshape(-1, N_H).sum(0)
        elif rule == "es_d_rtrl":
            ex = alpha * ex + x
            ef = alpha * a * ef + (1 - alpha) * df
            eb = a * eb + df
            c = 1 - alpha ** (t + 1)
            gW += (ex[..., :, None] * (ef / c * r)[..., None, :]).reshape(-1, N_IN, N_H).sum(0)
            gb += (eb * r).reshape(-1, N_H).sum(0)
        elif rule == "ottt":
            ex, ab = leak * ex + x, leak * ab + 1.0
            gW += (ex[..., :, None] * (df * r)[..., None, :]).reshape(-1, N_IN, N_H).sum(0)
            gb += (ab * df * r).reshape(-1, N_H).sum(0)
        gWo += h.reshape(-1, N_H).T @ err.reshape(-1, N_OUT)
    return {("w_in",): {"weight": gW, "bias": gb}, ("w_out",): gWo}


MAKE = {
    "d_rtrl": lambda m: braintrace.D_RTRL(m),
    "es_d_rtrl": lambda m: braintrace.ES_D_RTRL(m, 0.8),
    "ottt": lambda m: braintrace.OTTT(m, leak=0.6),
}


@pytest.mark.parametrize("per_sequence", [False, True])
@pytest.mark.parametrize("rule", list(MAKE))
def test_a_reward_gives_the_three_factor_rule_written_by_hand(f64, rule, per_sequence):
    batch = 3
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0, batch=batch)
    xs, targets, loss = data(batch)
    rng = np.random.RandomState(4)
    rewards = jnp.asarray(rng.randn(T, batch) if per_sequence else rng.randn(T))  # r^t, or r^t per sequence
    want = three_factor_by_hand(rule, model, xs, targets, rewards)
    got = total(modulated_grads(MAKE[rule](model).compile_graph(xs[0]), xs, loss, rewards))
    assert O.tree_max_rel_err(got, want) < 1e-10
    assert got[("w_in",)]["weight"].dtype == jnp.float64


def test_a_reward_over_windows(f64):
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0, batch=2)
    xs, targets, loss = data(2)
    rewards = jnp.asarray(np.random.RandomState(5).randn(T))
    want = three_factor_by_hand("d_rtrl", model, xs, targets, rewards)
    got = modulated_window_grads(braintrace.D_RTRL(model).compile_graph(xs[0]), xs, loss, rewards, 3)
    assert O.tree_max_rel_err(got, want) < 1e-10


def test_a_pure_reward_rule_needs_no_loss_on_the_learned_weights():
    """``0 * out.sum()`` as the loss, ``m = -r``: the weights learned online get ``-Σ_t r^t · ε^t`` (float32)."""
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0)
    xs, targets, _ = data()
    xs = xs.astype(jnp.float32)
    rewards = jnp.asarray(np.random.RandomState(6).randn(T), jnp.float32)
    want = three_factor_by_hand("d_rtrl", model, xs, targets, -rewards)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    got = total(modulated_grads(learner, xs, lambda out, t: 0.0 * out.sum(), -rewards))
    assert got[("w_in",)]["weight"].dtype == jnp.float32
    assert O.tree_max_rel_err(got[("w_in",)], want[("w_in",)]) < 1e-5
    assert float(jnp.abs(got[("w_out",)]).max()) == 0.0  # not learned online: the (zero) loss's gradient


# -- errors --------------------------------------------------------------------------------


def test_modulator_errors_name_the_argument_and_the_fix():
    model = TwoLayer(batch=2)
    learner = braintrace.D_RTRL(model).compile_graph(jnp.zeros((2, N_IN)))
    x = jnp.zeros((2, N_IN))
    with pytest.raises(ValueError, match=r"the modulator has shape \(3,\), which does not fit hidden group \(`h`\)"):
        learner(x, modulator=jnp.ones(3))
    with pytest.raises(ValueError, match=r"names `q`, which is not a hidden state learned online.*`h`, `r`"):
        learner(x, modulator={"q": 1.0})
    with pytest.raises(ValueError, match=r"leading axis of 4 steps"):
        learner(braintrace.MultiStepData(jnp.zeros((4, 2, N_IN))), modulator=1.0)
    with pytest.raises(TypeError, match=r"unit .*dimensionless"):
        learner(x, modulator=1.0 * u.mV)
    learner(x, modulator=u.Quantity(1.0))  # dimensionless: accepted
    hybrid = braintrace.D_RTRL(model, vjp_method="multi-step").compile_graph(x)
    with pytest.raises(ValueError, match=r"modulator.*multi-step.*single-step"):
        hybrid(braintrace.MultiStepData(jnp.zeros((3, 2, N_IN))), modulator=jnp.ones(3))
    learner(x, modulator={("h",): jnp.ones(2), "r": jnp.ones((2, N_OUT))})  # per sequence, per unit


# -- the influence learners (RTRL, SnAp, UORO) ---------------------------------------------

INFLUENCE = {
    "rtrl": lambda m: braintrace.RTRL(m),
    "snap2": lambda m: braintrace.SnAp(m, n=2),
    "uoro": lambda m: braintrace.UORO(m, seed=3),
}


@pytest.mark.parametrize("name", list(INFLUENCE))
def test_the_true_signal_as_modulator_gives_the_influence_learners_gradient(f64, name):
    model = TwoLayer(batch=2)
    xs, targets, loss = data(2)
    h0 = hidden(model)
    mods = two_layer_deltas(model, xs, targets, partial=True)
    got = modulated_grads(INFLUENCE[name](model).compile_graph(xs[0]), xs, loss, mods)
    restore(model, h0)
    want = step_grads(INFLUENCE[name](model).compile_graph(xs[0]), xs, loss)
    assert per_step_err(got, want) < 1e-10


def two_layer_unrolled(model, xs, targets, rewards):
    """``(Σ_t r^t Σ(h^t, r^t), Σ_t L^t)`` of :class:`TwoLayer` as functions of its parameters (plain JAX)."""
    a, kr = model.a, model.kappa_r
    h0, r0 = model.h.value, model.r.value

    def run(params):
        W, U, V = params
        h, r, reward_sum, loss_sum = h0, r0, 0.0, 0.0
        for t in range(xs.shape[0]):
            h = a * h + (1 - a) * jnp.tanh(xs[t] @ W["weight"] + W["bias"])
            r = kr * r + h @ U["weight"]
            reward_sum = reward_sum + rewards[t] * (h.sum() + r.sum())
            loss_sum = loss_sum + 0.5 * jnp.sum((r + h @ V - targets[t]) ** 2)
        return reward_sum, loss_sum

    return run, (model.W.value, model.U.value, model.V.value)


@pytest.mark.parametrize("window", [None, 3])
def test_a_reward_gives_rtrl_the_exact_three_factor_gradient(f64, window):
    """RTRL with ``m^t = r^t``: ``Σ_t r^t Σ_i dh_i^t/dθ``, which is BPTT's gradient of ``Σ_t r^t Σ_i h_i^t``;
    ``V`` (no hidden state) keeps the supervised loss's gradient."""
    model = TwoLayer(batch=2)
    xs, targets, loss = data(2)
    rewards = jnp.asarray(np.random.RandomState(7).randn(T))
    run, params = two_layer_unrolled(model, xs, targets, rewards)
    g_reward = jax.grad(lambda p: run(p)[0])(params)
    g_loss = jax.grad(lambda p: run(p)[1])(params)
    want = {("W",): g_reward[0], ("U",): g_reward[1], ("V",): g_loss[2]}
    learner = braintrace.RTRL(model).compile_graph(xs[0])
    if window is None:
        got = total(modulated_grads(learner, xs, loss, rewards))
    else:
        got = modulated_window_grads(learner, xs, loss, rewards, window)
    assert O.tree_max_rel_err(got, want) < 1e-10


def test_an_influence_learner_needs_a_modulator_for_every_group():
    model = TwoLayer(batch=2)
    learner = braintrace.RTRL(model).compile_graph(jnp.zeros((2, N_IN)))
    with pytest.raises(ValueError, match=r"names no member of the hidden group\(s\) \(`h`\).*every group"):
        learner(jnp.zeros((2, N_IN)), modulator={"r": jnp.ones(2)})
