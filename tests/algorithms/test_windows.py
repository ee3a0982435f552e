"""Fused windows: a single-step learner fed ``MultiStepData`` windows advances its
traces once per window; its gradient must equal the step-by-step one exactly."""

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from algorithms.snn_models import LIFNet, f64, hidden, online_sum, restore, window_sum  # noqa: F401
from algorithms.test_primitive_learning import CASES, data as prim_data
from learning import online_grads, window_grads, x64, x64_mode  # noqa: F401

T = 6


def make_data(n_in=3, n_out=2, batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, n_in))
    targets = jnp.asarray(rng.randn(*lead, n_out))
    return xs, lambda out, t: 0.5 * jnp.sum((out - targets[t]) ** 2)


ZOO = {
    "gru": lambda b: O.make_gru(3, 4, 2, batch=b),
    "rnn": lambda b: O.make_rnn(3, 4, 2, batch=b),
    "leaky_decay": lambda b: O.make_leaky(3, 4, 2, batch=b, learn_decay=True),
    "adaptive_grouped": lambda b: O.make_adaptive(3, 4, 2, batch=b, grouped=True),
    "adaptive": lambda b: O.make_adaptive(3, 4, 2, batch=b),
}

LEARNERS = {
    "d_rtrl": lambda m: braintrace.D_RTRL(m),
    "es_d_rtrl": lambda m: braintrace.ES_D_RTRL(m, 0.8),
}


def reset(model, h0):
    O.set_hidden(model, h0)


_STEPWISE = {}


def stepwise_reference(name, learner):
    """``(gradient, traces after the sequence)`` of the step-by-step ``learner`` on ``ZOO[name](2)``
    over ``make_data(batch=2)``; computed once per module (several tests compare windows with it)."""
    if (name, learner) not in _STEPWISE:
        with x64_mode():
            model = ZOO[name](2)
            xs, loss = make_data(batch=2)
            stepwise_learner = LEARNERS[learner](model).compile_graph(xs[0])
            grads, _ = online_grads(stepwise_learner, xs, loss)
            traces = {k: v.value for k, v in stepwise_learner.etraces.items()}
        _STEPWISE[name, learner] = grads, traces
    return _STEPWISE[name, learner]


@pytest.mark.parametrize("learner", list(LEARNERS))
@pytest.mark.parametrize(
    "name,K", [("gru", 2), ("gru", 6), ("rnn", 3), ("leaky_decay", 3), ("adaptive_grouped", 2), ("adaptive", 3)]
)
def test_window_equals_step_by_step(x64, name, learner, K):
    stepwise, traces_after = stepwise_reference(name, learner)
    model = ZOO[name](2)  # the same model, from the same start
    xs, loss = make_data(batch=2)
    windowed_learner = LEARNERS[learner](model).compile_graph(xs[0])
    windowed, _ = window_grads(windowed_learner, xs, loss, K)
    assert O.tree_max_rel_err(windowed, stepwise) < 1e-10
    # the traces after the sequence are the same too
    assert set(windowed_learner.etraces) == set(traces_after)
    for k, v in windowed_learner.etraces.items():
        assert O.tree_max_rel_err(v.value, traces_after[k]) < 1e-10
    assert int(windowed_learner.step_count.value) == T


# conv_nchw and sparse_coo are left out here: a window stacks the same per-primitive rule as the
# single step; the NCHW layout and the COO format reach that rule as NHWC and CSR do (their rules
# are checked against the full Jacobian in tests/primitives/test_conv.py and test_sparse.py), and
# NCHW in D_RTRL windows is test_primitive_learning::test_multi_step_windows_equal_hybrid_reference.
WINDOW_CASES = [c for c in CASES if c not in ("conv_nchw", "sparse_coo")]


@pytest.mark.parametrize("learner", list(LEARNERS))
@pytest.mark.parametrize("case", WINDOW_CASES)
def test_window_equals_step_by_step_for_every_primitive(x64, case, learner):
    make, xshape = CASES[case]
    model = make(True, 2)
    xs, loss = prim_data(model, xshape, 2)
    h0 = O.get_hidden(model)
    stepwise, _ = online_grads(LEARNERS[learner](model).compile_graph(xs[0]), xs, loss)
    reset(model, h0)
    windowed, _ = window_grads(LEARNERS[learner](model).compile_graph(xs[0]), xs, loss, 2)
    assert O.tree_max_rel_err(windowed, stepwise) < 1e-10


@pytest.mark.parametrize("learner", list(LEARNERS))
def test_online_gradients_window_option_matches_and_checks_divisibility(learner):
    cell = braintrace.nn.GRUCell(3, 5)
    brainstate.nn.init_all_states(cell, batch_size=2)
    learner = LEARNERS[learner](cell)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learner.compile_graph(jnp.zeros((2, 3)))
    xs = jnp.asarray(np.random.RandomState(0).randn(8, 2, 3), jnp.float32)
    ys = jnp.zeros((8, 2, 5))

    def loss(o, y):
        return jnp.mean((o - y) ** 2)

    from braintrace.training.gradients import resolve_window

    auto = lambda T: resolve_window("test", learner, "auto", T, False)  # noqa: E731
    assert auto(8) == 8 and auto(67) is None  # divisors of T only
    # float32 products at full precision (GPUs default to TF32, ~1e-3 relative)
    with jax.default_matmul_precision("highest"):
        g1, l1 = braintrace.online_gradients(learner, xs, ys, loss, batch_size=2, window=None)
        for window in ("auto", 4):
            g2, l2 = braintrace.online_gradients(learner, xs, ys, loss, batch_size=2, window=window)
            err = O.tree_max_rel_err(g2, g1)
            assert err < 1e-4, (window, err)
            assert abs(float(l1) - float(l2)) < 1e-5
    with pytest.raises(ValueError, match="divisor"):
        braintrace.online_gradients(learner, xs, ys, loss, batch_size=2, window=3)


