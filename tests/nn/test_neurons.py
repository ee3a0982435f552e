"""Surrogate spike functions and IF / LIF / ALIF neurons."""

import functools
import math

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

from braintrace.nn import ALIF, IF, LIF, surrogate

from .helpers import assert_close, etp_counts, forbidden_prims

XS = jnp.array([-1.0, -0.2, 0.0, 0.3, 2.0])

GRADS = {
    "sigmoid": (4.0, lambda x, a: a * jax.nn.sigmoid(a * x) * (1 - jax.nn.sigmoid(a * x))),
    "fast_sigmoid": (10.0, lambda x, a: 1 / (1 + a * jnp.abs(x)) ** 2),
    "arctan": (2.0, lambda x, a: a / (2 * (1 + (math.pi / 2 * a * x) ** 2))),
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_surrogate_forward_is_heaviside_and_gradient_is_pseudo_derivative(name):
    fn = surrogate.get_surrogate(name)
    default, g = GRADS[name]
    assert fn(XS).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert_close(jax.vmap(jax.grad(fn))(XS), g(XS, default))
    sharp = functools.partial(fn, alpha=3.0)
    assert_close(jax.vmap(jax.grad(sharp))(XS), g(XS, 3.0))
    _, tangent = jax.jvp(fn, (XS,), (jnp.full(5, 2.0),))
    assert_close(tangent, 2.0 * g(XS, default))
    assert fn(jnp.array([0, 1, -1])).dtype == jnp.float32


def test_surrogate_lookup():
    assert surrogate.get_surrogate("super_spike") is surrogate.fast_sigmoid
    custom = lambda x: (x > 0).astype(x.dtype)
    assert surrogate.get_surrogate(custom) is custom
    with pytest.raises(ValueError, match="unknown surrogate 'step'; use one of"):
        surrogate.get_surrogate("step")
    with pytest.raises(TypeError):
        surrogate.get_surrogate(3)


# ------------------------------------------------------------------ neurons

def H(x):
    return (x >= 0).astype(jnp.float32)


def ref_step(kind, p, st, x):
    """Plain-JAX restatement of one step; ``st`` holds ``v`` (and ``a``)."""
    v, a = st["v"], st.get("a")
    theta = p["v_th"] * (1 + p["beta"] * a) if kind == "ALIF" else p["v_th"]
    s_prev = H((v - theta) / p["v_th"])
    v_r = v - p["v_th"] * s_prev if p["reset"] == "subtract" else v * (1 - s_prev) + p["v_reset"] * s_prev
    alpha = 1.0 if kind == "IF" else np.exp(-p["dt"] / p["tau"])
    v = alpha * v_r + x
    out = dict(v=v)
    if kind == "ALIF":
        a = np.exp(-p["dt"] / p["tau_a"]) * a + s_prev
        out["a"] = a
        theta = p["v_th"] * (1 + p["beta"] * a)
    return out, H((v - theta) / p["v_th"])


def make(kind, **kw):
    p = dict(v_th=0.8, v_reset=-0.1, reset=kw.pop("reset", "subtract"), dt=1.0, tau=5.0, tau_a=30.0, beta=0.5)
    common = dict(v_th=p["v_th"], v_reset=p["v_reset"], reset=p["reset"], **kw)
    if kind == "IF":
        return IF(4, **common), p
    if kind == "LIF":
        return LIF(4, tau=p["tau"], dt=p["dt"], **common), p
    return ALIF(4, tau=p["tau"], tau_a=p["tau_a"], beta=p["beta"], dt=p["dt"], **common), p


@pytest.mark.parametrize("kind", ["IF", "LIF", "ALIF"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("batch", [None, 3], ids=["unbatched", "batched"])
def test_neuron_matches_plain_jax(kind, reset, batch):
    neu, p = make(kind, reset=reset)
    brainstate.nn.init_all_states(neu, batch)
    rng = np.random.default_rng(0)
    shape = (4,) if batch is None else (batch, 4)
    neu.v.value = jnp.asarray(rng.uniform(0.0, 1.2, shape), jnp.float32)  # some start above threshold
    st = {"v": neu.v.value}
    if kind == "ALIF":
        neu.a.value = jnp.asarray(rng.uniform(0.0, 1.0, shape), jnp.float32)
        st["a"] = neu.a.value
    spikes = 0.0
    for t in range(4):
        x = jnp.asarray(rng.uniform(0.0, 0.9, shape), jnp.float32)
        st, s_want = ref_step(kind, p, st, x)
        s = neu(x)
        assert_close(s, s_want, err_msg=f"spike t={t}")
        assert_close(neu.v.value, st["v"], err_msg=f"v t={t}")
        assert_close(neu.get_spike(), s_want)
        if kind == "ALIF":
            assert_close(neu.a.value, st["a"], err_msg=f"a t={t}")
        spikes += float(s.sum())
    assert 0 < spikes < 4 * np.prod(shape), "the test must exercise both spiking and silent neurons"


def test_spike_gradient_uses_surrogate_and_detach_reset():
    x = jnp.array([0.5, 1.2, 2.0])
    v0 = jnp.array([0.9, 1.1, 0.2])
    alpha = np.exp(-0.1)
    g = GRADS["sigmoid"][1](v0 - 1.0, 4.0)
    for detach, want in ((False, alpha * (1 - g)), (True, jnp.full(3, alpha))):
        neu = LIF(3, tau=10.0, dt=1.0, detach_reset=detach)
        brainstate.nn.init_all_states(neu)

        def f(v):
            neu.v.value = v
            neu(x)
            return neu.v.value.sum()

        assert_close(brainstate.transform.grad(f, argnums=0)(v0), want)
    # d spike / d x = pseudo-derivative of (v - v_th) / v_th, divided by v_th
    neu = LIF(3, tau=10.0, dt=1.0, v_th=2.0)
    brainstate.nn.init_all_states(neu)
    gx = brainstate.transform.grad(lambda x: neu(x).sum(), argnums=0)(x)
    assert_close(gx, GRADS["sigmoid"][1]((x - 2.0) / 2.0, 4.0) / 2.0)


def test_lif_with_units_and_environ_dt():
    neu = LIF(2, tau=10.0 * u.ms, v_th=1.0 * u.mV)
    brainstate.nn.init_all_states(neu)
    assert u.get_unit(neu.v.value).dim == u.mV.dim
    with brainstate.environ.context(dt=1.0 * u.ms):
        s = neu(jnp.array([0.5, 1.5]) * u.mV)
        s = neu(jnp.array([0.5, 1.5]) * u.mV)
    assert s.tolist() == [0.0, 1.0]
    v = neu.v.value.to_decimal(u.mV)
    alpha = np.exp(-0.1)
    assert_close(v, jnp.array([alpha * 0.5 + 0.5, alpha * 0.5 + 1.5]))  # second neuron reset by v_th
    with pytest.raises(ValueError, match=r"LIF\(in_size=2\): dt=1.0 and tau=10\.0* ms must have the same unit"):
        _call_fresh_n(LIF(2, tau=10.0 * u.ms, dt=1.0), jnp.zeros(2))
    with pytest.raises(ValueError, match="`v_reset` has unit"):
        LIF(2, v_th=1.0 * u.mV, v_reset=0.0 * u.ms)


@pytest.mark.parametrize("kind,n_elemwise", [("LIF", 1), ("ALIF", 2)])
def test_learnable_tau_goes_through_element_wise(kind, n_elemwise):
    fixed, _ = make(kind)
    learn, _ = make(kind, tau_learnable=True)
    for neu in (fixed, learn):
        brainstate.nn.init_all_states(neu, 2)
    assert learn.tau.value.shape == (4,)
    x = jnp.full((2, 4), 0.6)
    assert etp_counts(fixed, x) == {}
    assert etp_counts(learn, x) == {"etp_elemwise": n_elemwise}
    assert not forbidden_prims(learn, x)
    for _ in range(3):
        assert_close(fixed(x), learn(x))
        assert_close(fixed.v.value, learn.v.value)
    grads = brainstate.transform.grad(lambda x: learn(x).sum() + learn.v.value.sum(),
                                      learn.states(brainstate.ParamState))(x)
    assert float(jnp.abs(grads[("tau",)]).sum()) > 0


def test_neuron_shapes_reset_and_errors():
    neu = ALIF((2, 3), tau=5.0, tau_a=20.0, dt=1.0, name="alif")
    brainstate.nn.init_all_states(neu)
    assert neu.v.value.shape == neu.a.value.shape == (2, 3)
    brainstate.nn.init_all_states(neu, 4)
    v, a = neu.v, neu.a
    assert neu(jnp.ones((4, 2, 3))).shape == (4, 2, 3)
    neu.reset_state(4)
    assert neu.v is v and neu.a is a and v.value.shape == a.value.shape == (4, 2, 3)
    assert float(jnp.abs(v.value).sum() + jnp.abs(a.value).sum()) == 0.0
    with pytest.raises(ValueError) as err:
        neu(jnp.ones((4, 3, 2)))
    assert str(err.value).startswith("ALIF(name='alif', in_size=(2, 3)): expected input with trailing axes (2, 3)")
    with pytest.raises(ValueError, match=r"input batch shape \(5,\) does not match the batch shape \(4,\) of state `v`"):
        neu(jnp.ones((5, 2, 3)))
    with pytest.raises(ValueError, match=r"LIF\(in_size=4\): expected input with last axis 4, got shape \(3,\)"):
        _call_fresh_n(LIF(4, tau=2.0, dt=1.0), jnp.ones(3))
    with pytest.raises(ValueError, match="reset='hard'"):
        IF(3, reset="hard")
    with pytest.raises(ValueError, match="v_th must be non-zero"):
        IF(3, v_th=0.0)
    with pytest.raises(ValueError, match="does not broadcast to in_size"):
        LIF(3, tau=jnp.ones(2), tau_learnable=True)


def _call_fresh_n(neu, x):
    brainstate.nn.init_all_states(neu)
    return neu(x)
