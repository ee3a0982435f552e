"""braintrace 0.2.0 drop-in: the recurrent cells (compat-0.2.0.md §2, §6).

For each cell: the exact 0.2.0 signature, the sub-modules and parameter shapes
of the ``(3, 5)`` example, the states ``init_state`` creates, one step (output
shape = hidden shape), and the documented construction errors. The update
equations themselves are checked against plain JAX in ``tests/nn/test_rnn.py``.
"""

import brainstate
import jax.numpy as jnp
import numpy as np
import pytest

from braintrace import nn

from .helpers import REQUIRED, Init, assert_signature, param_shapes

I, N, B = 3, 5, 4


def sig(*middle):
    return [("in_size", REQUIRED), ("out_size", REQUIRED), *middle, ("name", None)]


W_B_S_A = lambda w: [("w_init", Init(w)), ("b_init", Init("ZeroInit")), ("state_init", Init("ZeroInit")),  # noqa: E731
                     ("activation", "tanh")]

GATE = {"weight": (I + N, N), "bias": (N,)}
# name: (signature, {param path: shapes}, hidden states)
CELLS = {
    "ValinaRNNCell": (sig(("state_init", Init("ZeroInit")), ("w_init", Init("XavierNormal")),
                          ("b_init", Init("ZeroInit")), ("activation", "relu")),
                      {("W", "weight"): GATE}, {"h"}),
    "GRUCell": (sig(*W_B_S_A("Orthogonal")), {(g, "weight"): GATE for g in ("Wz", "Wr", "Wh")}, {"h"}),
    "MGUCell": (sig(*W_B_S_A("Orthogonal")), {(g, "weight"): GATE for g in ("Wf", "Wh")}, {"h"}),
    "LSTMCell": (sig(*W_B_S_A("XavierNormal")), {(g, "weight"): GATE for g in ("Wi", "Wg", "Wf", "Wo")},
                 {"c", "h"}),
    "URLSTMCell": (sig(("w_init", Init("XavierNormal")), ("state_init", Init("ZeroInit")), ("activation", "tanh")),
                   {**{(g, "weight"): {"weight": (I + N, N)} for g in ("Wu", "Wf", "Wr", "Wo")}, ("bias",): (N,)},
                   {"c", "h"}),
    "MinimalRNNCell": (sig(("w_init", Init("Orthogonal")), ("b_init", Init("ZeroInit")),
                           ("state_init", Init("ZeroInit")), ("phi", None)),
                       {("phi", "weight"): {"weight": (I, N), "bias": (N,)},
                        ("W_u", "weight"): {"weight": (2 * N, N), "bias": (N,)}}, {"h"}),
    "MiniGRU": (sig(("w_init", Init("Orthogonal")), ("b_init", Init("ZeroInit")), ("state_init", Init("ZeroInit"))),
                {("W_x", "weight"): {"weight": (I, N), "bias": (N,)}, ("W_z", "weight"): GATE}, {"h"}),
    "MiniLSTM": (sig(("w_init", Init("Orthogonal")), ("b_init", Init("ZeroInit")), ("state_init", Init("ZeroInit"))),
                 {("W_x", "weight"): {"weight": (I, N), "bias": (N,)}, ("W_f", "weight"): GATE,
                  ("W_i", "weight"): GATE}, {"h"}),
}


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_signature_params_states_and_one_step(name):
    signature, params, states = CELLS[name]
    cls = getattr(nn, name)
    assert_signature(cls, signature)
    cell = cls(I, N)
    assert isinstance(cell, brainstate.nn.RNNCell)
    assert cell.in_size == (I,) and cell.out_size == (N,)
    assert param_shapes(cell) == params
    for batch, shape in ((None, (N,)), (B, (B, N))):
        brainstate.nn.init_all_states(cell, batch)
        hidden = {k[-1]: st for k, st in cell.states(brainstate.HiddenState).items()}
        assert set(hidden) == states and all(st.value.shape == shape for st in hidden.values())
        out = cell(jnp.ones(shape[:-1] + (I,)))
        assert out.shape == shape
        np.testing.assert_allclose(out, hidden["h"].value)
        cell.reset_state(batch)
        assert all(float(jnp.abs(st.value).sum()) == 0.0 for st in hidden.values())


def test_lstm_forget_gate_offset_and_state_order():
    cell = nn.LSTMCell(I, N, w_init=brainstate.nn.init.ZeroInit())
    brainstate.nn.init_all_states(cell)
    assert list(k[-1] for k in cell.states(brainstate.HiddenState)) == ["c", "h"]
    cell.c.value = jnp.ones(N)
    cell(jnp.zeros(I))
    # zero weights: i = o = 1/2, g = 0, f = sigmoid(0 + 1)
    f = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(cell.c.value, jnp.full(N, f), rtol=1e-6)
    np.testing.assert_allclose(cell.h.value, 0.5 * jnp.tanh(jnp.full(N, f)), rtol=1e-6)


