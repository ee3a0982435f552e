"""RFLO against Murray's (2019) rule written out by hand on his rate network, and a training run."""

import warnings

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp
import optax

import oracle as O
from .snn_models import f64, hidden, restore, step_grads, to_numpy, total, window_sum  # noqa: F401

T, N_IN, N, N_OUT, TAU = 6, 3, 5, 2, 4.0


class RateNet(brainstate.nn.Module):
    """Murray's network: ``u = W h + W_in x``, ``h ← h + (−h + tanh(u))/τ``, ``y = W_out h`` (ETP products)."""

    def __init__(self, n_in=N_IN, n=N, n_out=N_OUT, tau=TAU, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w_in = brainstate.ParamState(jnp.asarray(rng.randn(n_in, n) / np.sqrt(n_in)))
        self.w_rec = brainstate.ParamState(jnp.asarray(1.2 * rng.randn(n, n) / np.sqrt(n)))
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(n, n_out) / np.sqrt(n)))
        self.tau = tau
        lead = () if batch is None else (batch,)
        self.h = brainstate.HiddenState(jnp.asarray(0.5 * rng.randn(*lead, n)))

    def update(self, x):
        u = braintrace.matmul(self.h.value, self.w_rec.value) + braintrace.matmul(x, self.w_in.value)
        self.h.value = self.h.value + (-self.h.value + jnp.tanh(u)) / self.tau
        return braintrace.matmul(self.h.value, self.w_out.value)


