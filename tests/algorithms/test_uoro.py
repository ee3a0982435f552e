"""UORO: one step against its closed form (with RTRL's exact influence), and unbiasedness: the mean
gradient over many seeds approaches BPTT's (= RTRL's) within a stated number of standard errors,
while a biased gradient (D_RTRL's on the same coupled model) is many standard errors away."""

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from learning import x64  # noqa: F401

T = 3
#: draws for the unbiasedness test (seeds 0 .. DRAWS-1) and the bound, in standard errors of the mean
DRAWS = 400
Z_BOUND = 5.0


def rnn():
    return O.make_rnn(2, 3, 1, seed=0)


def data(seed=1):
    rng = np.random.RandomState(seed)
    xs = jnp.asarray(rng.randn(T, 2))
    ys = jnp.asarray(rng.randn(T, 1))

    def loss(out, t):
        return 0.5 * jnp.sum((out - ys[t]) ** 2)

    return xs, loss


def flat(grads):
    return np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(grads)])


def test_first_step_closed_form(x64):
    """After one step from zero traces: ``ṽ = ρ_1 ν``, ``θ̃ = ν^T M / ρ_1``, so ``θ̃ ṽ^T = (M^T ν) ν^T``
    with ``M^T`` RTRL's influence after that step and ``ρ_1 = sqrt(|M^T ν| / (sqrt(N) + ε)) + ε``."""
    model = rnn()
    x = jnp.asarray([0.3, -0.7])
    h0 = O.get_hidden(model)
    rtrl = braintrace.RTRL(model).compile_graph(x)
    rtrl(x)
    P = np.asarray(rtrl.dense_influence({k: s.value for k, s in rtrl.etraces.items()}))  # (|θ|, N) = M^T
    O.set_hidden(model, h0)
    uoro = braintrace.UORO(model, seed=3).compile_graph(x)
    uoro(x)
    traces = {k: s.value for k, s in uoro.etraces.items()}
    v = np.asarray(next(val for key, val in traces.items() if key.kind == "uoro_h"))
    nu = np.sign(v)
    assert set(np.unique(nu)) <= {-1.0, 1.0}
    rho1 = np.sqrt(np.linalg.norm(P @ nu) / (np.sqrt(nu.size) + uoro.eps)) + uoro.eps
    np.testing.assert_allclose(v, rho1 * nu, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(uoro.dense_influence(traces)), np.outer(P @ nu, nu), rtol=1e-10, atol=1e-14)


def test_unbiased_mean_approaches_rtrl(x64):
    """Fixed seeds 0..DRAWS-1, one ``MultiStepData`` window of T steps each (the single-step rule).
    Every component of the mean is within ``Z_BOUND`` standard errors of BPTT's gradient."""
    model = rnn()
    xs, loss = data()
    h0 = O.get_hidden(model)
    bptt = flat(O.bptt_grads(model, xs, loss)[0])
    learner = braintrace.UORO(model).compile_graph(xs[0])
    params = model.states(brainstate.ParamState)

    def f(win):
        outs = learner(braintrace.MultiStepData(win))
        return sum(loss(outs[k], k) for k in range(T))

    gfn = brainstate.transform.jit(brainstate.transform.grad(f, params))
    draws = []
    for seed in range(DRAWS):
        O.set_hidden(model, h0)
        learner.reset_state()
        learner.reseed(seed)
        draws.append(flat(gfn(xs)))
    draws = np.stack(draws)
    mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(DRAWS)
    assert np.all(se[np.abs(bptt) > 1e-3] > 0)  # the draws differ: the estimate is random
    z = np.abs(mean - bptt) / np.maximum(se, 1e-12)
    assert z.max() < Z_BOUND, (z.max(), np.argmax(z))
    # the test can tell a biased gradient: D_RTRL's is far outside the same bounds on this coupled model
    O.set_hidden(model, h0)
    d_rtrl = braintrace.D_RTRL(model).compile_graph(xs[0])
    biased = flat(brainstate.transform.grad(
        lambda win: sum(loss(o, k) for k, o in enumerate(d_rtrl(braintrace.MultiStepData(win)))), params)(xs))
    assert (np.abs(biased - bptt) / np.maximum(se, 1e-12)).max() > 4 * Z_BOUND


def test_seed_and_key_state(x64):
    model = rnn()
    xs, loss = data()
    h0 = O.get_hidden(model)
    learner = braintrace.UORO(model, seed=7).compile_graph(xs[0])
    key0 = np.asarray(learner.etraces[next(k for k in learner.etraces if k.kind == "rng")].value)
    assert np.array_equal(key0, np.asarray(jax.random.key_data(jax.random.key(7))))

    def run():
        O.set_hidden(model, h0)
        learner.reset_state()
        return [np.asarray(learner(x)) for x in xs], {k.kind: np.asarray(s.value) for k, s in learner.etraces.items()}

    _, first = run()
    _, second = run()  # reset_state does not rewind the key: fresh signs
    assert not np.array_equal(first["uoro_h"], second["uoro_h"])
    learner.reseed(7)
    _, again = run()
    assert np.array_equal(first["uoro_h"], again["uoro_h"])


def test_multi_step_window_of_the_whole_sequence_is_bptt(x64):
    """``vjp_method='multi-step'`` on one window: BPTT inside it, and zero traces before it."""
    model = rnn()
    xs, loss = data()
    bptt = flat(O.bptt_grads(model, xs, loss)[0])
    learner = braintrace.UORO(model, vjp_method="multi-step").compile_graph(xs[0])
    got = flat(brainstate.transform.grad(
        lambda win: sum(loss(o, k) for k, o in enumerate(learner(braintrace.MultiStepData(win)))),
        model.states(brainstate.ParamState))(xs))
    np.testing.assert_allclose(got, bptt, rtol=1e-10, atol=1e-12)
    assert float(np.abs(np.asarray(learner.etraces[next(k for k in learner.etraces if k.kind == "uoro_h")].value)).max()) > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed must be an integer"):
        braintrace.UORO(rnn(), seed=1.5)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        braintrace.UORO(rnn(), eps=0.0)


def test_in_the_catalog():
    from braintrace.algorithms.catalog import learner_class

    assert learner_class("uoro") is braintrace.UORO
