"""Recurrent cells: plain-JAX equations, brainstate equivalents, shapes, errors, jaxprs."""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintrace
from braintrace.nn import (
    GRUCell,
    LRUCell,
    LSTMCell,
    MGUCell,
    MiniGRU,
    MiniLSTM,
    MinimalRNNCell,
    URLSTMCell,
    ValinaRNNCell,
    VanillaRNNCell,
)
from braintrace.nn.checks import ACTIVATIONS

from .helpers import assert_close, etp_counts, forbidden_prims, randomize

I, N, B = 3, 5, 2
sig = jax.nn.sigmoid


def lin(cell, name):
    p = getattr(cell, name).weight.value
    return lambda v: v @ p["weight"] + p.get("bias", 0.0)


def cat(*a):
    return jnp.concatenate(a, axis=-1)


# plain-JAX restatements of each cell's equations: (cell, x, states) -> new states
def ref_vanilla(c, x, s):
    return dict(h=jnp.tanh(lin(c, "W")(cat(x, s["h"]))))


def ref_gru(c, x, s):
    h = s["h"]
    z, r = sig(lin(c, "Wz")(cat(x, h))), sig(lin(c, "Wr")(cat(x, h)))
    cand = jnp.tanh(lin(c, "Wh")(cat(x, r * h)))
    return dict(h=(1 - z) * h + z * cand)


def ref_lstm(c, x, s):
    h, cc = s["h"], s["c"]
    xh = cat(x, h)
    i, f = sig(lin(c, "Wi")(xh)), sig(lin(c, "Wf")(xh) + 1.0)
    g, o = jnp.tanh(lin(c, "Wg")(xh)), sig(lin(c, "Wo")(xh))
    cc = f * cc + i * g
    return dict(h=o * jnp.tanh(cc), c=cc)


def ref_mgu(c, x, s):
    h = s["h"]
    f = sig(lin(c, "Wf")(cat(x, h)))
    return dict(h=(1 - f) * h + f * jnp.tanh(lin(c, "Wh")(cat(x, f * h))))


def ref_minimal(c, x, s):
    h = s["h"]
    z = lin(c, "phi")(x)
    uu = sig(lin(c, "W_u")(cat(z, h)))
    return dict(h=uu * h + (1 - uu) * z)


def ref_urlstm(c, x, s):
    h, cc = s["h"], s["c"]
    xh, b = cat(x, h), c.bias.value
    f, r = sig(lin(c, "Wf")(xh) + b), sig(lin(c, "Wr")(xh) - b)
    g = 2 * r * f + (1 - 2 * r) * f**2
    cc = g * cc + (1 - g) * jnp.tanh(lin(c, "Wu")(xh))
    return dict(h=sig(lin(c, "Wo")(xh)) * jnp.tanh(cc), c=cc)


def ref_minigru(c, x, s):
    h = s["h"]
    z = sig(lin(c, "W_z")(cat(x, h)))
    return dict(h=(1 - z) * h + z * lin(c, "W_x")(x))


def ref_minilstm(c, x, s):
    h = s["h"]
    f, i = sig(lin(c, "W_f")(cat(x, h))), sig(lin(c, "W_i")(cat(x, h)))
    return dict(h=f * h + i * lin(c, "W_x")(x))


# (factory, reference, ETP primitives per batched step, ParamState paths)
CELLS = {
    "vanilla": (lambda **k: VanillaRNNCell(I, N, activation="tanh", **k), ref_vanilla, {"etp_mm": 1},
                {("W", "weight")}),
    "gru": (lambda **k: GRUCell(I, N, **k), ref_gru, {"etp_mm": 3},
            {("Wz", "weight"), ("Wr", "weight"), ("Wh", "weight")}),
    "lstm": (lambda **k: LSTMCell(I, N, **k), ref_lstm, {"etp_mm": 4},
             {("Wi", "weight"), ("Wf", "weight"), ("Wg", "weight"), ("Wo", "weight")}),
    "mgu": (lambda **k: MGUCell(I, N, **k), ref_mgu, {"etp_mm": 2}, {("Wf", "weight"), ("Wh", "weight")}),
    "minimal": (lambda **k: MinimalRNNCell(I, N, **k), ref_minimal, {"etp_mm": 2},
                {("phi", "weight"), ("W_u", "weight")}),
    "urlstm": (lambda **k: URLSTMCell(I, N, **k), ref_urlstm, {"etp_mm": 4, "etp_elemwise": 1},
               {("Wf", "weight"), ("Wr", "weight"), ("Wu", "weight"), ("Wo", "weight"), ("bias",)}),
    "minigru": (lambda **k: MiniGRU(I, N, **k), ref_minigru, {"etp_mm": 2}, {("W_z", "weight"), ("W_x", "weight")}),
    "minilstm": (lambda **k: MiniLSTM(I, N, **k), ref_minilstm, {"etp_mm": 3},
                 {("W_f", "weight"), ("W_i", "weight"), ("W_x", "weight")}),
}
IDS = list(CELLS)


