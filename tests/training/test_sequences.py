"""Sequence drivers: masks, reductions, per-step outputs, runs without gradients.

Gradient claims are checked against BPTT through the same masked loss
(``bptt_gradients``, whose freezing of finished sequences is plain JAX
differentiated by JAX) on models whose cut Jacobian is element-wise, where
D_RTRL must equal BPTT, in float64; the freezing itself against runs of the
truncated sequences.
"""

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from learning import x64  # noqa: F401

T, B = 7, 3
LENGTHS = (7, 4, 2)

MODELS = {
    "leaky_decay": lambda: O.make_leaky(3, 4, 2, batch=B, learn_decay=True),
    "adaptive": lambda: O.make_adaptive(3, 4, 2, batch=B),
}


def data(seed=0, lengths=LENGTHS):
    rng = np.random.RandomState(seed)
    xs = jnp.asarray(rng.randn(T, B, 3))
    ys = jnp.asarray(rng.randn(T, B, 2))
    mask = jnp.asarray(np.arange(T)[:, None] < np.asarray(lengths)[None, :])
    return xs, ys, mask


def per_example(o, y):
    return 0.5 * jnp.sum((o - y) ** 2, axis=-1)


def rel(a, b):
    return O.tree_max_rel_err(a, b)


def set_hidden(model, h0):
    O.set_hidden(model, h0)


# each model and each reduction once: the reduction is applied to the summed masked loss the
# same way whatever the model (test_mean_is_sum_over_the_count ties 'mean' to 'sum' on 'adaptive')
@pytest.mark.parametrize("name,reduction", [("leaky_decay", "sum"), ("adaptive", "mean")])
def test_masked_online_equals_masked_bptt(x64, name, reduction):
    model = MODELS[name]()
    xs, ys, mask = data()
    assert xs.dtype == jnp.float64
    h0 = O.get_hidden(model)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    bptt, bptt_loss = braintrace.bptt_gradients(model, xs, ys, per_example, mask=mask, reduction=reduction, reset=False)
    online, online_loss = braintrace.online_gradients(learner, xs, ys, per_example, mask=mask, reduction=reduction)
    assert rel(online, bptt) < 1e-10
    assert abs(float(online_loss - bptt_loss)) < 1e-10 * abs(float(bptt_loss))
    # not trivially equal: the mask changes the gradient
    set_hidden(model, h0)
    full, _ = braintrace.bptt_gradients(model, xs, ys, per_example, reset=False)
    assert rel(full, bptt) > 1e-3


def test_masked_gradient_equals_truncated_sequences(x64):
    """Each element's masked gradient is the gradient of its sequence cut at its length."""
    model = MODELS["leaky_decay"]()
    xs, ys, mask = data()
    h0 = O.get_hidden(model)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    got, _ = braintrace.online_gradients(learner, xs, ys, per_example, mask=mask)
    want = None
    for b, n in enumerate(LENGTHS):
        only_b = mask * (jnp.arange(B) == b)[None, :]
        g, _ = braintrace.online_gradients(learner, xs[:n], ys[:n], per_example, mask=only_b[:n])
        want = g if want is None else jax.tree.map(jnp.add, want, g)
    assert rel(got, want) < 1e-10
    set_hidden(model, h0)


@pytest.mark.parametrize("make", [lambda m: braintrace.D_RTRL(m), lambda m: braintrace.ES_D_RTRL(m, 0.8)],
                         ids=["d_rtrl", "es_d_rtrl"])
def test_finished_sequences_do_not_drift(x64, make):
    """After the run, element ``b``'s hidden state and traces are those after its ``LENGTHS[b]`` steps."""
    model = MODELS["adaptive"]()
    xs, ys, mask = data()
    learner = make(model).compile_graph(xs[0])
    braintrace.online_gradients(learner, xs, ys, per_example, mask=mask)
    masked_h = O.get_hidden(model)
    masked_tr = {k: v.value for k, v in learner.etraces.items()}
    for b, n in enumerate(LENGTHS):
        if n == T:  # the run above itself
            continue
        braintrace.online_gradients(learner, xs[:n], ys[:n], per_example, mask=mask[:n])
        for k, v in O.get_hidden(model).items():
            np.testing.assert_array_equal(masked_h[k][b], v[b])
        for k, st in learner.etraces.items():
            jax.tree.map(lambda a, c: np.testing.assert_allclose(a[b], c[b], rtol=1e-12, atol=1e-14),
                         masked_tr[k], st.value)


