"""Each SNN learner against an independent NumPy statement of its own rule.

The model (:class:`TwoLayer`) is a leaky tanh layer ``h`` read out by a leaky
readout ``r``; ``D``, ``df`` and ``δ`` have closed forms (see its docstring),
so every rule is written out here from the papers' equations, step by step,
and compared with the learner's gradient *at every step* of a 6-step sequence
(not only summed over one full window), batched and unbatched, and with the
sequence cut into ``MultiStepData`` windows.
"""

import numpy as np
import pytest

import brainstate
import braintrace
import jax.numpy as jnp

import oracle as O

from .snn_models import SummedLeaky, TwoLayer, summed_leaky_by_hand, f64, hidden, restore, step_grads, to_numpy, total, window_sum  # noqa: F401

T, N_IN, N_H, N_OUT = 6, 3, 4, 2
LEAK, KAPPA = 0.6, 0.7


def data(batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, N_IN))
    targets = jnp.asarray(rng.randn(*lead, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, targets, loss


def by_hand(rule, model, xs, targets, *, kappa=0.0, leak=None, B=None, ystar=None, on=None):
    """Per-step gradients of ``rule`` on :class:`TwoLayer`, in NumPy.

    ``h = a h + (1-a) tanh(x W + b)``, ``r = κ_r r + h U``, ``out = r + h V``,
    ``L^t = ½|out - target|²``, ``e = out - target``: ``D_h = a``,
    ``df_h = (1-a)(1 - tanh²)``, ``D_r = κ_r``, ``df_r = 1``, ``δ_r = e``,
    ``δ_h = e (U+V)ᵀ`` (the readout ``r``, another group, responds within the
    step).

    The hidden layer's signal ``L_h`` is ``δ_h`` for the rules on the plain
    ``δ`` (D_RTRL, e-prop 'symmetric', OTTT, OTPE); ``e B`` for e-prop
    'random' and ``on·y* B`` for OSTTP. ``V`` gets ``h ⊗ e``. Every path from
    ``W`` to the loss passes ``h``'s new value, so ``W`` has no extra
    instantaneous term.
    """
    W, bW, U, V, a, kr, h, r = to_numpy(model.numpy())
    xs, targets = np.asarray(xs), np.asarray(targets)
    lead = h.shape[:-1]

    def z(*s):
        return np.zeros(lead + s)

    eW, eb, eU = z(N_IN, N_H), z(N_H), z(N_H, N_OUT)  # synapse-shaped traces
    fW, fb = z(N_IN, N_H), z(N_H)  # κ-filtered
    ax, ah, ab = z(N_IN), z(N_H), z(N_H)  # presynaptic traces (ab: the bias factor, 1)
    Fh, Fr = z(N_H), z(N_OUT)  # postsynaptic traces (OTPE approx)
    out = []
    for t in range(xs.shape[0]):
        x = xs[t]
        th = np.tanh(x @ W + bW)
        h = a * h + (1 - a) * th
        r = kr * r + h @ U
        e = r + h @ V - targets[t]
        dfh, dfr = (1 - a) * (1 - th**2), np.ones_like(r)
        d_r = e
        if rule == "eprop_random":
            L_h = e @ B
        elif rule == "osttp":
            L_h = on[t] * (ystar[t] @ B)
        else:
            L_h = e @ (U + V).T
        if rule in ("d_rtrl", "eprop", "eprop_random", "osttp"):
            eW = a * eW + outer(x, dfh)  # D_h = a acts on the postsynaptic axis
            eb = a * eb + dfh
            eU = kr * eU + outer(h, dfr)
            fW, fb = (kappa * fW + eW, kappa * fb + eb) if kappa else (eW, eb)
            gW, gb, gU = outer_sum(fW, L_h), bsum(fb * L_h), outer_sum(eU, d_r)
        elif rule in ("ottt_A", "ottt_O"):
            if rule == "ottt_A":
                ax, ah, ab = leak * ax + x, leak * ah + h, leak * ab + 1.0
            else:
                ax, ah, ab = x, h, np.ones_like(h)
            gW, gb, gU = contract(ax, dfh * L_h), bsum(ab * dfh * L_h), contract(ah, dfr * d_r)
        elif rule == "otpe_full":
            eW, eb, eU = leak * eW + outer(x, dfh), leak * eb + dfh, leak * eU + outer(h, dfr)
            gW, gb, gU = outer_sum(eW, L_h), bsum(eb * L_h), outer_sum(eU, d_r)
        elif rule == "otpe_approx":
            ax, ah = leak * ax + x, leak * ah + h
            Fh, Fr = leak * Fh + dfh, leak * Fr + dfr
            n = sum(leak**j for j in range(t + 1))
            eb = leak * eb + dfh  # biases keep the 'full' trace
            gW, gb, gU = contract(ax, Fh / n * L_h), bsum(eb * L_h), contract(ah, Fr / n * d_r)
        else:
            raise ValueError(rule)
        out.append({("W",): {"weight": gW, "bias": gb}, ("U",): {"weight": gU}, ("V",): contract(h, e)})
    return out


def outer(p, q):
    """``p[..., i] q[..., o]`` (per batch element)."""
    return p[..., :, None] * q[..., None, :]


def bsum(v):
    """Sum over the batch axes."""
    return v.reshape(-1, v.shape[-1]).sum(0)


def outer_sum(eps, sig):
    """``Σ_batch eps[..., i, o] sig[..., o]``."""
    return np.einsum("bio,bo->io", eps.reshape((-1,) + eps.shape[-2:]), sig.reshape(-1, sig.shape[-1]))


def contract(pre, post):
    """``Σ_batch pre[..., i] post[..., o]``."""
    return np.einsum("bi,bo->io", pre.reshape(-1, pre.shape[-1]), post.reshape(-1, post.shape[-1]))


def group_of(learner, name):
    (gi,) = [g.index for g in learner.graph.hidden_groups if g.hidden_paths == ((name,),)]
    return gi


def per_step_err(got, want):
    return max(O.tree_max_rel_err(g, w) for g, w in zip(got, want))


LEARNERS = {
    "d_rtrl": (lambda m: braintrace.D_RTRL(m), {}),
    "eprop": (lambda m: braintrace.EProp(m, kappa_filter_decay=KAPPA), {"kappa": KAPPA}),
    "ottt_A": (lambda m: braintrace.OTTT(m, "A", leak=LEAK), {"leak": LEAK}),
    "ottt_O": (lambda m: braintrace.OTTT(m, "O", leak=LEAK), {"leak": LEAK}),
    "otpe_full": (lambda m: braintrace.OTPE(m, "full", leak=LEAK), {"leak": LEAK}),
    "otpe_approx": (lambda m: braintrace.OTPE(m, "approx", leak=LEAK), {"leak": LEAK}),
}


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("rule", list(LEARNERS))
def test_each_step_equals_the_rule_written_by_hand(f64, rule, batch):
    model = TwoLayer(batch=batch)
    xs, targets, loss = data(batch)
    want = by_hand(rule, model, xs, targets, **LEARNERS[rule][1])
    got = step_grads(LEARNERS[rule][0](model).compile_graph(xs[0]), xs, loss)
    assert per_step_err(got, want) < 1e-10


@pytest.mark.parametrize("rule", ["eprop", "ottt_A", "otpe_approx"])
def test_windows_sum_the_same_steps(f64, rule):
    """MultiStepData windows of 2 and 3 steps: the rule still runs step by step (counts in steps)."""
    model = TwoLayer(batch=2)
    xs, targets, loss = data(2)
    want = total(by_hand(rule, model, xs, targets, **LEARNERS[rule][1]))
    h0 = hidden(model)
    for K in (2, 3):
        restore(model, h0)
        got, _ = window_sum(LEARNERS[rule][0](model).compile_graph(xs[0]), xs, loss, K)
        assert O.tree_max_rel_err(got, want) < 1e-10


@pytest.mark.parametrize("batch", [None, 2])
def test_eprop_random_feedback_equals_the_rule_written_by_hand(f64, batch):
    model = TwoLayer(batch=batch)
    xs, targets, loss = data(batch)
    learner = braintrace.EProp(model, feedback="random", kappa_filter_decay=KAPPA, random_feedback_key=3)
    learner.compile_graph(xs[0])
    gh = group_of(learner, "h")
    assert sorted(learner.feedback_matrices) == [gh]  # the readout (an output group) keeps the true error
    B = np.asarray(learner.feedback_matrices[gh].matrix)
    assert B.shape == (N_OUT, N_H) and np.abs(B).min() > 0
    want = by_hand("eprop_random", model, xs, targets, kappa=KAPPA, B=B)
    got = step_grads(learner, xs, loss)
    assert per_step_err(got, want) < 1e-10
    # the true signal would give another gradient: the test can tell
    assert per_step_err(got, by_hand("eprop", model, xs, targets, kappa=KAPPA)) > 1e-3


def test_eprop_random_feedback_is_frozen_and_seeded(f64):
    model = TwoLayer()
    a = braintrace.EProp(model, feedback="random", random_feedback_key=3).compile_graph(jnp.zeros(N_IN))
    b = braintrace.EProp(model, feedback="random", random_feedback_key=3).compile_graph(jnp.zeros(N_IN))
    c = braintrace.EProp(model, feedback="random", random_feedback_key=4).compile_graph(jnp.zeros(N_IN))
    ma, mb, mc = (np.asarray(next(iter(x.feedback_matrices.values())).matrix) for x in (a, b, c))
    assert np.array_equal(ma, mb) and not np.allclose(ma, mc)
    # frozen: the learner adds no parameter of its own
    assert set(map(id, a.states(brainstate.ParamState).values())) == set(
        map(id, model.states(brainstate.ParamState).values())
    )


def test_eprop_random_signal_hook_maps_the_output_error(f64):
    """The hook output, directly: δ_h = e B (each batch element onto itself), δ_r untouched."""
    model = TwoLayer(batch=3)
    learner = braintrace.EProp(model, feedback="random", random_feedback_key=0).compile_graph(jnp.zeros((3, N_IN)))
    gh, gr = group_of(learner, "h"), group_of(learner, "r")
    rng = np.random.RandomState(0)
    e = jnp.asarray(rng.randn(3, N_OUT))
    dl = {gh: jnp.asarray(rng.randn(3, N_H, 1)), gr: jnp.asarray(rng.randn(3, N_OUT, 1))}
    out, _ = learner.learning_signal(dl, {}, out_cts=(e,), signal=(), count=0)
    B = np.asarray(learner.feedback_matrices[gh].matrix)
    np.testing.assert_allclose(np.asarray(out[gh])[..., 0], np.asarray(e) @ B, rtol=1e-12)
    # the readout (an output group) keeps its true learning signal, untouched
    np.testing.assert_array_equal(np.asarray(out[gr]), np.asarray(dl[gr]))


# -- OSTTP ----------------------------------------------------------------------------


def osttp(model, batch, timing="per-step", seed=5):
    B = braintrace.FixedRandomFeedback(N_OUT, N_H, key=seed, init_scale=0.5)
    xshape = (N_IN,) if batch is None else (batch, N_IN)
    return braintrace.OSTTP(model, [B], target_timing=timing).compile_graph(jnp.zeros(xshape)), np.asarray(B.matrix)


def test_osttp_learning_signal_is_the_projected_target(f64):
    """The hook output, directly: non-zero and equal to y* B_l (the output group keeps ∂L/∂r)."""
    model = TwoLayer(batch=3)
    learner, B = osttp(model, 3)
    gh, gr = group_of(learner, "h"), group_of(learner, "r")
    rng = np.random.RandomState(1)
    y = jnp.asarray(rng.randn(3, N_OUT))
    dl = {gh: jnp.zeros((3, N_H, 1)), gr: jnp.asarray(rng.randn(3, N_OUT, 1))}
    e = jnp.asarray(rng.randn(3, N_OUT))
    ctx = dict(out_cts=(e,), count=0)
    out, _ = learner.learning_signal(dl, {}, signal={"y": y, "on": 1.0}, **ctx)
    sig = np.asarray(out[gh])[..., 0]
    assert np.abs(sig).min() > 0  # the reference library's signal was always zero
    np.testing.assert_allclose(sig, np.asarray(y) @ B, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(out[gr]), np.asarray(dl[gr]))  # the true signal, untouched
    none, _ = learner.learning_signal(dl, {}, signal=(), **ctx)
    assert float(jnp.abs(none[gh]).max()) == 0.0


@pytest.mark.parametrize("batch", [None, 2])
def test_osttp_gradient_equals_the_rule_written_by_hand(f64, batch):
    model = TwoLayer(batch=batch)
    xs, targets, loss = data(batch)
    ystar = targets  # the target of every step
    learner, B = osttp(model, batch)
    want = by_hand("osttp", model, xs, targets, B=B, ystar=np.asarray(ystar), on=np.ones(T))
    got = step_grads(learner, xs, loss, targets=ystar)
    assert per_step_err(got, want) < 1e-10
    assert float(np.abs(np.asarray(total(got)[("W",)]["weight"])).min()) > 0


def test_osttp_target_at_the_end_only(f64):
    """'end': no hidden-layer signal until the target comes; then y* B · ε^T. A window applies it at its last step."""
    model = TwoLayer(batch=2)
    xs, targets, loss = data(2)
    h0 = hidden(model)
    ystar = np.zeros((T, 2, N_OUT))
    ystar[-1] = np.asarray(targets[-1])
    on = np.zeros(T)
    on[-1] = 1.0
    learner, B = osttp(model, 2, timing="end")
    want = by_hand("osttp", model, xs, targets, B=B, ystar=ystar, on=on)
    params = model.states(brainstate.ParamState)
    gfn = brainstate.transform.jit(brainstate.transform.grad(lambda x, t, y: loss(learner(x, y), t), params))
    got = []
    for t in range(T):  # a step without a target (one program), and one with (another)
        y = jnp.asarray(ystar[t]) if t == T - 1 else None
        got.append(dict(gfn(xs[t], jnp.asarray(t), y)))
    assert per_step_err(got, want) < 1e-10
    scale = float(np.abs(np.asarray(got[-1][("W",)]["weight"])).max())
    assert scale > 0
    for g in got[:-1]:  # the loss reaches W only through the projected target
        assert float(np.abs(np.asarray(g[("W",)]["weight"])).max()) < 1e-12 * scale

    restore(model, h0)
    learner.reset_state()

    def window_loss(xs):
        outs = learner(braintrace.MultiStepData(xs), jnp.asarray(ystar[-1]))
        return sum(loss(outs[k], k) for k in range(T))

    win = brainstate.transform.jit(brainstate.transform.grad(window_loss, params))(xs)
    assert O.tree_max_rel_err(dict(win), total(want)) < 1e-10


def test_osttp_per_step_window_takes_a_target_per_step(f64):
    model = TwoLayer(batch=2)
    xs, targets, loss = data(2)
    learner, B = osttp(model, 2)
    want = total(by_hand("osttp", model, xs, targets, B=B, ystar=np.asarray(targets), on=np.ones(T)))

    def window_loss(xs):
        outs = learner(braintrace.MultiStepData(xs), targets)
        return sum(loss(outs[k], k) for k in range(T))

    params = model.states(brainstate.ParamState)
    got = brainstate.transform.jit(brainstate.transform.grad(window_loss, params))(xs)
    assert O.tree_max_rel_err(dict(got), want) < 1e-10


def otpe_by_hand_summed(model, xs, targets, leak):
    """OTPE ('approx') on :class:`SummedLeaky`: ``f = λ f + df``, presynaptic traces with
    ``λ``, bias trace ``e = λ e + df``, normalisation ``n_t = Σ_{j≤t} λ^j``."""
    return summed_leaky_by_hand(model, xs, targets, x_decay=leak, f_decay=leak, f_gain=1.0, bias_decay=leak,
                                norm=lambda t: (1 - leak ** (t + 1)) / (1 - leak))


@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("batch", [None, 2])
def test_otpe_shares_the_output_trace_of_summed_relations(f64, gate, batch):
    model = SummedLeaky(N_IN, N_H, N_OUT, batch=batch, gate=gate)
    xs, targets, loss = data(batch)
    want = otpe_by_hand_summed(model, xs, targets, LEAK)
    learner = braintrace.OTPE(model, "approx", leak=LEAK).compile_graph(xs[0])
    n_f = sum(k.kind == "f" for k in learner.etraces)
    assert n_f == (2 if gate else 1)
    got = total(step_grads(learner, xs, loss))
    assert O.tree_max_rel_err(got, want) < 1e-10
