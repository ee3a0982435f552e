"""Position-wise transitions through custom-derivative functions and primitives from outside JAX (issue 17, pattern 4).

A spike function with a surrogate gradient is a ``jax.custom_jvp``, a
``jax.custom_vjp`` or, in ``braintools``, a primitive of its own. The compiler
decides whether such a call is position-wise from the rule JAX differentiates it
with. Element-wise ones give an element-wise group (no probing; D_RTRL equals
BPTT on the LIF below, float64), and rules that mix positions are still caught:
their group is flagged and its blocks are exact (D_RTRL equals the oracle's
per-position reference, not a column sum). A ``custom_vjp`` is decided from its
VJP; on the hidden update it is refused at compile time (the learners
differentiate the update in forward mode, which JAX does not allow through it).
"""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

import braintrace
import oracle as O
from algorithms.snn_models import online_sum
from braintrace.compiler.jaxpr_tools import UseDef
from braintrace.compiler.positions import propagate_alignment
from learning import compile_recording_warnings, x64  # noqa: F401 - x64 is a fixture

T, ALPHA = 10, 4.0


def _heaviside(x):
    return (x >= 0).astype(x.dtype)


def _surrogate(x):
    sg = jax.nn.sigmoid(ALPHA * x)
    return ALPHA * sg * (1 - sg)


# -- a jax.custom_jvp spike (element-wise rule) and one whose rule couples the neurons ----------


@jax.custom_jvp
def spike_jvp(x):
    return _heaviside(x)


@spike_jvp.defjvp
def _spike_jvp_rule(primals, tangents):
    (x,), (t,) = primals, tangents
    return _heaviside(x), _surrogate(x) * t


@jax.custom_jvp
def spike_jvp_mixing(x):
    return _heaviside(x)


@spike_jvp_mixing.defjvp
def _spike_jvp_mixing_rule(primals, tangents):
    (x,), (t,) = primals, tangents
    return _heaviside(x), _surrogate(x) * t + 0.3 * jnp.mean(t, axis=-1, keepdims=True)


@jax.custom_jvp
def roll_jvp(x):
    """Linear and mixing; its rule applies the function itself to the tangent (met again while deciding it)."""
    return jnp.roll(x, 1, axis=-1)


@roll_jvp.defjvp
def _roll_jvp_rule(primals, tangents):
    return roll_jvp(primals[0]), roll_jvp(tangents[0])


# -- a jax.custom_vjp spike, element-wise and coupling --------------------------------------------


@jax.custom_vjp
def spike_vjp(x):
    return _heaviside(x)


spike_vjp.defvjp(lambda x: (_heaviside(x), x), lambda x, ct: (_surrogate(x) * ct,))


@jax.custom_vjp
def spike_vjp_mixing(x):
    return _heaviside(x)


spike_vjp_mixing.defvjp(
    lambda x: (_heaviside(x), x), lambda x, ct: (_surrogate(x) * ct + 0.3 * jnp.mean(ct, -1, keepdims=True),)
)


# -- primitives defined outside JAX (as braintools and saiunit define theirs) ---------------------

spike_p = Primitive("test_foreign_spike")  # element-wise, JVP rule re-binds itself on the primal only
spike_p.def_impl(_heaviside)
spike_p.def_abstract_eval(lambda x: x)
mlir.register_lowering(spike_p, mlir.lower_fun(_heaviside, multiple_results=False))
ad.primitive_jvps[spike_p] = lambda primals, tangents: (spike_p.bind(primals[0]), _surrogate(primals[0]) * tangents[0])
batching.primitive_batchers[spike_p] = lambda args, dims: (spike_p.bind(args[0]), dims[0])

roll_p = Primitive("test_foreign_roll")  # linear and mixing: its JVP applies itself to the tangent
roll_p.def_impl(lambda x: jnp.roll(x, 1, axis=-1))
roll_p.def_abstract_eval(lambda x: x)
mlir.register_lowering(roll_p, mlir.lower_fun(lambda x: jnp.roll(x, 1, axis=-1), multiple_results=False))
ad.deflinear(roll_p, lambda ct: [jnp.roll(ct, -1, axis=-1)])
batching.primitive_batchers[roll_p] = lambda args, dims: (roll_p.bind(args[0]), dims[0])

opaque_p = Primitive("test_foreign_no_jvp")  # no differentiation rule at all
opaque_p.def_impl(lambda x: x)
opaque_p.def_abstract_eval(lambda x: x)


SPIKES = {
    "custom_jvp": spike_jvp,
    "custom_vjp": spike_vjp,
    "foreign primitive": spike_p.bind,
    "custom_jvp (coupling rule)": spike_jvp_mixing,
    "custom_vjp (coupling rule)": spike_vjp_mixing,
    "foreign primitive (coupling)": lambda x: _heaviside(x) + 0.0 * roll_p.bind(x),
    "custom_jvp (self-applied rule)": lambda x: spike_jvp(x) + 0.0 * roll_jvp(x),
}
ELEMENTWISE = ("custom_jvp", "foreign primitive")


class LIF(brainstate.nn.Module):
    """``v = α (v - s(v)) + matmul(x, W)``, ``s(v) = spike(v - 1)``; output ``s(v^t) @ W_out`` (plain)."""

    def __init__(self, spike, n_in=3, n=5, n_out=2, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.spike = SPIKES[spike]
        self.w = brainstate.ParamState(jnp.asarray(rng.randn(n_in, n) * 0.8))
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(n, n_out) * 0.5))
        self.alpha = jnp.asarray(rng.uniform(0.7, 0.95, n))
        self.v = brainstate.HiddenState(jnp.asarray(rng.uniform(0.0, 1.2, (n,) if batch is None else (batch, n))))

    def update(self, x):
        v = self.v.value
        self.v.value = self.alpha * (v - self.spike(v - 1.0)) + braintrace.matmul(x, self.w.value)
        return self.spike(self.v.value - 1.0) @ self.w_out.value


