"""The SNN learners on an LIF network with a leaky readout.

``braintrace.nn.Linear`` → ``braintrace.nn.LIF`` → ``braintrace.nn.LeakyRateReadout``:
every learner's gradient is compared with BPTT (``tests/oracle.bptt_grads``),
its cosine printed (run with ``-s`` to see the table), and a short training
run on a generated task (which of two Poisson spike patterns was shown) must
lower the loss for every learner.
"""

import numpy as np
import optax
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O

from .snn_models import LIFNet, hidden, online_sum, restore

T, N_IN, N_H, N_OUT, BATCH = 20, 6, 8, 2, 4
KAPPA = 0.8  # the readout's decay


def feedback(seed=0):
    return [braintrace.FixedRandomFeedback(N_OUT, N_H, key=seed, init_scale=0.5)]


def learners(net):
    """``{label: learner factory}``: every rule, at the model's own constants where it has some."""
    lam = net.leak
    return {
        "D_RTRL": lambda m: braintrace.D_RTRL(m),
        "EProp(symmetric)": lambda m: braintrace.EProp(m),
        "EProp(symmetric, κ)": lambda m: braintrace.EProp(m, kappa_filter_decay=KAPPA),
        "EProp(random, κ)": lambda m: braintrace.EProp(m, "random", kappa_filter_decay=KAPPA, random_feedback_key=0),
        "OSTLRecurrent": lambda m: braintrace.OSTLRecurrent(m),
        "OSTLFeedforward(0.9)": lambda m: braintrace.OSTLFeedforward(m, decay_or_rank=0.9),
        "OTTT(A)": lambda m: braintrace.OTTT(m, "A", leak=lam),
        "OTTT(O)": lambda m: braintrace.OTTT(m, "O", leak=lam),
        "OTPE(full)": lambda m: braintrace.OTPE(m, "full", leak=lam),
        "OTPE(approx)": lambda m: braintrace.OTPE(m, "approx", leak=lam),
        "OSTTP": lambda m: braintrace.OSTTP(m, feedback()),
    }


def poisson(rng, rates, T):
    """Spikes ``(T, *rates.shape)``, ``P(spike) = rate`` per step."""
    return (rng.rand(T, *rates.shape) < rates).astype(np.float32)


def test_cosine_with_bptt_printed():
    net = LIFNet(n_in=N_IN, n_h=N_H, n_out=N_OUT, batch=BATCH, kappa=KAPPA, seed=3)
    rng = np.random.RandomState(0)
    xs = jnp.asarray(poisson(rng, rng.uniform(0.1, 0.6, (BATCH, N_IN)), T))
    targets = jnp.asarray(rng.randn(T, BATCH, N_OUT), jnp.float32)

    def loss(out, t):
        return 0.5 * jnp.mean(jnp.sum((out - targets[t]) ** 2, -1))

    h0 = hidden(net)
    bptt, _ = O.bptt_grads(net, xs, loss)
    w_in = ("inp", "weight")
    assert float(jnp.abs(bptt[w_in]["weight"]).max()) > 0  # the neurons fire and the surrogate gradient flows
    print(f"\nLIF({N_H}) + LeakyRateReadout, T={T}, batch {BATCH}: cosine with BPTT")
    print(f"{'learner':24s} {'all weights':>12s} {'input weight':>13s} {'readout':>9s}")
    cos = {}
    for label, make in learners(net).items():
        restore(net, h0)
        learner = make(net).compile_graph(xs[0])
        got, _ = online_sum(learner, xs, loss, targets=targets if label == "OSTTP" else None)
        c = {k: O.tree_cosine(got[k], bptt[k]) for k in bptt}
        cos[label] = O.tree_cosine(got, dict(bptt))
        print(f"{label:24s} {cos[label]:12.4f} {c[w_in]:13.4f} {c[('readout', 'W')]:9.4f}")
        assert np.isfinite(cos[label])
        # the readout's trace is exact for every rule but OTTT/OTPE (their leak is the LIF's, not κ)
        if not label.startswith(("OTTT", "OTPE", "OSTLFeedforward")):
            assert c[("readout", "W")] > 1 - 1e-5
    restore(net, h0)
    assert cos["EProp(symmetric)"] == pytest.approx(cos["D_RTRL"], abs=1e-6)
    assert cos["OSTLRecurrent"] == pytest.approx(cos["D_RTRL"], abs=1e-6)


def two_pattern_task(seed=0):
    """Which of two fixed Poisson rate patterns is shown: ``(sample(batch) -> (xs, one_hot))``."""
    rng = np.random.RandomState(seed)
    rates = np.stack([rng.uniform(0.02, 0.5, N_IN), rng.uniform(0.02, 0.5, N_IN)])

    def sample(batch):
        label = rng.randint(0, 2, batch)
        xs = poisson(rng, rates[label], T)  # (T, batch, N_IN)
        return jnp.asarray(xs), jnp.asarray(np.eye(2, dtype=np.float32)[label])

    return sample


def train(label, make, iters=30, batch=16, lr=0.05):
    brainstate.random.seed(0)
    net = LIFNet(n_in=N_IN, n_h=N_H, n_out=N_OUT, batch=batch, kappa=KAPPA, seed=1)
    learner = make(net).compile_graph(jnp.zeros((batch, N_IN)))
    params = net.states(brainstate.ParamState)
    osttp = isinstance(learner, braintrace.OSTTP)

    @brainstate.transform.jit
    def grads_and_loss(xs, y):
        brainstate.nn.reset_all_states(learner, batch_size=batch)

        def step(acc, x):
            def loss_t():
                out = learner(x, y) if osttp else learner(x)
                return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(out), -1))

            g, v = brainstate.transform.grad(loss_t, params, return_value=True)()
            return jax.tree.map(jnp.add, acc, g), v

        zeros = jax.tree.map(jnp.zeros_like, {k: v.value for k, v in params.items()})
        g, losses = brainstate.transform.scan(step, zeros, xs)
        return g, jnp.mean(losses)

    opt = optax.adam(lr)
    state = opt.init({k: v.value for k, v in params.items()})
    sample = two_pattern_task()
    losses = []
    for _ in range(iters):
        xs, y = sample(batch)
        g, value = grads_and_loss(xs, y)
        updates, state = opt.update(g, state)
        new = optax.apply_updates({k: v.value for k, v in params.items()}, updates)
        for k, v in new.items():
            params[k].value = v
        losses.append(float(value))
    return losses


@pytest.mark.slow
def test_training_lowers_the_loss_for_every_learner():
    net = LIFNet(n_in=N_IN, n_h=N_H, n_out=N_OUT)
    print(f"\ntwo Poisson patterns, LIF({N_H}) + LeakyRateReadout, T={T}: mean loss, first 5 / last 5 of 30 iterations")
    for label, make in learners(net).items():
        if label == "D_RTRL":
            continue
        losses = train(label, make)
        first, last = np.mean(losses[:5]), np.mean(losses[-5:])
        print(f"{label:24s} {first:.4f} -> {last:.4f}")
        assert np.isfinite(last) and last < 0.8 * first, (label, losses)
