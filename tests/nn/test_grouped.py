"""GroupedLinear: against a block-diagonal Linear, initialisation, units, errors, and online learning."""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

from braintrace.nn import GroupedLinear, Linear
from learning import x64  # noqa: F401
from primitives import leaky_models as L

from .helpers import assert_close, etp_counts, forbidden_prims, randomize

G, I, O = 3, 4, 2
X = jnp.asarray(np.random.default_rng(1).normal(size=(5, G, I)), jnp.float32)


@pytest.mark.parametrize("x", [X, X[0], X.reshape(5, 1, G, I)], ids=["batched", "unbatched", "two-batch-axes"])
def test_matches_a_block_diagonal_linear(x):
    layer = GroupedLinear(G, I, O)
    randomize(layer)
    p = layer.weight.value
    dense = Linear(G * I, G * O)
    dense.weight.value = dict(weight=jax.scipy.linalg.block_diag(*p["weight"]), bias=p["bias"].reshape(-1))
    lead = x.shape[:-2]
    assert_close(layer(x).reshape(lead + (G * O,)), dense(x.reshape(lead + (G * I,))))
    name = "etp_grouped_mv" if x.ndim == 2 else "etp_grouped_mm"
    assert etp_counts(layer, x) == {name: 1}
    assert not forbidden_prims(layer, x)


def test_initialises_each_block_like_a_linear_weight():
    brainstate.random.seed(0)
    layer = GroupedLinear(8, 50, 40)
    w = layer.weight.value["weight"]
    assert w.shape == (8, 50, 40) and layer.weight.value["bias"].shape == (8, 40)
    # KaimingNormal on (I, O) per block: the scale follows the fan-in I = 50, not G·I
    assert 0.7 * np.sqrt(2 / 50) < float(jnp.std(w)) < 1.3 * np.sqrt(2 / 50)
    assert float(jnp.abs(w[0] - w[1]).max()) > 0, "blocks drawn independently"
    fixed = GroupedLinear(2, 3, 4, w_init=jnp.ones((2, 3, 4)), b_init=None)
    assert set(fixed.weight.value) == {"weight"}
    assert_close(fixed(jnp.ones((2, 3))), jnp.full((2, 4), 3.0))


def test_units():
    layer = GroupedLinear(2, 3, 4, w_init=jnp.ones((2, 3, 4)) * u.mS, b_init=jnp.ones((2, 4)) * u.uA)
    y = layer(jnp.ones((2, 3)) * u.mV)
    assert u.get_unit(y).dim == u.uA.dim
    assert_close(y.to_decimal(u.uA), jnp.full((2, 4), 4.0))


def test_bad_input_names_the_layer():
    layer = GroupedLinear(G, I, O, name="areas")
    with pytest.raises(ValueError, match=r"GroupedLinear\(name='areas', num_groups=3, in_size=4, out_size=2\): "
                                         r"expected input with trailing axes \(3, 4\), got shape \(5, 12\)"):
        layer(jnp.ones((5, G * I)))
    with pytest.raises(ValueError, match="`num_groups` must be non-empty with positive entries"):
        GroupedLinear(0, I, O)
    with pytest.raises(ValueError):
        GroupedLinear(G, I, O, w_init=jnp.ones((G, I)))


def test_d_rtrl_equals_bptt_through_the_layer(x64):
    """``h = a h + (1-a) tanh(GroupedLinear(x))`` with ``h`` of shape ``(B, G, O)``: exact (float64, 1e-10)."""
    rng = np.random.RandomState(3)
    layer = GroupedLinear(G, I, O, w_init=jnp.asarray(rng.randn(G, I, O)), b_init=jnp.asarray(rng.randn(G, O)))
    model = L.LeakyOp(layer, None, (G, O))
    xs = jnp.asarray(rng.randn(L.T, 2, G, I))
    L.check_d_rtrl_equals_bptt(model, xs, 2)
