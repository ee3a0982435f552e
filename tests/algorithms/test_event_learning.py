"""Online learning through the event-driven sparse product: the same gradients as the CSR product.

* A recurrent LIF network whose recurrence is :class:`braintrace.nn.EventSparseLinear`
  on the event path (a capacity of every block), on the CSR fallback (a capacity of
  one block) and on the CSR product (``events=False``): BPTT, D_RTRL and ES_D_RTRL
  (windows and single steps) agree to 1e-10 in float64. The stored weights have both
  signs: the event path takes ``|w|`` inside the primitive (``abs_weight``), the CSR
  product outside it.
* ES_D_RTRL's window contraction of an event-driven relation (the window's raw inputs
  instead of the leaky input trace) against a hand-written ES_D_RTRL on a leaky
  integrator (``D = λ``, ``df = 1``), over two windows (the second starts from a
  nonzero input trace).
"""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
import oracle as O

from .snn_models import f64  # noqa: F401 - fixture

N, N_IN, N_OUT, T = 24, 4, 2, 8


def recurrent_csr(rng):
    # stored values of both signs: Dale's law multiplies by |w|, whose derivative is sign(w)
    m = (rng.random((N, N)) < 0.4) * rng.lognormal(-0.5, 0.3, (N, N)) * rng.choice([-1.0, 1.0], (N, N))
    np.fill_diagonal(m, 0.0)
    return u.sparse.CSR.fromdense(jnp.asarray(m))


class EventLIF(brainstate.nn.Module):
    def __init__(self, csr, sign, w_in, events, max_active):
        super().__init__()
        self.inp = braintrace.nn.Linear(N_IN, N, w_init=w_in)
        self.rec = braintrace.nn.EventSparseLinear(csr, w_sign=sign, events=events, max_active=max_active, block=4)
        self.lif = braintrace.nn.LIF(N, tau=5.0, dt=1.0)
        self.out = braintrace.nn.LeakyRateReadout(N, N_OUT, decay=0.8, w_init=jnp.asarray(
            np.random.default_rng(7).normal(size=(N, N_OUT)) * 0.3))

    def update(self, x):
        return self.out(self.lif(self.inp(x) + self.rec(self.lif.get_spike())))


def lif_nets():
    rng = np.random.default_rng(0)
    csr = recurrent_csr(rng)
    sign = np.where(np.arange(N) % 5 == 0, -1.0, 1.0)
    w_in = jnp.asarray(rng.normal(size=(N_IN, N)) * 1.5)
    nets = {}
    for name, events, max_active in [("event", True, 1.0), ("fallback", True, 0.01), ("csr", False, 0.1)]:
        net = EventLIF(csr, sign, w_in, events, max_active)
        brainstate.nn.init_all_states(net)
        nets[name] = net
    xs = jnp.asarray((rng.random((T, N_IN)) < 0.6).astype(np.float64))
    ys = jnp.asarray(rng.normal(size=(T, N_OUT)))
    return nets, xs, ys


def loss(o, y):
    return jnp.sum((o - y) ** 2)


def gradients(method, net, xs, ys):
    if method == "bptt":
        return braintrace.bptt_gradients(net, xs, ys, loss)[0]
    learner, window = {
        "d_rtrl": (lambda: braintrace.D_RTRL(net), 4),
        "es_d_rtrl": (lambda: braintrace.ES_D_RTRL(net, 0.8), 4),
        "es_d_rtrl_steps": (lambda: braintrace.ES_D_RTRL(net, 0.8), None),
    }[method]
    learner = learner().compile_graph(xs[0])
    return braintrace.online_gradients(learner, xs, ys, loss, window=window)[0]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["bptt", "d_rtrl", "es_d_rtrl", "es_d_rtrl_steps"])
def test_event_and_csr_paths_give_equal_gradients(f64, method):  # noqa: F811
    nets, xs, ys = lif_nets()
    assert nets["event"].rec.events and nets["fallback"].rec.events and not nets["csr"].rec.events
    grads = {name: gradients(method, net, xs, ys) for name, net in nets.items()}
    rec = grads["csr"][("rec", "weight")]["weight"]
    assert rec.dtype == jnp.float64 and float(jnp.max(jnp.abs(rec))) > 0  # the recurrence learns
    for name in ("event", "fallback"):
        assert O.tree_max_rel_err(grads[name], grads["csr"]) < 1e-10, name


class LeakyEvent(brainstate.nn.Module):
    """``h = λ h + x M``, ``out = h W_out`` (plain JAX read-out), ``x`` an external sparse input."""

    def __init__(self, csr, lam):
        super().__init__()
        self.rec = braintrace.nn.EventSparseLinear(csr, events=True, max_active=1.0, block=2)
        self.lam = lam
        self.w_out = brainstate.ParamState(jnp.asarray(np.random.default_rng(3).normal(size=(csr.shape[1], 2))))
        self.h = brainstate.HiddenState(jnp.zeros(csr.shape[1]))

    def update(self, x):
        self.h.value = self.lam * self.h.value + self.rec(x)
        return self.h.value @ self.w_out.value


