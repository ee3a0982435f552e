"""SnAp-n against the oracle: D_RTRL and BPTT on element-wise models (n = 1), RTRL / BPTT once
n reaches the model's diameter, and an independent masked-RTRL reference in between."""

import numpy as np
import pytest

import brainstate
import braintrace
import jax.numpy as jnp

import oracle as O
from algorithms.influence_models import MAKERS, Chain, make_data, masked_rtrl, stepwise_grads, windowed_grads
from learning import x64  # noqa: F401

T = 4


def rel(a, b):
    return O.tree_max_rel_err(a, b)


@pytest.mark.parametrize("name", ["leaky_decay", "adaptive"])
def test_snap1_equals_d_rtrl_on_elementwise_models(x64, name):
    make = {"leaky_decay": lambda: O.make_leaky(3, 4, 2, seed=0, learn_decay=True),
            "adaptive": lambda: O.make_adaptive(3, 4, 2, seed=0)}[name]
    model = make()
    xs, loss = make_data(steps=T)
    h0 = O.get_hidden(model)
    bptt, _ = O.bptt_grads(model, xs, loss)
    snap = braintrace.SnAp(model, n=1).compile_graph(xs[0])
    assert snap.trace_size(snap.flat) < snap.flat.num_hidden * snap.flat.num_params  # really sparse
    got, _ = stepwise_grads(snap, xs, loss)
    O.set_hidden(model, h0)
    d_rtrl, _ = stepwise_grads(braintrace.D_RTRL(model).compile_graph(xs[0]), xs, loss)
    assert rel(got, d_rtrl) < 1e-10 and rel(got, bptt) < 1e-10


def test_gru_pattern_by_hand():
    """SnAp-1 on a GRU: an entry of W_z or W_h (and their biases) reaches its own unit, one of W_r
    every unit (through ``r ⊙ h`` and W_h's product); the diameter is 2."""
    model = MAKERS["gru"]()
    snap = braintrace.SnAp(model, n=1).compile_graph(jnp.zeros(3))
    flat, S = snap.flat, snap.pattern
    assert snap.diameter == 2 and S.shape == (4, flat.num_params)
    start = 0
    for name, shape, n in zip(flat.theta_names, flat.theta_shapes, flat.theta_sizes):
        cols = S[:, start: start + n].reshape((4,) + shape)  # (h unit, *leaf shape)
        start += n
        if name.startswith("wr"):
            assert cols.all(), name
        else:  # a weight's column i (or the bias' entry i) reaches unit i alone
            unit = np.broadcast_to(np.arange(4), shape)
            expected = np.stack([unit == i for i in range(4)])
            assert (cols == expected).all(), name
    assert braintrace.SnAp(model, n=2).compile_graph(jnp.zeros(3)).pattern.all()


def test_snap1_on_a_gru_equals_masked_rtrl(x64):
    """Between D_RTRL and RTRL: the dense RTRL recurrence masked by the pattern (plain JAX)."""
    model = MAKERS["gru"]()
    xs, loss = make_data(steps=T)
    h0 = O.get_hidden(model)
    snap = braintrace.SnAp(model, n=1).compile_graph(xs[0])
    ref, ref_total = masked_rtrl(snap, xs, loss, mask=snap.pattern)
    bptt, _ = O.bptt_grads(model, xs, loss)
    got, total = stepwise_grads(snap, xs, loss)
    assert rel(got, ref) < 1e-10 and abs(float(total) - float(ref_total)) < 1e-10
    assert rel(got, bptt) > 1e-3  # an approximation here: the test can tell
    O.set_hidden(model, h0)
    snap.reset_state()
    windowed, _ = windowed_grads(snap, xs, loss, 2)  # the single-step rule over windows: the same sum
    assert rel(windowed, got) < 1e-10


@pytest.mark.parametrize("name,diameter", [("gru", 2), ("chain", 3)])
def test_n_at_the_diameter_equals_rtrl(x64, name, diameter):
    model = Chain() if name == "chain" else MAKERS[name]()
    xs, loss = make_data(n_in=2 if name == "chain" else 3, n_out=1 if name == "chain" else 2, steps=T)
    h0 = O.get_hidden(model)
    bptt, _ = O.bptt_grads(model, xs, loss)
    snap = braintrace.SnAp(model, n=diameter).compile_graph(xs[0])
    assert snap.diameter == diameter and snap.pattern.all() == (name == "gru")
    got, _ = stepwise_grads(snap, xs, loss)
    assert rel(got, bptt) < 1e-10
    O.set_hidden(model, h0)
    short, _ = stepwise_grads(braintrace.SnAp(model, n=diameter - 1).compile_graph(xs[0]), xs, loss)
    assert rel(short, bptt) > 1e-3


def test_multi_step_at_the_diameter_equals_bptt(x64):
    model = Chain()
    xs, loss = make_data(n_in=2, n_out=1, steps=T)
    bptt, _ = O.bptt_grads(model, xs, loss)
    snap = braintrace.SnAp(model, n=3, vjp_method="multi-step").compile_graph(xs[0])
    got, _ = windowed_grads(snap, xs, loss, 2)
    assert rel(got, bptt) < 1e-10


@pytest.mark.parametrize("cell", ["jax.checkpoint", "jit(checkpoint)"])
def test_a_step_inside_jax_checkpoint_has_the_pattern_of_the_plain_step(x64, cell):
    """A user's checkpoint (remat) around the step changes nothing: same pattern, exact gradient.
    (A checkpoint inside a primitive's derivative, as in the event-driven sparse product, is
    tested in ``tests/primitives/test_structure_state.py``.)"""
    from compiler.test_hidden_calls import Leaky

    xs, loss = make_data(steps=T)
    plain = braintrace.SnAp(Leaky("plain"), n=1).compile_graph(xs[0]).pattern
    model = Leaky(cell)
    h0 = O.get_hidden(model)
    snap = braintrace.SnAp(model, n=1).compile_graph(xs[0])
    assert plain.any() and (snap.pattern == plain).all()
    bptt, _ = O.bptt_grads(model, xs, loss)
    O.set_hidden(model, h0)
    got, _ = stepwise_grads(snap, xs, loss)
    assert rel(got, bptt) < 1e-10


def test_bad_n():
    for n in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            braintrace.SnAp(MAKERS["gru"](), n=n)


def test_refuses_data_dependent_indices():
    class Lookup(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = brainstate.ParamState(jnp.ones((5, 3)))
            self.h = brainstate.HiddenState(jnp.zeros(3))

        def update(self, token):
            self.h.value = jnp.tanh(0.5 * self.h.value + self.table.value[token])
            return self.h.value

    with pytest.raises(braintrace.NotSupportedError, match="indices computed from its inputs"):
        braintrace.SnAp(Lookup()).compile_graph(jnp.zeros((), jnp.int32))
    braintrace.RTRL(Lookup()).compile_graph(jnp.zeros((), jnp.int32))  # exact RTRL has no pattern to read


def test_in_the_catalog():
    from braintrace.algorithms.catalog import learner_class

    assert learner_class("SnAp") is braintrace.SnAp and learner_class("snap-n") is braintrace.SnAp