def _data(batch=None):
    rng = np.random.RandomState(2)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.uniform(0.0, 1.0, lead + (3,)))
    targets = jnp.asarray(rng.randn(*lead, 2))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, loss


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("spike", ELEMENTWISE)
def test_elementwise_custom_rule_gives_an_elementwise_group_exact_against_bptt(x64, spike, batch):
    model = LIF(spike, batch=batch)
    xs, loss = _data(batch)
    want, _ = O.bptt_grads(model, xs, loss)
    learner, caught = compile_recording_warnings(model, xs[0])
    assert not any("mixes positions" in m for m in caught), caught
    (group,) = learner.graph.hidden_groups
    assert group.elementwise
    got, _ = online_sum(learner, xs, loss)
    assert float(jnp.abs(want[("w",)]).max()) > 1e-3  # the surrogate gradient flows
    for k in want:
        assert jnp.result_type(got[k]) == jnp.float64
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("spike", ["custom_jvp (coupling rule)", "foreign primitive (coupling)"])
def test_coupling_rule_is_flagged_and_its_blocks_are_exact(x64, spike):
    model = LIF(spike)
    xs, loss = _data()
    want, _ = O.rtrl_reference(model, xs, loss, mode="diagonal")
    learner, caught = compile_recording_warnings(model, xs[0])
    assert any("mixes positions" in m for m in caught)
    assert not learner.graph.hidden_groups[0].elementwise
    got, _ = online_sum(learner, xs, loss)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    "spike,aligned",
    [("custom_jvp", True), ("custom_vjp", True), ("foreign primitive", True),
     ("custom_jvp (coupling rule)", False), ("custom_vjp (coupling rule)", False), ("foreign primitive (coupling)", False),
     ("custom_jvp (self-applied rule)", False)],
)
def test_alignment_is_decided_from_the_differentiation_rule(spike, aligned):
    closed = jax.make_jaxpr(lambda v: SPIKES[spike](v - 1.0))(jnp.zeros((2, 5)))
    align = propagate_alignment(UseDef(closed.jaxpr), {closed.jaxpr.invars[0]: (0, 0)}, (2, 5))
    assert align[closed.jaxpr.outvars[0]] == ((0, 0) if aligned else None)


@pytest.mark.parametrize("spike", ["custom_vjp", "custom_vjp (coupling rule)"])
def test_custom_vjp_on_the_hidden_update_is_refused(spike):
    with pytest.raises(braintrace.NotSupportedError) as err:
        braintrace.compile_etrace_graph(LIF(spike), jnp.zeros(3))
    msg = str(err.value)
    assert f"The jax.custom_vjp function `{SPIKES[spike].__name__} at " in msg and "test_positions.py" in msg
    assert "lies on the update of hidden state `v`" in msg and "jax.custom_jvp instead" in msg


def test_primitive_without_a_derivative_rule_counts_as_mixing():
    class Opaque(LIF):
        def update(self, x):
            self.v.value = opaque_p.bind(self.alpha * self.v.value) + braintrace.matmul(x, self.w.value)
            return self.v.value @ self.w_out.value

    with pytest.warns(UserWarning, match="mixes positions"):
        graph = braintrace.compile_etrace_graph(Opaque("custom_jvp"), jnp.zeros(3))
    assert not graph.hidden_groups[0].elementwise


class TwoLayers(brainstate.nn.Module):
    """Layer 1's spikes feed layer 2 only through an ETP data input: off the forward-differentiated path."""

    def __init__(self, spike, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.spike = SPIKES[spike]
        self.w1 = brainstate.ParamState(jnp.asarray(rng.randn(3, 4)))
        self.w2 = brainstate.ParamState(jnp.asarray(rng.randn(4, 4)))
        self.v1 = brainstate.HiddenState(jnp.asarray(rng.uniform(0.0, 1.2, 4)))
        self.v2 = brainstate.HiddenState(jnp.asarray(rng.uniform(0.0, 1.2, 4)))

    def update(self, x):
        self.v1.value = 0.9 * self.v1.value + braintrace.matmul(x, self.w1.value)
        self.v2.value = 0.8 * self.v2.value + braintrace.matmul(self.spike(self.v1.value - 1.0), self.w2.value)
        return self.v2.value


def test_custom_vjp_feeding_only_a_data_input_is_allowed(x64):
    xs, _ = _data()
    grads = {}
    for spike in ("custom_vjp", "custom_jvp"):  # the same surrogate, through either rule
        learner, _ = compile_recording_warnings(TwoLayers(spike), xs[0])
        grads[spike], _ = online_sum(learner, xs, lambda out, t: jnp.sum(jnp.tanh(out)) * (t + 1.0))
    assert float(jnp.abs(grads["custom_jvp"][("w1",)]).max()) > 1e-3
    assert O.tree_max_rel_err(grads["custom_vjp"], grads["custom_jvp"]) < 1e-10


def test_hidden_group_state_sliced_and_stacked_is_elementwise():
    """A HiddenGroupState read as ``va[..., 0]`` and written with ``jnp.stack`` (``stack`` is a
    primitive of its own in jax 0.10, not in ``jax.extend.core.primitives``) keeps positions."""
    model = O.make_adaptive(3, 4, 2, seed=0, grouped=True)
    graph = braintrace.compile_etrace_graph(model, jnp.zeros(3))
    assert graph.hidden_groups[0].elementwise and graph.hidden_groups[0].num_state == 2
    assert [r.weight_path for r in graph.hidden_param_op_relations] == [("w",)]
