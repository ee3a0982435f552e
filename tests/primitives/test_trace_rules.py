"""The trace-rule helpers and the generic rules, against hand-written closed forms."""

import jax.numpy as jnp
import numpy as np
import pytest

import braintrace
from braintrace.primitives import DiagonalRule, FullJacobianRule
from braintrace.primitives.trace_rules import (
    apply_block,
    broadcast_leading,
    contract_sequence,
    sum_leading,
    sum_to_shape,
)

from .helpers import assert_close, bound_equation, normal


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("S", [1, 2, 3])
def test_apply_block(S, rng):
    D = normal(rng, (2, 4, S, S))
    eps = normal(rng, (2, 4, S))
    assert_close(apply_block(D, eps), np.einsum("pqst,pqt->pqs", D, eps))
    # one weight axis before the last position axis (dense layout (*B, I, O, S))
    eps = normal(rng, (2, 5, 4, S))
    assert_close(apply_block(D, eps, extra_axes=1), np.einsum("pqst,pkqt->pkqs", D, eps))
    # weight axes appended after the positions (conv layout (*V, Kin, S))
    eps = normal(rng, (2, 4, 5, S))
    assert_close(apply_block(D, eps, extra_axes=1, at=2), np.einsum("pqst,pqkt->pqks", D, eps))


def test_broadcast_leading(rng):
    x = normal(rng, (3,))
    assert broadcast_leading(x, (2, 5, 4), 1).shape == (2, 5, 3)
    assert broadcast_leading(normal(rng, (5, 3)), (5, 4), 2).shape == (5, 3)


def test_sum_to_shape(rng):
    x = normal(rng, (2, 3, 4))
    assert_close(sum_to_shape(x, (4,)), np.asarray(x).sum((0, 1)))
    assert_close(sum_to_shape(x, (3, 1)), np.asarray(x).sum(0).sum(-1, keepdims=True))
    assert_close(sum_to_shape(x, (2, 3, 4)), x)


def test_full_jacobian_two_step_closed_form():
    """y = x @ W with I = 1, O = 2, S = 2, D and df constant; hand-written recursion."""
    entry, ops, params = bound_equation(lambda x, w: braintrace.matmul(x, w), jnp.ones(1), jnp.ones((1, 2)))
    rule = FullJacobianRule()
    D = jnp.array([[[0.5, 0.1], [0.0, 0.2]], [[1.0, 0.0], [0.3, 0.4]]])  # (O, S, S)
    df = jnp.array([[1.0, 2.0], [3.0, -1.0]])  # (O, S)
    x1, x2 = jnp.array([2.0]), jnp.array([-1.0])
    t = rule.init(entry, ops, params, ("weight",), (2,), 2, jnp.float32)
    t = rule.update(entry, t, (x1, ops[1]), params, ("weight",), D, df)
    t = rule.update(entry, t, (x2, ops[1]), params, ("weight",), D, df)
    eps = np.zeros((2, 2, 2))  # (O, S, k = o')
    for x in (2.0, -1.0):
        new = np.einsum("ost,otk->osk", np.asarray(D), eps)
        for o in range(2):
            new[o, :, o] += x * np.asarray(df)[o]
        eps = new
    assert_close(t["weight"], eps)
    delta = jnp.array([[1.0, 0.5], [-2.0, 1.0]])
    g = rule.contract(entry, t, (x2, ops[1]), params, ("weight",), delta)["weight"]
    assert_close(g, np.einsum("os,osk->k", np.asarray(delta), eps).reshape(1, 2))


def test_diagonal_rule_two_step_closed_form_for_a_bias():
    entry, ops, params = bound_equation(lambda x, w, b: braintrace.matmul(x, w, b),
                                        jnp.ones((2, 1)), jnp.ones((1, 3)), jnp.zeros(3))
    rule = DiagonalRule()
    V = (2, 3)
    t = rule.init(entry, ops, params, ("bias",), V, 1, jnp.float32)
    d1, d2 = jnp.full(V + (1, 1), 0.5), jnp.full(V + (1, 1), 0.25)
    f1, f2 = jnp.full(V + (1,), 2.0), jnp.full(V + (1,), 3.0)
    t = rule.update(entry, t, ops, params, ("bias",), d1, f1)
    t = rule.update(entry, t, ops, params, ("bias",), d2, f2)
    assert_close(t["bias"], jnp.full(V + (1,), 0.25 * 2.0 + 3.0))
    delta = jnp.arange(6.0).reshape(V + (1,))
    g = rule.contract(entry, t, ops, params, ("bias",), delta)["bias"]
    assert_close(g, 3.5 * np.arange(6.0).reshape(2, 3).sum(0))


