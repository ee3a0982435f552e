"""D_RTRL against the oracle (DESIGN.md §4): BPTT on element-wise models, the
diagonal RTRL reference on coupled ones, on single steps and on windows."""

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from learning import online_grads, window_grads, x64, x64_mode  # noqa: F401

T = 5
N_IN, N_H, N_OUT = 3, 4, 2

MAKERS = {
    "leaky": lambda **kw: O.make_leaky(N_IN, N_H, N_OUT, seed=0, **kw),
    "leaky_decay": lambda **kw: O.make_leaky(N_IN, N_H, N_OUT, seed=0, learn_decay=True, **kw),
    "adaptive": lambda **kw: O.make_adaptive(N_IN, N_H, N_OUT, seed=0, **kw),
    "adaptive_grouped": lambda **kw: O.make_adaptive(N_IN, N_H, N_OUT, seed=0, grouped=True, **kw),
    "rnn": lambda **kw: O.make_rnn(N_IN, N_H, N_OUT, seed=0, **kw),
    "gru": lambda **kw: O.make_gru(N_IN, N_H, N_OUT, seed=0, **kw),
}
EXACT = ["leaky", "leaky_decay", "adaptive", "adaptive_grouped"]
COUPLED = ["rnn", "gru"]


def make_data(seed=1, batch=None, steps=T):
    rng = np.random.RandomState(seed)
    lead = (steps,) if batch is None else (steps, batch)
    xs = jnp.asarray(rng.randn(*lead, N_IN))
    targets = jnp.asarray(rng.randn(*lead, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, loss


def online_set(graph):
    """The oracle's ``online`` spec for the learner's relations."""
    out = set()
    for r in graph.hidden_param_op_relations:
        for _, leaves in r.param_sources:
            for path, key in leaves:
                out.add(path if key == () else (path, key[0]))
    return out


def rel(a, b):
    return O.tree_max_rel_err(a, b)


def assert_dtype(tree, dtype):
    for leaf in jax.tree.leaves(tree):
        assert jnp.result_type(leaf) == dtype


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("name", EXACT)
def test_equals_bptt_on_elementwise_models_float64(x64, name, batch):
    model = MAKERS[name](batch=batch)
    xs, loss = make_data(batch=batch)
    ref, ref_loss = O.bptt_grads(model, xs, loss)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    got, got_loss = online_grads(learner, xs, loss)
    assert_dtype(got, jnp.float64)
    assert rel(got, ref) < 1e-10
    assert abs(float(got_loss) - float(ref_loss)) < 1e-10


@pytest.mark.parametrize("name", EXACT)
def test_equals_bptt_on_elementwise_models_float32(name):
    model = MAKERS[name]()
    xs, loss = make_data()
    xs = xs.astype(jnp.float32)
    ref, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    got, _ = online_grads(learner, xs, loss)
    assert_dtype(got, jnp.float32)
    assert rel(got, ref) < 1e-5


@pytest.mark.parametrize("name", COUPLED)
def test_equals_diagonal_reference_on_coupled_models(x64, name):
    model = MAKERS[name]()
    xs, loss = make_data()
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    online = online_set(learner.graph)
    ref, _ = O.rtrl_reference(model, xs, loss, mode="diagonal", online=online)
    bptt, _ = O.bptt_grads(model, xs, loss)
    got, _ = online_grads(learner, xs, loss)
    assert rel(got, ref) < 1e-10
    assert rel(got, bptt) > 1e-3  # the rule is an approximation here: the test can tell


@pytest.mark.parametrize("name", COUPLED)
def test_equals_diagonal_reference_batched(x64, name):
    model = MAKERS[name](batch=3)
    xs, loss = make_data(batch=3)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    ref, _ = O.rtrl_reference(model, xs, loss, mode="diagonal", online=online_set(learner.graph))
    got, _ = online_grads(learner, xs, loss)
    assert rel(got, ref) < 1e-10


def test_single_step_window(x64):
    """One step: the online gradient is the instantaneous one (plus nothing)."""
    model = MAKERS["gru"]()
    xs, loss = make_data(steps=1)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    ref, _ = O.bptt_grads(model, xs, loss)
    got, _ = online_grads(learner, xs, loss)
    assert rel(got, ref) < 1e-10


@pytest.fixture(scope="module")
def gru_d_rtrl():
    """``(learner, gradient)``: D_RTRL on the unbatched GRU over ``make_data()`` in float64, run once
    for the tests that compare it with another reference (the model is back at its start after)."""
    with x64_mode():
        model = MAKERS["gru"]()
        xs, loss = make_data()
        h0 = O.get_hidden(model)
        learner = braintrace.D_RTRL(model).compile_graph(xs[0])
        got, _ = online_grads(learner, xs, loss)
        O.set_hidden(model, h0)
    return learner, got


def test_gru_relations_and_excluded_weight_gets_instantaneous_gradient(x64, gru_d_rtrl):
    learner, got = gru_d_rtrl
    model = learner.model
    xs, loss = make_data()
    weights = sorted(r.weight_path for r in learner.graph.hidden_param_op_relations)
    assert weights == [("wh",), ("wz",)]
    # with no online weight at all the reference is Σ_t instantaneous gradients
    inst, _ = O.instantaneous_grads(model, xs, loss)
    assert rel(got[("wr",)], inst[("wr",)]) < 1e-10
    assert rel(got[("w_out",)], inst[("w_out",)]) < 1e-10
    assert rel(got[("wz",)], inst[("wz",)]) > 1e-3


# K = 1 (windows of one step) on the GRU only: the window length changes nothing model-specific
# (rnn and adaptive run K = 2, uneven windows 2+2+1, and K = T).
@pytest.mark.parametrize(
    "name,K", [("gru", 1), ("gru", 2), ("gru", 5), ("rnn", 2), ("rnn", 5), ("adaptive", 2), ("adaptive", 5)]
)
def test_multi_step_equals_hybrid_reference(x64, name, K):
    model = MAKERS[name]()
    xs, loss = make_data()
    learner = braintrace.D_RTRL(model, vjp_method="multi-step").compile_graph(xs[0])
    online = online_set(learner.graph)
    ref, _ = O.rtrl_reference(model, xs, loss, mode="diagonal", online=online, windows=K)
    bptt, _ = O.bptt_grads(model, xs, loss)
    got, _ = window_grads(learner, xs, loss, K)
    assert rel(got, ref) < 1e-10
    if K == T:
        assert rel(got, bptt) < 1e-10


def test_single_step_learner_on_a_window_sums_single_steps(x64):
    model = MAKERS["gru"]()
    xs, loss = make_data()
    h0 = O.get_hidden(model)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    stepwise, _ = online_grads(learner, xs, loss)
    O.set_hidden(model, h0)
    learner.reset_state()
    windowed, _ = window_grads(learner, xs, loss, T)
    assert rel(windowed, stepwise) < 1e-10


def test_fast_solve_false_matches_fast_path(x64, gru_d_rtrl):
    _, fast = gru_d_rtrl
    model = MAKERS["gru"]()  # the same model, from the same start
    xs, loss = make_data()
    slow, _ = online_grads(braintrace.D_RTRL(model, fast_solve=False).compile_graph(xs[0]), xs, loss)
    assert rel(fast, slow) < 1e-10


def test_trace_dtype_bfloat16_close_to_float32():
    model = MAKERS["gru"]()
    xs, loss = make_data()
    xs = xs.astype(jnp.float32)
    h0 = O.get_hidden(model)
    full, _ = online_grads(braintrace.D_RTRL(model).compile_graph(xs[0]), xs, loss)
    O.set_hidden(model, h0)
    learner = braintrace.D_RTRL(model, trace_dtype=jnp.bfloat16).compile_graph(xs[0])
    low, _ = online_grads(learner, xs, loss)
    assert all(v.dtype == jnp.bfloat16 for st in learner.etraces.values() for v in jax.tree.leaves(st.value))
    assert_dtype(low, jnp.float32)
    assert rel(low, full) < 1e-2


def test_vmap_over_unbatched_learner_equals_batched_model(x64):
    """brainstate.transform.vmap of an unbatched learner gives the batched model's gradients."""
    B = 3
    xs, loss_b = make_data(batch=B)
    batched = MAKERS["gru"](batch=B)
    ref, _ = O.rtrl_reference(batched, xs, loss_b, mode="diagonal", online={("wz",), ("wh",)})

    single = MAKERS["gru"]()
    learner = braintrace.D_RTRL(single).compile_graph(xs[0, 0])
    params = single.states(brainstate.ParamState)
    states = [st for st in learner.states().values() if not isinstance(st, brainstate.ParamState)]
    for st in states:
        st.value = jax.tree.map(lambda v: jnp.broadcast_to(v, (B,) + jnp.shape(v)), st.value)
    single.h.value = O.get_hidden(batched)[("h",)]
    run = brainstate.transform.vmap(lambda x: learner(x), in_states=states, out_states=states)
    # the primitive keeps its identity under vmap: the batched ETP primitive is bound
    gfn = brainstate.transform.jit(brainstate.transform.grad(lambda x, t: loss_b(run(x), t), params))
    acc = None
    for t in range(T):
        g = gfn(xs[t], jnp.asarray(t))
        acc = g if acc is None else jax.tree.map(jnp.add, acc, g)
    assert rel(acc, ref) < 1e-10


# -- bad input ------------------------------------------------------------------


def test_call_before_compile_is_a_clear_error():
    learner = braintrace.D_RTRL(MAKERS["leaky"]())
    with pytest.raises(braintrace.NotCompiledError, match="compile_graph"):
        learner(jnp.zeros(N_IN))


def test_batch_size_differing_from_compiled_is_a_clear_error():
    learner = braintrace.D_RTRL(MAKERS["leaky"]()).compile_graph(jnp.zeros(N_IN))
    with pytest.raises(ValueError, match="batch size"):
        learner(jnp.zeros((2, N_IN)))


def test_bad_vjp_method():
    with pytest.raises(ValueError, match="vjp_method"):
        braintrace.D_RTRL(MAKERS["leaky"](), vjp_method="many-steps")


def test_get_etrace_of_and_show_graph(capsys):
    model = MAKERS["gru"]()
    learner = braintrace.D_RTRL(model).compile_graph(jnp.zeros(N_IN))
    tr = learner.get_etrace_of(model.wz)
    (val,) = tr.values()
    assert val["weight"].shape == (N_IN + N_H, N_H, 1)
    assert val["bias"].shape == (N_H, 1)
    with pytest.raises(ValueError, match="not learned online"):
        learner.get_etrace_of(("wr",))
    learner.show_graph()
    assert "wz" in capsys.readouterr().out


def test_compile_graph_is_idempotent():
    model = MAKERS["gru"]()
    learner = braintrace.D_RTRL(model).compile_graph(jnp.zeros(N_IN))
    graph = learner.graph
    traces = dict(learner.etraces)
    learner.compile_graph(jnp.zeros(N_IN))
    assert learner.graph is graph
    assert all(learner.etraces[k] is v for k, v in traces.items())
