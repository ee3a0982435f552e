"""LeakyRateReadout, LayerNorm, BatchNorm1d."""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

from braintrace.nn import BatchNorm1d, LayerNorm, LeakyRateReadout

from .helpers import assert_close, etp_counts, forbidden_prims, randomize

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ readout

@pytest.mark.parametrize("batch", [None, 2], ids=["unbatched", "batched"])
def test_readout_matches_closed_form(batch):
    ro = LeakyRateReadout(3, 4, tau=4.0 * u.ms, dt=1.0 * u.ms)
    randomize(ro)
    brainstate.nn.init_all_states(ro, batch)
    w = ro.W.value
    kappa = np.exp(-0.25)
    assert_close(ro.decay, kappa)
    shape = (3,) if batch is None else (batch, 3)
    x1, x2 = (jnp.asarray(RNG.normal(size=shape), jnp.float32) for _ in range(2))
    y1 = x1 @ w
    y2 = x2 @ w
    assert_close(ro(x1), y1)
    assert_close(ro(x2), kappa * y1 + y2)  # two-step closed form
    assert_close(ro.r.value, kappa * y1 + y2)
    assert etp_counts(ro, x1) == {"etp_mm" if batch else "etp_mv": 1}
    assert not forbidden_prims(ro, x1)


def test_readout_decay_environ_reset_and_errors():
    ro = LeakyRateReadout(3, 2, decay=0.5, w_init=jnp.ones((3, 2)), name="out")
    brainstate.nn.init_all_states(ro, 2)
    r = ro.r
    ro(jnp.ones((2, 3)))
    ro.reset_state(2)
    assert ro.r is r and r.value.shape == (2, 2) and float(jnp.abs(r.value).sum()) == 0
    with pytest.raises(ValueError, match=r"LeakyRateReadout\(name='out', in_size=3, out_size=2\): expected input with last axis 3, got shape \(2, 4\)"):
        ro(jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"decay=1.5 must lie in \(0, 1\)"):
        LeakyRateReadout(3, 2, decay=1.5)
    ro2 = LeakyRateReadout(3, 2, tau=2.0, w_init=jnp.ones((3, 2)))
    brainstate.nn.init_all_states(ro2)
    with brainstate.environ.context(dt=1.0):
        ro2(jnp.ones(3))
        y = ro2(jnp.ones(3))
    assert_close(y, jnp.full(2, 3.0 * (1 + np.exp(-0.5))))
    ro3 = LeakyRateReadout(3, 2)  # tau in ms, dt without unit
    brainstate.nn.init_all_states(ro3)
    with pytest.raises(ValueError, match="must have the same unit"):
        ro3.dt = 1.0
        ro3(jnp.ones(3))
    with pytest.raises(TypeError, match="must have the same unit"):  # known at construction: raised there
        LeakyRateReadout(3, 2, dt=1.0)


# ------------------------------------------------------------------ LayerNorm

def test_layernorm_matches_plain_and_brainstate():
    ln = LayerNorm(5)
    randomize(ln, seed=2)
    p = ln.weight.value
    x = jnp.asarray(RNG.normal(size=(3, 5)) * 3 + 1, jnp.float32)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    want = (x - mean) / jnp.sqrt(var + 1e-6) * p["scale"] + p["bias"]
    assert_close(ln(x), want, rtol=1e-5, atol=1e-5)
    assert_close(ln(x[0]), want[0], rtol=1e-5, atol=1e-5)
    ref = brainstate.nn.LayerNorm(5)
    ref.weight.value = dict(p)
    assert_close(ln(x), ref(x), rtol=1e-4, atol=1e-4)
    assert etp_counts(ln, x) == {"etp_elemwise": 2}
    assert not forbidden_prims(ln, x)


def test_layernorm_axes_no_affine_and_errors():
    ln = LayerNorm((4, 6), reduction_axes=(-2, -1), feature_axes=-1, use_bias=False)
    assert ln.weight.value["scale"].shape == (1, 6) and "bias" not in ln.weight.value
    x = jnp.asarray(RNG.normal(size=(2, 4, 6)), jnp.float32)
    y = ln(x)
    assert_close(y.mean((-2, -1)), jnp.zeros(2), atol=1e-5)
    plain = LayerNorm(6, use_bias=False, use_scale=False)
    assert plain.weight is None and etp_counts(plain, x[0, 0]) == {}
    with pytest.raises(ValueError, match=r"LayerNorm\(in_size=\(4, 6\)\): expected input with trailing axes \(4, 6\), got shape \(2, 6, 4\)"):
        ln(jnp.ones((2, 6, 4)))


# ------------------------------------------------------------------ BatchNorm1d

@pytest.mark.parametrize("in_size,xshape", [((5,), (8, 5)), ((3, 5), (4, 3, 5))], ids=["BC", "BLC"])
def test_batchnorm_fit_matches_plain_and_brainstate(in_size, xshape):
    bn = BatchNorm1d(in_size)
    randomize(bn, seed=3)
    p = bn.weight.value
    x = jnp.asarray(RNG.normal(size=xshape) * 2 + 0.5, jnp.float32)
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    want = (x - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"]
    with brainstate.environ.context(fit=True):
        y = bn(x)
    assert_close(y, want, rtol=1e-4, atol=1e-4)
    assert_close(bn.running_mean.value, 0.01 * mean.reshape(bn.running_mean.value.shape), rtol=1e-4, atol=1e-6)
    assert_close(bn.running_var.value, 0.99 + 0.01 * var.reshape(bn.running_var.value.shape), rtol=1e-4, atol=1e-6)
    if len(in_size) == 2:  # brainstate's BatchNorm1d takes (L, C) inputs
        ref = brainstate.nn.BatchNorm1d(in_size)
        ref.weight.value = dict(p)
        with brainstate.environ.context(fit=True):
            assert_close(y, ref(x), rtol=1e-4, atol=1e-4)
        assert_close(bn.running_var.value, ref.running_var.value, rtol=1e-4, atol=1e-5)
    # evaluation mode uses the running statistics
    with brainstate.environ.context(fit=False):
        y_eval = bn(x)
    rm, rv = bn.running_mean.value, bn.running_var.value
    assert_close(y_eval, (x - rm) / jnp.sqrt(rv + 1e-5) * p["scale"] + p["bias"], rtol=1e-4, atol=1e-4)
    with brainstate.environ.context(fit=True):
        assert etp_counts(bn, x) == {"etp_elemwise": 2}
        assert not forbidden_prims(bn, x)


def test_batchnorm_errors_and_no_tracking():
    bn = BatchNorm1d(4, track_running_stats=False, affine=False)
    assert bn.running_mean is None and bn.weight is None
    x = jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32)
    with brainstate.environ.context(fit=False):
        assert_close(bn(x).mean(0), jnp.zeros(4), atol=1e-5)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(in_size=4\): expected input with last axis 4, got shape \(6, 3\)"):
        bn(jnp.ones((6, 3)))
    with pytest.raises(ValueError, match="out of range"):
        BatchNorm1d(4, feature_axis=2)