def test_diagonal_rule_maps_a_channel_first_conv_bias_back(rng):
    """NCHW output with C_out == W: NumPy broadcasting would silently sum the wrong axis."""
    x = normal(rng, (2, 3, 4, 4))
    k = normal(rng, (4, 3, 3, 3))
    b = normal(rng, (4,))
    entry, ops, params = bound_equation(
        lambda x, k, b: braintrace.conv(x, k, b, dimension_numbers=("NCHW", "OIHW", "NCHW")), x, k, b)
    V, S = (2, 4, 4, 4), 2
    diag, full = DiagonalRule(), FullJacobianRule()
    td = diag.init(entry, ops, params, ("bias",), V, S, jnp.float32)
    tf = full.init(entry, ops, params, ("bias",), V, S, jnp.float32)
    for _ in range(2):
        D, df = normal(rng, V + (S, S)), normal(rng, V + (S,))
        td = diag.update(entry, td, ops, params, ("bias",), D, df)
        tf = full.update(entry, tf, ops, params, ("bias",), D, df)
    delta = normal(rng, V + (S,))
    g = diag.contract(entry, td, ops, params, ("bias",), delta)["bias"]
    assert_close(g, full.contract(entry, tf, ops, params, ("bias",), delta)["bias"])
    naive = sum_to_shape(jnp.sum(delta * td["bias"], -1), (4,))
    assert not np.allclose(np.asarray(naive), np.asarray(g), rtol=1e-3)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape,n", [((5, 16, 7, 1), 2), ((5, 16, 7, 1), 1), ((4, 3), 2), ((3,), 1), ((0, 4), 1),
                                     ((4, 0, 2), 1), ((2, 3), 0)])
def test_sum_leading_is_a_sum(shape, n, dtype, rng):
    import jax

    with jax.enable_x64(dtype == jnp.float64):
        x = normal(rng, shape, dtype)
        got = sum_leading(x, n)
        assert got.dtype == x.dtype and got.shape == shape[n:]
        assert_close(got, np.asarray(x, np.float64).sum(tuple(range(n))))
        assert_close(jax.jit(sum_leading, static_argnums=1)(x, n), got)
    # integers keep an ordinary reduction
    assert sum_leading(jnp.arange(6).reshape(2, 3), 1).tolist() == [3, 5, 7]


def _stacked_contract_reference(rule, entry, tr_seq, ops, params, names, delta_seq):
    K = delta_seq.shape[0]
    out = {}
    for k in range(K):
        g = rule.contract(entry, {n: v[k] for n, v in tr_seq.items()}, ops, params, names, delta_seq[k])
        for n, v in g.items():
            out[n] = np.asarray(v, np.float64) + out.get(n, 0.0)
    return out


@pytest.mark.parametrize("S", [1, 2])
def test_contract_sequence_is_the_sum_of_the_steps(S, rng):
    """A dense bias (DiagonalRule.contract_seq), its weight (vmapped contract), a conv bias (its own map back)."""
    K = 4
    x, w, b = normal(rng, (3, 5)), normal(rng, (5, 6)), normal(rng, (6,))
    entry, ops, params = bound_equation(lambda x, w, b: braintrace.matmul(x, w, b), x, w, b)
    delta = normal(rng, (K, 3, 6, S))
    cases = [(DiagonalRule(), ("bias",), {"bias": normal(rng, (K, 3, 6, S))}),
             (entry.trace_rule, ("weight",), {"weight": normal(rng, (K, 3, 5, 6, S))})]
    for rule, names, tr in cases:
        got = contract_sequence(rule, entry, tr, ops, params, names, delta)
        want = _stacked_contract_reference(rule, entry, tr, ops, params, names, delta)
        for n in names:
            assert_close(got[n], want[n], err_msg=n)
    # a channel-first conv bias is mapped back by the conv rule, after the window sum
    x, k, cb = normal(rng, (2, 3, 4, 4)), normal(rng, (4, 3, 3, 3)), normal(rng, (4,))
    entry, ops, params = bound_equation(
        lambda x, k, b: braintrace.conv(x, k, b, dimension_numbers=("NCHW", "OIHW", "NCHW")), x, k, cb)
    tr, delta = {"bias": normal(rng, (K, 2, 4, 4, 4, S))}, normal(rng, (K, 2, 4, 4, 4, S))
    got = contract_sequence(DiagonalRule(), entry, tr, ops, params, ("bias",), delta)
    want = _stacked_contract_reference(DiagonalRule(), entry, tr, ops, params, ("bias",), delta)
    assert_close(got["bias"], want["bias"])