def _states(cell):
    return {k[-1]: v for k, v in cell.states(brainstate.HiddenState).items()}


def _random_states(cell, seed=7):
    rng = np.random.default_rng(seed)
    for st in _states(cell).values():
        st.value = jnp.asarray(rng.uniform(-0.8, 0.8, size=st.value.shape), jnp.float32)


@pytest.mark.parametrize("key", IDS)
@pytest.mark.parametrize("batch", [None, B], ids=["unbatched", "batched"])
def test_cell_matches_plain_jax(key, batch):
    make, ref, _, _ = CELLS[key]
    cell = make()
    randomize(cell, seed=1)
    brainstate.nn.init_all_states(cell, batch)
    _random_states(cell)
    xs = jnp.asarray(np.random.default_rng(2).normal(size=(2,) + ((batch,) if batch else ()) + (I,)), jnp.float32)
    want = {k: v.value for k, v in _states(cell).items()}
    for x in xs:  # two steps
        want = ref(cell, x, want)
        out = cell(x)
        assert_close(out, want["h"], rtol=1e-5, atol=1e-5, err_msg=key)
        for k, st in _states(cell).items():
            assert_close(st.value, want[k], rtol=1e-5, atol=1e-5, err_msg=f"{key}.{k}")


def _bs_pairs():
    """(name, braintrace cell, brainstate cell, weight copier)."""

    def vanilla(c, r):
        r.W.weight.value = dict(c.W.weight.value)

    def gru(c, r):
        a, b = c.Wr.weight.value, c.Wz.weight.value
        r.Wrz.weight.value = dict(weight=cat(a["weight"], b["weight"]), bias=cat(a["bias"], b["bias"]))
        r.Wh.weight.value = dict(c.Wh.weight.value)

    def lstm(c, r):
        ps = [getattr(c, n).weight.value for n in ("Wi", "Wg", "Wf", "Wo")]
        r.W.weight.value = dict(weight=cat(*[p["weight"] for p in ps]), bias=cat(*[p["bias"] for p in ps]))

    def mgu(c, r):
        r.Wf.weight.value = dict(c.Wf.weight.value)
        r.Wh.weight.value = dict(c.Wh.weight.value)

    def urlstm(c, r):
        ps = [getattr(c, n).weight.value for n in ("Wf", "Wr", "Wu", "Wo")]
        r.W.weight.value = dict(weight=cat(*[p["weight"] for p in ps]))
        r.bias.value = c.bias.value

    bs = brainstate.nn
    return [
        ("vanilla", VanillaRNNCell(I, N, activation="tanh"), bs.ValinaRNNCell(I, N, activation="tanh"), vanilla),
        ("gru", GRUCell(I, N), bs.GRUCell(I, N), gru),
        ("lstm", LSTMCell(I, N), bs.LSTMCell(I, N), lstm),
        ("mgu", MGUCell(I, N), bs.MGUCell(I, N), mgu),
        ("urlstm", URLSTMCell(I, N), bs.URLSTMCell(I, N), urlstm),
    ]


