"""braintrace.matmul: etp_mv / etp_mm against ``x @ W + b``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.primitives import etp_mm_p, etp_mv_p
from braintrace.primitives.dense import DenseRule

from .helpers import (
    OpCase,
    assert_close,
    bound_equation,
    check_forward,
    check_grad,
    check_jvp_vjp,
    check_rules,
    check_vmap_identity,
    check_xy_to_dw,
    normal,
)

I, O = 3, 4


def _op(x, weight, bias=None):
    return braintrace.matmul(x, weight, bias)


def _ref(x, weight, bias=None):
    y = x @ weight
    return y if bias is None else y + bias


def make_case(batched, bias, rng, dtype=jnp.float32, xshape=None):
    xshape = xshape or ((2, I) if batched else (I,))
    tr = {"weight": normal(rng, (I, O), dtype)}
    if bias:
        tr["bias"] = normal(rng, (O,), dtype)
    return OpCase(f"b{batched}-bias{bias}", _op, _ref, normal(rng, xshape, dtype), tr)


CASES = [(b, bias) for b in (False, True) for bias in (False, True)]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("batched,bias", CASES)
def test_forward_grad_jvp_vjp(batched, bias, rng):
    case = make_case(batched, bias, rng)
    check_forward(case)
    check_grad(case, rng)
    check_jvp_vjp(case, rng)


@pytest.mark.parametrize("batched,bias", CASES)
def test_binds_the_right_primitive_and_xy_to_dw(batched, bias, rng):
    case = make_case(batched, bias, rng)
    entry = check_xy_to_dw(case, rng)
    assert entry.primitive is (etp_mm_p if batched else etp_mv_p)
    assert entry.diagonal_names == {"bias"}


def test_many_leading_batch_axes(rng):
    case = make_case(True, True, rng, xshape=(2, 3, I))
    check_forward(case)
    check_grad(case, rng)
    check_xy_to_dw(case, rng)


@pytest.mark.parametrize("bias", [False, True])
def test_float64(bias):
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        case = make_case(True, bias, rng, dtype=jnp.float64)
        y = case.op(case.x, **case.tr)
        assert y.dtype == jnp.float64
        check_forward(case)
        check_grad(case, rng)
        g = jax.grad(lambda w: case.op(case.x, w).sum())(case.tr["weight"])
        assert g.dtype == jnp.float64
        check_xy_to_dw(case, rng)
        check_rules(case, (2,) + y.shape, 2, rng)


def test_units(rng):
    x = normal(rng, (2, I))
    w = normal(rng, (I, O))
    b = normal(rng, (O,))
    y = braintrace.matmul(x * u.mV, w * u.siemens, b * u.uA)
    assert u.get_unit(y) == u.mV * u.siemens
    assert_close(y.to_decimal(u.uA), (x @ w) * 1e3 * 1e-3 * 1e3 + b)
    g = jax.grad(lambda wm: braintrace.matmul(x * u.mV, wm * u.siemens).to_decimal(u.mA).sum())(w)
    assert_close(g, jax.grad(lambda wm: (x @ wm).sum())(w) * 1e-3 * 1e3)
    # jit and vmap with units
    f = jax.jit(jax.vmap(lambda xi: braintrace.matmul(xi * u.mV, w * u.siemens, b * u.uA).to_decimal(u.uA)))
    assert_close(f(x), (x @ w) * 1e3 + b)


@pytest.mark.parametrize("bias", [False, True])
def test_vmap_keeps_identity(bias, rng):
    check_vmap_identity(make_case(False, bias, rng), rng=rng)
    # vmap of the batched form merges the new axis into its batch axis
    entry = check_vmap_identity(make_case(True, bias, rng), rng=rng)
    assert entry.primitive is etp_mm_p


def test_vmap_over_weights_falls_back_to_plain_values(rng):
    x = normal(rng, (I,))
    ws = normal(rng, (5, I, O))
    got = jax.vmap(lambda w: braintrace.matmul(x, w))(ws)
    assert_close(got, jnp.einsum("i,bio->bo", x, ws))


def test_grad_under_vmap(rng):
    case = make_case(False, True, rng)
    xs = normal(rng, (4, I))

    def per_example(fn):
        loss = lambda w, b, x: jnp.sum(jnp.sin(fn(x, w, b)))  # noqa: E731
        return jax.vmap(jax.grad(loss, argnums=(0, 1)), (None, None, 0))

    got = per_example(_op)(case.tr["weight"], case.tr["bias"], xs)
    want = per_example(_ref)(case.tr["weight"], case.tr["bias"], xs)
    for a, b in zip(got, want):
        assert_close(a, b)


RULE_CASES = [(False, (2,)), (True, ()), (True, (2,))]  # (batched, extra leading hidden axes)


@pytest.mark.parametrize("S", [1, 2])
@pytest.mark.parametrize("batched,extra", RULE_CASES)
def test_trace_rule_equals_full_jacobian(batched, extra, S, rng):
    case = make_case(batched, True, rng)
    yshape = jnp.shape(case.op(case.x, **case.tr))
    xshape = jnp.shape(case.x)

    def per_element(entry, operands, params, full, compact):
        # full[..., o, s, i*O + o'] = [o == o'] compact[..., i, o, s]
        f = full["weight"]
        f = f.reshape(f.shape[:-1] + (I, O))
        assert_close(jnp.einsum("...osio->...ios", f), compact["weight"], err_msg="per-element")
        off = f * (1 - jnp.eye(O))[:, None, None, :]
        assert float(jnp.abs(off).max()) == 0.0

    entry = check_rules(case, extra + yshape, S, rng, x_sampler=lambda: normal(rng, xshape),
                        per_element=per_element)
    assert isinstance(entry.trace_rule, DenseRule)


def test_trace_rule_two_step_closed_form():
    # S = 1, one output: ε2 = D2 (x1 df1) + x2 df2 ; grad = δ ε2
    entry, operands, params = bound_equation(braintrace.matmul, jnp.ones(2), jnp.ones((2, 1)))
    rule = entry.trace_rule
    x1, x2 = jnp.array([1.0, 2.0]), jnp.array([3.0, -1.0])
    t = rule.init(entry, operands, params, ("weight",), (1,), 1, jnp.float32)
    D = jnp.full((1, 1, 1), 0.5)
    t = rule.update(entry, t, (x1, operands[1]), params, ("weight",), D, jnp.full((1, 1), 2.0))
    t = rule.update(entry, t, (x2, operands[1]), params, ("weight",), D, jnp.full((1, 1), 3.0))
    g = rule.contract(entry, t, (x2, operands[1]), params, ("weight",), jnp.full((1, 1), 2.0))["weight"]
    expected = 2.0 * (0.5 * x1 * 2.0 + x2 * 3.0)
    assert_close(g[:, 0], expected)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def test_bad_input(rng):
    x, w, b = normal(rng, (2, I)), normal(rng, (I, O)), normal(rng, (O,))
    with pytest.raises(ValueError, match="`weight` must be 2-D"):
        braintrace.matmul(x, w[0])
    with pytest.raises(ValueError, match="`x` must have rank >= 1"):
        braintrace.matmul(jnp.float32(1.0), w)
    with pytest.raises(ValueError, match=r"`x` has shape \(2, 4\)"):
        braintrace.matmul(normal(rng, (2, 4)), w)
    with pytest.raises(ValueError, match=r"`bias` has shape \(3,\)"):
        braintrace.matmul(x, w, b[:3])
    with pytest.raises(TypeError, match="`weight` has dtype int32"):
        braintrace.matmul(x, w.astype(jnp.int32))
    with pytest.raises(TypeError, match="`bias` has dtype int32"):
        braintrace.matmul(x, w, b.astype(jnp.int32))
    with pytest.raises(ValueError, match="`bias` has unit mV"):
        braintrace.matmul(x * u.mV, w * u.siemens, b * u.mV)
    with pytest.raises(ValueError, match="`bias` has unit"):
        braintrace.matmul(x, w, b * u.mV)
    # inside jit too (validation happens at trace time, before any computation)
    with pytest.raises(ValueError, match="`x` has shape"):
        jax.jit(braintrace.matmul)(normal(rng, (2, 4)), w)
