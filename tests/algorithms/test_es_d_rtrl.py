"""ES_D_RTRL against an independent statement of its recurrence (DESIGN.md §3)."""

import numpy as np
import pytest

import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from learning import online_grads, window_grads, x64  # noqa: F401

T, N_IN, N_H, N_OUT = 6, 3, 4, 2


def data(batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, N_IN))
    targets = jnp.asarray(rng.randn(*lead, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, targets, loss


def es_by_hand(model, xs, targets, alpha):
    """The ES_D_RTRL recurrence written out for the leaky model, in NumPy.

    h = a h + (1-a) tanh(x W + b),  out = h W_out,  L^t = ½|out - target|².
    D = a, df = (1-a)(1 - tanh(y)²), δ = (out - target) W_outᵀ;
    ε_x = α ε_x + x, ε_f = α D ε_f + (1-α) df, c = 1 - α^(t+1),
    ∇W += ε_x ⊗ (ε_f δ / c); the bias keeps its exact trace e = D e + df.
    """
    W = np.asarray(model.w_in.value["weight"])
    b = np.asarray(model.w_in.value["bias"])
    Wo = np.asarray(model.w_out.value)
    a = np.asarray(model.decay_const)
    h = np.asarray(model.h.value)
    ex, ef, eb = np.zeros_like(np.asarray(xs[0])), np.zeros_like(h), np.zeros_like(h)
    gW, gb, gWo = np.zeros_like(W), np.zeros_like(b), np.zeros_like(Wo)
    for t in range(T):
        x = np.asarray(xs[t])
        y = x @ W + b
        h = a * h + (1 - a) * np.tanh(y)
        out = h @ Wo
        err = out - np.asarray(targets[t])
        delta = err @ Wo.T
        df = (1 - a) * (1 - np.tanh(y) ** 2)
        ex = alpha * ex + x
        ef = alpha * a * ef + (1 - alpha) * df
        eb = a * eb + df
        c = 1 - alpha ** (t + 1)
        gW += ex.reshape(-1, N_IN).T @ (ef * delta / c).reshape(-1, N_H)
        gb += (eb * delta).reshape(-1, N_H).sum(0)
        gWo += h.reshape(-1, N_H).T @ err.reshape(-1, N_OUT)
    return {("w_in",): {"weight": gW, "bias": gb}, ("w_out",): gWo}


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("decay_or_rank", [0.5, 0.9, 3])
def test_equals_its_recurrence_written_by_hand(x64, batch, decay_or_rank):
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0, batch=batch)
    xs, targets, loss = data(batch)
    alpha = decay_or_rank if isinstance(decay_or_rank, float) else (decay_or_rank - 1) / (decay_or_rank + 1)
    want = es_by_hand(model, xs, targets, alpha)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.ES_D_RTRL(model, decay_or_rank).compile_graph(xs[0])
    got, _ = online_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, want) < 1e-10
    cos = O.tree_cosine(got, bptt)
    print(f"ES_D_RTRL(decay_or_rank={decay_or_rank}, batch={batch}) cosine with BPTT: {cos:.4f}")
    assert cos > 0.5


def test_bias_correction_counts_time_steps_not_calls(x64):
    """A window of K steps advances the correction by K (as K single calls do)."""
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0)
    xs, targets, loss = data()
    want = es_by_hand(model, xs, targets, 0.8)
    learner = braintrace.ES_D_RTRL(model, 0.8).compile_graph(xs[0])
    got, _ = window_grads(learner, xs, loss, 3)
    assert O.tree_max_rel_err(got, want) < 1e-10
    assert int(learner.step_count.value) == T


def test_pp_prop_and_iodim_are_es_d_rtrl():
    assert braintrace.pp_prop is braintrace.ES_D_RTRL is braintrace.IODimVjpAlgorithm


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.2, 0, -3, True, "0.5", None])
def test_decay_or_rank_outside_the_rules_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"open interval \(0, 1\).*integer rank n >= 1"):
        braintrace.ES_D_RTRL(O.make_leaky(N_IN, N_H, N_OUT), bad)


def test_multi_step_full_window_equals_bptt(x64):
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0)
    xs, targets, loss = data()
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.ES_D_RTRL(model, 0.9, vjp_method="multi-step").compile_graph(xs[0])
    got, _ = window_grads(learner, xs, loss, T)
    assert O.tree_max_rel_err(got, bptt) < 1e-10


@pytest.mark.parametrize("name", ["gru", "adaptive_grouped"])
def test_runs_on_coupled_and_multi_state_models(x64, name):
    model = {"gru": O.make_gru, "adaptive_grouped": lambda *a, **k: O.make_adaptive(*a, grouped=True, **k)}[name](
        N_IN, N_H, N_OUT, seed=0
    )
    xs, _, loss = data()
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.ES_D_RTRL(model, 0.9).compile_graph(xs[0])
    got, _ = online_grads(learner, xs, loss)
    cos = O.tree_cosine(got, bptt)
    print(f"ES_D_RTRL on {name}: cosine with BPTT {cos:.4f}")
    assert np.isfinite(cos) and cos > 0.5
