"""Issue 17: no stale graph, no lost reset, one clear error for each bad input.

Each case was, before, a silently wrong result (a stale compiled graph, a reset
that reset nothing, truncated traces) or an error from deep inside JAX.
"""

import gc
import weakref

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp

import oracle as O
from learning import x64  # noqa: F401


class Gain(brainstate.nn.Module):
    """A leaky layer whose output is scaled by a plain array attribute (a compile-time constant)."""

    def __init__(self, n=3):
        super().__init__()
        self.w = brainstate.ParamState(jnp.ones((2, n)) * 0.5)
        self.h = brainstate.HiddenState(jnp.zeros(n))
        self.gain = jnp.ones(n)

    def update(self, x):
        self.h.value = 0.5 * self.h.value + braintrace.matmul(x, self.w.value)
        return self.gain * self.h.value


class ReadmeRNN(brainstate.nn.Module):
    """The README's model before it defined init_state/reset_state: its state is made in __init__."""

    def __init__(self, n_in=3, n_rec=4, n_out=2):
        super().__init__()
        rng = np.random.RandomState(0)
        self.w_in = brainstate.ParamState(jnp.asarray(rng.randn(n_in, n_rec) * 0.3))
        self.w_rec = brainstate.ParamState(jnp.asarray(rng.randn(n_rec, n_rec) * 0.3))
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(n_rec, n_out) * 0.3))
        self.h = brainstate.HiddenState(jnp.zeros(n_rec))

    def update(self, x):
        rec = braintrace.matmul(self.h.value, self.w_rec.value)
        self.h.value = jnp.tanh(x @ self.w_in.value + rec)
        return self.h.value @ self.w_out.value


def loss(o, y):
    return jnp.sum((o - y) ** 2)


def test_a_new_learner_sees_changed_constants():
    model = Gain()
    first = braintrace.D_RTRL(model).compile_graph(jnp.zeros(2))
    out1 = first(jnp.ones(2))
    model.gain = 10 * jnp.ones(3)
    brainstate.nn.reset_all_states(model)
    model.h.value = jnp.zeros(3)
    fresh = braintrace.D_RTRL(model).compile_graph(jnp.zeros(2))
    np.testing.assert_allclose(fresh(jnp.ones(2)), 10 * out1, rtol=1e-6)
    # the existing learner keeps its compiled constant until it recompiles, as jax.jit does
    model.h.value = jnp.zeros(3)
    np.testing.assert_allclose(first(jnp.ones(2)), out1, rtol=1e-6)
    model.h.value = jnp.zeros(3)
    np.testing.assert_allclose(first.recompile()(jnp.ones(2)), 10 * out1, rtol=1e-6)


def test_compiled_models_are_freed():
    refs = []
    for _ in range(3):
        model = Gain()
        learner = braintrace.ES_D_RTRL(model, 0.9).compile_graph(jnp.zeros(2))
        grads, _ = braintrace.online_gradients(learner, jnp.ones((4, 2)), jnp.zeros((4, 3)), loss, reset=False)
        refs.append(weakref.ref(model))
        del model, learner, grads
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_reset_restores_states_no_module_resets(x64):
    """Three BPTT calls gave losses 19.453, 19.411, 19.411: the second started where the first ended."""
    model = ReadmeRNN()
    xs = jnp.asarray(np.random.RandomState(1).randn(5, 3))
    ys = jnp.zeros((5, 2))
    with pytest.raises(braintrace.NotSupportedError, match="cannot reset `h`"):
        braintrace.bptt_gradients(model, xs, ys, loss)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    losses = [float(braintrace.online_gradients(learner, xs, ys, loss)[1]) for _ in range(3)]
    assert losses[0] == losses[1] == losses[2]
    assert float(jnp.abs(model.h.value).max()) > 0  # the run moved it; the next reset puts it back


def test_trace_dtype_must_be_floating():
    model = Gain()
    for bad in (jnp.int32, "banana", object()):
        with pytest.raises(TypeError, match="trace_dtype"):
            braintrace.D_RTRL(model, trace_dtype=bad)
    assert braintrace.D_RTRL(model, trace_dtype="bfloat16").trace_dtype == jnp.bfloat16


def test_compile_graph_refuses_a_state_that_changes_shape():
    """An unbatched model compiled with a batched input (or a whole sequence) would change its state."""
    model = Gain()
    with pytest.raises(braintrace.CompilationError, match="writes the state `h` with shape \\(5, 3\\)"):
        braintrace.D_RTRL(model).compile_graph(jnp.zeros((5, 2)))
    readme = ReadmeRNN()
    brainstate.nn.init_all_states(readme, batch_size=8)  # defines no init_state: h stays (4,)
    with pytest.raises(braintrace.CompilationError, match="init_state"):
        braintrace.D_RTRL(readme).compile_graph(jnp.zeros((8, 3)))


def test_call_errors_name_the_argument_or_state():
    model = Gain()
    learner = braintrace.D_RTRL(model).compile_graph(jnp.zeros(2, jnp.float32))
    with pytest.raises(ValueError, match=r"argument \[0\] has shape \(3,\)"):
        learner(jnp.zeros(3))
    with pytest.raises(ValueError, match="has dtype int32"):
        learner(jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="0 steps"):
        learner(braintrace.MultiStepData(jnp.zeros((0, 2))))
    model.h.value = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="state `h`"):
        learner(jnp.zeros(2))


def test_complex_input_is_refused():
    with pytest.raises(braintrace.CompilationError, match="complex"):
        braintrace.D_RTRL(Gain()).compile_graph(jnp.zeros(2, jnp.complex64))


def test_float64_data_into_a_float32_learner(x64):
    model = Gain()
    model.w.value = model.w.value.astype(jnp.float32)
    model.h.value = model.h.value.astype(jnp.float32)
    model.gain = model.gain.astype(jnp.float32)
    learner = braintrace.D_RTRL(model).compile_graph(jnp.zeros(2, jnp.float32))
    with pytest.raises(ValueError, match="has dtype float64, but the learner was compiled for float32"):
        learner(jnp.zeros(2, jnp.float64))


def test_sequence_drivers_check_the_time_axes():
    model = Gain()
    learner = braintrace.D_RTRL(model).compile_graph(jnp.zeros(2))
    with pytest.raises(ValueError, match="leading \\(time\\) axes"):
        braintrace.online_gradients(learner, jnp.ones((5, 2)), jnp.zeros((4, 3)), loss, reset=False)
    with pytest.raises(ValueError, match="leading \\(time\\) axes"):
        braintrace.bptt_gradients(model, jnp.ones((5, 2)), jnp.zeros((4, 3)), loss, reset=False)


def test_a_failed_compile_leaves_the_learner_uncompiled():
    learner = braintrace.D_RTRL(Gain())
    with pytest.raises(braintrace.CompilationError):
        learner.compile_graph(jnp.zeros((5, 2)))
    assert not learner.is_compiled
    with pytest.raises(braintrace.NotCompiledError):
        learner(jnp.zeros(2))
