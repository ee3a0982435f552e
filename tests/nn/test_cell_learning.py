"""The nn cells under the compiler and the learners.

* the relation profile of every recurrent cell (which weights learn online,
  which do not and why), as a table;
* D_RTRL on every cell equals the oracle's diagonal RTRL reference;
* LIF/ALIF networks with feed-forward input weights: D_RTRL equals BPTT.
"""

import warnings

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
import oracle as O
from braintrace import DiagnosticKind as K

IN, H, T = 3, 4, 4

# cell: (hidden groups, online weights, {excluded weight: kind}, {weight: extra kind})
PROFILES = {
    "VanillaRNNCell": ([("h",)], ["W"], {}, {}),
    "GRUCell": ([("h",)], ["Wh", "Wz"], {"Wr": K.RELATION_EXCLUDED_WEIGHT_TO_WEIGHT}, {}),
    "LSTMCell": ([("c", "h")], ["Wf", "Wg", "Wi", "Wo"], {}, {}),
    "MGUCell": ([("h",)], ["Wf", "Wh"], {}, {"Wf": K.RELATION_PARTIAL_PATH}),
    "MinimalRNNCell": ([("h",)], ["W_u", "phi"], {}, {"phi": K.RELATION_PARTIAL_PATH}),
    "MiniGRU": ([("h",)], ["W_x", "W_z"], {}, {}),
    "MiniLSTM": ([("h",)], ["W_f", "W_i", "W_x"], {}, {}),
    "LRUCell": ([("h_im", "h_re")], ["B_im", "B_re", "gamma_log", "nu_log", "theta_log"],
                {"C_im": K.RELATION_EXCLUDED_NON_TEMPORAL, "C_re": K.RELATION_EXCLUDED_NON_TEMPORAL}, {}),
    "URLSTMCell": ([("c", "h")], ["Wf", "Wo", "Wr", "Wu", "bias"], {}, {}),
}
# weights used by plain JAX (no ETP primitive, hence no record): instantaneous gradient by design
PLAIN = {"LRUCell": {"D"}}
# the LRU cell maps d_model -> d_model features (its hidden size is out_size)
OUT = {"LRUCell": IN}


def compile_quiet(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return braintrace.compile_etrace_graph(model, x)


def head(path):
    return path[0]


@pytest.mark.parametrize("name", list(PROFILES))
def test_relation_profile_table(name):
    groups, online, excluded, extra = PROFILES[name]
    cell = getattr(braintrace.nn, name)(IN, H)
    brainstate.nn.init_all_states(cell)
    graph = compile_quiet(cell, jnp.zeros(IN))
    assert [tuple(sorted(head(p) for p in g.hidden_paths)) for g in graph.hidden_groups] == groups
    assert sorted(head(r.weight_path) for r in graph.hidden_param_op_relations) == online
    for weight, kind in {**excluded, **extra}.items():
        assert [d.kind for d in graph.diagnostics if d.weight_path and head(d.weight_path) == weight and d.kind == kind]
    params = {head(p) for p in cell.states(brainstate.ParamState)}
    # every weight is accounted for: online, or excluded with a record
    assert params == set(online) | set(excluded) | PLAIN.get(name, set())


class CellNet(brainstate.nn.Module):
    def __init__(self, name, batch=None, seed=0):
        super().__init__()
        self.cell = getattr(braintrace.nn, name)(IN, H)
        n = OUT.get(name, H)
        self.out = brainstate.ParamState(jnp.asarray(np.random.RandomState(seed).randn(n, 2) * 0.5))
        brainstate.nn.init_all_states(self.cell, batch_size=batch)
        rng = np.random.RandomState(seed + 1)
        for st in self.cell.states(brainstate.HiddenState).values():
            st.value = jnp.asarray(rng.randn(*st.value.shape) * 0.5, st.value.dtype)

    def update(self, x):
        return self.cell(x) @ self.out.value


@pytest.fixture
def f64():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    brainstate.environ.set(precision=64)
    try:
        yield
    finally:
        brainstate.environ.set(precision=32)
        jax.config.update("jax_enable_x64", prev)


def sequence(batch=None, seed=2, n_in=IN, n_out=2):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, n_in))
    targets = jnp.asarray(rng.randn(*lead, n_out))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, loss


def stepped_grads(learner, xs, loss):
    """Σ_t of the learner's online gradient of ``loss(out_t, t)``, one jitted step at a time.

    The step is compiled once for the sequence (``t`` reaches ``loss`` traced), not once per step.
    Returns ``(grads, total)`` keyed by ParamState path, as the oracle.
    """
    params = learner.model.states(brainstate.ParamState)
    gfn = brainstate.transform.jit(
        brainstate.transform.grad(lambda x, t: loss(learner(x), t), params, return_value=True))
    acc, total = None, 0.0
    for t in range(xs.shape[0]):
        g, value = gfn(xs[t], jnp.asarray(t))
        acc = g if acc is None else jax.tree.map(jnp.add, acc, g)
        total = total + value
    return {k: acc[k] for k in acc}, total


def compiled_oracle(fn):
    """``fn()`` (an oracle computation on the model's current values) as one compiled program:
    the oracle's unrolled loop otherwise runs op by op. Same code, same values."""
    return jax.jit(fn)()