def test_urlstm_bias_is_a_logit_of_a_uniform_in_the_open_unit_interval():
    bias = nn.URLSTMCell(I, N).bias.value
    lo, hi = np.log(1 / (N - 1)), np.log(N - 1)  # logit(1/N), logit(1 - 1/N)
    assert bias.shape == (N,) and bool(jnp.all((bias >= lo - 1e-5) & (bias <= hi + 1e-5)))


def test_cell_activation_and_phi_validation():
    assert nn.GRUCell(I, N, activation="relu")  # a name
    assert nn.GRUCell(I, N, activation=jnp.tanh).activation is jnp.tanh
    with pytest.raises(AssertionError, match="activation"):  # neither a name nor callable: 0.2.0 asserted
        nn.GRUCell(I, N, activation=3)
    with pytest.raises(ValueError, match="unknown activation 'no_such'"):  # 0.2.0: AttributeError
        nn.GRUCell(I, N, activation="no_such")
    with pytest.raises(AssertionError, match="phi"):
        nn.MinimalRNNCell(I, N, phi=3)
    phi = nn.Linear(I, N, b_init=None)
    assert nn.MinimalRNNCell(I, N, phi=phi).phi is phi


def test_cell_wrong_input_raises_at_call():
    cell = nn.GRUCell(I, N)
    brainstate.nn.init_all_states(cell, B)
    with pytest.raises(TypeError, match="last axis 3"):  # 0.2.0: TypeError from JAX
        cell(jnp.ones((B, I + 1)))
    with pytest.raises(ValueError, match="batch shape"):
        cell(jnp.ones((B + 1, I)))


# ----------------------------------------------------------------- LRUCell

def test_lru_cell_signature_attributes_params_and_one_step():
    assert_signature(nn.LRUCell, [("d_model", REQUIRED), ("d_hidden", REQUIRED), ("r_min", 0.0), ("r_max", 1.0),
                                  ("max_phase", 6.28)])
    cell = nn.LRUCell(3, 5)
    assert not isinstance(cell, brainstate.nn.RNNCell) and isinstance(cell, brainstate.nn.Module)
    assert (cell.d_model, cell.d_hidden, cell.r_min, cell.r_max, cell.max_phase) == (3, 5, 0.0, 1.0, 6.28)
    assert cell.in_size == (3,) and cell.out_size == (5,)
    assert param_shapes(cell) == {
        ("theta_log",): (5,), ("nu_log",): (5,), ("gamma_log",): (5,), ("D",): (3,),
        ("B_re", "weight"): {"weight": (3, 5)}, ("B_im", "weight"): {"weight": (3, 5)},
        ("C_re", "weight"): {"weight": (5, 3)}, ("C_im", "weight"): {"weight": (5, 3)},
    }
    assert all(isinstance(getattr(cell, n), nn.Linear) for n in ("B_re", "B_im", "C_re", "C_im"))
    for batch, shape in ((None, (5,)), (4, (4, 5))):
        brainstate.nn.init_all_states(cell, batch)
        assert cell.h_re.value.shape == cell.h_im.value.shape == shape
        assert float(jnp.abs(cell.h_re.value).sum() + jnp.abs(cell.h_im.value).sum()) == 0.0
        assert cell(jnp.ones(shape[:-1] + (3,))).shape == shape[:-1] + (3,)


def test_lru_cell_both_parts_advance_from_the_old_values():
    cell = nn.LRUCell(2, 3, r_min=0.5, r_max=0.9)
    brainstate.nn.init_all_states(cell)
    h0 = jnp.array([0.3, -0.2, 0.5]) + 1j * jnp.array([0.1, 0.4, -0.6])
    cell.h_re.value, cell.h_im.value = jnp.real(h0), jnp.imag(h0)
    y = cell(jnp.zeros(2))  # no input: a pure rotation and scaling of h
    lam = jnp.exp(-jnp.exp(cell.nu_log.value) + 1j * jnp.exp(cell.theta_log.value))
    h1 = lam * h0
    np.testing.assert_allclose(cell.h_re.value, jnp.real(h1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cell.h_im.value, jnp.imag(h1), rtol=1e-5, atol=1e-6)
    cc = cell.C_re.weight.value["weight"] + 1j * cell.C_im.weight.value["weight"]
    np.testing.assert_allclose(y, jnp.real(h1 @ cc), rtol=1e-5, atol=1e-6)
