"""braintrace.lora_matmul: etp_lora_mv / etp_lora_mm against ``alpha (x @ B) @ A + b``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.primitives import LoraRule, etp_lora_mm_p, etp_lora_mv_p

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
    run_rules,
)

I, R, O = 3, 2, 4
ALPHA = 0.7


def _op(x, B, A, bias=None):
    return braintrace.lora_matmul(x, B, A, alpha=ALPHA, bias=bias)


def _ref(x, B, A, bias=None):
    y = ALPHA * ((x @ B) @ A)
    return y if bias is None else y + bias


def make_case(batched, bias, rng, dtype=jnp.float32, xshape=None):
    xshape = xshape or ((2, I) if batched else (I,))
    tr = {"B": normal(rng, (I, R), dtype), "A": normal(rng, (R, O), dtype)}
    if bias:
        tr["bias"] = normal(rng, (O,), dtype)
    return OpCase(f"b{batched}-bias{bias}", _op, _ref, normal(rng, xshape, dtype), tr)


CASES = [(b, bias) for b in (False, True) for bias in (False, True)]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("batched,bias", CASES)
def test_forward_grad_jvp_vjp_xy_to_dw(batched, bias, rng):
    case = make_case(batched, bias, rng)
    check_forward(case)
    check_grad(case, rng)
    check_jvp_vjp(case, rng)
    entry = check_xy_to_dw(case, rng)
    assert entry.primitive is (etp_lora_mm_p if batched else etp_lora_mv_p)
    assert entry.trainable_invars({}, 4) == {"B": 1, "A": 2, "bias": 3}


def test_many_leading_batch_axes(rng):
    case = make_case(True, True, rng, xshape=(2, 3, I))
    check_forward(case)
    check_grad(case, rng)


def test_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        case = make_case(True, True, rng, dtype=jnp.float64)
        y = case.op(case.x, **case.tr)
        assert y.dtype == jnp.float64
        check_forward(case)
        check_grad(case, rng)
        check_xy_to_dw(case, rng)
        check_rules(case, (2,) + y.shape, 2, rng)


def test_units(rng):
    x, B, A, b = normal(rng, (2, I)), normal(rng, (I, R)), normal(rng, (R, O)), normal(rng, (O,))
    y = braintrace.lora_matmul(x * u.mV, B * u.siemens, A, alpha=ALPHA, bias=b * u.uA)
    assert u.get_unit(y) == u.mV * u.siemens
    assert_close(y.to_decimal(u.uA), _ref(x, B, A) * 1e3 + b)
    g = jax.jit(jax.grad(lambda Bm: braintrace.lora_matmul(x * u.mV, Bm * u.siemens, A, alpha=ALPHA)
                         .to_decimal(u.mA).sum()))(B)
    assert_close(g, jax.grad(lambda Bm: _ref(x, Bm, A).sum())(B))


@pytest.mark.parametrize("bias", [False, True])
def test_vmap_keeps_identity(bias, rng):
    entry = check_vmap_identity(make_case(False, bias, rng), rng=rng)
    assert entry.primitive is etp_lora_mm_p
    entry = check_vmap_identity(make_case(True, bias, rng), rng=rng)
    assert entry.primitive is etp_lora_mm_p


def _per_element(entry, operands, params, full, compact):
    """full_B[.., o, s, (i, j)] = α E[.., i, o, s] A[j, o]; full_A[.., o, s, (j, o')] = [o=o'] α (B^T E)."""
    B, A, alpha = operands[1], operands[2], params["alpha"]
    E = compact["W"]
    lead = E.shape[:-3]
    want_B = alpha * jnp.einsum("...ios,jo->...osij", E, A).reshape(lead + (O, E.shape[-1], I * R))
    assert_close(full["B"], want_B, err_msg="per-element B")
    fA = full["A"].reshape(lead + (O, E.shape[-1], R, O))
    assert_close(jnp.einsum("...osjo->...osj", fA), alpha * jnp.einsum("...ios,ij->...osj", E, B),
                 err_msg="per-element A")
    off = fA * (1 - jnp.eye(O))[:, None, None, :]
    assert float(jnp.abs(off).max()) == 0.0


# (batched, extra leading hidden axes, S): S enters LoraRule only through apply_block (whose S = 1
# branch does not depend on the input's batch axes): each case once, S = 2 also in test_float64
# (batched, extra axes) and test_trace_rule_subset_of_names (batched)
RULE_CASES = [(False, (2,), 2), (True, (), 1), (True, (2,), 1)]


@pytest.mark.parametrize("batched,extra,S", RULE_CASES)
def test_trace_rule_equals_full_jacobian(batched, extra, S, rng):
    case = make_case(batched, True, rng)
    yshape = jnp.shape(case.op(case.x, **case.tr))
    xshape = jnp.shape(case.x)
    entry = check_rules(case, extra + yshape, S, rng, x_sampler=lambda: normal(rng, xshape),
                        per_element=_per_element)
    assert isinstance(entry.trace_rule, LoraRule)


@pytest.mark.parametrize("names", [("A",), ("B",)])
def test_trace_rule_subset_of_names(names, rng):
    case = make_case(True, False, rng)
    yshape = jnp.shape(case.op(case.x, **case.tr))
    _, gf, gc = run_rules(case, names, yshape, 2, rng)
    assert set(gc) == set(names)


def test_one_trace_for_both_factors(rng):
    case = make_case(True, False, rng)
    entry, operands, params = bound_equation(lambda *a: case.call(case.op, *a), *case.args())
    t = entry.trace_rule.init(entry, operands, params, ("B", "A"), (2, O), 2, jnp.float32)
    assert list(t) == ["W"] and t["W"].shape == (2, I, O, 2)
    assert entry.trace_rule.init(entry, operands, params, (), (2, O), 2, jnp.float32) == {}


def test_bad_input(rng):
    x, B, A, b = normal(rng, (2, I)), normal(rng, (I, R)), normal(rng, (R, O)), normal(rng, (O,))
    with pytest.raises(ValueError, match="`B` and `A` must be 2-D"):
        braintrace.lora_matmul(x, B[0], A)
    with pytest.raises(ValueError, match="`B` and `A` must be 2-D"):
        braintrace.lora_matmul(x, B, A[None])
    with pytest.raises(ValueError, match=r"`x` has shape \(2, 4\)"):
        braintrace.lora_matmul(normal(rng, (2, 4)), B, A)
    with pytest.raises(ValueError, match=r"`x` has shape \(\)"):
        braintrace.lora_matmul(jnp.float32(1.0), B, A)
    with pytest.raises(ValueError, match="the rank axes"):
        braintrace.lora_matmul(x, B, A[:1])
    with pytest.raises(ValueError, match=r"`bias` has shape \(3,\)"):
        braintrace.lora_matmul(x, B, A, bias=b[:3])
    with pytest.raises(ValueError, match="`bias` has unit mV"):
        braintrace.lora_matmul(x * u.mV, B * u.siemens, A, bias=b * u.mV)
    with pytest.raises(TypeError, match="`B` has dtype int32"):
        braintrace.lora_matmul(x, B.astype(jnp.int32), A)
    with pytest.raises(TypeError, match="`A` has dtype int32"):
        braintrace.lora_matmul(x, B, A.astype(jnp.int32))
    with pytest.raises(TypeError, match="`bias` has dtype int32"):
        braintrace.lora_matmul(x, B, A, bias=b.astype(jnp.int32))
    with pytest.raises(TypeError, match="`alpha` must be a concrete Python number"):
        jax.jit(lambda a: braintrace.lora_matmul(x, B, A, alpha=a))(1.0)
