"""Hidden groups and their exact per-position Jacobian blocks (checked against the oracle)."""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintrace
import oracle as O
from learning import x64_mode
from braintrace import DiagnosticKind


class PlainRecurrence(brainstate.nn.Module):
    """``h = tanh(h @ M + matmul(x, W))`` with ``M`` a plain parameter: the cut
    transition mixes positions, so its blocks must be computed exactly."""

    def __init__(self, n_in=3, n=4, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.m = brainstate.ParamState(jnp.asarray(rng.randn(n, n) * 0.5))
        self.w = brainstate.ParamState(jnp.asarray(rng.randn(n_in, n) * 0.5))
        shape = (n,) if batch is None else (batch, n)
        self.h = brainstate.HiddenState(jnp.asarray(rng.randn(*shape) * 0.5))

    def update(self, x):
        self.h.value = jnp.tanh(self.h.value @ self.m.value + braintrace.matmul(x, self.w.value))
        return self.h.value


MODELS = {
    "leaky": lambda b: O.make_leaky(3, 4, 2, batch=b),
    "gru": lambda b: O.make_gru(3, 4, 2, batch=b),
    "adaptive": lambda b: O.make_adaptive(3, 4, 2, batch=b),
    "adaptive_grouped": lambda b: O.make_adaptive(3, 4, 2, batch=b, grouped=True),
    "plain_recurrence": lambda b: PlainRecurrence(batch=b),
}


def blocks_as_matrix(model, graph, D_by_group):
    """Scatter the per-position blocks into the oracle's flat hidden layout."""
    layout = {path: (sl, shape) for path, sl, shape, _ in O.hidden_layout(model)}
    n = sum(sl.stop - sl.start for sl, _ in layout.values())
    J = np.zeros((n, n))
    for g in graph.hidden_groups:
        D = np.asarray(D_by_group[g.index])
        P = int(np.prod(g.varshape)) if g.varshape else 1
        D = D.reshape(P, g.num_state, g.num_state)
        # slot -> (path, index within the trailing axis)
        slots = []
        for path, k, ax in zip(g.hidden_paths, g.member_num_states, g.member_state_axis):
            slots += [(path, j if ax else None) for j in range(k)]

        def flat(p, slot):
            path, j = slots[slot]
            sl, shape = layout[path]
            local = p if j is None else p * shape[-1] + j
            return sl.start + local

        for p in range(P):
            for s in range(g.num_state):
                for t in range(g.num_state):
                    J[flat(p, s), flat(p, t)] = D[p, s, t]
    return J


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("name", list(MODELS))
def test_blocks_equal_jacrev_of_the_cut_transition(name, batch):
    with x64_mode():
        model = MODELS[name](batch)
        x = jnp.asarray(np.random.RandomState(3).randn(*((3,) if batch is None else (batch, 3))))
        graph = braintrace.compile_etrace_graph(model, x)
        ex = braintrace.ETraceGraphExecutor(graph)
        D = ex.trace_data(ex.current_invals(x)).D
        D_all = {g.index: ex.jacobian_blocks(ex.current_invals(x), g) for g in graph.hidden_groups}
        got = blocks_as_matrix(model, graph, D_all)
        want = np.asarray(O.cut_jacobian(model, x, block=True))
        assert jnp.result_type(want) == jnp.float64
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        for gi, blk in D.items():
            np.testing.assert_allclose(np.asarray(blk), np.asarray(D_all[gi]), rtol=1e-12)


def test_non_elementwise_group_is_flagged_and_exact_not_a_column_sum():
    with x64_mode():
        model = PlainRecurrence()
        x = jnp.ones(3)
        graph = braintrace.compile_etrace_graph(model, x)
        (g,) = graph.hidden_groups
        assert not g.elementwise
        assert graph.select(kind=DiagnosticKind.HIDDEN_GROUP_NON_ELEMENTWISE)
        ex = braintrace.ETraceGraphExecutor(graph)
        D = np.asarray(ex.jacobian_blocks(ex.current_invals(x), g))[:, 0, 0]
        full = np.asarray(O.cut_jacobian(model, x, block=False))
        np.testing.assert_allclose(D, np.diag(full), rtol=1e-10)
        assert not np.allclose(D, full.sum(0))  # a column sum would be wrong


def test_gru_block_is_one_minus_z():
    model = O.make_gru(3, 4, 2)
    x = jnp.asarray(np.random.RandomState(0).randn(3), jnp.float32)
    graph = braintrace.compile_etrace_graph(model, x)
    ex = braintrace.ETraceGraphExecutor(graph)
    D = ex.trace_data(ex.current_invals(x)).D[0][..., 0, 0]
    z, _, _ = model.gates(x, model.h.value)
    np.testing.assert_allclose(np.asarray(D), np.asarray(1 - z), rtol=1e-5)


class CountingRNN(brainstate.nn.Module):
    def __init__(self, n=4):
        super().__init__()
        self.traces = 0
        self.layers = [braintrace.nn.GRUCell(3, n), braintrace.nn.GRUCell(n, n), braintrace.nn.GRUCell(n, n)]

    def update(self, x):
        self.traces += 1
        for layer in self.layers:
            x = layer(x)
        return x


def test_compiling_twice_with_same_shapes_does_not_retrace():
    """A learner compiles once per input shape; compile_etrace_graph itself keeps no cache
    (a global cache served graphs traced with other values, issue 17)."""
    net = CountingRNN()
    brainstate.nn.init_all_states(net, batch_size=2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g1 = braintrace.compile_etrace_graph(net, jnp.zeros((2, 3)))
        learner = braintrace.D_RTRL(net).compile_graph(jnp.zeros((2, 3)))
        n, graph = net.traces, learner.graph
        learner.compile_graph(jnp.zeros((2, 3)))
    assert learner.graph is graph and graph is not g1
    assert net.traces == n
    assert len(g1.hidden_groups) == 3


def test_a_refusal_carries_an_error_record():
    class Looping(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = brainstate.ParamState(jnp.ones((2, 2)))
            self.h = brainstate.HiddenState(jnp.zeros(2))

        def update(self, x):
            self.h.value = jax.lax.fori_loop(0, 2, lambda i, h: h @ self.w.value, self.h.value + x)
            return self.h.value

    with pytest.raises(braintrace.NotSupportedError) as err:
        braintrace.compile_etrace_graph(Looping(), jnp.zeros(2))
    rec = err.value.record
    assert rec.kind == braintrace.DiagnosticKind.WEIGHT_IN_CONTROL_FLOW
    assert rec.level == braintrace.DiagnosticLevel.ERROR and "`w`" in rec.message
