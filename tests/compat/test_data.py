"""braintrace 0.2.0 drop-in: SingleStepData and MultiStepData (compat-0.2.0.md §7).

The wrappers hold one payload and are pytree nodes; a learner call may wrap
any of its positional arguments, and one ``MultiStepData`` makes the call a
window (the other arguments used at every step). The window's outputs and
gradients are checked against the same steps run one at a time.
"""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintrace
from braintrace import MultiStepData, SingleStepData


@pytest.mark.parametrize("cls", [SingleStepData, MultiStepData])
def test_one_payload_any_pytree_no_validation(cls):
    x = jnp.ones((4, 3))
    assert cls(x).data is x and cls(data=x).data is x
    assert cls(2.0).data == 2.0  # a scalar, even for MultiStepData
    tree = {"a": x, "b": (1.0, 2.0)}
    assert cls(tree).data is tree
    with pytest.raises(TypeError):
        cls(x, x)  # exactly one payload
    assert issubclass(cls, braintrace.data.ETraceInputData)


@pytest.mark.parametrize("cls", [SingleStepData, MultiStepData])
def test_pytree_node_through_jit_grad_and_tree_map(cls):
    d = cls({"a": jnp.ones(2), "b": 3.0})
    assert jax.tree.leaves(d) == jax.tree.leaves(d.data)  # the leaves are the payload's
    mapped = jax.tree.map(lambda v: v * 2, d)
    assert type(mapped) is cls and float(mapped.data["b"]) == 6.0
    out = jax.jit(lambda w: w.data["b"] ** 2)(d)
    assert float(out) == 9.0
    g = jax.grad(lambda w: w.data ** 2)(cls(3.0))
    assert type(g) is cls and float(g.data) == 6.0
    # no __eq__: two wrappers of the same payload are different objects
    assert cls(1.0) != cls(1.0)


T = 4  # steps per window


class Net(brainstate.nn.Module):
    """An RNN cell and linear read-out with an additive second input (plain or wrapped)."""

    def __init__(self):
        super().__init__()
        self.cell = braintrace.nn.VanillaRNNCell(3, 4, activation="tanh")
        self.out = braintrace.nn.Linear(4, 2)

    def update(self, x, b):
        return self.out(self.cell(x)) + b


def _learner(vjp_method="single-step"):
    net = Net()
    brainstate.nn.init_all_states(net, 6)
    learner = braintrace.D_RTRL(net, vjp_method=vjp_method)
    learner.compile_graph(MultiStepData(jnp.zeros((T, 6, 3))), jnp.zeros(2))  # uses step [0]
    return net, learner


def test_window_output_is_stacked_and_single_step_args_are_broadcast():
    net, learner = _learner()
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(T, 6, 3)), jnp.float32)
    b = jnp.array([1.0, -1.0])
    h0 = net.cell.h.value

    def run(*args):
        net.cell.h.value = h0
        learner.reset_state()
        return learner(*args)

    window = run(MultiStepData(xs), SingleStepData(b))
    assert window.shape == (T, 6, 2)
    for other in (b, MultiStepData(jnp.broadcast_to(b, (T, 2)))):  # plain, or given per step
        np.testing.assert_allclose(run(MultiStepData(xs), other), window, rtol=1e-6, atol=1e-6)
    run(xs[0], b)
    steps = jnp.stack([learner(x, b) for x in xs[1:]])  # plain arrays: one step each
    np.testing.assert_allclose(window[1:], steps, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="sequence size should be the same"):
        learner(MultiStepData(xs), MultiStepData(jnp.zeros((5, 2))))


@pytest.mark.parametrize("vjp_method", ["single-step", "multi-step"])
def test_gradients_through_a_window(vjp_method):
    # 0.2.0 raised NotImplementedError for 'single-step'; braintrace scans the single-step rule
    net, learner = _learner(vjp_method)
    xs = jnp.ones((T, 6, 3))
    params = net.states(brainstate.ParamState)
    grads = brainstate.transform.grad(lambda: learner(MultiStepData(xs), jnp.zeros(2)).sum(), params)()
    assert set(grads) == set(params)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(grads))
