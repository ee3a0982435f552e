"""Tests of the brute-force oracle (tests/oracle.py) itself.

float64 is switched on by a module fixture *after* all imports (importing
brainstate after enabling it can switch it off again) and restored afterwards,
so other test modules keep their default precision; every test asserts that its
arrays really are float64.
"""

import os
import sys

import numpy as np
import pytest

import jax
import jax.numpy as jnp
import brainstate
import braintrace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle as O  # noqa: E402

T = 5
N_IN, N_H, N_OUT = 3, 4, 2


@pytest.fixture(autouse=True, scope="module")
def x64():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)


def assert_f64(tree):
    for leaf in jax.tree.leaves(tree):
        assert jnp.result_type(leaf) == jnp.float64, jnp.result_type(leaf)


def make_data(seed=1, batch=None, n_in=N_IN, n_out=N_OUT, steps=T):
    rng = np.random.RandomState(seed)
    lead = (steps,) if batch is None else (steps, batch)
    xs = jnp.asarray(rng.randn(*lead, n_in))
    targets = jnp.asarray(rng.randn(*lead, n_out))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    assert_f64((xs, targets))
    return xs, loss


MAKERS = {
    "leaky": lambda **kw: O.make_leaky(N_IN, N_H, N_OUT, seed=0, **kw),
    "leaky_decay": lambda **kw: O.make_leaky(N_IN, N_H, N_OUT, seed=0, learn_decay=True, **kw),
    "rnn": lambda **kw: O.make_rnn(N_IN, N_H, N_OUT, seed=0, **kw),
    "adaptive": lambda **kw: O.make_adaptive(N_IN, N_H, N_OUT, seed=0, **kw),
    "adaptive_grouped": lambda **kw: O.make_adaptive(N_IN, N_H, N_OUT, seed=0, grouped=True, **kw),
    "gru": lambda **kw: O.make_gru(N_IN, N_H, N_OUT, seed=0, **kw),
}


def build(name, **kw):
    model = MAKERS[name](**kw)
    assert_f64(O.get_params(model))
    assert_f64(O.get_hidden(model))
    return model


def rel(a, b):
    return O.tree_max_rel_err(a, b)


# ---------------------------------------------------------------------------
# The pure step
# ---------------------------------------------------------------------------


def test_step_pure_jittable_and_restores_state():
    model = build("gru")
    xs, loss = make_data()
    before = jax.tree.map(np.asarray, (O.get_params(model), O.get_hidden(model)))
    step = O.make_step(model)
    p, h = O.get_params(model), O.get_hidden(model)
    out_e, new_e = step(p, h, xs[0])
    out_j, new_j = jax.jit(step)(p, h, xs[0])
    assert rel(out_j, out_e) < 1e-14 and rel(new_j, new_e) < 1e-14
    assert rel(new_e, h) > 1e-3  # the step does move the state
    O.bptt_grads(model, xs, loss)
    O.rtrl_reference(model, xs, loss, "diagonal", windows=2)
    O.cut_jacobian(model, xs[0])
    after = jax.tree.map(np.asarray, (O.get_params(model), O.get_hidden(model)))
    assert jax.tree.all(jax.tree.map(np.array_equal, before, after))


def test_step_perturbation_is_added_at_the_write():
    model = build("rnn")
    step = O.make_step(model)
    p, h = O.get_params(model), O.get_hidden(model)
    x = jnp.ones(N_IN)
    pert = {("h",): jnp.arange(N_H, dtype=jnp.float64)}
    out0, new0 = step(p, h, x)
    out1, new1 = step(p, h, x, pert)
    assert np.allclose(new1[("h",)], new0[("h",)] + pert[("h",)])
    assert np.allclose(out1, new1[("h",)] @ p[("w_out",)])  # the readout sees h + p


