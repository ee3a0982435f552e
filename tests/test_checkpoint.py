"""Checkpoint and resume: a restored learner continues bit for bit; a foreign checkpoint is refused.

The oracle here is the uninterrupted run itself: the run continued from a
checkpoint (restored into a freshly built model and learner whose initial
weights differ) must give exactly the same bits (``np.array_equal``).
"""

import pickle

import numpy as np
import optax
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

pytest.importorskip("orbax.checkpoint")
pytestmark = pytest.mark.filterwarnings("ignore:ETP primitive:UserWarning")

B, T = 2, 6


def build(seed, hidden=4, learner="es_d_rtrl"):
    brainstate.random.seed(seed)
    cell = braintrace.nn.GRUCell(3, hidden)
    brainstate.nn.init_all_states(cell, B)
    make = {"es_d_rtrl": lambda m: braintrace.ES_D_RTRL(m, 0.8), "d_rtrl": braintrace.D_RTRL}[learner]
    return make(cell).compile_graph(jnp.zeros((B, 3)))


def data(seed=0):
    rng = np.random.RandomState(seed)
    return jnp.asarray(rng.randn(2 * T, B, 3), jnp.float32), jnp.asarray(rng.randn(2 * T, B, 4), jnp.float32)


def loss_fn(o, y):
    return jnp.mean((o - y) ** 2)


def snapshot(learner):
    out = {f"s{k}": v.value for k, v in learner.model.states().items()}
    out.update({f"t{k}": v.value for k, v in learner.etraces.items()})
    out["count"] = learner.step_count.value
    return out


def assert_same_bits(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_is_bit_identical(tmp_path, monkeypatch):
    xs, ys = data()
    opt = optax.adam(1e-2)
    learner = build(0)
    first = braintrace.online_fit(learner, opt, xs[:T], ys[:T], loss_fn, update_every=2, batch_size=B)
    braintrace.checkpoint.save(tmp_path / "ckpt", learner, opt_state=first.opt_state, chunk=1)
    key_at_save = jax.random.key_data(brainstate.random.DEFAULT.value)
    straight = braintrace.online_fit(learner, opt, xs[T:], ys[T:], loss_fn, update_every=2,
                                     opt_state=first.opt_state, reset=False)
    want = snapshot(learner)

    fresh = build(1)  # other initial weights: everything must come from the checkpoint
    brainstate.random.normal(size=3)  # advance the global key
    params = {k: v.value for k, v in fresh.model.states(brainstate.ParamState).items()}

    def no_pickle(*args, **kwargs):
        raise AssertionError("restore unpickled something")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    extra = braintrace.checkpoint.restore(tmp_path / "ckpt", fresh, opt_state=opt.init(params))
    monkeypatch.undo()
    assert int(extra["chunk"]) == 1
    assert type(extra["opt_state"]) is type(first.opt_state)
    np.testing.assert_array_equal(jax.random.key_data(brainstate.random.DEFAULT.value), key_at_save)
    resumed = braintrace.online_fit(fresh, opt, xs[T:], ys[T:], loss_fn, update_every=2,
                                    opt_state=extra["opt_state"], reset=False)
    assert_same_bits(resumed.params, straight.params)
    assert_same_bits(resumed.opt_state, straight.opt_state)
    assert_same_bits(resumed.losses, straight.losses)
    assert_same_bits(snapshot(fresh), want)
    assert int(fresh.step_count.value) == 2 * T


@pytest.mark.parametrize(
    "other,match",
    [
        (dict(hidden=5), r"the state `Wh.weight\['bias'\]` has shape \(4,\) and dtype float32 there, \(5,\) and "
                         r"float32 here"),
        (dict(learner="d_rtrl"), r"saved from a ES_D_RTRL, this is a D_RTRL"),
    ],
    ids=["hidden_size", "learner"],
)
def test_a_foreign_checkpoint_is_refused_and_the_learner_unchanged(tmp_path, other, match):
    xs, ys = data()
    learner = build(0)
    braintrace.online_evolve(learner, xs[:3], batch_size=B)
    braintrace.checkpoint.save(tmp_path / "ckpt", learner)
    foreign = build(1, **other)
    braintrace.online_evolve(foreign, xs[:2], batch_size=B)
    before = snapshot(foreign)
    with pytest.raises(braintrace.CheckpointError, match=match) as err:
        braintrace.checkpoint.restore(tmp_path / "ckpt", foreign)
    assert "left unchanged" in str(err.value) and "first mismatch" in str(err.value)
    assert_same_bits(snapshot(foreign), before)


def test_errors_and_a_plain_model(tmp_path):
    learner = build(0)
    braintrace.checkpoint.save(tmp_path / "ckpt", learner, step=3)
    with pytest.raises(braintrace.CheckpointError, match="exists; pass overwrite=True"):
        braintrace.checkpoint.save(tmp_path / "ckpt", learner)
    braintrace.checkpoint.save(tmp_path / "ckpt", learner, overwrite=True, step=4)
    with pytest.raises(braintrace.CheckpointError, match=r"has no extra 'opt_state'; it has 'step'"):
        braintrace.checkpoint.restore(tmp_path / "ckpt", learner, opt_state={})
    with pytest.raises(braintrace.CheckpointError, match="holds no braintrace checkpoint"):
        braintrace.checkpoint.restore(tmp_path, learner)
    with pytest.raises(braintrace.CheckpointError, match="saved from a ES_D_RTRL, this is a plain model"):
        braintrace.checkpoint.restore(tmp_path / "ckpt", learner.model)
    # a plain model: its states only
    model = learner.model
    braintrace.checkpoint.save(tmp_path / "model", model)
    saved = {k: v.value for k, v in model.states().items()}
    brainstate.nn.init_all_states(model, B)
    model.Wz.weight.value = jax.tree.map(lambda w: w + 1.0, model.Wz.weight.value)
    assert braintrace.checkpoint.restore(tmp_path / "model", model) == {}
    assert_same_bits({k: v.value for k, v in model.states().items()}, saved)
