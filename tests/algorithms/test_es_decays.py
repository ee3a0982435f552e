"""ES_D_RTRL with separate input and output decays (``decay_x``, ``decay_f``) against its recurrence by hand.

The bias correction follows the output trace: ``c_t = 1 - α_f^{k+1}``. With
``α_f = 0`` and ``α_x`` the layer's leak the rule is exact on a leaky linear
layer, so it is also checked against BPTT there.
"""

import numpy as np
import pytest

import braintrace
import jax.numpy as jnp

import oracle as O
from .snn_models import LeakyLinear, f64  # noqa: F401
from learning import online_grads, window_grads, x64  # noqa: F401

T, N_IN, N_H, N_OUT = 6, 3, 4, 2


def data(batch=None, seed=1, shape=(N_IN,)):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, *shape))
    targets = jnp.asarray(rng.randn(*lead, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, targets, loss


def es_by_hand(model, xs, targets, ax, af):
    """ES_D_RTRL on the leaky model ``h = a h + (1-a) tanh(x W + b)``, ``out = h W_out``, in NumPy.

    ``ε_x = α_x ε_x + x``, ``ε_f = α_f a ε_f + (1-α_f) df`` (``df = (1-a)(1 - tanh²)``),
    ``c_t = 1 - α_f^{t+1}``, ``∇W += ε_x ⊗ (ε_f δ / c_t)`` with ``δ = (out - target) W_outᵀ``;
    the bias keeps its exact trace ``e = a e + df``; ``W_out`` gets ``h ⊗ (out - target)``.
    """
    W, b = np.asarray(model.w_in.value["weight"]), np.asarray(model.w_in.value["bias"])
    Wo, a, h = np.asarray(model.w_out.value), np.asarray(model.decay_const), np.asarray(model.h.value)
    ex, ef, eb = np.zeros_like(np.asarray(xs[0])), np.zeros_like(h), np.zeros_like(h)
    gW, gb, gWo = np.zeros_like(W), np.zeros_like(b), np.zeros_like(Wo)
    for t in range(T):
        x = np.asarray(xs[t])
        y = x @ W + b
        h = a * h + (1 - a) * np.tanh(y)
        err = h @ Wo - np.asarray(targets[t])
        delta = err @ Wo.T
        df = (1 - a) * (1 - np.tanh(y) ** 2)
        ex = ax * ex + x
        ef = af * a * ef + (1 - af) * df
        eb = a * eb + df
        c = 1 - af ** (t + 1)
        gW += ex.reshape(-1, N_IN).T @ (ef * delta / c).reshape(-1, N_H)
        gb += (eb * delta).reshape(-1, N_H).sum(0)
        gWo += h.reshape(-1, N_H).T @ err.reshape(-1, N_OUT)
    return {("w_in",): {"weight": gW, "bias": gb}, ("w_out",): gWo}


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("ax, af", [(0.9, 0.5), (0.5, 0.9), (0.7, 0.0), (0.0, 0.6)])
def test_equals_its_recurrence_written_by_hand(x64, batch, ax, af):
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0, batch=batch)
    xs, targets, loss = data(batch)
    want = es_by_hand(model, xs, targets, ax, af)
    learner = braintrace.ES_D_RTRL(model, None, decay_x=ax, decay_f=af).compile_graph(xs[0])
    assert (learner.decay, learner.decay_x, learner.decay_f) == (None, ax, af)
    got, _ = online_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, want) < 1e-10
    assert got[("w_in",)]["weight"].dtype == jnp.float64
    # the test can tell the two decays apart
    swapped = es_by_hand(model, xs, targets, af, ax)
    assert O.tree_max_rel_err(swapped, want) > 1e-3


def test_separate_decays_default_to_decay_or_rank(x64):
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0)
    xs, targets, loss = data()
    want = es_by_hand(model, xs, targets, 0.5, 0.2)
    learner = braintrace.ES_D_RTRL(model, 3, decay_f=0.2).compile_graph(xs[0])  # rank 3: α = 0.5
    assert (learner.decay, learner.decay_x, learner.decay_f) == (0.5, 0.5, 0.2)
    got, _ = online_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, want) < 1e-10


def test_bias_correction_counts_time_steps_over_windows(x64):
    model = O.make_leaky(N_IN, N_H, N_OUT, seed=0, batch=2)
    xs, targets, loss = data(2)
    want = es_by_hand(model, xs, targets, 0.9, 0.4)
    learner = braintrace.ES_D_RTRL(model, None, decay_x=0.9, decay_f=0.4).compile_graph(xs[0])
    got, _ = window_grads(learner, xs, loss, 3)
    assert O.tree_max_rel_err(got, want) < 1e-10


@pytest.mark.parametrize("batch", [None, 2])
def test_a_current_output_factor_is_exact_on_a_leaky_linear_layer(f64, batch):
    """``α_f = 0``, ``α_x = λ``: ``ε_x ⊗ df^t`` is the exact trace of ``h = λ h + x W + b`` (== BPTT)."""
    model = LeakyLinear("dense", leak=0.7, batch=batch)
    xs, targets, loss = data(batch)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.ES_D_RTRL(model, None, decay_x=0.7, decay_f=0.0).compile_graph(xs[0])
    got, _ = online_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, bptt) < 1e-10
    # the original rule (one decay) is not exact here: the oracle can tell
    original = braintrace.ES_D_RTRL(model, 0.7).compile_graph(xs[0])
    approx, _ = online_grads(original, xs, loss)
    assert O.tree_max_rel_err(approx, bptt) > 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"decay_x": 1.0}, r"`decay_x` must be a real number in \[0, 1\), got 1.0"),
        ({"decay_f": -0.1}, r"`decay_f` must be a real number in \[0, 1\)"),
        ({"decay_f": True}, r"`decay_f` must be a real number"),
        ({"decay_x": 0.5, "decay_or_rank": None}, r"decay_or_rank=None needs both `decay_x` and `decay_f`"),
    ],
)
def test_bad_decays_are_value_errors(kwargs, match):
    kwargs = {"decay_or_rank": 0.9, **kwargs}
    with pytest.raises(ValueError, match=match):
        braintrace.ES_D_RTRL(O.make_leaky(N_IN, N_H, N_OUT), **kwargs)
