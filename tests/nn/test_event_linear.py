"""braintrace.nn.EventSparseLinear: which product it chooses, Dale's law, values, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.nn.event_linear import EVENT_MIN_NNZ
from braintrace.primitives import etp_event_sparse_mv_p, etp_sparse_mm_p, etp_sparse_mv_p


def compressed(m, fmt=u.sparse.CSR):
    """``fmt.fromdense(m)`` built with NumPy (no device program per matrix shape): CSR or CSC."""
    m = np.asarray(m, np.float32)
    major = m if fmt is u.sparse.CSR else m.T
    i, j = np.nonzero(major)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=major.shape[0]))]).astype(np.int32)
    return fmt((jnp.asarray(major[i, j]), j.astype(np.int32), indptr), shape=m.shape)


def random_csr(rng, n_rows, n_cols, density):
    m = (rng.random((n_rows, n_cols)) < density) * rng.lognormal(size=(n_rows, n_cols))
    return compressed(m)


def bound(layer, x):
    return [e.primitive for e in jax.make_jaxpr(layer)(x).eqns if braintrace.primitives.is_etp_primitive(e.primitive)]


def test_auto_takes_the_event_path_when_its_cost_model_pays():
    rng = np.random.default_rng(0)
    big = random_csr(rng, 400, 300, 0.2)  # ~24,000 nonzeros, ~37 per row
    assert big.data.shape[0] >= EVENT_MIN_NNZ
    layer = braintrace.nn.EventSparseLinear(big, max_active=0.05)
    assert layer.events and bound(layer, jnp.zeros(400)) == [etp_event_sparse_mv_p]
    # a capacity of every block costs more than the CSR product: not taken
    assert not braintrace.nn.EventSparseLinear(big, max_active=1.0).events
    # too few nonzeros to bother
    small = random_csr(rng, 20, 20, 0.3)
    layer = braintrace.nn.EventSparseLinear(small, max_active=0.05)
    assert not layer.events and bound(layer, jnp.zeros(20)) == [etp_sparse_mv_p]
    # rows shorter than a block: scanning the blocks costs as much as the product
    thin = random_csr(rng, 3000, 3000, 0.001)
    assert not braintrace.nn.EventSparseLinear(thin, max_active=0.05).events
    assert braintrace.nn.EventSparseLinear(thin, max_active=0.05, block=4).events
    # forced either way; not for CSC (the event path needs rows)
    assert braintrace.nn.EventSparseLinear(small, events=True).events
    assert not braintrace.nn.EventSparseLinear(big, events=False).events
    csc = compressed(big.todense(), u.sparse.CSC)
    assert not braintrace.nn.EventSparseLinear(csc).events
    with pytest.raises(TypeError, match="events=True needs a saiunit.sparse.CSR"):
        braintrace.nn.EventSparseLinear(csc, events=True)


@pytest.mark.parametrize("events", [True, False])
def test_values_with_dale_signs(events):
    rng = np.random.default_rng(1)
    csr = random_csr(rng, 30, 20, 0.4)
    sign = np.where(rng.random(30) < 0.8, 1.0, -1.0)
    layer = braintrace.nn.EventSparseLinear(csr, w_sign=sign, events=events, b_init=jnp.full(20, 0.5))
    w = -csr.data  # negative raw weights: the magnitude is what counts
    layer.weight.value = {"weight": w, "bias": layer.weight.value["bias"]}
    x = jnp.asarray((rng.random((2, 30)) < 0.3).astype(np.float32))
    want = x @ (sign[:, None] * np.abs(np.asarray(csr.todense()))) + 0.5
    np.testing.assert_allclose(np.asarray(jax.jit(layer)(x)), want, rtol=1e-5, atol=1e-5)
    assert bound(layer, x) == [braintrace.primitives.etp_event_sparse_mm_p if events else etp_sparse_mm_p]
    # the sign of every outgoing weight follows its input unit, whatever the learned value
    g = jax.jit(jax.grad(lambda wv: jnp.sum(braintrace.nn.EventSparseLinear(
        csr.with_data(wv), w_sign=sign, events=events)(x))))(w)
    assert g.shape == w.shape and np.isfinite(np.asarray(g)).all()


def test_unsigned_weights_are_used_as_given():
    rng = np.random.default_rng(2)
    csr = random_csr(rng, 10, 6, 0.5)
    layer = braintrace.nn.EventSparseLinear(csr.with_data(-csr.data), events=True)
    x = jnp.ones(10)
    np.testing.assert_allclose(np.asarray(jax.jit(layer)(x)), -(x @ np.asarray(csr.todense())), rtol=1e-5)


def test_bad_arguments():
    rng = np.random.default_rng(3)
    csr = random_csr(rng, 10, 6, 0.5)
    with pytest.raises(TypeError, match="`spar_mat` must be a saiunit.sparse"):
        braintrace.nn.EventSparseLinear(np.ones((10, 6)))
    with pytest.raises(ValueError, match=r"`w_sign` has shape \(6,\)"):
        braintrace.nn.EventSparseLinear(csr, w_sign=np.ones(6))
    with pytest.raises(ValueError, match="only \\+1 and -1"):
        braintrace.nn.EventSparseLinear(csr, w_sign=np.zeros(10))
    with pytest.raises(ValueError, match="events='yes'"):
        braintrace.nn.EventSparseLinear(csr, events="yes")
    with pytest.raises(ValueError, match="in_size=\\(3,\\) must end in 10"):
        braintrace.nn.EventSparseLinear(csr, in_size=3)
    layer = braintrace.nn.EventSparseLinear(csr, events=True, name="rec")
    with pytest.raises(ValueError, match="EventSparseLinear\\(name='rec'"):
        layer(jnp.ones(7))