def test_a_gap_in_the_mask_skips_those_steps(x64):
    """A mask 1,1,0,0,1,... skips the zero steps: the same gradient as the sequence without them (D_RTRL)."""
    model = O.make_leaky(3, 4, 2, batch=None, learn_decay=True)
    rng = np.random.RandomState(3)
    xs, ys = jnp.asarray(rng.randn(T, 3)), jnp.asarray(rng.randn(T, 2))
    keep = np.array([1, 1, 0, 0, 1, 1, 1], bool)
    loss = lambda o, y: 0.5 * jnp.sum((o - y) ** 2)  # noqa: E731
    h0 = O.get_hidden(model)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    got, got_loss = braintrace.online_gradients(learner, xs, ys, loss, mask=jnp.asarray(keep))
    want, want_loss = braintrace.online_gradients(learner, xs[keep], ys[keep], loss)
    assert rel(got, want) < 1e-10 and abs(float(got_loss - want_loss)) < 1e-10
    set_hidden(model, h0)
    bptt, _ = braintrace.bptt_gradients(model, xs, ys, loss, mask=jnp.asarray(keep), reset=False)
    assert rel(bptt, want) < 1e-10


def test_mean_is_sum_over_the_count(x64):
    model = MODELS["adaptive"]()
    xs, ys, mask = data()
    learner = braintrace.ES_D_RTRL(model, 0.8).compile_graph(xs[0])
    s, ls = braintrace.online_gradients(learner, xs, ys, per_example, mask=mask, reduction="sum")
    m, lm = braintrace.online_gradients(learner, xs, ys, per_example, mask=mask, reduction="mean")
    n = float(jnp.sum(mask))
    assert rel(m, jax.tree.map(lambda g: g / n, s)) < 1e-12 and abs(float(lm - ls / n)) < 1e-12
    # without a mask, 'mean' averages over the steps and every entry of the loss
    elementwise = lambda o, y: (o - y) ** 2  # noqa: E731
    m, lm = braintrace.online_gradients(learner, xs, ys, elementwise, reduction="mean", window=None)
    s, ls = braintrace.online_gradients(learner, xs, ys, lambda o, y: jnp.sum(elementwise(o, y)))
    assert rel(m, jax.tree.map(lambda g: g / ys.size, s)) < 1e-12 and abs(float(lm - ls / ys.size)) < 1e-12


def test_has_aux_returns_every_step(x64):
    """Step by step and in one window of T: the aux of every step, against one plain run and online_evolve."""
    model = MODELS["leaky_decay"]()
    xs, ys, _ = data()
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    plain, plain_loss = braintrace.online_gradients(learner, xs, ys, per_example, window=None)
    outs = braintrace.online_evolve(learner, xs, window=None)
    for window in (None, 7):
        grads, (loss, aux) = braintrace.online_gradients(
            learner, xs, ys, lambda o, y: (jnp.sum(per_example(o, y)), {"out": o, "err": per_example(o, y)}),
            has_aux=True, window=window)
        assert rel(grads, plain) < 1e-10 and abs(float(loss - plain_loss)) < 1e-10
        np.testing.assert_allclose(aux["out"], outs, rtol=1e-12)
        assert aux["err"].shape == (T, B)
        np.testing.assert_allclose(jnp.sum(aux["err"]), loss, rtol=1e-12)


def test_bptt_has_aux(x64):
    model = MODELS["leaky_decay"]()
    xs, ys, mask = data()
    h0 = O.get_hidden(model)
    g1, l1 = braintrace.bptt_gradients(model, xs, ys, per_example, mask=mask, reset=False)
    set_hidden(model, h0)
    g2, (l2, outs) = braintrace.bptt_gradients(model, xs, ys, lambda o, y: (per_example(o, y), o), mask=mask,
                                               has_aux=True, reset=False)
    assert rel(g1, g2) == 0 and float(l1) == float(l2) and outs.shape == (T, B, 2)


