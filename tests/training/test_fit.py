"""online_fit: an optimizer update every K steps inside one jitted scan.

Checked against what it must equal, in float64: with ``update_every=T``, one
optimizer step on ``online_gradients``; with ``update_every=1``, a
hand-written loop that calls the learner, differentiates the step's loss and
applies the update at every step; a stream of chunks against the same
sequence in one array.
"""

import numpy as np
import optax
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from learning import x64  # noqa: F401

T, B = 6, 2
pytestmark = pytest.mark.filterwarnings("ignore:ETP primitive:UserWarning")


def rel(a, b):
    """The oracle's relative error, 0 for trees without leaves (an SGD state)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    return O.tree_max_rel_err(a, b) if jax.tree.leaves(a) else 0.0


def setup(seed=0, learner="d_rtrl"):
    model = O.make_gru(3, 4, 2, batch=B, seed=seed)
    rng = np.random.RandomState(seed + 1)
    xs, ys = jnp.asarray(rng.randn(T, B, 3)), jnp.asarray(rng.randn(T, B, 2))
    make = {"d_rtrl": braintrace.D_RTRL, "es_d_rtrl": lambda m: braintrace.ES_D_RTRL(m, 0.7)}[learner]
    return model, make(model).compile_graph(xs[0]), xs, ys


def loss_fn(o, y):
    return 0.5 * jnp.sum((o - y) ** 2)


def params_of(model):
    return {k: v.value for k, v in model.states(brainstate.ParamState).items()}


def set_params(model, values):
    for k, st in model.states(brainstate.ParamState).items():
        st.value = values[k]


@pytest.mark.parametrize("optimizer", [optax.sgd(0.1), optax.adam(0.05)], ids=["sgd", "adam"])
def test_update_every_T_is_one_step_on_online_gradients(x64, optimizer):
    model, learner, xs, ys = setup()
    assert xs.dtype == jnp.float64
    p0 = params_of(model)
    grads, loss = braintrace.online_gradients(learner, xs, ys, loss_fn)
    updates, want_state = optimizer.update(grads, optimizer.init(p0), p0)
    want = optax.apply_updates(p0, updates)
    got, got_state, losses = braintrace.online_fit(learner, optimizer, xs, ys, loss_fn, update_every=T)
    assert rel(got, want) < 1e-12
    assert rel(got_state, want_state) < 1e-12
    assert losses.shape == (T,) and abs(float(jnp.sum(losses) - loss)) < 1e-12
    assert rel(params_of(model), got) == 0  # written into the model


@pytest.mark.parametrize("learner", ["d_rtrl", "es_d_rtrl"])
def test_update_every_1_equals_a_hand_written_loop(x64, learner):
    model, lrn, xs, ys = setup(learner=learner)
    p0, h0 = params_of(model), O.get_hidden(model)
    optimizer = optax.adam(0.05)
    params = model.states(brainstate.ParamState)
    # by hand: call the learner, differentiate the step's loss, update, at every step (the step
    # compiled once: the same learner call and gradient, not op by op)
    state = optimizer.init(p0)
    lrn.reset(B)
    hand_losses = []
    grad_step = brainstate.transform.jit(
        brainstate.transform.grad(lambda x, y: loss_fn(lrn(x), y), params, return_value=True))
    for t in range(T):
        g, value = grad_step(xs[t], ys[t])
        values = params_of(model)
        updates, state = optimizer.update(g, state, values)
        set_params(model, optax.apply_updates(values, updates))
        hand_losses.append(float(value))
    want, want_h = params_of(model), O.get_hidden(model)
    want_traces = {k: v.value for k, v in lrn.etraces.items()}
    set_params(model, p0)
    O.set_hidden(model, h0)
    got, got_state, losses = braintrace.online_fit(lrn, optimizer, xs, ys, loss_fn, update_every=1)
    assert rel(got, want) < 1e-10
    assert rel(got_state, state) < 1e-10
    np.testing.assert_allclose(losses, hand_losses, rtol=1e-10)
    assert rel(O.get_hidden(model), want_h) < 1e-10
    for k, st in lrn.etraces.items():  # the traces ran on across the updates
        assert rel(st.value, want_traces[k]) < 1e-10
    assert not np.allclose(losses[-1], hand_losses[0])


def test_stream_of_chunks_equals_one_array_and_windows_change_nothing(x64):
    model, learner, xs, ys = setup()
    p0 = params_of(model)
    opt = optax.sgd(0.2)
    whole = braintrace.online_fit(learner, opt, xs, ys, loss_fn, update_every=2, window=None)
    set_params(model, p0)
    chunks = iter([(xs[:2], ys[:2]), (xs[2:6], ys[2:6])])
    stream = braintrace.online_fit(learner, opt, chunks, None, loss_fn, update_every=2, window=2)
    assert rel(stream.params, whole.params) < 1e-12
    np.testing.assert_allclose(stream.losses, whole.losses, rtol=1e-12)
    # continuing from a returned state: reset=False and opt_state
    set_params(model, p0)
    first = braintrace.online_fit(learner, opt, xs[:4], ys[:4], loss_fn, update_every=2)
    second = braintrace.online_fit(learner, opt, xs[4:], ys[4:], loss_fn, update_every=2,
                                   opt_state=first.opt_state, reset=False)
    assert rel(second.params, whole.params) < 1e-12


def test_mask_mean_and_aux(x64):
    """update_every=T with a mask and 'mean' is one step on the masked mean gradient; aux per step."""
    model, learner, xs, ys = setup()
    mask = jnp.asarray(np.arange(T)[:, None] < np.array([6, 3])[None, :])
    per_example = lambda o, y: (0.5 * jnp.sum((o - y) ** 2, -1), o)  # noqa: E731
    p0 = params_of(model)
    grads, (loss, _) = braintrace.online_gradients(learner, xs, ys, per_example, mask=mask, reduction="mean",
                                                   has_aux=True)
    opt = optax.sgd(0.3)
    want = optax.apply_updates(p0, opt.update(grads, opt.init(p0), p0)[0])
    got, _, (losses, outs) = braintrace.online_fit(learner, opt, xs, ys, per_example, update_every=T, mask=mask,
                                                   reduction="mean", has_aux=True)
    assert rel(got, want) < 1e-12
    assert outs.shape == (T, B, 2) and losses.shape == (T,)
    # per-step losses: the mean over the step's valid entries
    np.testing.assert_allclose(losses[4], float(jnp.sum(0.5 * (outs[4, 0] - ys[4, 0]) ** 2)), rtol=1e-12)


def test_errors():
    model, learner, xs, ys = setup()
    xs, ys = xs.astype(jnp.float32), ys.astype(jnp.float32)
    with pytest.raises(ValueError, match=r"6 steps is not a multiple of update_every=4"):
        braintrace.online_fit(learner, optax.sgd(0.1), xs, ys, loss_fn, update_every=4)
    with pytest.raises(ValueError, match=r"update_every must be a positive int"):
        braintrace.online_fit(learner, optax.sgd(0.1), xs, ys, loss_fn, update_every=0)
    with pytest.raises(TypeError, match=r"optax.GradientTransformation"):
        braintrace.online_fit(learner, "adam", xs, ys, loss_fn, update_every=2)
    with pytest.raises(TypeError, match=r"item 0 of the stream is a ndarray|item 0 of the stream is a Array"):
        braintrace.online_fit(learner, optax.sgd(0.1), iter([xs]), None, loss_fn, update_every=2)
    with pytest.raises(TypeError, match=r"targets=None"):
        braintrace.online_fit(learner, optax.sgd(0.1), iter([(xs, ys)]), ys, loss_fn, update_every=2)
    with pytest.raises(ValueError, match=r"chunk 1 of the stream: 3 steps"):
        braintrace.online_fit(learner, optax.sgd(0.1), iter([(xs[:2], ys[:2]), (xs[:3], ys[:3])]), None, loss_fn,
                              update_every=2)
