"""ES_D_RTRL against an independent statement of its recurrence (DESIGN.md §3)."""

import numpy as np
import pytest

import brainstate
import braintrace
from braintrace.algorithms import TraceKey
import jax
import jax.numpy as jnp

import oracle as O
from .snn_models import SummedLeaky, summed_leaky_by_hand
from learning import online_grads, window_grads, x64  # noqa: F401

T, N_IN, N_H, N_OUT = 6, 3, 4, 2


def data(batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, N_IN))
    targets = jnp.asarray(rng.randn(*lead, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, targets, loss


def es_by_hand(model, xs, targets, alpha):
    """The ES_D_RTRL recurrence written out for the leaky model, in NumPy.

    h = a h + (1-a) tanh(x W + b),  out = h W_out,  L^t = ½|out - target|².
    D = a, df = (1-a)(1 - tanh(y)²), δ = (out - target) W_outᵀ;
    ε_x = α ε_x + x, ε_f = α D ε_f + (1-α) df, c = 1 - α^(t+1),
    ∇W += ε_x ⊗ (ε_f δ / c); the bias keeps its exact trace e = D e + df.
    """
    W = np.asarray(model.w_in.value["weight"])
    b = np.asarray(model.w_in.value["bias"])
    Wo = np.asarray(model.w_out.value)
    a = np.asarray(model.decay_const)
    h = np.asarray(model.h.value)
    ex, ef, eb = np.zeros_like(np.asarray(xs[0])), np.zeros_like(h), np.zeros_like(h)
    gW, gb, gWo = np.zeros_like(W), np.zeros_like(b), np.zeros_like(Wo)
    for t in range(T):
        x = np.asarray(xs[t])
        y = x @ W + b
        h = a * h + (1 - a) * np.tanh(y)
        out = h @ Wo
        err = out - np.asarray(targets[t])
        delta = err @ Wo.T
        df = (1 - a) * (1 - np.tanh(y) ** 2)
        ex = alpha * ex + x
        ef = alpha * a * ef + (1 - alpha) * df
        eb = a * eb + df
        c = 1 - alpha ** (t + 1)
        gW += ex.reshape(-1, N_IN).T @ (ef * delta / c).reshape(-1, N_H)
        gb += (eb * delta).reshape(-1, N_H).sum(0)
        gWo += h.reshape(-1, N_H).T @ err.reshape(-1, N_OUT)
    return {("w_in",): {"weight": gW, "bias": gb}, ("w_out",): gWo}


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("decay_or_rank", [0.5, 0.9, 3])
def test_equals_its_recurrence_written_by_hand(x64, batch, decay_or_rank):
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0, batch=batch)
    xs, targets, loss = data(batch)
    alpha = decay_or_rank if isinstance(decay_or_rank, float) else (decay_or_rank - 1) / (decay_or_rank + 1)
    want = es_by_hand(model, xs, targets, alpha)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.ES_D_RTRL(model, decay_or_rank).compile_graph(xs[0])
    got, _ = online_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, want) < 1e-10
    cos = O.tree_cosine(got, bptt)
    print(f"ES_D_RTRL(decay_or_rank={decay_or_rank}, batch={batch}) cosine with BPTT: {cos:.4f}")
    assert cos > 0.5


def test_bias_correction_counts_time_steps_not_calls(x64):
    """A window of K steps advances the correction by K (as K single calls do)."""
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0)
    xs, targets, loss = data()
    want = es_by_hand(model, xs, targets, 0.8)
    learner = braintrace.ES_D_RTRL(model, 0.8).compile_graph(xs[0])
    got, _ = window_grads(learner, xs, loss, 3)
    assert O.tree_max_rel_err(got, want) < 1e-10
    assert int(learner.step_count.value) == T


def test_pp_prop_and_iodim_are_es_d_rtrl():
    assert braintrace.pp_prop is braintrace.ES_D_RTRL
    assert issubclass(braintrace.ES_D_RTRL, braintrace.IODimVjpAlgorithm)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.2, 0, -3, True, "0.5", None])
def test_decay_or_rank_outside_the_rules_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"open interval \(0, 1\).*integer rank n >= 1"):
        braintrace.ES_D_RTRL(O.make_leaky(N_IN, N_H, N_OUT), bad)


def test_multi_step_full_window_equals_bptt(x64):
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0)
    xs, targets, loss = data()
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.ES_D_RTRL(model, 0.9, vjp_method="multi-step").compile_graph(xs[0])
    got, _ = window_grads(learner, xs, loss, T)
    assert O.tree_max_rel_err(got, bptt) < 1e-10


@pytest.mark.parametrize("name", ["gru", "adaptive_grouped"])
def test_runs_on_coupled_and_multi_state_models(x64, name):
    model = {"gru": O.make_gru, "adaptive_grouped": lambda *a, **k: O.make_adaptive(*a, grouped=True, **k)}[name](
        N_IN, N_H, N_OUT, seed=0
    )
    xs, _, loss = data()
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.ES_D_RTRL(model, 0.9).compile_graph(xs[0])
    got, _ = online_grads(learner, xs, loss)
    cos = O.tree_cosine(got, bptt)
    print(f"ES_D_RTRL on {name}: cosine with BPTT {cos:.4f}")
    assert np.isfinite(cos) and cos > 0.5