# ---------------------------------------------------------------------------
# BPTT vs finite differences
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["leaky_decay", "rnn", "adaptive_grouped", "gru"])
def test_bptt_matches_finite_differences(name):
    model = build(name)
    xs, loss = make_data()
    g, L = O.bptt_grads(model, xs, loss)
    gf, Lf = O.finite_difference_grads(model, xs, loss)
    assert_f64((g, gf, L))
    assert float(jnp.abs(L - Lf)) < 1e-12 * max(1.0, float(abs(L)))
    assert jax.tree.structure(g) == jax.tree.structure(O.get_params(model))
    assert rel(gf, g) < 1e-6
    assert min(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(g)) > 1e-4  # no dead param


def test_finite_differences_detect_a_wrong_gradient():
    model = build("rnn")
    xs, loss = make_data()
    g, _ = O.bptt_grads(model, xs, loss)
    gf, _ = O.finite_difference_grads(model, xs, loss)
    wrong = dict(g)
    wrong[("b",)] = g[("b",)].at[0].add(1e-4)
    assert rel(gf, wrong) > 1e-6


def test_finite_differences_refuse_float32():
    jax.config.update("jax_enable_x64", False)
    try:
        model = O.make_rnn(N_IN, N_H, N_OUT, seed=0)
        xs = jnp.ones((2, N_IN), jnp.float32)
        with pytest.raises(TypeError, match="float64"):
            O.finite_difference_grads(model, xs, lambda o, t: jnp.sum(o))
    finally:
        jax.config.update("jax_enable_x64", True)


# ---------------------------------------------------------------------------
# RTRL, full mode
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["leaky_decay", "rnn", "adaptive", "gru"])
def test_rtrl_full_equals_bptt(name):
    model = build(name)
    xs, loss = make_data()
    g, L = O.bptt_grads(model, xs, loss)
    gr, Lr = O.rtrl_reference(model, xs, loss, "full")
    assert_f64(gr)
    assert jax.tree.structure(gr) == jax.tree.structure(g)
    assert float(jnp.abs(L - Lr)) < 1e-12
    assert rel(gr, g) < 1e-10


def test_rtrl_full_batched_equals_bptt():
    model = build("rnn", batch=2)
    xs, loss = make_data(batch=2)
    g, _ = O.bptt_grads(model, xs, loss)
    gr, _ = O.rtrl_reference(model, xs, loss, "full")
    assert rel(gr, g) < 1e-10


def test_instantaneous_grads_equal_rtrl_with_no_online_param():
    model = build("gru")
    xs, loss = make_data()
    gi, _ = O.instantaneous_grads(model, xs, loss)
    for mode in ("full", "diagonal"):
        g0, _ = O.rtrl_reference(model, xs, loss, mode, online=set())
        assert rel(g0, gi) < 1e-10
    g, _ = O.bptt_grads(model, xs, loss)
    assert rel(gi, g) > 1e-2  # temporal credit matters on this model


@pytest.mark.parametrize("name", ["rnn", "gru", "adaptive"])
def test_rtrl_full_single_param_subsets(name):
    """A parameter with a trace gets its BPTT gradient; the others their
    instantaneous gradient (never zero)."""
    model = build(name)
    xs, loss = make_data()
    g, _ = O.bptt_grads(model, xs, loss)
    gi, _ = O.instantaneous_grads(model, xs, loss)
    recurrent_differs = False
    for path in O.param_states(model):
        gs, _ = O.rtrl_reference(model, xs, loss, "full", online={path})
        assert rel(gs[path], g[path]) < 1e-10, path
        for other in gs:
            if other != path:
                assert rel(gs[other], gi[other]) < 1e-10, (path, other)
                recurrent_differs |= rel(gs[other], g[other]) > 1e-3
    assert recurrent_differs  # the subset really restricts the trace