@pytest.mark.parametrize("ax,af", [(0.6, 0.6), (0.5, 0.8)])
def test_es_d_rtrl_window_contraction_of_raw_inputs_equals_the_recurrence(f64, ax, af):  # noqa: F811
    rng = np.random.default_rng(1)
    n_in, n_h, lam, K, steps = 6, 5, 0.7, 4, 8
    m = (rng.random((n_in, n_h)) < 0.6) * rng.normal(size=(n_in, n_h))
    m[:, 0] = 1.0
    csr = u.sparse.CSR.fromdense(jnp.asarray(m))
    model = LeakyEvent(csr, lam)
    xs = jnp.asarray((rng.random((steps, n_in)) < 0.4) * rng.normal(size=(steps, n_in)))
    ys = jnp.asarray(rng.normal(size=(steps, 2)))
    if ax == af:
        learner = braintrace.ES_D_RTRL(model, ax)
    else:  # separate decays: the input trace's a_x is the one the raw inputs are filtered with
        learner = braintrace.ES_D_RTRL(model, None, decay_x=ax, decay_f=af)
    learner.compile_graph(xs[0])
    got = braintrace.online_gradients(learner, xs, ys, loss, window=K)[0][("rec", "weight")]["weight"]
    assert got.dtype == jnp.float64

    # by hand: D = λ, df = 1, δ^t = ∂ℓ^t/∂h^t = 2 (o^t - y^t) W_out^T
    rows, cols = np.asarray(model.rec.structure.rows), np.asarray(model.rec.structure.cols)
    w_out = np.asarray(model.w_out.value)
    h, ex, ef = np.zeros(n_h), np.zeros(n_in), np.zeros(n_h)
    want = np.zeros(len(rows))
    for t in range(steps):
        x = np.asarray(xs[t])
        h = lam * h + x @ np.asarray(csr.todense())
        delta = 2 * (h @ w_out - np.asarray(ys[t])) @ w_out.T
        ex = ax * ex + x
        ef = af * lam * ef + (1 - af)
        c = 1 - af ** (t + 1)
        want += ex[rows] * (ef / c * delta)[cols]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


class EventReadout(brainstate.nn.Module):
    """LIF spikes read out through an event-driven sparse layer: a weight no hidden state
    depends on (uncovered), learned from the step's linearisation, transposed over a window."""

    def __init__(self, csr, w_in, events, max_active):
        super().__init__()
        self.inp = braintrace.nn.Linear(N_IN, N, w_init=w_in)
        self.lif = braintrace.nn.LIF(N, tau=5.0, dt=1.0)
        self.out = braintrace.nn.EventSparseLinear(csr, events=events, max_active=max_active, block=4)

    def update(self, x):
        return self.out(self.lif(self.inp(x)))


@pytest.mark.parametrize("method", ["bptt", "d_rtrl", "es_d_rtrl", "es_d_rtrl_steps"])
def test_an_event_driven_readout_learns_as_the_csr_one(f64, method):  # noqa: F811
    """Before, a window's transposition failed on the event path (vmap turned the weight
    tangent's cond into a select wrapped in stop_gradient, which has no transpose). The
    read-out's gradient is instantaneous, so every learner's equals BPTT's."""
    rng = np.random.default_rng(5)
    m = (rng.random((N, N_OUT)) < 0.6) * rng.normal(size=(N, N_OUT))
    m[:, 0] = 1.0
    csr = u.sparse.CSR.fromdense(jnp.asarray(m))
    w_in = jnp.asarray(rng.normal(size=(N_IN, N)) * 1.5)
    xs = jnp.asarray((rng.random((T, N_IN)) < 0.6).astype(np.float64))
    ys = jnp.asarray(rng.normal(size=(T, N_OUT)))
    grads = {}
    for name, events, max_active in [("event", True, 1.0), ("fallback", True, 0.01), ("csr", False, 0.1)]:
        net = EventReadout(csr, w_in, events, max_active)
        brainstate.nn.init_all_states(net)
        grads[name] = gradients(method, net, xs, ys)
    out = grads["csr"][("out", "weight")]["weight"]
    assert out.dtype == jnp.float64 and float(jnp.max(jnp.abs(out))) > 0
    for name in ("event", "fallback"):
        assert O.tree_max_rel_err(grads[name], grads["csr"]) < 1e-10, name
    net = EventReadout(csr, w_in, True, 1.0)
    brainstate.nn.init_all_states(net)
    bptt = gradients("bptt", net, xs, ys)[("out", "weight")]
    assert O.tree_max_rel_err(grads["event"][("out", "weight")], bptt) < 1e-10
