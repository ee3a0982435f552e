"""The executor's full Jacobians (``braintrace.executor.influence``, ``.sparsity``) and the adjoint of
the old hidden state in the step's transposition, against plain ``jax`` derivatives of the oracle's step."""

import numpy as np

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from algorithms.influence_models import EarlyRNN
from braintrace.executor import InfluenceLayout
from braintrace.executor.sparsity import jacobian_pattern
from learning import x64  # noqa: F401


def tangent_of(model, x):
    graph = braintrace.compile_etrace_graph(model, x)
    ex = braintrace.ETraceVjpGraphExecutor(graph)
    layout = InfluenceLayout(graph)
    return graph, ex, layout, layout.linearize(ex.current_invals(x))


def test_layout_orders_and_reach():
    model = O.make_gru(3, 4, 2, seed=0, batch=2)
    graph = braintrace.compile_etrace_graph(model, jnp.zeros((2, 3)))
    layout = InfluenceLayout(graph)
    assert layout.num_hidden == 8  # B * n
    assert "w_out" not in layout.theta_names  # the read-out reaches no hidden state
    assert sorted(layout.theta_names) == sorted(f"{w}.{k}" for w in ("wh", "wr", "wz") for k in ("bias", "weight"))
    assert layout.num_params == 3 * (7 * 4 + 4)
    v = jnp.arange(8.0)
    np.testing.assert_array_equal(layout.ravel_hidden(layout.unravel_hidden(v)), v)


def test_jacobians_equal_jax_derivatives_of_the_step(x64):
    model = O.make_gru(3, 4, 2, seed=0)
    x = jnp.asarray([0.2, -0.4, 0.9])
    graph, ex, layout, tangent = tangent_of(model, x)
    J, M = tangent.jacobians()
    np.testing.assert_allclose(J, O.full_jacobian(model, x), rtol=1e-12, atol=1e-14)
    step = O.make_step(model)
    params, hidden = O.get_params(model), O.get_hidden(model)
    dM = jax.jacfwd(lambda p: step(p, hidden, x)[1][("h",)])(params)
    start = 0
    for name, shape, n in zip(layout.theta_names, layout.theta_shapes, layout.theta_sizes):
        path, key = name.split(".")
        np.testing.assert_allclose(M[:, start: start + n], dM[(path,)][key].reshape(4, n), rtol=1e-12, atol=1e-14)
        start += n
    # the influence update, the forward and the transposed maps agree with the dense matrices
    rng = np.random.RandomState(0)
    P = jnp.asarray(rng.randn(layout.num_params, 4))
    np.testing.assert_allclose(tangent.propagate(P), P @ J.T + M.T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tangent.propagate(P, batch_size=7), P @ J.T + M.T, rtol=1e-12, atol=1e-13)
    rows = jnp.asarray(np.tile([[2, 4]], (layout.num_params, 1)))  # keep h_2 (4 pads)
    kept = tangent.propagate_on(P[:, 2:3], rows)
    np.testing.assert_allclose(kept[:, 0], P[:, 2] * J[2, 2] + M[2], rtol=1e-12, atol=1e-13)
    ct = jnp.asarray(rng.randn(4))
    ct_h, ct_t = tangent.vjp(ct)
    np.testing.assert_allclose(ct_h, J.T @ ct, rtol=1e-12)
    np.testing.assert_allclose(ct_t, M.T @ ct, rtol=1e-12)


def test_transpose_gives_the_adjoint_of_the_old_state(x64):
    """``delta_old + delta_prev`` is ``∂L/∂h^{t-1}``, bypass reads included."""
    model = EarlyRNN()
    x = jnp.asarray([0.5, -1.0, 0.3])
    graph = braintrace.compile_etrace_graph(model, x)
    assert graph.bypass_paths == (("h",),)
    ex = braintrace.ETraceVjpGraphExecutor(graph)
    outvals, _, lin = ex.linearize(ex.current_invals(x), (), old_hidden=True)
    ct_out = jnp.asarray([1.0, -2.0])
    cts = [ct_out] + [None] * (len(outvals) - 1)
    _, delta, delta_prev, delta_old = ex.transpose(lin, cts, (), old_hidden=True)
    step = O.make_step(model)
    ref = jax.grad(lambda h: step(O.get_params(model), {("h",): h}, x)[0] @ ct_out)(model.h.value)
    np.testing.assert_allclose(delta_old[("h",)] + delta_prev[("h",)], ref, rtol=1e-12)
    assert float(jnp.max(jnp.abs(delta_prev[("h",)]))) > 1e-3  # the bypass part is there
    plain = ex.linearize(ex.current_invals(x), ())[2]
    assert len(ex.transpose(plain, cts, ())) == 3  # without the flag: the three usual results


def test_pattern_is_structural_not_numerical(x64):
    """A ReLU closed at the example point zeroes the numerical Jacobian, not the pattern."""

    class Relu(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.U = brainstate.ParamState(jnp.ones((3, 3)))
            self.W = brainstate.ParamState(jnp.ones((2, 3)))
            self.h = brainstate.HiddenState(-jnp.ones(3))

        def update(self, x):
            self.h.value = jax.nn.relu(self.h.value @ self.U.value + braintrace.matmul(x, self.W.value))
            return self.h.value

    model = Relu()
    _, _, layout, tangent = tangent_of(model, jnp.zeros(2))
    J, M = tangent.jacobians()
    assert float(jnp.max(jnp.abs(J))) == 0.0 and float(jnp.max(jnp.abs(M))) == 0.0
    Jp, Mp = jacobian_pattern(tangent)
    assert Jp.all()  # every unit reads every unit through U
    start = 0
    for name, n in zip(layout.theta_names, layout.theta_sizes):
        cols = Mp[:, start: start + n].reshape(3, -1, 3)  # (unit, row of the weight, column)
        assert (cols == np.eye(3, dtype=bool)[:, None, :]).all(), name  # column i reaches unit i
        start += n
