"""Outputs read from a hidden state's old value (the bypass term, DESIGN.md §3).

A step that computes its output (a spike, a readout) from ``h^{t-1}`` before
writing ``h^t`` makes the loss at step ``t`` depend on ``h^{t-1}``; the
single-step rule must add ``δ_prev^t · ε^{t-1}``. Without it D_RTRL gave a
zero gradient to every weight feeding ``h`` (0.0 against BPTT's 9.95). Each
learner is checked against BPTT (element-wise models, where D_RTRL must equal
it), against the oracle's single-step reference with the bypass term, or
against a hand-written ES_D_RTRL recurrence.
"""

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from learning import online_grads, window_grads, x64  # noqa: F401

T, N_IN, N_H, N_OUT = 6, 3, 4, 2


class EarlyLeaky(brainstate.nn.Module):
    """``out = tanh(h^{t-1}) W_out`` read before ``h^t = a h^{t-1} + tanh(x W + b)``."""

    def __init__(self, seed=0, both=False):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w = brainstate.ParamState(jnp.asarray(rng.randn(N_IN, N_H) * 0.5))
        self.b = brainstate.ParamState(jnp.asarray(rng.randn(N_H) * 0.1))
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(N_H, N_OUT) * 0.5))
        self.h = brainstate.HiddenState(jnp.asarray(rng.randn(N_H) * 0.1))
        self.both = both

    def update(self, x):
        old = self.h.value
        out = jnp.tanh(old) @ self.w_out.value
        self.h.value = 0.8 * old + jnp.tanh(braintrace.matmul(x, self.w.value, self.b.value))
        if self.both:  # reads the new value too
            out = out + 0.5 * jnp.tanh(self.h.value) @ self.w_out.value
        return out


class EarlySpiking(brainstate.nn.Module):
    """A LIF layer written brainpy-style: spike from the old voltage, then reset; returns the spike."""

    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w = brainstate.ParamState(jnp.asarray(rng.randn(N_IN, N_H) * 0.8))
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(N_H, N_OUT) * 0.5))
        self.v = brainstate.HiddenState(jnp.asarray(rng.rand(N_H)))

    def update(self, x):
        v = self.v.value
        spike = braintrace.nn.surrogate.sigmoid(v - 1.0)
        self.v.value = 0.9 * v + braintrace.matmul(x, self.w.value) - spike
        return spike @ self.w_out.value


def data(seed=1):
    rng = np.random.RandomState(seed)
    xs = jnp.asarray(rng.randn(T, N_IN))
    ys = jnp.asarray(rng.randn(T, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - ys[t]) ** 2)

    return xs, loss


def rel(a, b):
    return O.tree_max_rel_err(a, b)


MODELS = {"early_leaky": EarlyLeaky, "early_both": lambda: EarlyLeaky(both=True), "early_spiking": EarlySpiking}


def test_graph_reports_the_state_read_before_the_write():
    model = EarlyLeaky()
    graph = braintrace.compile_etrace_graph(model, jnp.zeros(N_IN))
    assert graph.bypass_paths == (("h",),)
    recs = graph.select(kind=braintrace.DiagnosticKind.HIDDEN_READ_BEFORE_WRITE)
    assert len(recs) == 1 and "`h`" in recs[0].message
    plain = braintrace.compile_etrace_graph(O.make_leaky(N_IN, N_H, N_OUT, seed=0), jnp.zeros(N_IN))
    assert plain.bypass_paths == ()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("window", [None, 3])
def test_d_rtrl_equals_bptt(x64, name, window):
    model = MODELS[name]()
    xs, loss = data()
    bptt, total = O.bptt_grads(model, xs, loss)  # leaves the model's states as they are
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    got, got_total = online_grads(learner, xs, loss) if window is None else window_grads(learner, xs, loss, window)
    assert jnp.result_type(jax.tree.leaves(got)[0]) == jnp.float64
    assert abs(float(got_total) - float(total)) < 1e-10
    assert rel(got, bptt) < 1e-8
    assert float(jnp.max(jnp.abs(got[("w",)]))) > 1e-3  # not the zero gradient it used to be


@pytest.mark.parametrize("name", sorted(MODELS))
def test_d_rtrl_hybrid_window_equals_bptt(x64, name):
    model = MODELS[name]()
    xs, loss = data()
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.D_RTRL(model, vjp_method="multi-step").compile_graph(xs[0])
    got, _ = window_grads(learner, xs, loss, 2)
    assert rel(got, bptt) < 1e-8