def test_rtrl_online_leaf_keys():
    model = build("gru")
    xs, loss = make_data()
    g, _ = O.bptt_grads(model, xs, loss)
    gi, _ = O.instantaneous_grads(model, xs, loss)
    gs, _ = O.rtrl_reference(model, xs, loss, "full", online={(("wz",), "weight"), ("wh",)})
    assert rel(gs[("wz",)]["weight"], g[("wz",)]["weight"]) < 1e-10
    assert rel(gs[("wz",)]["bias"], gi[("wz",)]["bias"]) < 1e-10
    assert rel(gs[("wz",)]["bias"], g[("wz",)]["bias"]) > 1e-3
    assert rel(gs[("wh",)], g[("wh",)]) < 1e-10
    assert rel(gs[("wr",)], gi[("wr",)]) < 1e-10


def test_rtrl_online_validation():
    model = build("gru")
    xs, loss = make_data()
    with pytest.raises(KeyError):
        O.rtrl_reference(model, xs, loss, "full", online={("nope",)})
    with pytest.raises(KeyError):
        O.rtrl_reference(model, xs, loss, "full", online={(("wz",), "nope")})
    with pytest.raises(TypeError):
        O.rtrl_reference(model, xs, loss, "full", online="wz")
    with pytest.raises(ValueError):
        O.rtrl_reference(model, xs, loss, "banana")


# ---------------------------------------------------------------------------
# The cut and the per-position blocks
# ---------------------------------------------------------------------------


def test_cut_jacobian_of_vanilla_rnn_is_zero():
    model = build("rnn")
    x = make_data()[0][0]
    Jfull = O.full_jacobian(model, x)
    Jcut = O.cut_jacobian(model, x, block=False)
    assert_f64((Jfull, Jcut))
    assert Jcut.shape == Jfull.shape == (N_H, N_H)
    assert float(jnp.max(jnp.abs(Jfull))) > 0.1
    assert float(jnp.max(jnp.abs(Jcut))) == 0.0
    assert float(jnp.max(jnp.abs(O.cut_jacobian(model, x)))) == 0.0


class PlainRec(brainstate.nn.Module):
    """Input weight through an ETP matmul, recurrence through a plain ``@``."""

    def __init__(self):
        super().__init__()
        rng = np.random.RandomState(0)
        self.w = brainstate.ParamState(jnp.asarray(rng.randn(N_IN, N_H)))
        self.rec = brainstate.ParamState(jnp.asarray(rng.randn(N_H, N_H) * 0.5))
        self.h = brainstate.HiddenState(jnp.asarray(rng.randn(N_H)))

    def update(self, x):
        self.h.value = jnp.tanh(braintrace.matmul(x, self.w.value) + self.h.value @ self.rec.value)
        return self.h.value[:N_OUT]


def test_cut_through_plain_recurrence_keeps_only_position_blocks():
    """A recurrence through a plain ``@`` is dynamics, not input: the cut keeps
    it, the block mask keeps its diagonal only."""
    model = PlainRec()
    x = jnp.ones(N_IN)
    Jfull = O.full_jacobian(model, x)
    assert np.allclose(O.cut_jacobian(model, x, block=False), Jfull, rtol=1e-14, atol=0)
    Jb = O.cut_jacobian(model, x)
    assert np.allclose(Jb, jnp.diag(jnp.diag(Jfull)), rtol=1e-14, atol=0)
    assert float(jnp.max(jnp.abs(Jfull - jnp.diag(jnp.diag(Jfull))))) > 1e-2


