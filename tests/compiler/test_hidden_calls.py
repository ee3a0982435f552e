"""ETP primitives inside ``jax.checkpoint``, ``jax.custom_jvp`` and ``jax.custom_vjp`` (issue 17, pattern 3).

Before the fix each of them hid its weight from the compiler: the weight got its
instantaneous gradient only (relative error 0.64 against BPTT on the leaky model
below). A checkpoint (remat) only changes what is stored, so the compiler sees
through it and the gradient is exact (D_RTRL = BPTT: the cut transition
``h ↦ a h`` is element-wise). Seeing through a custom-derivative function would
bypass its rule, so one whose ETP primitive reaches a hidden state is refused at
compile time, naming the function and the weight.
"""

import brainstate
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
import numpy as np
import pytest

import braintrace
import oracle as O
from braintrace import DiagnosticKind
from algorithms.snn_models import online_sum
from learning import x64  # noqa: F401 - x64 is a fixture

T = 8


def _cell(a, h, x, w):
    return a * h + jnp.tanh(braintrace.matmul(x, w))


@jax.custom_jvp
def cell_jvp(a, h, x, w):
    return _cell(a, h, x, w)


@cell_jvp.defjvp
def _cell_jvp_rule(primals, tangents):
    return jax.jvp(_cell, primals, tangents)


@jax.custom_vjp
def cell_vjp(a, h, x, w):
    return _cell(a, h, x, w)


def _cell_fwd(a, h, x, w):
    return _cell(a, h, x, w), (a, h, x, w)


def _cell_bwd(res, ct):
    return jax.vjp(_cell, *res)[1](ct)


cell_vjp.defvjp(_cell_fwd, _cell_bwd)


@jax.custom_jvp
def soft_tanh(a, h, y):
    """The documented workaround: the ETP product computed outside, its output passed in."""
    return a * h + jnp.tanh(y)


@soft_tanh.defjvp
def _soft_tanh_rule(primals, tangents):
    return jax.jvp(lambda a, h, y: a * h + jnp.tanh(y), primals, tangents)


def _named_cell(a, h, x, w):
    return a * h + checkpoint_name(jnp.tanh(braintrace.matmul(x, w)), "current")


CELLS = {
    "plain": _cell,
    "checkpoint_name": jax.checkpoint(_named_cell, policy=jax.checkpoint_policies.save_only_these_names("current")),
    "jax.checkpoint": jax.checkpoint(_cell),
    "jax.checkpoint(policy)": jax.checkpoint(_cell, policy=jax.checkpoint_policies.nothing_saveable),
    "jit(checkpoint)": jax.jit(jax.checkpoint(_cell)),
    "custom_jvp": cell_jvp,
    "custom_vjp": cell_vjp,
}


class Leaky(brainstate.nn.Module):
    """``h = a h + tanh(matmul(x, W))`` through ``cell``; ``out = h @ W_out`` (plain readout)."""

    def __init__(self, cell="plain", n_in=3, n_h=4, n_out=2, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.cell = cell
        self.w = brainstate.ParamState(jnp.asarray(rng.randn(n_in, n_h) * 0.5))
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(n_h, n_out) * 0.5))
        self.a = jnp.asarray(rng.uniform(0.5, 0.9, n_h))
        self.h = brainstate.HiddenState(jnp.asarray(rng.randn(*((n_h,) if batch is None else (batch, n_h))) * 0.5))

    def update(self, x):
        if self.cell == "workaround":
            self.h.value = soft_tanh(self.a, self.h.value, braintrace.matmul(x, self.w.value))
        else:
            self.h.value = CELLS[self.cell](self.a, self.h.value, x, self.w.value)
        return self.h.value @ self.w_out.value


class RematMethod(Leaky):
    """The step's state update wrapped in ``brainstate.transform.remat`` (states read and written inside)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.remat_step = brainstate.transform.remat(self._step)

    def _step(self, x):
        self.h.value = _cell(self.a, self.h.value, x, self.w.value)

    def update(self, x):
        self.remat_step(x)
        return self.h.value @ self.w_out.value


class CustomReadout(Leaky):
    """A custom_jvp around an ETP readout that reaches no hidden state: allowed (instantaneous gradient is exact)."""

    def update(self, x):
        self.h.value = _cell(self.a, self.h.value, x, self.w.value)
        return readout_jvp(self.h.value, self.w_out.value)


@jax.custom_jvp
def readout_jvp(h, w):
    return braintrace.matmul(h, w)


@readout_jvp.defjvp
def _readout_rule(primals, tangents):
    return jax.jvp(lambda h, w: braintrace.matmul(h, w), primals, tangents)


def _data(batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    return jnp.asarray(rng.randn(*lead, 3)), jnp.asarray(rng.randn(*lead, 2))


def _check_exact(model, xs, targets):
    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    want, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    got, _ = online_sum(learner, xs, loss)
    for k in want:
        assert jnp.result_type(got[k]) == jnp.float64
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-8, atol=1e-12)
    return learner


@pytest.mark.parametrize(
    "cell,batch",
    [("plain", None), ("jax.checkpoint", None), ("jax.checkpoint", 2), ("jax.checkpoint(policy)", None),
     ("checkpoint_name", None), ("jit(checkpoint)", None), ("workaround", 2)],
)
def test_checkpoint_is_seen_through_and_exact(x64, cell, batch):
    model = Leaky(cell, batch=batch)
    xs, targets = _data(batch)
    learner = _check_exact(model, xs, targets)
    graph = learner.graph
    assert [r.weight_path for r in graph.hidden_param_op_relations] == [("w",)]
    assert all(g.elementwise for g in graph.hidden_groups)


def test_brainstate_remat_of_a_method_is_exact(x64):
    model = RematMethod()
    xs, targets = _data()
    learner = _check_exact(model, xs, targets)
    assert [r.weight_path for r in learner.graph.hidden_param_op_relations] == [("w",)]


@pytest.mark.parametrize("cell,kind", [("custom_jvp", "jax.custom_jvp"), ("custom_vjp", "jax.custom_vjp")])
def test_custom_rule_hiding_an_etp_primitive_is_refused(cell, kind):
    model = Leaky(cell)
    with pytest.raises(braintrace.NotSupportedError) as err:
        braintrace.D_RTRL(model).compile_graph(jnp.zeros(3))
    msg = str(err.value)
    fn = "cell_jvp" if cell == "custom_jvp" else "cell_vjp"
    assert f"The {kind} function `{fn} at " in msg and "test_hidden_calls.py" in msg
    assert "on weight `w`" in msg and "reaches hidden state `h`" in msg
    assert "instantaneous gradient" in msg and "outside the custom-derivative function" in msg


def test_custom_rule_around_a_readout_is_allowed(x64):
    model = CustomReadout()
    xs, targets = _data()
    learner = _check_exact(model, xs, targets)
    graph = learner.graph
    (rec,) = graph.select(kind=DiagnosticKind.PRIMITIVE_INSIDE_CONTROL_FLOW)
    assert rec.weight_path == ("w_out",) and "reaches no hidden state" in rec.message


def test_control_flow_hiding_an_etp_primitive_still_refused():
    class CondStep(Leaky):
        def update(self, x):
            self.h.value = jax.lax.cond(True, lambda h: _cell(self.a, h, x, self.w.value), lambda h: h, self.h.value)
            return self.h.value @ self.w_out.value

    with pytest.raises(braintrace.NotSupportedError, match="cond"):
        braintrace.D_RTRL(CondStep()).compile_graph(jnp.zeros(3))
