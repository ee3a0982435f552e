"""braintrace.primitives.event_sparse_matmul: the event-driven product against ``x @ todense(M) + b``.

Every check runs on both paths of the primitive: the event path (mostly-zero
``x`` within the capacity, or a capacity of every block) and the CSR fallback
(more active blocks than the capacity). Which path ran is observed through a
weight that is infinite in a row whose input is zero: the event path never
reads it, the CSR product multiplies it by zero (NaN).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.primitives import (
    EventCSR,
    SparseRule,
    etp_event_sparse_mm_p,
    etp_event_sparse_mv_p,
    event_sparse_matmul,
    get_etp_primitive,
)

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

R, C = 12, 7


def make_csr(rng, dtype=jnp.float32):
    m = (rng.random((R, C)) < 0.5).astype(np.float64)
    m[:, 0] = 1.0  # every row has a nonzero
    m[3] = 1.0  # one long row (several blocks)
    return u.sparse.CSR.fromdense(jnp.asarray(m * rng.normal(size=(R, C)), dtype))


def spikes(rng, shape, p=0.25, dtype=jnp.float32):
    """Mostly-zero input with arbitrary (not only 0/1) values."""
    return jnp.asarray((rng.random(shape) < p) * rng.normal(size=shape), dtype)


def make_case(rng, *, batched, bias, max_active, sparse_x=True, dtype=jnp.float32, xshape=None):
    csr = make_csr(rng, dtype)
    s = EventCSR.from_csr(csr, block=3, max_active=max_active)
    xshape = xshape or ((4, R) if batched else (R,))
    x = spikes(rng, xshape, dtype=dtype) if sparse_x else normal(rng, xshape, dtype)

    def op(x, weight, bias=None):
        return event_sparse_matmul(x, weight, structure=s, bias=bias)

    def ref(x, weight, bias=None):
        y = x @ csr.with_data(weight).todense()
        return y if bias is None else y + bias

    tr = {"weight": normal(rng, (s.nnz,), dtype)}
    if bias:
        tr["bias"] = normal(rng, (C,), dtype)
    case = OpCase("event", op, ref, x, tr)
    case.structure, case.csr = s, csr
    return case


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# (max_active, sparse x, batched): event path for sparse x; full capacity: event path for any
# x; tiny capacity with dense x: the CSR fallback
PATHS = [(0.6, True, False), (1.0, False, True), (0.05, False, True)]


@pytest.mark.parametrize("max_active,sparse_x,batched", PATHS)
def test_forward_grad_jvp_vjp_xy_to_dw(max_active, sparse_x, batched, rng):
    case = make_case(rng, batched=batched, bias=True, max_active=max_active, sparse_x=sparse_x)
    check_forward(case)
    check_grad(case, rng)
    check_jvp_vjp(case, rng, jit=True)
    entry = check_xy_to_dw(case, rng, jit=True)
    assert entry.primitive is (etp_event_sparse_mm_p if batched else etp_event_sparse_mv_p)
    assert entry.event_driven and set(entry.trainable_invars({}, 8)) == {"weight", "bias"}


def _fits(case, x):
    """Whether ``x``'s active blocks fit the capacity (the event path), counted with NumPy."""
    xf = np.asarray(x).reshape(-1, R)
    active = np.count_nonzero(xf[:, np.asarray(case.structure.block_row)])
    return active <= case.structure.capacity * xf.shape[0]