def test_diagonal_mode_applies_the_position_blocks():
    """On PlainRec the cut changes nothing, so only the block mask separates
    diagonal mode from BPTT; and the trace then follows diag(J) exactly."""
    model = PlainRec()
    xs, loss = make_data()
    g, _ = O.bptt_grads(model, xs, loss)
    gd, _ = O.rtrl_reference(model, xs, loss, "diagonal", online={("w",)})
    assert rel(gd[("w",)], g[("w",)]) > 1e-3
    # independent: P^t = diag(J^t) P^{t-1} + M^t for w (per element), δ^t from the readout
    step = O.make_step(model)
    p, h = O.get_params(model), O.get_hidden(model)[("h",)]
    P = jnp.zeros((N_H, N_IN * N_H))
    gw = jnp.zeros(N_IN * N_H)
    for t in range(T):
        def hnew(hh, w, t=t):
            return step({**p, ("w",): w.reshape(N_IN, N_H)}, {("h",): hh}, xs[t])[1][("h",)]
        J = jax.jacfwd(hnew)(h, p[("w",)].reshape(-1))
        M = jax.jacfwd(hnew, argnums=1)(h, p[("w",)].reshape(-1))
        P = jnp.diag(J)[:, None] * P + M
        h = hnew(h, p[("w",)].reshape(-1))
        delta = jax.grad(lambda hh, t=t: loss(hh[:N_OUT], t))(h)
        gw = gw + delta @ P
    assert rel(gd[("w",)], gw.reshape(N_IN, N_H)) < 1e-10


def test_gru_cut_block_is_one_minus_z():
    model = build("gru")
    x = make_data()[0][0]
    h = O.get_hidden(model)[("h",)]
    z, _, _ = model.gates(x, h)
    expected = jnp.diag(1.0 - z)
    for block in (True, False):
        Jcut = O.cut_jacobian(model, x, block=block)
        assert_f64(Jcut)
        assert np.allclose(Jcut, expected, rtol=1e-13, atol=1e-15), block
    Jfull = O.full_jacobian(model, x)
    assert float(jnp.max(jnp.abs(Jfull - expected))) > 1e-2  # the cut matters


def test_position_mask_layouts():
    two = build("adaptive")
    grp = build("adaptive_grouped")
    lay = O.hidden_layout(two)
    assert [p for p, *_ in lay] == [("a",), ("v",)]
    assert all(v == (N_H,) for *_, v in lay)
    m2 = O.position_mask(two)
    # flat h = [a_0..a_3, v_0..v_3]: same position across the two states
    eye = np.eye(N_H, dtype=bool)
    assert np.array_equal(m2, np.block([[eye, eye], [eye, eye]]))
    (path, sl, shape, varshape), = O.hidden_layout(grp)
    assert shape == (N_H, 2) and varshape == (N_H,)
    mg = O.position_mask(grp)  # flat order [v_0, a_0, v_1, a_1, ...]
    assert np.array_equal(mg, np.kron(np.eye(N_H, dtype=bool), np.ones((2, 2), bool)))
    mb = O.position_mask(build("leaky", batch=2))
    assert np.array_equal(mb, np.eye(2 * N_H, dtype=bool))  # batch elements are positions


def test_adaptive_cut_couples_states_at_one_position():
    model = build("adaptive")
    x = make_data()[0][0]
    J = O.cut_jacobian(model, x)
    # ∂a^t/∂v^{t-1} sits off the state-diagonal: rows a (0:N_H), columns v (N_H:)
    cross = J[:N_H, N_H:]
    assert float(jnp.min(jnp.abs(jnp.diag(cross)))) > 1e-3
    assert np.allclose(J, O.full_jacobian(model, x), rtol=1e-14, atol=0)


def test_cut_inlines_jit_and_refuses_scan():
    class JitRNN(O.VanillaRNN):
        def update(self, x):
            xh = jnp.concatenate([x, self.h.value], axis=-1)
            f = jax.jit(lambda a, w, b: jax.nn.relu(braintrace.matmul(a, w) + b) - 0.1 * a[..., -1:])
            self.h.value = f(xh, self.w.value, self.b.value)
            return self.h.value @ self.w_out.value

    model = JitRNN(N_IN, N_H, N_OUT, seed=0)
    x = make_data()[0][0]
    J = O.cut_jacobian(model, x, block=False)
    # only the plain `- 0.1 * a[..., -1:]` path survives: column of h_last
    expected = jnp.zeros((N_H, N_H)).at[:, -1].set(-0.1)
    assert np.allclose(J, expected, rtol=0, atol=1e-15)

    class ScanRNN(O.VanillaRNN):
        def update(self, x):
            xh = jnp.concatenate([x, self.h.value], axis=-1)

            def body(c, _):
                return c, braintrace.matmul(xh, self.w.value)

            _, ys = jax.lax.scan(body, 0.0, None, length=1)
            self.h.value = jnp.tanh(ys[0] + self.b.value)
            return self.h.value @ self.w_out.value

    with pytest.raises(NotImplementedError, match="scan"):
        O.cut_jacobian(ScanRNN(N_IN, N_H, N_OUT, seed=0), x)