def es_by_hand_summed(model, xs, targets, alpha):
    """ES_D_RTRL on :class:`SummedLeaky`: ``D = a`` (the recurrent current enters through
    ``W_rec``'s data input), ``ε_f = α a ε_f + (1-α) df``, the bias's exact trace
    ``e = a e + df``, bias correction ``c_t = 1 - α^{t+1}``."""
    return summed_leaky_by_hand(model, xs, targets, x_decay=alpha, f_decay=lambda a: alpha * a, f_gain=1 - alpha,
                                bias_decay=lambda a: a, norm=lambda t: 1 - alpha ** (t + 1))


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("window", [None, 3])
def test_summed_relations_share_one_output_trace(x64, batch, window):
    model = SummedLeaky(batch=batch)
    xs, targets, loss = data(batch)
    learner = braintrace.ES_D_RTRL(model, 0.8).compile_graph(xs[0])
    assert learner.graph.output_classes == (0, 0)
    idx = {r.weight_path[0]: r.index for r in learner.graph.relations}
    (f_key,) = [k for k in learner.etraces if k.kind == "f"]
    assert set(f_key.relations) == {idx["w_in"], idx["w_rec"]} and f_key.group == 0
    assert set(learner.get_etrace_of(model.w_rec)) == {f_key, TraceKey("x", (idx["w_rec"],))}
    want = es_by_hand_summed(model, xs, targets, 0.8)
    bptt, _ = O.bptt_grads(model, xs, loss)
    got, _ = online_grads(learner, xs, loss) if window is None else window_grads(learner, xs, loss, window)
    assert O.tree_max_rel_err(got, want) < 1e-10
    assert O.tree_cosine(got, bptt) > 0.5  # an approximation of BPTT's gradient, not another gradient


def test_relations_not_only_summed_keep_their_own_output_traces(x64):
    model = SummedLeaky(gate=True)
    xs, targets, loss = data()
    learner = braintrace.ES_D_RTRL(model, 0.8).compile_graph(xs[0])
    assert learner.graph.output_classes == (0, 1)
    idx = {r.weight_path[0]: r.index for r in learner.graph.relations}
    assert {k for k in learner.etraces if k.kind == "f"} == {TraceKey("f", (i,), 0) for i in idx.values()}
    want = es_by_hand_summed(model, xs, targets, 0.8)
    got, _ = online_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, want) < 1e-10


class ThreeCurrents(brainstate.nn.Module):
    """``v = a v + (1-a) tanh(x W_in + h W_rec + x W_skip + e ⊙ 1 + b)``: three matrix products and an
    element-wise weight summed into one current (the element-wise one has no ``x``: never shared)."""

    def __init__(self, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w_in = brainstate.ParamState(jnp.asarray(rng.randn(N_IN, N_H) / np.sqrt(N_IN)))
        self.w_skip = brainstate.ParamState(jnp.asarray(rng.randn(N_IN, N_H) / np.sqrt(N_IN)))
        self.w_rec = brainstate.ParamState(jnp.asarray(rng.randn(N_H, N_H) / np.sqrt(N_H)))
        self.e = brainstate.ParamState(jnp.asarray(0.1 * rng.randn(N_H)))
        self.b = brainstate.ParamState(jnp.asarray(0.1 * rng.randn(N_H)))
        self.w_out = brainstate.ParamState(jnp.asarray(rng.randn(N_H, N_OUT) / np.sqrt(N_H)))
        self.a = jnp.asarray(jax.nn.sigmoid(rng.randn(N_H) + 1.0))
        self.h = brainstate.HiddenState(jnp.asarray(0.5 * rng.randn(*((N_H,) if batch is None else (batch, N_H)))))

    def update(self, x):
        y = braintrace.matmul(x, self.w_in.value) + braintrace.matmul(self.h.value, self.w_rec.value)
        y = y + braintrace.matmul(x, self.w_skip.value) + braintrace.element_wise(self.e.value) + self.b.value
        self.h.value = self.a * self.h.value + (1.0 - self.a) * jnp.tanh(y)
        return self.h.value @ self.w_out.value


def _without_sharing(monkeypatch):
    import braintrace.compiler.graph as graph_module

    monkeypatch.setattr(graph_module, "summed_output_classes", lambda jaxpr, rels: tuple(r.index for r in rels))


SHARING_MODELS = {
    "summed": lambda b: SummedLeaky(batch=b),
    "three_currents": lambda b: ThreeCurrents(batch=b),
}


# ES_D_RTRL on SummedLeaky is left out: its shared trace is compared with the rule written out
# per relation by hand (batched and not, step by step and in windows of 3) in
# test_summed_relations_share_one_output_trace.
@pytest.mark.parametrize(
    "learner,model", [("es_d_rtrl", "three_currents"), ("otpe", "summed"), ("otpe", "three_currents")]
)
@pytest.mark.parametrize("window", [None, 3])
def test_sharing_output_traces_changes_no_gradient(x64, monkeypatch, model, learner, window):
    """The same gradients with the summed-output classes as with one class per relation."""
    make = SHARING_MODELS[model]
    xs, _, loss = data(2)
    build = {"es_d_rtrl": lambda m: braintrace.ES_D_RTRL(m, 0.8), "otpe": lambda m: braintrace.OTPE(m, "approx", leak=0.6)}
    shared = build[learner](make(2)).compile_graph(xs[0])
    got, _ = online_grads(shared, xs, loss) if window is None else window_grads(shared, xs, loss, window)
    n_shared = sum(k.kind == "f" for k in shared.etraces)
    _without_sharing(monkeypatch)
    alone = build[learner](make(2)).compile_graph(xs[0])
    want, _ = online_grads(alone, xs, loss) if window is None else window_grads(alone, xs, loss, window)
    assert n_shared < sum(k.kind == "f" for k in alone.etraces)
    assert O.tree_max_rel_err(got, want) < 1e-10