@pytest.mark.slow
def test_float64_equals_csr_product_to_1e10():
    """Both paths in float64, each compiled program run on two inputs: spikes within the
    capacity (the event path) and a dense input beyond it (the CSR fallback)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        case = make_case(rng, batched=True, bias=True, max_active=0.6, sparse_x=True, dtype=jnp.float64)
        dense = normal(rng, case.x.shape, jnp.float64)
        assert _fits(case, case.x) and not _fits(case, dense)
        w, b = case.tr["weight"], case.tr["bias"]
        entry, operands, params = bound_equation(case.op, case.x, w, b)
        assert entry.primitive is etp_event_sparse_mm_p
        op = jax.jit(case.op)
        grad = jax.jit(jax.grad(lambda x, w, b, ct: jnp.sum(case.op(x, w, b) * ct), argnums=(0, 1, 2)))
        xy_to_dw = jax.jit(lambda x, dy: entry.xy_to_dw((x,) + tuple(operands[1:]), params, dy))
        for x in (case.x, dense):
            y = op(x, w, b)
            assert y.dtype == jnp.float64
            want = braintrace.sparse_matmul(x, w, sparse_mat=case.csr, bias=b)
            assert_close(y, want, rtol=1e-10)
            ct = normal(rng, y.shape, jnp.float64)
            got = grad(x, w, b, ct)
            ref = jax.grad(lambda x, w, b, ct=ct: jnp.sum(case.ref(x, w, b) * ct), argnums=(0, 1, 2))(x, w, b)
            for name, g, r in zip(("x", "weight", "bias"), got, ref):
                assert_close(g, r, rtol=1e-10, err_msg=f"grad {name}")
            dw = xy_to_dw(x, ct)
            _, vjp = jax.vjp(lambda w, b, x=x: case.ref(x, w, b), w, b)
            for name, r in zip(("weight", "bias"), vjp(ct)):
                assert_close(dw[name], r, rtol=1e-10, err_msg=f"xy_to_dw[{name}]")


def _probe(case, x):
    """Weights infinite in every row whose input is zero in all of ``x``: finite output iff the event path ran."""
    rows = np.asarray(case.structure.rows)
    idle = ~np.any(np.asarray(x).reshape(-1, R) != 0, axis=0)
    w = jnp.where(jnp.asarray(idle[rows]), jnp.inf, case.tr["weight"])
    return jax.jit(lambda x, w: case.op(x, w))(x, w)


def test_event_path_runs_within_the_capacity_and_falls_back_beyond(rng):
    case = make_case(rng, batched=False, bias=False, max_active=0.5)
    x = jnp.zeros(R).at[jnp.array([0, 3])].set(jnp.array([1.0, -2.0]))  # 1 + 3 active blocks
    assert np.isfinite(np.asarray(_probe(case, x))).all()  # event path: idle rows never read
    assert_close(case.op(x, **case.tr), case.ref(x, **case.tr))
    small = make_case(rng, batched=False, bias=False, max_active=0.05)
    assert small.structure.capacity < 4
    assert not np.isfinite(np.asarray(_probe(small, x))).all()  # CSR product: inf * 0
    finite = jnp.where(jnp.isinf(small.tr["weight"]), 0.0, small.tr["weight"])
    assert_close(small.op(x, finite), small.ref(x, finite))


def test_batched_capacity_is_per_batch_element(rng):
    case = make_case(rng, batched=True, bias=False, max_active=0.5)
    x = jnp.zeros((3, R)).at[:, 1].set(1.0)  # one active row per example: within 3 x capacity
    assert np.isfinite(np.asarray(_probe(case, x))).all()


def test_window_xy_to_dw_seq_is_event_driven_and_equal(rng):
    """``xy_to_dw_seq`` over a window of spikes (the learners' window product) equals the CSR one."""
    case = make_case(rng, batched=False, bias=True, max_active=0.6)
    entry, operands, params = bound_equation(lambda x, w, b: case.op(x, w, b), case.x, case.tr["weight"],
                                             case.tr["bias"])
    x_seq = spikes(rng, (5, R))
    dy_seq = normal(rng, (5, C))
    got = entry.xy_to_dw_seq(operands, x_seq, params, dy_seq)
    dense_entry = get_etp_primitive(braintrace.primitives.etp_sparse_mv_p)
    dense_ops = (operands[0], operands[1], operands[2], operands[3], operands[7])
    want = dense_entry.xy_to_dw_seq(dense_ops, x_seq, {"n_cols": C}, dy_seq)
    for name in ("weight", "bias"):
        assert_close(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("bias", [False, True])
def test_vmap_keeps_identity(bias, rng):
    entry = check_vmap_identity(make_case(rng, batched=False, bias=bias, max_active=0.6), rng=rng)
    assert entry.primitive is etp_event_sparse_mm_p


def test_transpose_with_respect_to_x(rng):
    case = make_case(rng, batched=True, bias=False, max_active=0.6)
    w = case.tr["weight"]
    ct = normal(rng, (4, C))
    (got,) = jax.linear_transpose(lambda x: case.op(x, w), case.x)(ct)
    (want,) = jax.linear_transpose(lambda x: case.ref(x, w), case.x)(ct)
    assert_close(got, want)


@pytest.mark.parametrize("S", [1, 2])
def test_trace_rule_equals_full_jacobian(S, rng):
    case = make_case(rng, batched=True, bias=True, max_active=0.6)
    entry = check_rules(case, (4, C), S, rng, x_sampler=lambda: spikes(rng, (4, R)))
    assert isinstance(entry.trace_rule, SparseRule)


def test_units(rng):
    case = make_case(rng, batched=True, bias=True, max_active=0.6)
    x, w, b = case.x, case.tr["weight"], case.tr["bias"]
    y = event_sparse_matmul(x * u.mV, w * u.siemens, structure=case.structure, bias=b * u.uA)
    assert u.get_unit(y) == u.mV * u.siemens
    assert_close(y.to_decimal(u.uA), case.ref(x, w) * 1e3 + b)


def test_structure_blocks(rng):
    csr = u.sparse.CSR.fromdense(jnp.array([[1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0],
                                            [0.0, 1.0, 0.0, 1.0, 0.0]]))
    s = EventCSR.from_csr(csr, block=2, max_active=0.5)
    assert s.block_row.tolist() == [0, 0, 0, 2]  # an empty row has no block
    assert s.block_start.tolist() == [0, 2, 4, 5] and s.block_end.tolist() == [2, 4, 5, 7]
    assert s.rows.tolist() == [0, 0, 0, 0, 0, 2, 2] and s.capacity == 2
    assert EventCSR.from_csr(csr, max_active=1.0).capacity == 2  # one block of 32 per nonempty row


def test_bad_input(rng):
    csr = make_csr(rng)
    s = EventCSR.from_csr(csr)
    x, w = spikes(rng, (R,)), normal(rng, (s.nnz,))
    with pytest.raises(TypeError, match="needs a saiunit.sparse.CSR"):
        EventCSR.from_csr(u.sparse.CSC.fromdense(csr.todense()))
    with pytest.raises(ValueError, match="block=0"):
        EventCSR.from_csr(csr, block=0)
    with pytest.raises(ValueError, match=r"max_active=0 must lie in \(0, 1\]"):
        EventCSR.from_csr(csr, max_active=0)
    with pytest.raises(TypeError, match="`structure` must be an EventCSR"):
        event_sparse_matmul(x, w, structure=csr)
    with pytest.raises(ValueError, match=r"`x` has shape \(3,\)"):
        event_sparse_matmul(x[:3], w, structure=s)
    with pytest.raises(ValueError, match="`weight_data` has shape"):
        event_sparse_matmul(x, w[1:], structure=s)
    with pytest.raises(TypeError, match="`weight_data` has dtype int32"):
        event_sparse_matmul(x, w.astype(jnp.int32), structure=s)
    with pytest.raises(ValueError, match=r"`bias` has shape \(3,\)"):
        event_sparse_matmul(x, w, structure=s, bias=jnp.ones(3))


def test_large_matrix_with_few_nonzeros():
    """Only the nonzeros and one row of outputs per batch element need int32 indices, not rows x columns."""
    n = 70_000  # n * n > 2**31
    indptr = np.zeros(n + 1, np.int32)
    indptr[1:] = 1  # row 0 holds the only nonzero
    csr = u.sparse.CSR((jnp.ones(1), np.array([n - 1], np.int32), indptr), shape=(n, n))
    s = EventCSR.from_csr(csr, max_active=1.0)
    y = event_sparse_matmul(jnp.zeros(n).at[0].set(2.0), jnp.array([3.0]), structure=s)
    assert float(y[n - 1]) == 6.0 and float(jnp.sum(y)) == 6.0


@pytest.mark.parametrize("max_active,sparse_x,batched", PATHS)
def test_jacobians_in_the_weight_equal_the_csr_product(max_active, sparse_x, batched, rng):
    """``jacfwd`` maps the weight's tangent (the linear primitive's loop over tangents),
    ``jacrev`` its cotangent, and a vmap over inputs folds them into its batch."""
    case = make_case(rng, batched=batched, bias=False, max_active=max_active, sparse_x=sparse_x)
    w = case.tr["weight"]

    def ev(x, w):
        return event_sparse_matmul(x, w, structure=case.structure)

    rows, cols = np.asarray(case.structure.rows), np.asarray(case.structure.cols)

    def csr(x, w):  # the dense matrix with w at the pattern (differentiable and vmappable)
        return x @ jnp.zeros((R, C), w.dtype).at[rows, cols].add(w)

    xs = jnp.stack([case.x, 2.0 * case.x, jnp.zeros_like(case.x)])

    @functools.partial(jax.jit, static_argnums=0)
    def jacobians(f):
        one = [jac(lambda w: f(case.x, w))(w) for jac in (jax.jacfwd, jax.jacrev)]
        many = [jax.vmap(lambda x: jac(lambda w: f(x, w))(w))(xs) for jac in (jax.jacfwd, jax.jacrev)]
        return one + many

    for got, want in zip(jacobians(ev), jacobians(csr)):
        assert_close(got, want, 1e-5)


def test_with_arrays_checks_names_and_shapes(rng):
    s = EventCSR.from_csr(make_csr(rng), block=3)
    same = s.with_arrays({k: jnp.asarray(v) for k, v in s.arrays.items()})
    assert same.capacity == s.capacity and isinstance(same.rows, jax.Array)
    with pytest.raises(ValueError, match="expected the arrays"):
        s.with_arrays({"rows": s.rows})
    with pytest.raises(ValueError, match="`cols` has shape"):
        s.with_arrays({**s.arrays, "cols": s.cols[:-1]})
