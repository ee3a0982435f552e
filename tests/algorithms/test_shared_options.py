"""The κ filter and random feedback on every kind of trace, against the rules written out by hand.

D_RTRL's exact trace with both options is e-prop (``tests/algorithms/test_snn_rules.py``);
here the same options act on ES_D_RTRL's factored traces (the output factor ``ε_f``
is filtered), OTTT's presynaptic traces and OTPE's ('approx') postsynaptic traces,
on :class:`TwoLayer` (a hidden layer ``h`` and a leaky readout ``r``, an output group
that keeps its own traces and its true signal).
"""

import numpy as np
import pytest

import brainstate
import braintrace
import jax.numpy as jnp

import oracle as O
from .snn_models import TwoLayer, f64, hidden, restore, step_grads, to_numpy, total, window_sum  # noqa: F401

T, N_IN, N_H, N_OUT = 6, 3, 4, 2
KAPPA, LEAK = 0.7, 0.6


def data(batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, N_IN))
    targets = jnp.asarray(rng.randn(*lead, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, targets, loss


def contract(pre, post):
    """``Σ_batch pre[..., i] post[..., o]``."""
    return np.einsum("bi,bo->io", pre.reshape(-1, pre.shape[-1]), post.reshape(-1, post.shape[-1]))


def bsum(v):
    return v.reshape(-1, v.shape[-1]).sum(0)


def by_hand(rule, model, xs, targets, *, kappa=0.0, B=None, ax_decay=0.8, af_decay=0.8, leak=LEAK):
    """Per-step gradients on :class:`TwoLayer`, in NumPy.

    ``h = a h + (1-a) tanh(x W + b)``, ``r = κ_r r + h U``, ``out = r + h V``, ``e = out - target``;
    ``df_h = (1-a)(1 - tanh²)``, ``df_r = 1``, ``δ_r = e``; the hidden layer's signal ``L_h`` is
    ``e (U+V)ᵀ``, or ``e B`` with random feedback. The κ filter ``z̄ = κ z̄ + z`` acts on the
    hidden layer's traces only (``W``'s; ``U`` feeds the readout, an output group).

    'es': ``ε_x = α_x ε_x + x`` (``h`` for ``U``), ``ε_f = α_f D ε_f + (1-α_f) df`` (``D_h = a``,
    ``D_r = κ_r``), ``c = 1 - α_f^{t+1}``, the bias's exact trace ``e_b = a e_b + df_h``; filtered:
    ``ε_f`` of ``h`` and ``e_b``. ∇W = ε_x ⊗ (ε̄_f / c ⊙ L_h), ∇b = ē_b ⊙ L_h, ∇U = ε_x^U ⊗ (ε_f^r / c ⊙ e).

    'ottt' (mode 'A'): ``â = λ â + x`` (``h`` for ``U``), the bias factor ``â_b = λ â_b + 1``;
    filtered: ``â`` and ``â_b`` of ``W``. ∇W = â ⊗ (df_h ⊙ L_h), ∇U = â^U ⊗ (df_r ⊙ e).

    'otpe' ('approx'): ``â = λ â + x``, ``F = λ F + df``, ``n = Σ_{j≤t} λ^j``, the bias's trace
    ``E_b = λ E_b + df_h``; filtered: ``F_h`` and ``E_b``. ∇W = â ⊗ (F̄_h / n ⊙ L_h).
    """
    W, bW, U, V, a, kr, h, r = to_numpy(model.numpy())
    lead = h.shape[:-1]

    def z(*s):
        return np.zeros(lead + s)

    ex, eh, fh, fr, eb = z(N_IN), z(N_H), z(N_H), z(N_OUT), z(N_H)
    fh_bar, eb_bar, ex_bar = z(N_H), z(N_H), z(N_IN)
    out = []
    for t in range(xs.shape[0]):
        x = np.asarray(xs[t])
        th = np.tanh(x @ W + bW)
        h = a * h + (1 - a) * th
        r = kr * r + h @ U
        e = r + h @ V - np.asarray(targets[t])
        dfh = (1 - a) * (1 - th**2)
        L = e @ B if B is not None else e @ (U + V).T
        if rule == "es":
            ex, eh = ax_decay * ex + x, ax_decay * eh + h
            fh = af_decay * a * fh + (1 - af_decay) * dfh
            fr = af_decay * kr * fr + (1 - af_decay) * 1.0
            eb = a * eb + dfh
            fh_bar, eb_bar = kappa * fh_bar + fh, kappa * eb_bar + eb
            c = 1 - af_decay ** (t + 1)
            gW, gb, gU = contract(ex, fh_bar / c * L), bsum(eb_bar * L), contract(eh, fr / c * e)
        elif rule == "ottt":
            ex, eh, eb = leak * ex + x, leak * eh + h, leak * eb + 1.0
            ex_bar, eb_bar = kappa * ex_bar + ex, kappa * eb_bar + eb
            gW, gb, gU = contract(ex_bar, dfh * L), bsum(eb_bar * dfh * L), contract(eh, e)
        elif rule == "otpe":
            ex, eh = leak * ex + x, leak * eh + h
            fh, fr = leak * fh + dfh, leak * fr + 1.0
            eb = leak * eb + dfh
            fh_bar, eb_bar = kappa * fh_bar + fh, kappa * eb_bar + eb
            n = sum(leak**j for j in range(t + 1))
            gW, gb, gU = contract(ex, fh_bar / n * L), bsum(eb_bar * L), contract(eh, fr / n * e)
        else:
            raise ValueError(rule)
        out.append({("W",): {"weight": gW, "bias": gb}, ("U",): {"weight": gU}, ("V",): contract(h, e)})
    return out


def per_step_err(got, want):
    return max(O.tree_max_rel_err(g, w) for g, w in zip(got, want))


def make(rule, model, **opts):
    if rule == "es":
        return braintrace.ES_D_RTRL(model, 0.8, **opts)
    if rule == "ottt":
        return braintrace.OTTT(model, leak=LEAK, **opts)
    return braintrace.OTPE(model, "approx", leak=LEAK, **opts)


def feedback_matrix(learner):
    (gi,) = learner.feedback_matrices
    assert learner.graph.hidden_groups[gi].hidden_paths == (("h",),)  # the readout keeps its true error
    return np.asarray(learner.feedback_matrices[gi].matrix)


@pytest.mark.parametrize("rule", ["es", "ottt", "otpe"])
@pytest.mark.parametrize("option", ["kappa", "random", "both"])
def test_each_step_equals_the_rule_written_by_hand(f64, rule, option):
    batch = 2
    model = TwoLayer(batch=batch)
    xs, targets, loss = data(batch)
    kappa = KAPPA if option in ("kappa", "both") else 0.0
    opts = {"kappa_filter_decay": kappa}
    if option in ("random", "both"):
        opts.update(feedback="random", random_feedback_key=2)
    learner = make(rule, model, **opts).compile_graph(xs[0])
    B = feedback_matrix(learner) if "feedback" in opts else None
    want = by_hand(rule, model, xs, targets, kappa=kappa, B=B)
    got = step_grads(learner, xs, loss)
    assert per_step_err(got, want) < 1e-10
    # without the option the rule gives another gradient: the test can tell
    assert per_step_err(got, by_hand(rule, model, xs, targets)) > 1e-3


@pytest.mark.parametrize("rule", ["es", "ottt"])
def test_unbatched_models(f64, rule):
    model = TwoLayer()
    xs, targets, loss = data()
    learner = make(rule, model, kappa_filter_decay=KAPPA, feedback="random", random_feedback_key=1)
    learner.compile_graph(xs[0])
    want = by_hand(rule, model, xs, targets, kappa=KAPPA, B=feedback_matrix(learner))
    assert per_step_err(step_grads(learner, xs, loss), want) < 1e-10


@pytest.mark.parametrize("rule", ["es", "d_rtrl"])
def test_filtered_traces_over_windows(f64, rule):
    """Over windows the filtered traces equal step by step's: ES_D_RTRL keeps every step's traces in the
    window's loop, D_RTRL (whose traces are one value per synapse) replays the window to contract them."""
    model = TwoLayer(batch=2)
    xs, targets, loss = data(2)
    h0 = hidden(model)
    build = (lambda m: make("es", m, kappa_filter_decay=KAPPA)) if rule == "es" else (
        lambda m: braintrace.D_RTRL(m, kappa_filter_decay=KAPPA))
    want = total(step_grads(build(model).compile_graph(xs[0]), xs, loss))
    restore(model, h0)
    learner = build(model).compile_graph(xs[0])
    assert learner.driver.rule.traces_in_scan == (rule == "es")
    assert learner.driver.rule.recomputes == (rule == "d_rtrl")
    got, _ = window_sum(learner, xs, loss, 3)
    assert O.tree_max_rel_err(got, want) < 1e-10
    # the traces after the windows are those after the steps (the filtered copies included)
    stepwise = build(model)
    restore(model, h0)
    stepwise.compile_graph(xs[0])
    step_grads(stepwise, xs, loss)
    assert set(learner.etraces) == set(stepwise.etraces)
    for k, v in learner.etraces.items():
        assert O.tree_max_rel_err(v.value, stepwise.etraces[k].value) < 1e-10


def test_filtered_windows_keep_one_steps_traces():
    """With the κ filter a D_RTRL window does not stack its per-synapse traces over the window's K steps:
    its compiled working memory stays near the unfiltered window's (it was about K times larger)."""
    K, B, n_in, n = 32, 8, 64, 128

    def temp(kappa):
        net = brainstate.nn.Sequential(
            braintrace.nn.Linear(n_in, n), braintrace.nn.LIF(n, tau=10.0, dt=1.0),
            braintrace.nn.LeakyRateReadout(n, 2, decay=0.8))
        brainstate.nn.init_all_states(net, batch_size=B)
        learner = braintrace.EProp(net, kappa_filter_decay=kappa).compile_graph(jnp.zeros((B, n_in)))
        params = net.states(brainstate.ParamState)
        grad = brainstate.transform.grad(lambda w: learner(braintrace.MultiStepData(w)).sum(), params)
        win = jnp.ones((K, B, n_in))
        return brainstate.transform.jit(grad).lower(win).compile().memory_analysis().temp_size_in_bytes

    plain, filtered = temp(0.0), temp(0.8)
    trace_bytes = B * n_in * n * 4  # one step's per-synapse trace (float32)
    assert filtered < plain + 8 * trace_bytes, (plain, filtered, trace_bytes)


def test_filtered_copies_are_traces_of_the_hidden_layer_only():
    model = TwoLayer(batch=2)
    es = make("es", model, kappa_filter_decay=KAPPA).compile_graph(jnp.zeros((2, N_IN)))
    gh, gr = (next(g.index for g in es.graph.hidden_groups if g.hidden_paths == ((n,),)) for n in "hr")
    assert {(k.kind, k.group) for k in es.etraces} == {
        ("eps", gh), ("kappa", gh), ("f", gh), ("kappa_f", gh),  # W: the bias's exact trace, the output trace
        ("f", gr), ("x", -1),  # U feeds the readout (an output group): not filtered; the input traces
    }
    ottt = make("ottt", model, kappa_filter_decay=KAPPA).compile_graph(jnp.zeros((2, N_IN)))
    assert {k.kind for k in ottt.etraces} == {"x", "diag", "kappa_x", "kappa_diag"}
    es.reset_state(2)  # filtered traces reset with the others
    assert all(float(jnp.abs(v).max()) == 0.0 for st in es.etraces.values() for v in st.value.values())


def test_an_option_with_nothing_to_act_on_warns():
    model = O.make_leaky()  # `h` is read out by a plain product: an output group, no hidden layer
    with pytest.warns(UserWarning, match=r"kappa_filter_decay=0.5\): no trace is filtered"):
        braintrace.ES_D_RTRL(model, 0.8, kappa_filter_decay=0.5).compile_graph(jnp.zeros(3))
    with pytest.warns(UserWarning, match=r"no trace is filtered"):
        braintrace.OTTT(TwoLayer(), "O", leak=0.5, kappa_filter_decay=0.5).compile_graph(jnp.zeros(N_IN))
    with pytest.warns(UserWarning, match=r"OTPE\(feedback='random'\).*no group receives random feedback"):
        braintrace.OTPE(model, leak=0.5, feedback="random").compile_graph(jnp.zeros(3))


@pytest.mark.parametrize("cls", [braintrace.D_RTRL, braintrace.OTPE])
def test_options_and_multi_step_do_not_mix(cls):
    kw = {"leak": 0.5} if cls is braintrace.OTPE else {}
    for opts in ({"feedback": "random"}, {"kappa_filter_decay": 0.5}):
        with pytest.raises(ValueError, match=r"multi-step.*single-step"):
            cls(TwoLayer(), vjp_method="multi-step", **kw, **opts)
    with pytest.raises(ValueError, match=r"feedback must be one of \('symmetric', 'random'\)"):
        cls(TwoLayer(), feedback="sym", **kw)
    with pytest.raises(ValueError, match=r"kappa_filter_decay must be a real number in \[0, 1\)"):
        cls(TwoLayer(), kappa_filter_decay=1.0, **kw)
