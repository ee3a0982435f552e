"""braintrace.primitives.sparse_window: a sparse product's window weight gradient, one pass per few steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.primitives import EventCSR, event_sparse_matmul, get_etp_primitive
from braintrace.primitives.sparse_window import sampled_outer_sum

from .helpers import assert_close, bound_equation, normal


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _reference(a, b, rows, cols):
    return np.einsum("mk,mk->k", np.asarray(a, np.float64)[:, rows], np.asarray(b, np.float64)[:, cols])


@pytest.mark.parametrize("layout", [None, "vectors", "rows"])
@pytest.mark.parametrize("steps,group", [(1, 8), (5, 1), (5, 2), (8, 8), (13, 4), (3, 16), (51, None)])
def test_sampled_outer_sum_is_the_sum_over_steps(steps, group, layout, rng):
    a, b = normal(rng, (steps, 6)), normal(rng, (steps, 9))
    rows, cols = rng.integers(0, 6, 40), rng.integers(0, 9, 40)
    got = jax.jit(lambda a, b: sampled_outer_sum(a, b, rows, cols, group=group, layout=layout))(a, b)
    assert_close(got, _reference(a, b, rows, cols))


def test_sampled_outer_sum_rejects_bad_arguments():
    with pytest.raises(ValueError, match="must be"):
        sampled_outer_sum(jnp.zeros((2, 3)), jnp.zeros((3, 3)), np.zeros(4, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="layout='cols' must be"):
        idx = np.zeros(4, int)
        sampled_outer_sum(jnp.zeros((2, 3)), jnp.zeros((2, 3)), idx, idx, layout="cols")


def _sparse_case(rng, n_rows=40, n_cols=30, p=0.3):
    mask = rng.random((n_rows, n_cols)) < p
    mask[:, 0] = True
    return u.sparse.CSR.fromdense(jnp.asarray(mask * rng.normal(size=mask.shape), jnp.float32))


@pytest.mark.parametrize("kind", ["csr", "event"])
@pytest.mark.parametrize("batched", [False, True])
def test_window_rule_equals_the_vjp_of_every_step(kind, batched, rng):
    """The primitives' own window rule against the sum of their per-step VJPs, weight and bias."""
    csr = _sparse_case(rng)
    w, b = jnp.asarray(u.get_mantissa(csr.data)), normal(rng, (30,))
    if kind == "csr":
        fn = lambda x, w, b: braintrace.sparse_matmul(x, w, sparse_mat=csr, bias=b)  # noqa: E731
    else:
        s = EventCSR.from_csr(csr, block=4, max_active=0.5)
        fn = lambda x, w, b: event_sparse_matmul(x, w, structure=s, bias=b)  # noqa: E731
    x = normal(rng, (3, 40) if batched else (40,))
    entry, ops, params = bound_equation(fn, x, w, b)
    assert entry.window_rule is not None
    K = 11
    x_seq = jnp.asarray((rng.random((K,) + x.shape) < 0.2) * rng.normal(size=(K,) + x.shape), jnp.float32)
    dy_seq = normal(rng, (K,) + x.shape[:-1] + (30,))
    got = jax.jit(lambda xs, dys: entry.xy_to_dw_seq(ops, xs, params, dys))(x_seq, dy_seq)
    one = jax.jit(lambda xk, dyk: entry.xy_to_dw(tuple([xk] + list(ops[1:])), params, dyk))  # compiled once
    steps = [one(x_seq[k], dy_seq[k]) for k in range(K)]
    for name in ("weight", "bias"):
        want = sum(np.asarray(g[name], np.float64) for g in steps)
        assert_close(got[name], want, err_msg=name)


def test_window_rule_keeps_one_weight_sized_buffer(rng):
    """64 steps of a 2,000-nonzero product: the compiled temp memory stays a few weight-sized buffers.

    The VJP of the batched product gathers ``K · nnz`` values (about 1 MB here); the rule's passes keep
    one accumulator."""
    csr = _sparse_case(rng, n_rows=100, n_cols=80, p=0.25)
    nnz = int(u.get_mantissa(csr.data).shape[0])
    entry = get_etp_primitive(braintrace.primitives.etp_sparse_mv_p)
    _, ops, params = bound_equation(lambda x, w: braintrace.sparse_matmul(x, w, sparse_mat=csr), jnp.zeros(100),
                                    jnp.asarray(u.get_mantissa(csr.data)))
    K = 64
    f = jax.jit(lambda xs, dys: entry.xy_to_dw_seq(ops, xs, params, dys))
    temp = f.lower(jnp.zeros((K, 100)), jnp.zeros((K, 80))).compile().memory_analysis().temp_size_in_bytes
    assert temp < 6 * 4 * nnz + 4 * K * 200, (temp, nnz)
