"""Linear, SignedWLinear, ScaledWSLinear, SparseLinear, LoRA."""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.nn import LoRA, Linear, ScaledWSLinear, SignedWLinear, SparseLinear

from .helpers import assert_close, etp_counts, forbidden_prims, randomize

X = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3)), jnp.float32)


# ---------------------------------------------------------------- Linear

@pytest.mark.parametrize("x", [X, X[0], jnp.ones((4, 2, 3))], ids=["batched", "unbatched", "two-batch-axes"])
def test_linear_matches_plain_jax_and_brainstate(x):
    layer = Linear(3, 4)
    randomize(layer)
    p = layer.weight.value
    assert_close(layer(x), x @ p["weight"] + p["bias"])
    ref = brainstate.nn.Linear(3, 4)
    ref.weight.value = dict(p)
    assert_close(layer(x), ref(x))


def test_linear_no_bias_and_mask():
    mask = jnp.array([[1., 0., 1., 0.]] * 3)
    layer = Linear(3, 4, b_init=None, w_mask=mask)
    assert set(layer.weight.value) == {"weight"}
    w = layer.weight.value["weight"]
    assert_close(layer(X), X @ (w * mask))
    assert etp_counts(layer, X) == {"etp_mm": 1}


def test_linear_multi_axis_sizes():
    layer = Linear((5, 3), (5, 2))
    x = jnp.ones((2, 5, 3))
    assert layer(x).shape == (2, 5, 2)
    with pytest.raises(ValueError, match="in_size and out_size must agree"):
        Linear((5, 3), (4, 2))


def test_linear_units():
    w = jnp.ones((3, 4)) * u.mS
    layer = Linear(3, 4, w_init=w, b_init=jnp.ones(4) * u.uA)
    y = layer(jnp.ones(3) * u.mV)
    assert u.get_unit(y).dim == u.uA.dim
    assert_close(y.to_decimal(u.uA), jnp.full(4, 4.0))


@pytest.mark.parametrize("name", [None, "fc"])
def test_linear_bad_input_names_layer_and_size(name):
    layer = Linear(3, 4, name=name)
    expected = "Linear(in_size=3, out_size=4)" if name is None else "Linear(name='fc', in_size=3, out_size=4)"
    with pytest.raises(ValueError) as err:
        layer(jnp.ones((2, 5)))
    msg = str(err.value)
    assert msg.startswith(expected), msg
    assert "expected input with last axis 3, got shape (2, 5)" in msg


def test_linear_jaxpr_has_etp_primitive():
    layer = Linear(3, 4)
    assert etp_counts(layer, X) == {"etp_mm": 1}
    assert etp_counts(layer, X[0]) == {"etp_mv": 1}
    assert not forbidden_prims(layer, X)


def test_linear_gradient_flows_to_weight_and_bias():
    layer = Linear(3, 4)
    grads = brainstate.transform.grad(lambda x: jnp.sum(layer(x) ** 2), layer.states(brainstate.ParamState))(X)
    g = grads[("weight",)]
    assert float(jnp.abs(g["bias"]).sum()) > 0 and float(jnp.abs(g["weight"]).sum()) > 0


# ---------------------------------------------------------------- SignedWLinear

def test_signed_linear_matches_brainstate():
    sign = jnp.array([[1.], [-1.], [1.]])
    layer = SignedWLinear(3, 4, w_sign=sign)
    randomize(layer)
    w = layer.weight.value  # a bare array, as in brainstate and braintrace 0.2.0
    assert_close(layer(X), X @ (jnp.abs(w) * sign))
    ref = brainstate.nn.SignedWLinear(3, 4, w_sign=sign)
    ref.weight.value = w
    assert_close(layer(X), ref(X))
    assert etp_counts(layer, X) == {"etp_mm": 1}


def test_signed_linear_keeps_sign():
    layer = SignedWLinear(3, 2, w_init=-jnp.ones((3, 2)))
    assert_close(layer(jnp.ones(3)), jnp.array([3.0, 3.0]))


def test_signed_linear_validates_sign():
    with pytest.raises(ValueError, match=r"SignedWLinear\(in_size=3, out_size=4\): `w_sign` must contain only"):
        SignedWLinear(3, 4, w_sign=jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="does not broadcast"):
        SignedWLinear(3, 4, w_sign=jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="last axis 3"):
        SignedWLinear(3, 4)(jnp.ones(2))


