"""Embedding: the lookup against brainstate.nn.Embedding, padding, units, errors, and online learning."""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

from braintrace.nn import Embedding
from learning import x64  # noqa: F401
from primitives import leaky_models as L

from .helpers import assert_close, etp_counts, forbidden_prims, randomize

IDX = jnp.array([[1, 0, 4], [2, 2, 9]])


@pytest.mark.parametrize("idx", [IDX, IDX[0], IDX[0, 0]], ids=["batched", "sequence", "one-token"])
def test_matches_brainstate(idx):
    layer = Embedding(10, 3)
    randomize(layer)
    table = layer.weight.value["weight"]
    ref = brainstate.nn.Embedding(10, 3)
    ref.weight.value = table
    assert_close(layer(idx), ref(idx))
    assert_close(layer(idx), table[idx])
    name = "etp_embed" if idx.ndim == 0 else "etp_embed_batched"
    assert etp_counts(layer, idx) == {name: 1}
    assert not forbidden_prims(layer, idx)


def test_padding_row_gives_zeros_and_a_zero_gradient():
    layer = Embedding(5, 2, padding_idx=-1)
    randomize(layer)
    assert layer.padding_idx == 4
    idx = jnp.array([4, 1, 4, 3])
    y = layer(idx)
    assert_close(y[jnp.array([0, 2])], jnp.zeros((2, 2)))
    params = layer.states(brainstate.ParamState)
    g = brainstate.transform.grad(lambda: jnp.sum(layer(idx) ** 2), params)()
    g = g[("weight",)]["weight"]
    assert_close(g[4], jnp.zeros(2))
    assert float(jnp.abs(g[1]).sum()) > 0


def test_units():
    table = jnp.arange(6.0).reshape(3, 2) * u.mV
    layer = Embedding(3, 2, embedding_init=table, padding_idx=0)
    y = layer(jnp.array([2, 0]))
    assert u.get_unit(y) == u.mV
    assert_close(y.to_decimal(u.mV), jnp.array([[4.0, 5.0], [0.0, 0.0]]))


def test_bad_input_names_the_layer():
    layer = Embedding(5, 2, name="tokens")
    with pytest.raises(TypeError, match=r"Embedding\(name='tokens', num_embeddings=5, embedding_size=2\): expected "
                                        r"integer token indices, got dtype float32"):
        layer(jnp.array([1.0]))
    with pytest.raises(ValueError, match=r"`padding_idx`=5 must be an int in \[-5, 5\)"):
        Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="`num_embeddings` must be non-empty with positive entries"):
        Embedding(0, 2)


@pytest.mark.parametrize("padding_idx", [None, 0])
def test_d_rtrl_equals_bptt_through_the_layer(x64, padding_idx):
    """``h = a h + (1-a) tanh(Embedding(idx))``: the table learns online exactly (float64, 1e-10)."""
    layer = Embedding(6, 3, embedding_init=jnp.asarray(np.random.RandomState(3).randn(6, 3)), padding_idx=padding_idx)
    model = L.LeakyOp(layer, None, (3,))
    xs = jnp.asarray(np.random.RandomState(4).randint(0, 6, size=(L.T, 2)), jnp.int32)
    L.check_d_rtrl_equals_bptt(model, xs, 2, windows=(None,) if padding_idx is None else (3,))


def test_an_out_of_range_index_is_never_taken_for_the_pad():
    layer = Embedding(5, 2, padding_idx=0)
    y = layer(jnp.array([5, -6, 0, -5]))  # 5 and -6 are out of range; -5 is row 0, the pad
    assert bool(jnp.all(jnp.isnan(y[:2])))
    assert_close(y[2:], jnp.zeros((2, 2)))
