"""Exact reductions of the SNN learners (issue 6).

* EProp(symmetric, κ=0) == D_RTRL, OSTLRecurrent == D_RTRL, OSTLFeedforward ==
  ES_D_RTRL at its decay — on coupled and multi-state models, where these
  rules are approximations (so equality is not BPTT in disguise);
* OTTT and OTPE == D_RTRL over one step from zero traces;
* OTTT (mode 'A') and OTPE (both modes) == BPTT on a leaky linear layer whose
  leak is theirs, through every primitive, in float32 and float64, step by step,
  in ``MultiStepData`` windows and (OTPE) with ``vjp_method='multi-step'``.
"""

import numpy as np
import pytest

import braintrace
import jax
import jax.numpy as jnp

import oracle as O

from .snn_models import LeakyLinear, LIFNet, f64, hidden, online_sum, restore, window_sum  # noqa: F401

T, N_IN, N_H, N_OUT = 4, 3, 4, 2


def data(x_shape=(N_IN,), batch=None, steps=T, seed=1, n_out=N_OUT):
    rng = np.random.RandomState(seed)
    lead = (steps,) if batch is None else (steps, batch)
    xs = jnp.asarray(rng.randn(*lead, *x_shape))
    targets = jnp.asarray(rng.randn(*lead, n_out))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, loss


def assert_dtype(tree, dtype):
    for leaf in jax.tree.leaves(tree):
        assert jnp.result_type(leaf) == dtype


def compare(model, xs, loss, make_a, make_b, windows=None):
    """Online gradients of two learners from the same start; returns ``(a, b)``."""
    h0 = hidden(model)
    out = []
    for make in (make_a, make_b):
        restore(model, h0)
        learner = make(model).compile_graph(xs[0])
        out.append(online_sum(learner, xs, loss)[0] if windows is None else window_sum(learner, xs, loss, windows)[0])
    restore(model, h0)
    return out


MODELS = {
    "gru": lambda: O.make_gru(N_IN, N_H, N_OUT, seed=0, batch=2),
    "adaptive_grouped": lambda: O.make_adaptive(N_IN, N_H, N_OUT, seed=0, grouped=True),
    "lif_readout": lambda: LIFNet(n_in=N_IN, batch=2),
}
BATCH = {"gru": 2, "adaptive_grouped": None, "lif_readout": 2}

_D_RTRL = {}


def d_rtrl_grads(name, steps=T):
    """D_RTRL's summed online gradient on ``MODELS[name]()`` over ``data(steps=steps)`` (float64),
    the reference of several reductions: computed once per module."""
    assert jax.config.jax_enable_x64
    if (name, steps) not in _D_RTRL:
        model = MODELS[name]()
        xs, loss = data(batch=BATCH[name], steps=steps)
        _D_RTRL[name, steps] = online_sum(braintrace.D_RTRL(model).compile_graph(xs[0]), xs, loss)[0]
    return _D_RTRL[name, steps]


def learner_grads(name, make, steps=T):
    """``make``'s summed online gradient on a new ``MODELS[name]()`` (the same start as the reference)."""
    model = MODELS[name]()
    xs, loss = data(batch=BATCH[name], steps=steps)
    return online_sum(make(model).compile_graph(xs[0]), xs, loss)[0]


@pytest.mark.parametrize("name", list(MODELS))
def test_eprop_symmetric_without_filter_is_d_rtrl(f64, name):
    got = learner_grads(name, braintrace.EProp)
    assert_dtype(got, jnp.float64)
    assert O.tree_max_rel_err(got, d_rtrl_grads(name)) < 1e-10


def test_eprop_and_ostl_recurrent_multi_step_are_d_rtrl_multi_step(f64):
    model = MODELS["gru"]()
    xs, loss = data(batch=2)
    h0 = hidden(model)
    want, _ = window_sum(braintrace.D_RTRL(model, vjp_method="multi-step").compile_graph(xs[0]), xs, loss, 2)
    for make in (braintrace.EProp, braintrace.OSTLRecurrent):
        restore(model, h0)
        got, _ = window_sum(make(model, vjp_method="multi-step").compile_graph(xs[0]), xs, loss, 2)
        assert O.tree_max_rel_err(got, want) < 1e-10


@pytest.mark.parametrize("name", ["gru", "lif_readout"])
def test_ostl_recurrent_is_d_rtrl(f64, name):
    got = learner_grads(name, braintrace.OSTLRecurrent)
    assert O.tree_max_rel_err(got, d_rtrl_grads(name)) < 1e-10
    assert isinstance(braintrace.OSTLRecurrent(MODELS[name]()), braintrace.ParamDimVjpAlgorithm)


@pytest.mark.parametrize("name, decay_or_rank", [("gru", 0.8), ("adaptive_grouped", 3), ("lif_readout", 0.8)])
def test_ostl_feedforward_is_es_d_rtrl_at_its_decay(f64, name, decay_or_rank):
    model = MODELS[name]()
    xs, loss = data(batch=None if name == "adaptive_grouped" else 2)
    got, want = compare(
        model, xs, loss,
        lambda m: braintrace.OSTLFeedforward(m, decay_or_rank=decay_or_rank),
        lambda m: braintrace.ES_D_RTRL(m, decay_or_rank),
    )
    assert O.tree_max_rel_err(got, want) < 1e-10


