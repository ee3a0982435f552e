"""braintrace.sparse_matmul: etp_sparse_mv / etp_sparse_mm against ``x @ todense(M) + b``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.primitives import SparseRule, etp_sparse_mm_p, etp_sparse_mv_p

from .helpers import (
    OpCase,
    assert_close,
    check_forward,
    check_grad,
    check_jvp_vjp,
    check_rules,
    check_vmap_identity,
    check_xy_to_dw,
    normal,
)

R, C = 5, 4
FORMATS = {"csr": u.sparse.CSR, "csc": u.sparse.CSC, "coo": u.sparse.COO}


def make_mask(rng):
    m = (rng.random((R, C)) < 0.5).astype(np.float32)
    m[0, 0] = m[1, 1] = m[4, 3] = m[2, 3] = 1.0  # two nonzeros in column 3
    return jnp.asarray(m)


def make_case(fmt, batched, bias, rng, dtype=jnp.float32, xshape=None):
    sp = FORMATS[fmt].fromdense(make_mask(rng).astype(dtype))
    nnz = sp.data.shape[0]
    xshape = xshape or ((3, R) if batched else (R,))

    def op(x, weight, bias=None):
        return braintrace.sparse_matmul(x, weight, sparse_mat=sp, bias=bias)

    def ref(x, weight, bias=None):
        y = x @ sp.with_data(weight).todense()
        return y if bias is None else y + bias

    tr = {"weight": normal(rng, (nnz,), dtype)}
    if bias:
        tr["bias"] = normal(rng, (C,), dtype)
    case = OpCase(fmt, op, ref, normal(rng, xshape, dtype), tr)
    case.sparse = sp
    return case


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# every format batched and unbatched, with and without a bias; each (batched, bias) pair on 1-2 formats
CASES = [("csr", False, False), ("csr", True, True), ("csc", False, True), ("csc", True, False),
         ("coo", False, False), ("coo", True, True)]


@pytest.mark.parametrize("fmt,batched,bias", CASES)
def test_forward_grad_jvp_vjp_xy_to_dw(fmt, batched, bias, rng):
    case = make_case(fmt, batched, bias, rng)
    check_forward(case)
    check_grad(case, rng)
    check_jvp_vjp(case, rng)
    entry = check_xy_to_dw(case, rng)
    assert entry.primitive is (etp_sparse_mm_p if batched else etp_sparse_mv_p)
    assert set(entry.trainable_invars({}, 5)) == {"weight", "bias"}


def test_many_leading_batch_axes(rng):
    case = make_case("csr", True, True, rng, xshape=(2, 3, R))
    check_forward(case)
    check_grad(case, rng)
    check_xy_to_dw(case, rng)


def test_structure_as_jit_argument(rng):
    case = make_case("csr", True, True, rng)
    f = jax.jit(lambda x, w, sp: braintrace.sparse_matmul(x, w, sparse_mat=sp))
    assert_close(f(case.x, case.tr["weight"], case.sparse), case.ref(case.x, case.tr["weight"]))


def test_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        case = make_case("coo", True, True, rng, dtype=jnp.float64)
        y = case.op(case.x, **case.tr)
        assert y.dtype == jnp.float64
        check_forward(case)
        check_grad(case, rng)
        check_xy_to_dw(case, rng)
        check_rules(case, y.shape, 2, rng)


def test_units(rng):
    case = make_case("csr", True, True, rng)
    x, w, b = case.x, case.tr["weight"], case.tr["bias"]
    y = braintrace.sparse_matmul(x * u.mV, w * u.siemens, sparse_mat=case.sparse, bias=b * u.uA)
    assert u.get_unit(y) == u.mV * u.siemens
    assert_close(y.to_decimal(u.uA), case.ref(x, w) * 1e3 + b)
    g = jax.jit(jax.grad(lambda wm: braintrace.sparse_matmul(x * u.mV, wm * u.siemens, sparse_mat=case.sparse)
                         .to_decimal(u.mA).sum()))(w)
    assert_close(g, jax.grad(lambda wm: case.ref(x, wm).sum())(w))


@pytest.mark.parametrize("bias", [False, True])
def test_vmap_keeps_identity(bias, rng):
    entry = check_vmap_identity(make_case("csr", False, bias, rng), rng=rng)
    assert entry.primitive is etp_sparse_mm_p
    entry = check_vmap_identity(make_case("coo", True, bias, rng), rng=rng)
    assert entry.primitive is etp_sparse_mm_p


def _per_element(entry, operands, params, full, compact):
    """full[..., col(k), s, k] == compact[..., k, s]; full is zero off col(k)."""
    cols = operands[3]
    f = full["weight"]  # (*B, C, S, nnz)
    gathered = jnp.einsum("...ksk->...ks", jnp.take(f, cols, axis=-3))
    assert_close(gathered, compact["weight"], err_msg="per-element sparse trace")
    assert_close(jnp.abs(f).sum(), jnp.abs(gathered).sum(), err_msg="full trace off col(k)")


# (format, batched, extra hidden axes, S): each S with and without extra axes, S = 1 batched and not
RULE_CASES = [("csr", False, (2,), 1), ("csc", True, (), 2), ("coo", True, (2,), 2), ("csr", True, (), 1)]


@pytest.mark.parametrize("fmt,batched,extra,S", RULE_CASES)
def test_trace_rule_equals_full_jacobian(fmt, batched, extra, S, rng):
    case = make_case(fmt, batched, True, rng)
    yshape = jnp.shape(case.op(case.x, **case.tr))
    xshape = jnp.shape(case.x)
    entry = check_rules(case, extra + yshape, S, rng, x_sampler=lambda: normal(rng, xshape),
                        per_element=_per_element)
    assert isinstance(entry.trace_rule, SparseRule)


def test_batched_trace_keeps_examples_apart(rng):
    # two examples with different inputs: the per-example traces must differ
    case = make_case("csr", True, False, rng, xshape=(2, R))
    from .helpers import bound_equation

    entry, operands, params = bound_equation(lambda x, w: case.op(x, w), case.x, case.tr["weight"])
    rule = entry.trace_rule
    V = (2, C)
    t = rule.init(entry, operands, params, ("weight",), V, 1, jnp.float32)
    t = rule.update(entry, t, operands, params, ("weight",), jnp.ones(V + (1, 1)), jnp.ones(V + (1,)))
    rows = operands[2]
    assert_close(t["weight"][..., 0], case.x[:, rows])


def test_bad_input(rng):
    sp = u.sparse.CSR.fromdense(make_mask(rng))
    nnz = sp.data.shape[0]
    x, w, b = normal(rng, (3, R)), normal(rng, (nnz,)), normal(rng, (C,))
    with pytest.raises(TypeError, match="`sparse_mat` must be a saiunit.sparse"):
        braintrace.sparse_matmul(x, w, sparse_mat=np.ones((R, C)))
    with pytest.raises(ValueError, match=r"`x` has shape \(3, 4\)"):
        braintrace.sparse_matmul(normal(rng, (3, 4)), w, sparse_mat=sp)
    with pytest.raises(ValueError, match=r"`x` has shape \(\)"):
        braintrace.sparse_matmul(jnp.float32(1.0), w, sparse_mat=sp)
    with pytest.raises(ValueError, match=rf"`weight_data` has shape \({nnz - 1},\); expected \({nnz},\)"):
        braintrace.sparse_matmul(x, w[1:], sparse_mat=sp)
    with pytest.raises(ValueError, match="`weight_data` has shape"):
        braintrace.sparse_matmul(x, w[None], sparse_mat=sp)
    with pytest.raises(TypeError, match="`weight_data` has dtype int32"):
        braintrace.sparse_matmul(x, w.astype(jnp.int32), sparse_mat=sp)
    with pytest.raises(ValueError, match=r"`bias` has shape \(3,\)"):
        braintrace.sparse_matmul(x, w, sparse_mat=sp, bias=b[:3])
    with pytest.raises(ValueError, match="`bias` has unit mV"):
        braintrace.sparse_matmul(x * u.mV, w * u.siemens, sparse_mat=sp, bias=b * u.mV)
    with pytest.raises(TypeError, match="`bias` has dtype int32"):
        braintrace.sparse_matmul(x, w, sparse_mat=sp, bias=b.astype(jnp.int32))
