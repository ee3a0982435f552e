"""A sparse layer's pattern as a state: an argument of the compiled step, fixed for the learners.

* :class:`braintrace.primitives.StructureState` holds integer arrays only; its
  ``of_matrix`` / ``matrix`` round trip keeps the data order of CSR, CSC and COO.
* ``SparseLinear`` and ``EventSparseLinear`` (both paths) hold their patterns in one:
  a learner's compiled window step takes them as arguments (they were constants
  embedded in the program before, which XLA compiles slowly when large), and the
  window does not stack them per step.
* SnAp reads such a pattern as fixed (no refusal for data-dependent indices) and,
  saturated, equals RTRL. On the event-driven layer this also checks that the pattern
  rules see through the ``jax.checkpoint`` inside the product's derivative: they
  evaluated it with its coefficients zeroed, and SnAp lost the weight's influence
  silently (relative error 0.43). ``bptt_gradients(reset=True)`` needs no snapshot of
  a pattern.
"""

import brainstate
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
import oracle as O
from braintrace.primitives import StructureState
from learning import x64  # noqa: F401 - fixture


def dense_pattern(rng, n_in, n_out, p):
    return (rng.random((n_in, n_out)) < p) * rng.normal(size=(n_in, n_out))


def test_structure_state_refuses_floating_point_leaves():
    with pytest.raises(TypeError, match="integer index arrays.*float"):
        StructureState(dict(rows=np.zeros(3, np.float32)))


@pytest.mark.parametrize("fmt", ["CSR", "CSC", "COO"])
def test_of_matrix_and_matrix_keep_the_data_order(fmt):
    m = dense_pattern(np.random.default_rng(0), 5, 4, 0.5).astype(np.float32)
    mat = getattr(u.sparse, fmt).fromdense(jnp.asarray(m))
    s = StructureState.of_matrix(mat)
    assert s.value["rows"].dtype == jnp.int32 and s.value["cols"].dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(s.matrix(mat.data, mat.shape).todense()), m)


class SparseRNN(brainstate.nn.Module):
    """``h = tanh(x W_in + h M)`` with ``M`` sparse, a dense read-out."""

    def __init__(self, layer, n_in, n):
        super().__init__()
        rng = np.random.default_rng(1)
        self.inp = braintrace.nn.Linear(n_in, n, w_init=jnp.asarray(rng.normal(size=(n_in, n))))
        self.rec = layer
        self.out = braintrace.nn.Linear(n, 2, w_init=jnp.asarray(rng.normal(size=(n, 2)) * 0.3))
        self.h = brainstate.HiddenState(jnp.zeros(n))

    def reset_state(self, batch_size=None, **kwargs):
        self.h.value = jnp.zeros_like(self.h.value)

    def update(self, x):
        self.h.value = jnp.tanh(self.inp(x) + self.rec(self.h.value))
        return self.out(self.h.value)


def layer(kind, m):
    csr = u.sparse.CSR.fromdense(jnp.asarray(m))
    if kind == "sparse":
        return braintrace.nn.SparseLinear(csr)
    return braintrace.nn.EventSparseLinear(csr, events=kind == "event", max_active=1.0, block=4)


def loss(o, y):
    return jnp.sum((o - y) ** 2)


def compiled_window(model, window, steps, n_in):
    learner = braintrace.ES_D_RTRL(model, 0.9).compile_graph(jnp.zeros(n_in))
    xs, ys = jnp.ones((steps, n_in)) * 0.1, jnp.zeros((steps, 2))

    def body(xs, ys):
        return braintrace.online_gradients(learner, xs, ys, loss, window=window)[0]

    return brainstate.transform.jit(body).lower(xs, ys).compile().memory_analysis()


@pytest.mark.parametrize("kind", ["sparse", "event", "event_csr"])
def test_the_pattern_is_an_argument_of_the_compiled_window_and_is_not_stacked(kind):
    n_in, n = 3, 160
    m = dense_pattern(np.random.default_rng(2), n, n, 0.4)
    nnz = int(np.count_nonzero(m))
    model = SparseRNN(layer(kind, m), n_in, n)
    brainstate.nn.init_all_states(model)
    assert isinstance(model.rec.indices, StructureState)
    index_bytes = sum(int(np.asarray(v).nbytes) for v in model.rec.indices.value.values())
    assert index_bytes >= 8 * nnz
    short = compiled_window(model, 4, 8, n_in)
    long = compiled_window(model, 16, 16, n_in)
    # the pattern goes in as arguments (a constant would not count here)
    assert short.argument_size_in_bytes >= index_bytes
    # twelve more steps per window: far less than one index array (4 nnz bytes) per step (a guard:
    # the ES_D_RTRL step here keeps no residual of the pattern either way)
    per_step = (long.temp_size_in_bytes - short.temp_size_in_bytes) / 12
    assert per_step < 2 * nnz, (per_step, nnz)


@pytest.mark.parametrize("kind", ["sparse", "event"])
def test_snap_reads_the_pattern_as_fixed_and_saturated_equals_rtrl(x64, kind):  # noqa: F811
    n_in, n, T = 2, 6, 5
    rng = np.random.default_rng(3)
    m = dense_pattern(rng, n, n, 0.5)
    xs, ys = jnp.asarray(rng.normal(size=(T, n_in))), jnp.asarray(rng.normal(size=(T, 2)))
    grads = {}
    for name, make in [("rtrl", braintrace.RTRL), ("snap", lambda mdl: braintrace.SnAp(mdl, n=50))]:
        model = SparseRNN(layer(kind, m), n_in, n)
        brainstate.nn.init_all_states(model)
        learner = make(model).compile_graph(xs[0])
        grads[name] = braintrace.online_gradients(learner, xs, ys, loss)[0]
    assert O.tree_max_rel_err(grads["snap"], grads["rtrl"]) < 1e-10


def test_bptt_with_reset_needs_no_snapshot_of_the_pattern():
    model = SparseRNN(layer("sparse", dense_pattern(np.random.default_rng(4), 8, 8, 0.5)), 2, 8)
    brainstate.nn.init_all_states(model)
    grads = braintrace.bptt_gradients(model, jnp.ones((3, 2)), jnp.zeros((3, 2)), loss, reset=True)[0]
    assert float(jnp.max(jnp.abs(grads[("rec", "weight")]["weight"]))) > 0