ONE_STEP = {
    "OTTT-A": lambda m: braintrace.OTTT(m, "A", leak=0.3),
    "OTTT-O": lambda m: braintrace.OTTT(m, "O", leak=0.3),
    "OTPE-full": lambda m: braintrace.OTPE(m, "full", leak=0.3),
    "OTPE-approx": lambda m: braintrace.OTPE(m, "approx", leak=0.3),
}


@pytest.mark.parametrize("algo", list(ONE_STEP))
@pytest.mark.parametrize("name", ["gru", "lif_readout"])
def test_ottt_and_otpe_are_d_rtrl_over_one_step(f64, name, algo):
    got = learner_grads(name, ONE_STEP[algo], steps=1)
    assert O.tree_max_rel_err(got, d_rtrl_grads(name, steps=1)) < 1e-10


def test_ottt_and_otpe_differ_from_d_rtrl_over_several_steps(f64):
    """The leak 0.3 is no decay of the model: after one step the rules part (the tests can tell)."""
    model = MODELS["lif_readout"]()
    xs, loss = data(batch=2, steps=3)
    h0 = hidden(model)
    want, _ = online_sum(braintrace.D_RTRL(model).compile_graph(xs[0]), xs, loss)
    for make in ONE_STEP.values():
        restore(model, h0)
        got, _ = online_sum(make(model).compile_graph(xs[0]), xs, loss)
        assert O.tree_max_rel_err(got, want) > 1e-4


EXACT = {
    "OTTT-A": lambda m, leak: braintrace.OTTT(m, "A", leak=leak),
    "OTPE-full": lambda m, leak: braintrace.OTPE(m, "full", leak=leak),
    "OTPE-approx": lambda m, leak: braintrace.OTPE(m, "approx", leak=leak),
}
OPS = ["dense", "conv", "sparse", "lora", "elementwise"]


@pytest.mark.parametrize("algo", list(EXACT))
@pytest.mark.parametrize("op", OPS)
def test_exact_on_leaky_linear_float64(f64, op, algo):
    batch = 2 if op == "dense" else None
    model = LeakyLinear(op, leak=0.7, batch=batch)
    xs, loss = data(LeakyLinear.X_SHAPE[op], batch=batch)
    bptt, bptt_loss = O.bptt_grads(model, xs, loss)
    learner = EXACT[algo](model, 0.7).compile_graph(xs[0])
    got, got_loss = online_sum(learner, xs, loss)
    assert_dtype(got, jnp.float64)
    assert O.tree_max_rel_err(got, bptt) < 1e-10
    assert abs(float(got_loss) - float(bptt_loss)) < 1e-10


@pytest.mark.parametrize("algo", list(EXACT))
def test_exact_on_leaky_linear_float32(algo):
    op, batch = "dense", 2
    model = LeakyLinear(op, leak=0.7, batch=batch)
    xs, loss = data(LeakyLinear.X_SHAPE[op], batch=batch)
    xs = xs.astype(jnp.float32)
    bptt, _ = O.bptt_grads(model, xs, loss)
    got, _ = online_sum(EXACT[algo](model, 0.7).compile_graph(xs[0]), xs, loss)
    assert_dtype(got, jnp.float32)
    assert O.tree_max_rel_err(got, bptt) < 1e-5


def test_ottt_instantaneous_mode_is_not_exact_there(f64):
    model = LeakyLinear("dense", leak=0.7, batch=2)
    xs, loss = data(batch=2)
    bptt, _ = O.bptt_grads(model, xs, loss)
    got, _ = online_sum(braintrace.OTTT(model, "O", leak=0.7).compile_graph(xs[0]), xs, loss)
    assert O.tree_max_rel_err(got, bptt) > 1e-3


@pytest.mark.parametrize("algo", list(EXACT))
def test_exact_on_leaky_linear_in_windows(f64, algo):
    """MultiStepData windows of 2 steps (single-step rule, scanned) give the same sum."""
    model = LeakyLinear("dense", leak=0.7, batch=2)
    xs, loss = data(batch=2)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = EXACT[algo](model, 0.7).compile_graph(xs[0])
    got, _ = window_sum(learner, xs, loss, 2)
    assert O.tree_max_rel_err(got, bptt) < 1e-10
    assert int(learner.step_count.value) == T


@pytest.mark.parametrize("mode", ["full", "approx"])
def test_otpe_multi_step_windows_are_exact_on_leaky_linear(f64, mode):
    model = LeakyLinear("dense", leak=0.7, batch=2)
    xs, loss = data(batch=2)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.OTPE(model, mode, leak=0.7, vjp_method="multi-step").compile_graph(xs[0])
    got, _ = window_sum(learner, xs, loss, 2)
    assert O.tree_max_rel_err(got, bptt) < 1e-10


def test_otpe_fast_solve_false_matches(f64):
    model = LeakyLinear("lora", leak=0.7)
    xs, loss = data()
    got, want = compare(
        model, xs, loss,
        lambda m: braintrace.OTPE(m, leak=0.5, fast_solve=False),
        lambda m: braintrace.OTPE(m, leak=0.5),
    )
    assert O.tree_max_rel_err(got, want) < 1e-10