def test_oracle_single_step_reference_has_the_bypass_term(x64):
    model = EarlyLeaky()
    xs, loss = data()
    bptt, _ = O.bptt_grads(model, xs, loss)
    full, _ = O.rtrl_reference(model, xs, loss, mode="full")
    diag, _ = O.rtrl_reference(model, xs, loss, mode="diagonal")
    assert rel(full, bptt) < 1e-10 and rel(diag, bptt) < 1e-10


def test_online_gradients_driver_equals_bptt(x64):
    model = EarlySpiking()
    xs, loss = data()
    targets = jnp.arange(T)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])  # remembers v: the model has no reset_state
    bptt, _ = braintrace.bptt_gradients(model, xs, targets, loss, reset=False)
    for window in (None, 2, "auto"):
        got, _ = braintrace.online_gradients(learner, xs, targets, loss, reset=True, window=window)
        assert rel(got, bptt) < 1e-8


def es_reference(model, xs, loss, alpha):
    """ES_D_RTRL by hand for ``EarlyLeaky`` (D = 0.8, df = 1 - tanh(y)^2, y = x W + b), with the bypass term."""
    W, b, W_out = model.w.value, model.b.value, model.w_out.value
    h = model.h.value
    ex = jnp.zeros(N_IN)
    ef = jnp.zeros(N_H)
    ex_prev, ef_prev, c_prev = ex, ef, 1.0
    eb = jnp.zeros(N_H)  # the bias keeps its exact trace
    eb_prev = eb
    gW, gb, gWo = jnp.zeros_like(W), jnp.zeros_like(b), jnp.zeros_like(W_out)
    for t in range(T):
        x = xs[t]
        y = x @ W + b
        df = 1.0 - jnp.tanh(y) ** 2
        ex = alpha * ex + x
        ef = alpha * 0.8 * ef + (1 - alpha) * df
        eb = 0.8 * eb + df
        c = 1.0 - alpha ** (t + 1)
        hnew = 0.8 * h + jnp.tanh(y)
        out_fn = lambda hold, Wo: jnp.tanh(hold) @ Wo  # noqa: E731
        d_prev, gWo_t = jax.grad(lambda hh, Wo: loss(out_fn(hh, Wo), t), argnums=(0, 1))(h, W_out)
        # δ^t = 0: the output reads h^{t-1} only
        gW = gW + jnp.outer(ex_prev, ef_prev / c_prev * d_prev)
        gb = gb + eb_prev * d_prev
        gWo = gWo + gWo_t
        ex_prev, ef_prev, c_prev, eb_prev = ex, ef, c, eb
        h = hnew
    return {("w",): gW, ("b",): gb, ("w_out",): gWo}


@pytest.mark.parametrize("window", [None, 3])
def test_es_d_rtrl_matches_hand_written_rule(x64, window):
    model = EarlyLeaky()
    xs, loss = data()
    ref = es_reference(model, xs, loss, 0.6)
    learner = braintrace.ES_D_RTRL(model, decay_or_rank=0.6).compile_graph(xs[0])
    got, _ = online_grads(learner, xs, loss) if window is None else window_grads(learner, xs, loss, window)
    assert rel(got, ref) < 1e-10


SNN_LEARNERS = {
    "eprop": lambda m: braintrace.EProp(m),
    "ostl": lambda m: braintrace.OSTLRecurrent(m),
    "otpe": lambda m: braintrace.OTPE(m, "full", leak=0.8),
}


@pytest.mark.parametrize("name", sorted(SNN_LEARNERS))
def test_snn_learners_add_the_bypass_term(x64, name):
    """e-prop (symmetric, κ = 0) and OSTL are D_RTRL, so they equal BPTT on the spiking model; OTPE
    ('full', D := λ) equals D_RTRL and BPTT on a leaky layer whose decay is λ (here 0.8)."""
    model = EarlySpiking() if name != "otpe" else EarlyLeaky()
    xs, loss = data()
    bptt, _ = O.bptt_grads(model, xs, loss)
    got, _ = online_grads(SNN_LEARNERS[name](model).compile_graph(xs[0]), xs, loss)
    assert rel(got, bptt) < 1e-8


def test_ottt_refuses_a_model_that_reads_the_old_value():
    learner = braintrace.OTTT(EarlySpiking(), leak=0.9)
    with pytest.raises(braintrace.NotSupportedError, match="reads `v` before writing it"):
        learner.compile_graph(jnp.zeros(N_IN))
    assert not learner.is_compiled
