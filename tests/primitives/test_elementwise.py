"""braintrace.element_wise: etp_elemwise against ``fn(w)``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.primitives import REGISTRY, DiagonalRule, etp_elemwise_p

from .helpers import (
    OpCase,
    assert_close,
    check_forward,
    check_grad,
    check_jvp_vjp,
    check_rules,
    check_xy_to_dw,
    etp_entries,
    normal,
)

FNS = {
    "identity": lambda w: w,
    "sigmoid": jax.nn.sigmoid,
    "decay": lambda t: jnp.exp(-0.1 / (jnp.abs(t) + 1.0)),
}


def make_case(fn_name, rng, dtype=jnp.float32, shape=(3, 4)):
    fn = FNS[fn_name]
    return OpCase(
        fn_name,
        lambda x, weight: braintrace.element_wise(weight, fn),
        lambda x, weight: fn(weight),
        None,
        {"weight": normal(rng, shape, dtype)},
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("fn_name", list(FNS))
def test_forward_grad_jvp_vjp_xy_to_dw(fn_name, rng):
    case = make_case(fn_name, rng)
    check_forward(case)
    check_grad(case, rng)
    check_jvp_vjp(case, rng)
    entry = check_xy_to_dw(case, rng)
    assert entry.primitive is etp_elemwise_p
    assert entry.gradient_enabled and entry.x_invar_index is None
    assert entry.diagonal_names == {"weight"}


def test_default_is_identity(rng):
    w = normal(rng, (4,))
    assert_close(braintrace.element_wise(w), w)


def test_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        case = make_case("sigmoid", rng, dtype=jnp.float64)
        assert case.op(None, **case.tr).dtype == jnp.float64
        check_forward(case)
        check_grad(case, rng)
        check_xy_to_dw(case, rng)
        check_rules(case, (2, 3, 4), 2, rng)


def test_units(rng):
    tau = (jnp.abs(normal(rng, (4,))) + 5.0) * u.ms
    y = braintrace.element_wise(tau, lambda t: jnp.exp(-0.1 * u.ms / t))
    assert not isinstance(y, u.Quantity)
    assert_close(y, jnp.exp(-0.1 / tau.mantissa))
    y2 = braintrace.element_wise(tau, lambda t: 2 * t)
    assert u.get_unit(y2) == u.ms
    decay = lambda t: jnp.exp(-0.1 * u.ms / t)  # noqa: E731
    g = jax.grad(lambda tm: braintrace.element_wise(tm * u.ms, decay).sum())(tau.mantissa)
    assert_close(g, jax.grad(lambda tm: jnp.exp(-0.1 / tm).sum())(tau.mantissa))
    double = lambda t: 2 * t  # noqa: E731
    yj = jax.jit(lambda tm: braintrace.element_wise(tm * u.ms, double).to_decimal(u.second))(tau.mantissa)
    assert_close(yj, 2 * tau.mantissa * 1e-3)


def test_vmap_over_data_keeps_identity(rng):
    w = normal(rng, (4,))
    xs = normal(rng, (5, 4))

    def f(x):
        return braintrace.element_wise(w, jax.nn.sigmoid) * x

    entries = etp_entries(jax.vmap(f), xs)
    assert [e.primitive for e in entries] == [etp_elemwise_p]
    assert_close(jax.jit(jax.vmap(f))(xs), jax.nn.sigmoid(w) * xs)
    # grad of the batched loss w.r.t. the weight
    g = jax.grad(lambda w: jnp.sum(jax.vmap(lambda x: braintrace.element_wise(w, jnp.tanh) * x)(xs) ** 2))(w)
    g_ref = jax.grad(lambda w: jnp.sum((jnp.tanh(w) * xs) ** 2))(w)
    assert_close(g, g_ref)


def test_vmap_over_weight_values(rng):
    ws = normal(rng, (5, 4))
    assert_close(jax.vmap(lambda w: braintrace.element_wise(w, jnp.tanh))(ws), jnp.tanh(ws))


def test_equal_calls_give_equal_params(rng):
    w = normal(rng, (4,))
    j1 = jax.make_jaxpr(lambda w: braintrace.element_wise(w, jnp.tanh))(w)
    j2 = jax.make_jaxpr(lambda w: braintrace.element_wise(w, jnp.tanh))(w)
    assert j1.jaxpr.eqns[0].params == j2.jaxpr.eqns[0].params


@pytest.mark.parametrize("S", [1, 2])
@pytest.mark.parametrize("fn_name", ["identity", "decay"])
@pytest.mark.parametrize("lead", [(), (2,)])
def test_diagonal_rule_equals_full_jacobian(fn_name, S, lead, rng):
    case = make_case(fn_name, rng)
    entry = check_rules(case, lead + (3, 4), S, rng)
    assert isinstance(entry.trace_rule, DiagonalRule)


def test_diagonal_rule_broadcast_weight(rng):
    # a (4,) weight broadcast into a (2, 3, 4) hidden group
    case = make_case("decay", rng, shape=(4,))
    check_rules(case, (2, 3, 4), 2, rng)


def test_bad_input(rng):
    w = normal(rng, (4,))
    with pytest.raises(TypeError, match="`weight` has dtype int32"):
        braintrace.element_wise(w.astype(jnp.int32))
    with pytest.raises(TypeError, match="`fn` must be callable"):
        braintrace.element_wise(w, 3.0)
    with pytest.raises(ValueError, match=r"`fn` maps a weight of shape \(4,\) to shape \(\)"):
        braintrace.element_wise(w, jnp.sum)
    assert REGISTRY.get(etp_elemwise_p) is not None
