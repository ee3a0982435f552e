"""braintrace.grouped_matmul: etp_grouped_mv / etp_grouped_mm against ``einsum('...gi,gio->...go') + b``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.primitives import GroupedRule, etp_grouped_mm_p, etp_grouped_mv_p
from learning import x64  # noqa: F401

from . import leaky_models as L
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

G, I, O = 3, 2, 4


def _op(x, weight, bias=None):
    return braintrace.grouped_matmul(x, weight, bias)


def _ref(x, weight, bias=None):
    y = jnp.einsum("...gi,gio->...go", x, weight)
    return y if bias is None else y + bias


def make_case(batched, bias, rng, dtype=jnp.float32, xshape=None):
    xshape = xshape or ((2, G, I) if batched else (G, I))
    tr = {"weight": normal(rng, (G, I, O), dtype)}
    if bias:
        tr["bias"] = normal(rng, (G, O), dtype)
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
    assert entry.primitive is (etp_grouped_mm_p if batched else etp_grouped_mv_p)
    assert entry.diagonal_names == {"bias"} and entry.x_linear


def test_many_leading_batch_axes(rng):
    case = make_case(True, True, rng, xshape=(2, 3, G, I))
    check_forward(case)
    check_grad(case, rng)
    check_xy_to_dw(case, rng)


def test_equals_the_block_diagonal_matrix(rng):
    case = make_case(True, True, rng)
    w, b = case.tr["weight"], case.tr["bias"]
    block = jax.scipy.linalg.block_diag(*w)  # (G·I, G·O)
    flat = case.x.reshape(2, G * I) @ block + b.reshape(-1)
    assert_close(braintrace.grouped_matmul(case.x, w, b).reshape(2, G * O), flat)


def test_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        case = make_case(True, True, rng, dtype=jnp.float64)
        y = case.op(case.x, **case.tr)
        assert y.dtype == jnp.float64
        check_forward(case)
        check_grad(case, rng)
        check_xy_to_dw(case, rng)
        check_rules(case, y.shape, 2, rng)


def test_units(rng):
    case = make_case(True, True, rng)
    x, w, b = case.x, case.tr["weight"], case.tr["bias"]
    y = braintrace.grouped_matmul(x * u.mV, w * u.siemens, b * u.uA)
    assert u.get_unit(y) == u.mV * u.siemens
    assert_close(y.to_decimal(u.uA), _ref(x, w) * 1e3 + b)
    g = jax.jit(jax.grad(lambda wm: braintrace.grouped_matmul(x * u.mV, wm * u.siemens).to_decimal(u.mA).sum()))(w)
    assert_close(g, jax.grad(lambda wm: _ref(x, wm).sum())(w))
    f = jax.jit(jax.vmap(lambda xi: braintrace.grouped_matmul(xi * u.mV, w * u.siemens, b * u.uA).to_decimal(u.uA)))
    assert_close(f(x), _ref(x, w) * 1e3 + b)


@pytest.mark.parametrize("bias", [False, True])
def test_vmap_keeps_identity(bias, rng):
    entry = check_vmap_identity(make_case(False, bias, rng), rng=rng)
    assert entry.primitive is etp_grouped_mm_p
    # vmap of the batched form merges the new axis into its batch axis
    entry = check_vmap_identity(make_case(True, bias, rng), rng=rng)
    assert entry.primitive is etp_grouped_mm_p


def test_grad_under_vmap_and_xy_to_dw_seq(rng):
    case = make_case(False, True, rng)
    xs = normal(rng, (3, G, I))
    w, b = case.tr["weight"], case.tr["bias"]

    def loss(fn):
        return lambda w, b, x: jnp.sum(fn(x, w, b) ** 2)

    got = jax.jit(jax.vmap(jax.grad(loss(_op), argnums=(0, 1)), (None, None, 0)))(w, b, xs)
    want = jax.vmap(jax.grad(loss(_ref), argnums=(0, 1)), (None, None, 0))(w, b, xs)
    for g, v in zip(got, want):
        assert_close(g, v)
    entry, ops, params = bound_equation(lambda x: _op(x, w, b), case.x)
    dy = normal(rng, (3, G, O))
    seq = entry.xy_to_dw_seq(ops, xs, params, dy)
    one = [entry.xy_to_dw((xs[k],) + tuple(ops[1:]), params, dy[k]) for k in range(3)]
    for n in ("weight", "bias"):
        assert_close(seq[n], sum(o[n] for o in one))


def _per_element(entry, operands, params, full, compact):
    """full[..., g, o, s, (g', i, o')] is zero unless (g', o') = (g, o), where it equals compact[..., g, i, o, s]."""
    f = full["weight"]  # (*B, G, O, S, G·I·O)
    lead, S = f.shape[:-4], f.shape[-2]
    f = f.reshape(lead + (G, O, S, G, I, O))
    diag = jnp.einsum("...gosgio->...gios", f)
    assert_close(diag, compact["weight"], err_msg="per-element grouped trace")
    assert_close(jnp.abs(f).sum(), jnp.abs(diag).sum(), err_msg="full trace off its own block")


@pytest.mark.parametrize("batched,extra,S", [(False, (), 1), (False, (2,), 2), (True, (), 2), (True, (2,), 1)])
def test_trace_rule_equals_full_jacobian(batched, extra, S, rng):
    case = make_case(batched, True, rng)
    yshape = jnp.shape(case.op(case.x, **case.tr))
    xshape = jnp.shape(case.x)
    entry = check_rules(case, extra + yshape, S, rng, x_sampler=lambda: normal(rng, xshape),
                        per_element=_per_element)
    assert isinstance(entry.trace_rule, GroupedRule)


def test_trace_rule_two_step_closed_form():
    """S = 1: ε^2[g, i, o] = D^2[g, o] x^1[g, i] df^1[g, o] + x^2[g, i] df^2[g, o]; W̄ keeps the groups apart."""
    x1, x2 = jnp.array([[1.0, 2.0], [0.0, 1.0]]), jnp.array([[3.0, -1.0], [2.0, 2.0]])  # G = 2, I = 2
    w = jnp.ones((2, 2, 3))
    eqn = jax.make_jaxpr(braintrace.grouped_matmul)(x1, w).eqns[-1]
    entry = braintrace.primitives.get_etp_primitive(eqn.primitive)
    rule, names = entry.trace_rule, ("weight",)
    D = jnp.array([0.5, 0.25])[:, None, None, None] * jnp.ones((2, 3, 1, 1))
    df1, df2 = jnp.full((2, 3, 1), 2.0), jnp.full((2, 3, 1), -1.0)
    t = rule.init(entry, (x1, w), eqn.params, names, (2, 3), 1, jnp.float32)
    t = rule.update(entry, t, (x1, w), eqn.params, names, D, df1)
    t = rule.update(entry, t, (x2, w), eqn.params, names, D, df2)
    want = jnp.array([0.5, 0.25])[:, None] * x1 * 2.0 + x2 * -1.0  # (G, I), the same for every o
    assert_close(t["weight"][..., 0], jnp.broadcast_to(want[..., None], (2, 2, 3)))
    delta = jnp.array([1.0, 10.0])[:, None, None] * jnp.ones((2, 3, 1))
    g = rule.contract(entry, t, (x2, w), eqn.params, names, delta)["weight"]
    assert_close(g, jnp.broadcast_to((want * jnp.array([1.0, 10.0])[:, None])[..., None], (2, 2, 3)))


def test_bad_input(rng):
    x, w, b = normal(rng, (2, G, I)), normal(rng, (G, I, O)), normal(rng, (G, O))
    with pytest.raises(ValueError, match=r"`weight` must be 3-D \(G, I, O\), got shape \(2, 4\)"):
        braintrace.grouped_matmul(x, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"`x` must have rank >= 2"):
        braintrace.grouped_matmul(jnp.ones(I), w)
    with pytest.raises(ValueError, match=r"last two axes of x \(G, I\) = \(2, 2\) must equal"):
        braintrace.grouped_matmul(normal(rng, (3, 2, I)), w)
    with pytest.raises(ValueError, match=r"`bias` has shape \(4,\); expected \(G, O\) = \(3, 4\)"):
        braintrace.grouped_matmul(x, w, b[0])
    with pytest.raises(ValueError, match="`bias` has unit mV"):
        braintrace.grouped_matmul(x * u.mV, w * u.siemens, b * u.mV)
    with pytest.raises(TypeError, match="`weight` has dtype int32"):
        braintrace.grouped_matmul(x, w.astype(jnp.int32))


# --------------------------------------------------------------------------
# learning: the gradient claims
# --------------------------------------------------------------------------


def make_model(batch, recurrent=False, seed=0):
    rng = np.random.RandomState(seed)
    n_in = I + (O if recurrent else 0)
    params = {"weight": jnp.asarray(rng.randn(G, n_in, O) * 0.5), "bias": jnp.asarray(rng.randn(G, O) * 0.1)}
    model = L.LeakyOp(braintrace.grouped_matmul, params, (G, O), recurrent=recurrent, seed=seed)
    lead = (L.T,) if batch is None else (L.T, batch)
    return model, jnp.asarray(rng.randn(*lead, G, I))


@pytest.mark.parametrize("batch", [None, 2])
def test_d_rtrl_equals_bptt_on_a_leaky_model(x64, batch):
    model, xs = make_model(batch)
    L.check_d_rtrl_equals_bptt(model, xs, batch)


@pytest.mark.slow
def test_d_rtrl_equals_the_diagonal_reference_when_recurrent(x64):
    model, xs = make_model(2, recurrent=True)
    L.check_d_rtrl_equals_diagonal_reference(model, xs, 2)


def test_es_d_rtrl_equals_its_recurrence_by_hand(x64):
    model, xs = make_model(2)
    L.check_es_d_rtrl_equals_by_hand(model, xs, 2, _ref)