# ---------------------------------------------------------------------------
# RTRL, diagonal mode
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,kw",
    [("leaky_decay", {}), ("leaky", {"batch": 2}), ("adaptive", {}), ("adaptive_grouped", {})],
)
def test_diagonal_is_exact_on_elementwise_models(name, kw):
    model = build(name, **kw)
    xs, loss = make_data(batch=kw.get("batch"))
    g, _ = O.bptt_grads(model, xs, loss)
    gd, _ = O.rtrl_reference(model, xs, loss, "diagonal")
    assert_f64(gd)
    assert rel(gd, g) < 1e-10


def test_grouped_and_ungrouped_adaptive_agree():
    xs, loss = make_data()
    g2, _ = O.rtrl_reference(build("adaptive"), xs, loss, "diagonal")
    gg, _ = O.rtrl_reference(build("adaptive_grouped"), xs, loss, "diagonal")
    assert rel(gg, g2) < 1e-12


@pytest.mark.parametrize("name", ["rnn", "gru"])
def test_diagonal_differs_from_bptt_on_coupled_models(name):
    model = build(name)
    xs, loss = make_data()
    g, _ = O.bptt_grads(model, xs, loss)
    gd, _ = O.rtrl_reference(model, xs, loss, "diagonal")
    gf, _ = O.rtrl_reference(model, xs, loss, "full")
    assert rel(gd, g) > 0.05
    assert rel(gf, g) < 1e-10
    # readout has no trace in either mode: identical
    assert rel(gd[("w_out",)], g[("w_out",)]) < 1e-10


def test_diagonal_on_rnn_is_instantaneous_credit():
    """J_cut = 0 ⇒ P^t = M^t: each step's gradient is δ^t M^t + direct, i.e. the
    instantaneous gradient."""
    model = build("rnn")
    xs, loss = make_data()
    gd, _ = O.rtrl_reference(model, xs, loss, "diagonal")
    gi, _ = O.instantaneous_grads(model, xs, loss)
    assert rel(gd, gi) < 1e-10


# ---------------------------------------------------------------------------
# Multi-step windows
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rnn", "gru"])
@pytest.mark.parametrize("mode", ["full", "diagonal"])
def test_windows_T_equals_bptt(name, mode):
    model = build(name)
    xs, loss = make_data()
    g, L = O.bptt_grads(model, xs, loss)
    gw, Lw = O.rtrl_reference(model, xs, loss, mode, windows=T)
    assert float(jnp.abs(L - Lw)) < 1e-12
    assert rel(gw, g) < 1e-10


@pytest.mark.parametrize("K", [1, 2, 3, [1, 3, 1]])
def test_windows_full_mode_equals_bptt_for_any_K(K):
    """Full traces carry exact credit across window borders, so every window
    split (including K=1 and ragged ones) is BPTT."""
    model = build("gru")
    xs, loss = make_data()
    g, _ = O.bptt_grads(model, xs, loss)
    gw, _ = O.rtrl_reference(model, xs, loss, "full", windows=K)
    assert rel(gw, g) < 1e-10