@pytest.mark.parametrize("case", _bs_pairs(), ids=lambda c: c[0])
def test_cell_matches_brainstate(case):
    _, cell, ref, copy = case
    randomize(cell, seed=4)
    copy(cell, ref)
    brainstate.nn.init_all_states(cell, B)
    brainstate.nn.init_all_states(ref, B)
    _random_states(cell)
    for k, st in _states(cell).items():
        getattr(ref, k).value = st.value
    xs = jnp.asarray(np.random.default_rng(3).normal(size=(3, B, I)), jnp.float32)
    for x in xs:
        assert_close(cell(x), ref(x), rtol=1e-5, atol=1e-5)
    for k, st in _states(cell).items():
        assert_close(st.value, getattr(ref, k).value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", IDS)
def test_cell_shapes_and_reset_keeps_batch(key):
    cell = CELLS[key][0]()
    brainstate.nn.init_all_states(cell)
    assert all(st.value.shape == (N,) for st in _states(cell).values())
    assert cell(jnp.ones(I)).shape == (N,)
    brainstate.nn.init_all_states(cell, B)
    before = _states(cell)
    assert all(st.value.shape == (B, N) for st in before.values())
    assert cell(jnp.ones((B, I))).shape == (B, N)
    cell.reset_state(B)
    after = _states(cell)
    for k in before:
        assert after[k] is before[k], "reset_state must assign .value on the same state objects"
        assert after[k].value.shape == (B, N)
        assert_close(after[k].value, jnp.zeros((B, N)))
    brainstate.nn.reset_all_states(cell, batch_size=B)
    assert all(st.value.shape == (B, N) for st in _states(cell).values())


@pytest.mark.parametrize("key", IDS)
def test_cell_bad_input_size(key):
    cell = CELLS[key][0]()
    brainstate.nn.init_all_states(cell, B)
    name = type(cell).__name__
    with pytest.raises(ValueError) as err:
        cell(jnp.ones((B, I + 1)))
    msg = str(err.value)
    assert msg.startswith(f"{name}(in_size={I}, out_size={N})"), msg
    assert f"expected input with last axis {I}, got shape ({B}, {I + 1})" in msg
    with pytest.raises(ValueError, match=r"input batch shape \(3,\) does not match the batch shape \(2,\) of state `h`"):
        cell(jnp.ones((3, I)))


@pytest.mark.parametrize("key", IDS)
def test_cell_jaxpr_has_etp_primitive_per_weight_op(key):
    make, _, expected, paths = CELLS[key]
    cell = make()
    brainstate.nn.init_all_states(cell, B)
    assert etp_counts(cell, jnp.ones((B, I))) == expected
    assert not forbidden_prims(cell, jnp.ones((B, I)))
    assert set(cell.states(brainstate.ParamState)) == paths


def test_gru_paths_are_the_documented_ones():
    cell = GRUCell(in_size=4, out_size=8)
    assert sorted(cell.states(brainstate.ParamState)) == [("Wh", "weight"), ("Wr", "weight"), ("Wz", "weight")]
    assert all(isinstance(getattr(cell, n), braintrace.nn.Linear) for n in ("Wz", "Wr", "Wh"))


def test_valina_alias_is_the_same_class():
    assert ValinaRNNCell is VanillaRNNCell
    assert isinstance(GRUCell(2, 3), brainstate.nn.RNNCell)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_named_activations_are_flat_and_correct(name):
    fn = ACTIVATIONS[name]
    x = jnp.linspace(-3, 3, 7)
    want = {
        "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "softplus": jax.nn.softplus,
        "silu": jax.nn.silu, "gelu": jax.nn.gelu, "identity": lambda v: v,
    }[name](x)
    assert_close(fn(x), want, rtol=1e-5, atol=1e-6)
    jaxpr = jax.make_jaxpr(fn)(x)
    assert not [e for e in jaxpr.jaxpr.eqns if "jit" in e.primitive.name or "call" in e.primitive.name]


def test_activation_and_size_errors():
    with pytest.raises(ValueError, match=r"GRUCell\(in_size=3, out_size=5\): unknown activation 'foo'"):
        GRUCell(3, 5, activation="foo")
    cell = GRUCell(3, 5, activation=lambda v: 2 * v)
    assert cell.activation(1.0) == 2.0
    with pytest.raises(ValueError, match="must be an int"):
        GRUCell((3, 2), 5)
    with pytest.raises(ValueError, match="r_min < r_max"):
        LRUCell(3, 5, r_min=0.9, r_max=0.5)
    with pytest.raises(TypeError, match="`activation` must be a name or a callable"):
        GRUCell(3, 5, activation=3)
    with pytest.raises(AssertionError, match="`phi` must be callable"):  # 0.2.0 asserted
        MinimalRNNCell(3, 5, phi=3)


def test_minimal_rnn_cell_takes_a_custom_phi_module():
    phi = braintrace.nn.Linear(I, N, b_init=None)
    cell = MinimalRNNCell(I, N, phi=phi)
    brainstate.nn.init_all_states(cell, B)
    assert cell.phi is phi and ("phi", "weight") in cell.states(brainstate.ParamState)
    assert cell(jnp.ones((B, I))).shape == (B, N)


# ------------------------------------------------------------------ LRUCell

def ref_lru(c, x, h):
    """The complex recurrence with jnp complex numbers: ``h`` is complex, returns ``(y, h)``."""
    lam = jnp.exp(-jnp.exp(c.nu_log.value) + 1j * jnp.exp(c.theta_log.value))
    b = c.B_re.weight.value["weight"] + 1j * c.B_im.weight.value["weight"]
    cc = c.C_re.weight.value["weight"] + 1j * c.C_im.weight.value["weight"]
    h = lam * h + jnp.exp(c.gamma_log.value) * (x @ b)
    return jnp.real(h @ cc) + x * c.D.value, h


@pytest.mark.parametrize("batch", [None, B], ids=["unbatched", "batched"])
def test_lru_matches_complex_arithmetic(batch):
    cell = LRUCell(I, N, r_min=0.4, r_max=0.9)
    brainstate.nn.init_all_states(cell, batch)
    rng = np.random.default_rng(3)
    lead = (batch,) if batch else ()
    cell.h_re.value = jnp.asarray(rng.normal(size=lead + (N,)), jnp.float32)
    cell.h_im.value = jnp.asarray(rng.normal(size=lead + (N,)), jnp.float32)
    h = cell.h_re.value + 1j * cell.h_im.value
    for x in jnp.asarray(rng.normal(size=(2,) + lead + (I,)), jnp.float32):  # two steps
        y, h = ref_lru(cell, x, h)
        assert_close(cell(x), y, rtol=1e-5, atol=1e-5)
        assert_close(cell.h_re.value, jnp.real(h), rtol=1e-5, atol=1e-5)
        assert_close(cell.h_im.value, jnp.imag(h), rtol=1e-5, atol=1e-5)


def test_lru_initial_decays_shapes_reset_and_jaxpr():
    cell = LRUCell(I, N, r_min=0.5, r_max=0.8, max_phase=1.0)
    modulus = jnp.exp(-jnp.exp(cell.nu_log.value))
    assert bool(jnp.all((modulus >= 0.5 - 1e-6) & (modulus <= 0.8 + 1e-6)))
    assert bool(jnp.all(jnp.exp(cell.theta_log.value) <= 1.0 + 1e-6))
    assert_close(jnp.exp(2 * cell.gamma_log.value), 1 - modulus**2, rtol=1e-5, atol=1e-6)
    brainstate.nn.init_all_states(cell, B)
    h_re = cell.h_re
    cell(jnp.ones((B, I)))
    cell.reset_state(B)
    assert cell.h_re is h_re and float(jnp.abs(h_re.value).sum()) == 0.0
    assert etp_counts(cell, jnp.ones((B, I))) == {"etp_mm": 4, "etp_elemwise": 3}
    assert not forbidden_prims(cell, jnp.ones((B, I)))
    with pytest.raises(ValueError, match=r"LRUCell\(d_model=3, d_hidden=5\): expected input with last axis 3"):
        cell(jnp.ones((B, N)))
    with pytest.raises(ValueError, match="max_phase"):
        LRUCell(I, N, max_phase=0.0)


@pytest.mark.parametrize("key", IDS)
def test_cell_jit_matches_eager(key):
    make = CELLS[key][0]
    a, b = make(), make()
    randomize(a, seed=9)
    for (pa, sa), sb in zip(a.states(brainstate.ParamState).items(), b.states(brainstate.ParamState).values()):
        sb.value = sa.value
    brainstate.nn.init_all_states(a, B)
    brainstate.nn.init_all_states(b, B)
    step = brainstate.transform.jit(lambda x: b(x))
    for x in jnp.asarray(np.random.default_rng(5).normal(size=(2, B, I)), jnp.float32):
        assert_close(step(x), a(x), rtol=1e-5, atol=1e-5)