def test_evaluate_and_evolve_match_the_gradient_drivers(x64):
    model = MODELS["adaptive"]()
    xs, ys, mask = data()
    h0 = O.get_hidden(model)
    learner = braintrace.ES_D_RTRL(model, 0.8).compile_graph(xs[0])
    _, loss = braintrace.online_gradients(learner, xs, ys, per_example, mask=mask, reduction="mean")
    traces = {k: v.value for k, v in learner.etraces.items()}
    hidden = O.get_hidden(model)
    assert abs(float(braintrace.evaluate(learner, xs, ys, per_example, mask=mask, reduction="mean") - loss)) < 1e-12
    # the traces advanced exactly as under online_gradients
    for k, st in learner.etraces.items():
        assert rel(st.value, traces[k]) < 1e-12
    assert rel(O.get_hidden(model), hidden) < 1e-12
    set_hidden(model, h0)
    on_model = braintrace.evaluate(model, xs, ys, per_example, mask=mask, reduction="mean", reset=False)
    assert abs(float(on_model - loss)) < 1e-12
    # online_evolve: the model's outputs, the traces advanced, step_count counted
    outs = braintrace.online_evolve(learner, xs)
    set_hidden(model, h0)
    want = brainstate.transform.for_loop(model, xs)
    np.testing.assert_allclose(outs, want, rtol=1e-12)
    assert int(learner.step_count.value) == T


def test_evolve_then_continue_equals_one_run(x64):
    """A warm-up by online_evolve, then gradients with reset=False: the traces carry over."""
    model = MODELS["leaky_decay"]()
    xs, ys, _ = data()
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    loss = lambda o, y: jnp.sum(per_example(o, y))  # noqa: E731
    braintrace.online_evolve(learner, xs[:3])
    cont, _ = braintrace.online_gradients(learner, xs[3:], ys[3:], loss, reset=False)
    # the same as one run whose first three steps weigh nothing (a mask would skip them instead)
    weight = (jnp.arange(T) >= 3).astype(xs.dtype)
    whole, _ = braintrace.online_gradients(learner, xs, (ys, weight), lambda o, yw: yw[1] * loss(o, yw[0]))
    assert rel(cont, whole) < 1e-10


def test_mask_errors():
    model = O.make_leaky(3, 4, 2, batch=B)
    xs, ys, mask = data()
    xs, ys = xs.astype(jnp.float32), ys.astype(jnp.float32)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    summed = lambda o, y: jnp.sum((o - y) ** 2)  # noqa: E731
    with pytest.raises(ValueError, match=r"one loss per batch element"):
        braintrace.online_gradients(learner, xs, ys, summed, mask=mask)
    with pytest.raises(ValueError, match=r"`mask` has shape \(6, 3\)"):
        braintrace.online_gradients(learner, xs, ys, per_example, mask=mask[:6])
    with pytest.raises(ValueError, match=r"window=7 with a `mask`"):
        braintrace.online_gradients(learner, xs, ys, per_example, mask=mask, window=7)
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        braintrace.online_gradients(learner, xs, ys, per_example, reduction="avg")
    with pytest.raises(TypeError, match=r"pair \(loss, aux\)"):
        braintrace.online_gradients(learner, xs, ys, per_example, has_aux=True)
    with pytest.raises(ValueError, match=r"one loss per batch element"):
        braintrace.bptt_gradients(model, xs, ys, summed, mask=mask, reset=False)


def test_step_mask_on_unbatched_model_in_float32():
    model = O.make_leaky(3, 4, 2, batch=None)
    rng = np.random.RandomState(0)
    xs, ys = jnp.asarray(rng.randn(T, 3), jnp.float32), jnp.asarray(rng.randn(T, 2), jnp.float32)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    loss = lambda o, y: jnp.sum((o - y) ** 2)  # noqa: E731
    got, _ = braintrace.online_gradients(learner, xs, ys, loss, mask=jnp.arange(T) < 5)
    want, _ = braintrace.online_gradients(learner, xs[:5], ys[:5], loss)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(got))
    assert rel(got, want) < 1e-5