def _truncated_bptt(model, xs, loss, K):
    """Per window [t0, t1): BPTT of its summed loss, starting from the state
    h^{t0-2} held constant (θ is live from step t0-1 on)."""
    step = O.make_step(model)
    params = O.get_params(model)
    hs = [O.get_hidden(model)]  # hs[t+1] = h^t
    for t in range(T):
        hs.append(step(params, hs[-1], xs[t])[1])
    total = jax.tree.map(jnp.zeros_like, params)
    for t0 in range(0, T, K):
        t1 = min(t0 + K, T)
        first = max(t0 - 1, 0)

        def window(p, t0=t0, t1=t1, first=first):
            h, acc = hs[first], 0.0
            for t in range(first, t1):
                out, h = step(p, h, xs[t])
                if t >= t0:
                    acc = acc + loss(out, t)
            return acc

        total = jax.tree.map(jnp.add, total, jax.grad(window)(params))
    return total


@pytest.mark.parametrize("K", [1, 2])
def test_windows_diagonal_on_rnn_is_truncated_bptt(K):
    """J_cut = 0 ⇒ the trace before a window is M^{t0-1}: the hybrid is BPTT
    reaching exactly one step back before each window."""
    model = build("rnn")
    xs, loss = make_data()
    gw, _ = O.rtrl_reference(model, xs, loss, "diagonal", windows=K)
    gt = _truncated_bptt(model, xs, loss, K)
    assert rel(gw, gt) < 1e-10
    g, _ = O.bptt_grads(model, xs, loss)
    assert rel(gw, g) > 1e-3


def test_windows_diagonal_exact_model_equals_bptt():
    model = build("adaptive_grouped")
    xs, loss = make_data()
    g, _ = O.bptt_grads(model, xs, loss)
    for K in (1, 2):
        gw, _ = O.rtrl_reference(model, xs, loss, "diagonal", windows=K)
        assert rel(gw, g) < 1e-10


def test_windows_with_offline_params_give_in_window_bptt_only():
    model = build("rnn")
    xs, loss = make_data()
    gw, _ = O.rtrl_reference(model, xs, loss, "full", windows=2, online=set())
    step = O.make_step(model)
    params = O.get_params(model)
    h = O.get_hidden(model)
    expected = jax.tree.map(jnp.zeros_like, params)
    for t0 in range(0, T, 2):

        def window(p, h=h, t0=t0):
            hh, acc = h, 0.0
            for t in range(t0, min(t0 + 2, T)):
                out, hh = step(p, hh, xs[t])
                acc = acc + loss(out, t)
            return acc

        expected = jax.tree.map(jnp.add, expected, jax.grad(window)(params))
        for t in range(t0, min(t0 + 2, T)):
            h = step(params, h, xs[t])[1]
    assert rel(gw, expected) < 1e-10


# ---------------------------------------------------------------------------
# Outputs that bypass the hidden write
# ---------------------------------------------------------------------------


class ReadBeforeWrite(O.VanillaRNN):
    """Reads out the *old* h before writing the new one."""

    def update(self, x):
        out = self.h.value @ self.w_out.value
        xh = jnp.concatenate([x, self.h.value], axis=-1)
        self.h.value = jnp.tanh(braintrace.matmul(xh, self.w.value) + self.b.value)
        return out


def test_output_bypassing_the_write_is_inside_the_single_step_rule():
    """The single-step reference has the bypass term δ_prev^t P^{t-1} (DESIGN.md §3): an output
    read before the write is credited to the previous step's trace, so full RTRL is BPTT."""
    model = ReadBeforeWrite(N_IN, N_H, N_OUT, seed=0)
    xs, loss = make_data()
    g, _ = O.bptt_grads(model, xs, loss)
    gf, _ = O.rtrl_reference(model, xs, loss, "full")
    g1, _ = O.rtrl_reference(model, xs, loss, "full", windows=1)
    assert rel(gf, g) < 1e-10  # single-step with the bypass term
    assert rel(g1, g) < 1e-10  # windows=1 differentiates the step exactly