def data(batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, N_IN))
    targets = jnp.asarray(rng.randn(*lead, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, targets, loss


def murray_by_hand(model, xs, targets, B, *, symmetric=False):
    """Per-step gradients of Murray's RFLO, in NumPy (his eqs., with ``e = y − y*`` and ``B`` of shape (n_out, N)).

    ``p_ij = (1 − 1/τ) p_ij + (1/τ) φ'(u_i) h_j(t−1)``, ``q_ik = (1 − 1/τ) q_ik + (1/τ) φ'(u_i) x_k``,
    ``∇W_ij = [e B]_i p_ij``, ``∇W_in,ik = [e B]_i q_ik``, ``∇W_out = h ⊗ e``. ``symmetric``: ``W_outᵀ`` for ``B``.
    """
    W_in, W, W_out, h = to_numpy((model.w_in.value, model.w_rec.value, model.w_out.value, model.h.value))
    tau = model.tau
    lead = h.shape[:-1]
    p, q = np.zeros(lead + (N, N)), np.zeros(lead + (N_IN, N))  # [.., pre j, post i]
    out = []
    for t in range(xs.shape[0]):
        x = np.asarray(xs[t])
        u = h @ W + x @ W_in
        dphi = 1 - np.tanh(u) ** 2
        p = (1 - 1 / tau) * p + (1 / tau) * h[..., :, None] * dphi[..., None, :]
        q = (1 - 1 / tau) * q + (1 / tau) * x[..., :, None] * dphi[..., None, :]
        h = h + (-h + np.tanh(u)) / tau
        e = h @ W_out - np.asarray(targets[t])
        L = e @ (W_out.T if symmetric else B)
        sig = L[..., None, :]
        out.append({
            ("w_rec",): (p * sig).reshape((-1, N, N)).sum(0),
            ("w_in",): (q * sig).reshape((-1, N_IN, N)).sum(0),
            ("w_out",): (h[..., :, None] * e[..., None, :]).reshape((-1, N, N_OUT)).sum(0),
        })
    return out


def per_step_err(got, want):
    return max(O.tree_max_rel_err(g, w) for g, w in zip(got, want))


def rflo(model, batch, key=7):
    x0 = jnp.zeros((N_IN,) if batch is None else (batch, N_IN))
    learner = braintrace.RFLO(model, random_feedback_key=key).compile_graph(x0)
    (gi,) = learner.feedback_matrices
    return learner, np.asarray(learner.feedback_matrices[gi].matrix)


@pytest.mark.parametrize("batch", [None, 2])
def test_each_step_equals_murrays_rule_written_by_hand(f64, batch):
    model = RateNet(batch=batch)
    xs, targets, loss = data(batch)
    learner, B = rflo(model, batch)
    assert B.shape == (N_OUT, N) and learner.graph.hidden_groups[0].hidden_paths == (("h",),)
    assert learner.model.w_rec.value.dtype == jnp.float64
    want = murray_by_hand(model, xs, targets, B)
    got = step_grads(learner, xs, loss)
    assert per_step_err(got, want) < 1e-10
    # the test can tell random feedback from the true (symmetric) signal
    assert per_step_err(got, murray_by_hand(model, xs, targets, B, symmetric=True)) > 1e-3


def test_windows_sum_the_same_steps(f64):
    model = RateNet(batch=2)
    xs, targets, loss = data(2)
    h0 = hidden(model)
    learner, B = rflo(model, 2)
    want = total(murray_by_hand(model, xs, targets, B))
    got, _ = window_sum(learner, xs, loss, 3)
    assert O.tree_max_rel_err(got, want) < 1e-10
    restore(model, h0)


def test_is_d_rtrl_and_eprop_with_random_feedback(f64):
    model = RateNet(batch=2)
    xs, _, loss = data(2)
    h0 = hidden(model)
    grads = []
    for make in (lambda m: braintrace.RFLO(m, random_feedback_key=3),
                 lambda m: braintrace.D_RTRL(m, feedback="random", random_feedback_key=3),
                 lambda m: braintrace.EProp(m, "random", random_feedback_key=3)):
        restore(model, h0)
        grads.append(total(step_grads(make(model).compile_graph(xs[0]), xs, loss)))
    assert O.tree_max_rel_err(grads[0], grads[1]) < 1e-12
    assert O.tree_max_rel_err(grads[0], grads[2]) < 1e-12


def test_a_network_without_a_hidden_layer_is_refused():
    class PlainReadout(RateNet):
        def update(self, x):
            super().update(x)
            return self.h.value @ self.w_out.value  # plain JAX: `h` reaches the output directly

    learner = braintrace.RFLO(PlainReadout())
    with pytest.raises(braintrace.CompilationError, match=r"RFLO: no hidden layer learns online.*braintrace\.matmul"):
        learner.compile_graph(jnp.zeros(N_IN))
    assert learner.graph is None
    with pytest.warns(UserWarning, match=r"feedback='random'.*no group receives random feedback"):
        braintrace.D_RTRL(PlainReadout(), feedback="random").compile_graph(jnp.zeros(N_IN))


def test_catalog_and_cli_name():
    from braintrace.algorithms.catalog import learner_class

    assert learner_class("rflo") is braintrace.RFLO and braintrace.algorithms.RFLO is braintrace.RFLO
    assert issubclass(braintrace.RFLO, braintrace.ParamDimVjpAlgorithm)
    learner = braintrace.RFLO(RateNet(), kappa_filter_decay=0.5)
    assert (learner.feedback, learner.kappa, learner.vjp_method) == ("random", 0.5, "single-step")


def test_training_lowers_the_loss():
    """A 32-unit rate network learns to produce two sine waves from a pulse, with RFLO and Adam."""
    steps, batch, n = 40, 4, 32
    model = RateNet(n_in=2, n=n, n_out=2, tau=5.0, batch=batch, seed=3)
    t = np.arange(steps)
    xs = np.zeros((steps, batch, 2))
    xs[:3, :, 0] = 1.0
    xs[:, :, 1] = 0.2
    target = np.stack([np.sin(2 * np.pi * t / steps), np.cos(2 * np.pi * t / steps)], -1)
    ys = jnp.asarray(np.broadcast_to(target[:, None], (steps, batch, 2)))
    xs = jnp.asarray(xs, jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learner = braintrace.RFLO(model, random_feedback_key=0).compile_graph(xs[0])
    params = model.states(brainstate.ParamState)
    opt = optax.adam(1e-2)
    opt_state = opt.init({k: v.value for k, v in params.items()})

    def loss_fn(out, y):
        return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, -1))

    @brainstate.transform.jit
    def train_step(opt_state):
        grads, total_loss = braintrace.online_gradients(learner, xs, ys, loss_fn, batch_size=batch)
        values = {k: v.value for k, v in params.items()}
        updates, opt_state = opt.update(grads, opt_state, values)
        for k, v in optax.apply_updates(values, updates).items():
            params[k].value = v
        return total_loss / steps, opt_state, grads

    losses = []
    for _ in range(60):
        value, opt_state, grads = train_step(opt_state)
        losses.append(float(value))
    print(f"RFLO rate network: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.3 * losses[0]
    assert float(jnp.abs(grads[("w_rec",)]).max()) > 0  # the recurrent weights learn too


@pytest.mark.slow
def test_the_command_line_trains_with_rflo(tmp_path):
    """`braintrace train --algorithm rflo` on the LIF network (a hidden LIF layer, a leaky read-out)."""
    import json

    from braintrace.cli import main

    argv = ["train", "--quick", "--steps", "2", "--hidden", "8", "--batch-size", "16", "--no-progress",
            "--task", "copying", "--model", "lif", "--algorithm", "rflo", "--out", str(tmp_path)]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["algorithm"] == "rflo" and len(metrics["history"]["loss"]) == 2
