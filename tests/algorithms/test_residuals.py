"""``braintrace.executor.residuals``: which leaves of a window's linearised steps are kept per step.

Invariant leaves (parameters only) are kept once; derived leaves (cheap
functions of the kept leaves, the step's data and the parameters) are recomputed
after the scan. A wrong analysis would give wrong gradients: the window tests
compare every learner's windows with its single steps; here the analysis itself.
"""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import oracle as O
import pytest
from learning import online_grads, window_grads, x64  # noqa: F401

import braintrace
from algorithms.test_windows import LEARNERS, ZOO, make_data, reset
from braintrace.executor.residuals import analyse_residuals, derivable_outputs


def _jaxpr(fn, *args):
    return jax.make_jaxpr(fn)(*args).jaxpr


def _chain(x):
    a = jnp.tanh(x @ x)
    b = 1.0 - a
    return a, b, 2.0 * b


def test_a_chain_is_derived_from_its_first_kept_value():
    # b from a, c from b (the walk goes on through b, which is not kept)
    assert derivable_outputs(_jaxpr(_chain, jnp.ones((2, 2))), [], [True] * 3) == [False, True, True]


def test_what_cannot_be_derived():
    x = jnp.ones((2, 2))
    # element-wise functions are cheap (done once per window, batched), products are not
    assert derivable_outputs(_jaxpr(lambda x: (x, jnp.exp(x), x @ x), x), [], [True] * 3) == [False, True, False]
    # from a state that is not kept: no; once the state is a kept output: yes
    assert derivable_outputs(_jaxpr(lambda s: (2.0 * s,), x), [], [True]) == [False]
    assert derivable_outputs(_jaxpr(lambda s: (s, 2.0 * s), x), [], [True, True]) == [False, True]
    # from the data (free inputs): yes, even with no kept output
    j = _jaxpr(lambda s, d: (jnp.concatenate([d, 2.0 * d]), s * d), x, x)
    assert derivable_outputs(j, [j.invars[1]], [True, True]) == [True, False]
    # a non-candidate (kept once, e.g. invariant) is not a source
    assert derivable_outputs(_jaxpr(lambda s: (s, 2.0 * s), x), [], [False, True]) == [False, False]


def test_one_of_two_duplicates_is_kept():
    j = _jaxpr(_chain, jnp.ones((2, 2)))
    dup = jax.extend.core.Jaxpr(j.constvars, j.invars, [*j.outvars, j.outvars[0]], j.eqns, j.effects)
    flags = derivable_outputs(dup, [], [True] * 4)
    assert flags[1:3] == [True, True] and flags[0] != flags[3]  # b, c and one copy of a derived
    with pytest.raises(ValueError, match="2 flags for 4 outputs"):
        derivable_outputs(dup, [], [True, True])


def test_derived_values_are_the_leaves():
    """A GRU-like step linearised in its state: the recomputed leaves equal the ones it returns."""
    rng = np.random.RandomState(0)
    w = jnp.asarray(rng.randn(5, 3)), jnp.asarray(rng.randn(5, 3))
    h, x = jnp.asarray(rng.randn(2, 3)), jnp.asarray(rng.randn(2, 2))

    def leaves(params, h, x):
        def step(h):
            xh = jnp.concatenate([x, h], axis=-1)
            z, c = jax.nn.sigmoid(xh @ params[0]), jnp.tanh(xh @ params[1])
            return (1 - z) * h + z * c
        return jax.tree.leaves(jax.linearize(step, h)[1])

    res = analyse_residuals(leaves, w, h, x, n_data=1)
    assert any(res.derived) and not any(m and d for m, d in zip(res.mask, res.derived))
    actual = leaves(w, h, x)
    stacked = [v for v, k in zip(actual, res.stacked) if k]
    derived = res.derived_values(w, stacked, [x])
    expected = [v for v, d in zip(actual, res.derived) if d]
    assert len(derived) == len(expected) > 0
    for a, b in zip(derived, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.usefixtures("x64")
def test_gru_window_stacks_fewer_leaves_and_gives_the_same_gradient():
    """The GRU's step keeps ``[x, h]`` among its residuals, a concatenation of the data
    and another residual (``h``); with jax 0.10 also ``1 - tanh(.)`` and the new state."""
    model = ZOO["gru"](2)
    xs, loss = make_data(batch=2)
    h0 = O.get_hidden(model)
    stepwise, _ = online_grads(LEARNERS["es_d_rtrl"](model).compile_graph(xs[0]), xs, loss)
    reset(model, h0)
    learner = LEARNERS["es_d_rtrl"](model).compile_graph(xs[0])
    windowed, _ = window_grads(learner, xs, loss, 3)
    assert O.tree_max_rel_err(windowed, stepwise) < 1e-10
    (analysis,) = {id(a): a for _, a in learner.driver.residuals.recorded.values()}.values()
    # which residuals ``jax.linearize`` keeps depends on the JAX version (jax 0.11 keeps
    # ``1 - tanh(.)^2`` alone, not ``tanh(.)``, so the new state is no longer derivable);
    # ``[x, h]`` (batch 2, 3 inputs, 4 units) is derived from ``h`` and the data in any
    concat = [d for (shape, _), d in zip(analysis.avals, analysis.derived) if shape == (2, 7)]
    assert concat and all(concat)
    assert sum(analysis.stacked) < len(analysis.mask) - sum(analysis.mask)


def test_online_gradients_windows_equal_single_steps_in_float32():
    """``online_gradients`` with windows (which recompute the derived residuals) on a GRU
    cell in float32: the same gradient as one step at a time."""
    cell = braintrace.nn.GRUCell(3, 4)
    brainstate.nn.init_all_states(cell, batch_size=2)
    xs = jnp.asarray(np.random.RandomState(1).randn(8, 2, 3), jnp.float32)
    learner = braintrace.ES_D_RTRL(cell, 0.9).compile_graph(xs[0])
    ys = jnp.asarray(np.random.RandomState(2).randn(8, 2, 4), jnp.float32)

    def loss(out, y):
        return jnp.mean((out - y) ** 2)

    with jax.default_matmul_precision("highest"):
        g1, _ = braintrace.online_gradients(learner, xs, ys, loss, batch_size=2, window=None)
        g2, _ = braintrace.online_gradients(learner, xs, ys, loss, batch_size=2, window=4)
    assert O.tree_max_rel_err(g2, g1) < 1e-5
