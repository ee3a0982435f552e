"""RTRL against the oracle (DESIGN.md §4): BPTT and the dense full-Jacobian RTRL reference, on
coupled models (a GRU, a vanilla RNN with a ``matmul`` recurrence, a two-layer SNN, a model
reading its state before the write), on single steps, on windows and with ``vjp_method='multi-step'``."""

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from algorithms.influence_models import MAKERS, Chain, EarlyRNN, assert_float, make_data, stepwise_grads, windowed_grads
from learning import x64  # noqa: F401

T = 4


def rel(a, b):
    return O.tree_max_rel_err(a, b)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_equals_bptt_single_steps_float64(x64, name):
    model = MAKERS[name]()
    xs, loss = make_data(steps=T)
    h0 = O.get_hidden(model)
    bptt, bptt_loss = O.bptt_grads(model, xs, loss)
    learner = braintrace.RTRL(model).compile_graph(xs[0])
    got, got_loss = stepwise_grads(learner, xs, loss)
    assert_float(got, jnp.float64)
    assert rel(got, bptt) < 1e-10
    assert abs(float(got_loss) - float(bptt_loss)) < 1e-10
    if name == "gru":  # the dense RTRL of the oracle, which checks itself against BPTT
        full, _ = O.rtrl_reference(model, xs, loss, mode="full", h0=h0)
        assert rel(got, full) < 1e-10


def test_equals_bptt_batched(x64):
    model = MAKERS["gru"](batch=2)
    xs, loss = make_data(steps=4, batch=2)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.RTRL(model).compile_graph(xs[0])
    assert learner.flat.num_hidden == 2 * sum(int(np.prod(s.value.shape[1:])) for s in
                                               model.states(brainstate.HiddenState).values())
    got, _ = stepwise_grads(learner, xs, loss)
    assert rel(got, bptt) < 1e-10


@pytest.mark.parametrize("name,K", [("gru", 2), ("early_rnn", 4)])
def test_single_step_rule_on_windows_equals_bptt(x64, name, K):
    """RTRL's single-step rule is exact, so any split into MultiStepData windows gives BPTT."""
    model = MAKERS[name]()
    xs, loss = make_data(steps=T)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.RTRL(model).compile_graph(xs[0])
    got, _ = windowed_grads(learner, xs, loss, K)
    assert rel(got, bptt) < 1e-10


@pytest.mark.parametrize("name", ["snn2", "early_rnn"])
def test_multi_step_equals_bptt(x64, name):
    model = MAKERS[name]()
    xs, loss = make_data(steps=T)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.RTRL(model, vjp_method="multi-step").compile_graph(xs[0])
    got, _ = windowed_grads(learner, xs, loss, 2)
    assert rel(got, bptt) < 1e-10


def test_float32_close_to_bptt():
    model = MAKERS["gru"]()
    xs, loss = make_data(steps=T)
    xs = xs.astype(jnp.float32)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.RTRL(model).compile_graph(xs[0])
    got, _ = stepwise_grads(learner, xs, loss)
    assert_float(got, jnp.float32)
    assert rel(got, bptt) < 1e-5


def test_every_parameter_reaching_a_hidden_state_is_covered(x64):
    """EarlyRNN's plain ``h @ U`` (like GRU's reset-gate weight behind another weight, checked in
    the equality tests) is learned exactly, where D_RTRL gives it its instantaneous gradient only;
    the read-out, which reaches no hidden state, has no trace and its instantaneous gradient."""
    model = EarlyRNN()
    xs, loss = make_data(steps=T)
    h0 = O.get_hidden(model)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.RTRL(model).compile_graph(xs[0])
    assert sorted(learner.flat.theta_names) == ["U", "W"]
    got, _ = stepwise_grads(learner, xs, loss)
    assert rel(got[("U",)], bptt[("U",)]) < 1e-10 and rel(got[("W_out",)], bptt[("W_out",)]) < 1e-10
    O.set_hidden(model, h0)
    d_rtrl, _ = stepwise_grads(braintrace.D_RTRL(model).compile_graph(xs[0]), xs, loss)
    assert rel(d_rtrl[("U",)], bptt[("U",)]) > 1e-3


def test_influence_of_a_chain_fills_in_three_steps(x64):
    """The trace is ``dh/dθ``: the input weight reaches ``h2`` only at the third step (closed form)."""
    model = Chain()
    learner = braintrace.RTRL(model).compile_graph(jnp.zeros(2))
    x = jnp.asarray([0.3, -0.2])
    seen = []
    for _ in range(3):
        learner(x)
        infl = learner.get_etrace_of("w")
        (val,) = infl.values()
        seen.append(np.asarray(val["w"])[:, 0, :])  # (n_in, N): rows of w, columns h0, h1, h2
    assert np.all(seen[0][:, 1:] == 0) and np.all(seen[1][:, 2] == 0) and np.all(seen[2][:, 2] != 0)
    # after one step dh0/dw = (1 - tanh²(x w)) x
    y = float(x @ model.w.value[:, 0])
    np.testing.assert_allclose(seen[0][:, 0], (1 - np.tanh(y) ** 2) * np.asarray(x), rtol=1e-12)


def test_refuses_a_model_over_the_size_limit():
    model = MAKERS["gru"]()
    with pytest.raises(braintrace.CompilationError, match=r"N = 4 hidden values.*\|θ\| = 96.*max_trace_size=100"):
        braintrace.RTRL(model, max_trace_size=100).compile_graph(jnp.zeros(3))
    with pytest.raises(ValueError, match="max_trace_size"):
        braintrace.RTRL(model, max_trace_size=0)


def test_refuses_an_integer_hidden_state():
    class Counter(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = brainstate.ParamState(jnp.ones((2, 2)))
            self.h = brainstate.HiddenState(jnp.zeros(2))
            self.n = brainstate.HiddenState(jnp.zeros(2, jnp.int32))

        def update(self, x):
            self.n.value = self.n.value + 1
            self.h.value = jnp.tanh(braintrace.matmul(x, self.w.value) + self.h.value)
            return self.h.value

    with pytest.raises(braintrace.NotSupportedError, match="`n` holds int32"):
        braintrace.RTRL(Counter()).compile_graph(jnp.zeros(2))


def test_no_relation_learner_warnings():
    """Warnings that a weight 'receives its instantaneous gradient only' do not hold for RTRL."""
    model = MAKERS["gru"]()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        braintrace.RTRL(model).compile_graph(jnp.zeros(3))
    assert not [w for w in caught if "instantaneous gradient only" in str(w.message)]
    with pytest.warns(UserWarning, match="instantaneous gradient only"):
        braintrace.D_RTRL(model).compile_graph(jnp.zeros(3))


def test_in_the_catalog():
    from braintrace.algorithms.catalog import learner_class

    assert learner_class("rtrl") is braintrace.RTRL