@pytest.mark.parametrize("learner", list(LEARNERS))
def test_unrolled_window_scan_gives_the_same_gradient(x64, monkeypatch, learner):
    """On accelerators a window's loops are unrolled (CI has none: force it here)."""
    from braintrace.algorithms import exact_traces
    from braintrace.executor import driver

    # against the step-by-step gradient (which the rolled window equals: test_window_equals_step_by_step)
    stepwise, _ = stepwise_reference("gru", learner)
    model = ZOO["gru"](2)
    xs, loss = make_data(batch=2)
    # 6 steps: one unrolled block of 4, remainder 2 (the forward scan; D_RTRL's propagators and adjoints)
    for module in (driver, exact_traces):
        monkeypatch.setattr(module, "window_unroll", lambda K, **_: min(int(K), 4))
    unrolled, _ = window_grads(LEARNERS[learner](model).compile_graph(xs[0]), xs, loss, 6)
    assert O.tree_max_rel_err(unrolled, stepwise) < 1e-10


@pytest.mark.parametrize("learner", list(LEARNERS))
def test_window_keeps_parameter_only_residuals_once(f64, learner):
    """LIF layer and leaky readout: the readout weight is a residual of every step's
    linearisation (the learning signal's tangent goes through ``s @ W_out``), reached through
    the readout's own computation rather than as the parameter itself. It depends on the
    parameters only, so a window keeps it once instead of stacking it per step (a per-step
    copy, and a batched product instead of one matrix product in the backward pass)."""
    K = 3
    model = LIFNet(batch=2)
    xs = jnp.asarray(np.random.RandomState(2).randn(T, 2, 6) + 0.5)
    targets = jnp.asarray(np.random.RandomState(3).randn(T, 2, 2))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    h0 = hidden(model)
    stepwise, _ = online_sum(LEARNERS[learner](model).compile_graph(xs[0]), xs, loss)
    restore(model, h0)
    windowed_learner = LEARNERS[learner](model).compile_graph(xs[0])
    windowed, _ = window_sum(windowed_learner, xs, loss, K)
    assert O.tree_max_rel_err(windowed, stepwise) < 1e-10

    recorded = [shape for key in windowed_learner.driver.residuals.recorded for shape, _ in key[1]]
    param_shapes = [jnp.shape(v) for v in jax.tree.leaves({k: st.value for k, st in model.states(brainstate.ParamState).items()})]
    assert jnp.shape(model.readout.W.value) in recorded  # kept once
    assert not [s for s in param_shapes if (K,) + s in recorded]  # no parameter stacked per step


@pytest.mark.parametrize("learner", list(LEARNERS))
def test_layout_pinned_window_gives_the_same_gradient(x64, monkeypatch, learner):
    """On accelerators a window's stacked inputs are pinned to the row-major layout
    (``window_local``; CI has none: force it here). The pin must be in the program and
    change no gradient."""
    import functools

    from braintrace.executor import driver, loops

    # against the step-by-step gradient (which the unpinned window equals: test_window_equals_step_by_step)
    stepwise, _ = stepwise_reference("gru", learner)
    model = ZOO["gru"](2)
    xs, loss = make_data(batch=2)
    pins = []
    constrain = loops.with_layout_constraint

    def counted(v, layout):
        pins.append(layout.major_to_minor)
        return constrain(v, layout)

    monkeypatch.setattr(loops, "with_layout_constraint", counted)
    monkeypatch.setattr(driver, "window_local", functools.partial(loops.window_local, pin=True))
    pinned, _ = window_grads(LEARNERS[learner](model).compile_graph(xs[0]), xs, loss, 3)
    assert pins and all(m == tuple(range(len(m))) for m in pins)  # row-major, one per stacked input
    assert O.tree_max_rel_err(pinned, stepwise) < 1e-10


def test_window_loops_of_large_steps_are_not_unrolled(monkeypatch):
    """Unrolling multiplies the compile time of a window's loop: only small steps are unrolled."""
    from braintrace.executor import loops

    with monkeypatch.context() as patch:
        patch.setattr(loops.jax, "default_backend", lambda: "gpu")
        assert loops.window_unroll(32) == loops.ACCELERATOR_UNROLL
        assert loops.window_unroll(4) == 4
        assert loops.window_unroll(32, step_size=loops.UNROLL_MAX_STEP_ELEMENTS) == loops.ACCELERATOR_UNROLL
        assert loops.window_unroll(32, step_size=loops.UNROLL_MAX_STEP_ELEMENTS + 1) == 1
    model = ZOO["gru"](2)
    xs, _ = make_data(batch=2)
    learner = braintrace.ES_D_RTRL(model, 0.9).compile_graph(xs[0])
    size = learner.driver.step_size
    assert size == loops.step_elements(learner.graph.module_info.jaxpr) and 0 < size < 10_000