# ---------------------------------------------------------------- ScaledWSLinear

@pytest.mark.parametrize("ws_gain", [True, False])
def test_scaled_ws_linear_matches_plain_and_brainstate(ws_gain):
    layer = ScaledWSLinear(3, 4, ws_gain=ws_gain)
    randomize(layer)
    p = layer.weight.value
    w = p["weight"]
    mean, var = w.mean(0, keepdims=True), w.var(0, keepdims=True)
    w_hat = (w - mean) / jnp.sqrt(jnp.maximum(3 * var, 1e-4))
    if ws_gain:
        w_hat = w_hat * p["gain"]
    assert_close(layer(X), X @ w_hat + p["bias"], rtol=1e-5, atol=1e-5)
    ref = brainstate.nn.ScaledWSLinear(3, 4, ws_gain=ws_gain)
    ref.weight.value = dict(p)
    assert_close(layer(X), ref(X), rtol=1e-5, atol=1e-5)
    assert etp_counts(layer, X) == {"etp_mm": 1}
    assert not forbidden_prims(layer, X)


# ---------------------------------------------------------------- SparseLinear

def _csr():
    dense = jnp.array([[1., 0., 2., 0.], [0., 3., 0., 0.], [4., 0., 0., 5.]])
    return dense, u.sparse.CSR.fromdense(dense)


def test_sparse_linear_matches_dense():
    dense, csr = _csr()
    layer = SparseLinear(csr, b_init=jnp.array([0.1, 0.2, 0.3, 0.4]))
    assert layer.weight.value["weight"].shape == (5,)
    assert_close(layer(X), X @ dense + jnp.array([0.1, 0.2, 0.3, 0.4]))
    assert_close(layer(X[0]), X[0] @ dense + jnp.array([0.1, 0.2, 0.3, 0.4]))
    # new values follow the pattern
    layer.weight.value = dict(layer.weight.value, weight=2 * layer.weight.value["weight"])
    assert_close(layer(X), X @ (2 * dense) + jnp.array([0.1, 0.2, 0.3, 0.4]))
    assert etp_counts(layer, X) == {"etp_sparse_mm": 1}
    assert etp_counts(layer, X[0]) == {"etp_sparse_mv": 1}


def test_sparse_linear_errors():
    _, csr = _csr()
    with pytest.raises(AssertionError, match="SparseLinear: `spar_mat` must be"):
        SparseLinear(np.ones((3, 4)))
    with pytest.raises(ValueError, match="must end in 3"):
        SparseLinear(csr, in_size=4)
    with pytest.raises(ValueError, match=r"SparseLinear\(in_size=3, out_size=4\): expected input with last axis 3"):
        SparseLinear(csr)(jnp.ones((2, 4)))


# ---------------------------------------------------------------- LoRA

def test_lora_matches_plain_and_brainstate():
    layer = LoRA(3, 2, 4, alpha=1.0)
    randomize(layer)
    p = layer.weight.value
    assert_close(layer(X), X @ p["lora_a"] @ p["lora_b"])
    ref = brainstate.nn.LoRA(3, 2, 4)
    ref.weight.value = dict(p)
    assert_close(layer(X), ref(X))
    assert etp_counts(layer, X) == {"etp_lora_mm": 1}
    assert etp_counts(layer, X[0]) == {"etp_lora_mv": 1}


def test_lora_alpha_bias_and_base():
    base = Linear(3, 4)
    layer = LoRA(3, 2, 4, alpha=0.5, b_init=jnp.ones(4), base_module=base)
    randomize(layer, seed=3)
    p, pb = layer.weight.value, base.weight.value
    want = 0.5 * X @ p["lora_a"] @ p["lora_b"] + p["bias"] + X @ pb["weight"] + pb["bias"]
    assert_close(layer(X), want)
    assert etp_counts(layer, X) == {"etp_lora_mm": 1, "etp_mm": 1}


def test_lora_bad_input():
    with pytest.raises(ValueError, match=r"LoRA\(in_features=3, lora_rank=2, out_features=4\): expected input with last axis 3, got shape \(5,\)"):
        LoRA(3, 2, 4)(jnp.ones(5))