def online_spec(graph):
    return {
        (path if key == () else (path, key[0]))
        for r in graph.hidden_param_op_relations
        for _, leaves in r.param_sources
        for path, key in leaves
    }


_RUNS = {}


def cell_run(name, batch):
    """``(diagonal reference, BPTT (LRU only, else None), D_RTRL's online gradients)`` of one cell,
    float64, computed once per module: the LRU tests share one model, learner and run."""
    key = (name, batch)
    if key not in _RUNS:
        model = CellNet(name, batch)
        xs, loss = sequence(batch)
        learner = braintrace.D_RTRL(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner.compile_graph(xs[0])
        ref, _ = O.rtrl_reference(model, xs, loss, mode="diagonal", online=online_spec(learner.graph))
        bptt = compiled_oracle(lambda: O.bptt_grads(model, xs, loss))[0] if name == "LRUCell" else None
        got, _ = stepped_grads(learner, xs, loss)
        _RUNS[key] = ref, bptt, got
    return _RUNS[key]


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("name", list(PROFILES))
def test_d_rtrl_on_every_cell_equals_the_diagonal_reference(f64, name, batch):
    ref, _, got = cell_run(name, batch)
    for leaf in jax.tree.leaves(got):
        assert leaf.dtype == jnp.float64
    assert O.tree_max_rel_err(got, ref) < 1e-9


@pytest.mark.parametrize("batch", [None, 2])
def test_d_rtrl_on_the_lru_cell_equals_bptt(f64, batch):
    """The LRU recurrence is block-diagonal (one 2x2 rotation per unit): D_RTRL is exact."""
    _, bptt, got = cell_run("LRUCell", batch)
    assert O.tree_max_rel_err(got, bptt) < 1e-9
    assert float(jnp.abs(got[("cell", "theta_log")]).max()) > 0


class SpikingNet(brainstate.nn.Module):
    """Feed-forward input weights into LIF/ALIF neurons, a plain linear readout of the spikes."""

    def __init__(self, neuron, batch=None, n=5, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w_in = brainstate.ParamState({"weight": jnp.asarray(rng.randn(IN, n) * 1.5), "bias": jnp.full(n, 0.3)})
        kw = dict(tau=10.0 * u.ms, dt=1.0 * u.ms)
        if neuron == "ALIF":
            kw.update(tau_a=50.0 * u.ms, beta=0.5)
        self.neuron = getattr(braintrace.nn, neuron)(n, **kw)
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(n, 2)))
        brainstate.nn.init_all_states(self, batch_size=batch)
        for st in self.neuron.states(brainstate.HiddenState).values():
            st.value = jnp.asarray(rng.rand(*st.value.shape) * 0.8, st.value.dtype)

    def update(self, x):
        spikes = self.neuron(braintrace.matmul(x, self.w_in.value["weight"], self.w_in.value["bias"]))
        return spikes @ self.w_out.value


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("neuron", ["LIF", "ALIF"])
def test_spiking_networks_with_feedforward_weights_equal_bptt(f64, neuron, batch):
    model = SpikingNet(neuron, batch)
    xs, loss = sequence(batch)
    bptt, _ = compiled_oracle(lambda: O.bptt_grads(model, xs, loss))
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    assert [r.weight_path for r in learner.graph.hidden_param_op_relations] == [("w_in",)]
    got, _ = stepped_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, bptt) < 1e-9
    assert float(jnp.abs(got[("w_in",)]["weight"]).max()) > 0  # surrogate gradients do flow


class ReadoutNet(brainstate.nn.Module):
    """LIF layer into a leaky rate readout (its own hidden state)."""

    def __init__(self, batch=None, n=5, seed=0):
        super().__init__()
        # weights from a seeded generator: the global random state depends on the tests run before
        rng = np.random.RandomState(seed)
        self.inp = braintrace.nn.Linear(IN, n, w_init=jnp.asarray(rng.randn(IN, n) * 1.5))
        self.lif = braintrace.nn.LIF(n, tau=10.0 * u.ms, dt=1.0 * u.ms)
        self.readout = braintrace.nn.LeakyRateReadout(
            n, 2, tau=5.0 * u.ms, dt=1.0 * u.ms, w_init=jnp.asarray(rng.randn(n, 2) / np.sqrt(n))
        )
        brainstate.nn.init_all_states(self, batch_size=batch)

    def update(self, x):
        return self.readout(self.lif(self.inp(x)))


def test_lif_with_leaky_readout_equals_the_diagonal_reference(f64):
    model = ReadoutNet()
    xs, loss = sequence()
    learner = braintrace.D_RTRL(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learner.compile_graph(xs[0])
    assert sorted(head(r.weight_path) for r in learner.graph.hidden_param_op_relations) == ["inp", "readout"]
    ref, _ = O.rtrl_reference(model, xs, loss, mode="diagonal", online=online_spec(learner.graph))
    inst, _ = compiled_oracle(lambda: O.instantaneous_grads(model, xs, loss))
    got, _ = stepped_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, ref) < 1e-9
    # the spiking layer's learning signal passes through the readout: its input
    # weight gets trace credit, not only its instantaneous gradient
    assert O.tree_max_rel_err(got[("inp", "weight")], inst[("inp", "weight")]) > 1e-2
