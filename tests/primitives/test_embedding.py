"""braintrace.embedding: etp_embed / etp_embed_batched against ``table[idx]``, and its per-row trace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.errors import CompilationError
from braintrace.primitives import EmbeddingRule, etp_embed_batched_p, etp_embed_p
from braintrace.primitives.trace_rules import accumulate_sources
import oracle as O
from learning import x64  # noqa: F401

from . import leaky_models as L
from .helpers import (
    OpCase,
    assert_close,
    bound_equation,
    check_forward,
    check_rules,
    check_xy_to_dw,
    etp_entries,
    normal,
)

N, DIM = 6, 3


def _ref(indices, weight):
    return weight[indices]


def _op(indices, weight):
    return braintrace.embedding(indices, weight)


def indices(rng, shape):
    return jnp.asarray(rng.integers(-N, N, size=shape), jnp.int32)


def make_case(shape, rng, dtype=jnp.float32):
    return OpCase(f"idx{shape}", _op, _ref, indices(rng, shape), {"weight": normal(rng, (N, DIM), dtype)})


SHAPES = [(), (4,), (2, 3)]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_grad_vjp_xy_to_dw(shape, rng):
    case = make_case(shape, rng)
    check_forward(case)
    table = case.tr["weight"]
    ct = normal(rng, shape + (DIM,))
    got = jax.jit(jax.grad(lambda t: jnp.sum(_op(case.x, t) * ct)))(table)
    want = jax.grad(lambda t: jnp.sum(_ref(case.x, t) * ct))(table)
    assert_close(got, want)
    t_dot = normal(rng, (N, DIM))
    assert_close(jax.jvp(lambda t: _op(case.x, t), (table,), (t_dot,))[1], t_dot[case.x])
    entry = check_xy_to_dw(case, rng)
    assert entry.primitive is (etp_embed_p if shape == () else etp_embed_batched_p)
    assert not entry.x_linear, "a sum of indices is no index: the factored learners must not use it"


def test_out_of_range_indices_give_nan_rows_and_no_gradient(rng):
    table = normal(rng, (N, DIM))
    idx = jnp.array([N, -N - 1, 1, -1])
    y = braintrace.embedding(idx, table)
    assert bool(jnp.all(jnp.isnan(y[:2]))), "an out-of-range index must be visible, not clamped"
    assert_close(y[2:], table[jnp.array([1, N - 1])])
    g = jax.grad(lambda t: jnp.nansum(braintrace.embedding(idx, t)))(table)
    want = jnp.zeros((N, DIM)).at[1].add(1.0).at[N - 1].add(1.0)
    assert_close(g, want)


def test_float64(rng):
    with jax.enable_x64(True):
        case = make_case((4,), rng, dtype=jnp.float64)
        y = case.op(case.x, **case.tr)
        assert y.dtype == jnp.float64
        check_forward(case)
        check_xy_to_dw(case, rng)
        check_rules(case, y.shape, 2, rng, x_sampler=lambda: indices(rng, (4,)))


def test_units(rng):
    idx, table = indices(rng, (4,)), normal(rng, (N, DIM))
    y = braintrace.embedding(idx, table * u.mV)
    assert u.get_unit(y) == u.mV
    assert_close(y.to_decimal(u.mV), table[idx])
    g = jax.jit(jax.grad(lambda t: braintrace.embedding(idx, t * u.mV).to_decimal(u.volt).sum()))(table)
    assert_close(g, 1e-3 * jax.grad(lambda t: t[idx].sum())(table))
    f = jax.jit(jax.vmap(lambda i: braintrace.embedding(i, table * u.mV).to_decimal(u.mV)))
    assert_close(f(idx), table[idx])


@pytest.mark.parametrize("shape", [(), (3,)])
def test_vmap_keeps_identity(shape, rng):
    table = normal(rng, (N, DIM))
    idx = indices(rng, (5,) + shape)
    f = jax.vmap(lambda i: braintrace.embedding(i, table))
    entries = etp_entries(f, idx)
    assert [e.primitive for e in entries] == [etp_embed_batched_p]
    assert_close(f(idx), table[idx])
    assert_close(jax.jit(f)(idx), table[idx])
    g = jax.vmap(jax.grad(lambda t, i: braintrace.embedding(i, t).sum()), (None, 0))(table, idx)
    assert_close(g, jax.vmap(jax.grad(lambda t, i: t[i].sum()), (None, 0))(table, idx))


def test_xy_to_dw_seq_sums_the_window(rng):
    table = normal(rng, (N, DIM))
    entry, ops, params = bound_equation(lambda i: braintrace.embedding(i, table), jnp.array(0))
    idx_seq = indices(rng, (5,))
    dy = normal(rng, (5, DIM))
    seq = entry.xy_to_dw_seq(ops, idx_seq, params, dy)["weight"]
    assert_close(seq, jnp.zeros((N, DIM)).at[idx_seq].add(dy))


def _per_element(entry, operands, params, full, compact):
    """full[..., e, s, (r, e')] is zero unless e' = e, where it equals compact[..., r, e, s]."""
    f = full["weight"]  # (*P, d, S, N·d)
    lead, S = f.shape[:-3], f.shape[-2]
    f = f.reshape(lead + (DIM, S, N, DIM))
    diag = jnp.einsum("...esre->...res", f)
    assert_close(diag, compact["weight"], err_msg="per-row embedding trace")
    assert_close(jnp.abs(f).sum(), jnp.abs(diag).sum(), err_msg="full trace off its own column")


@pytest.mark.parametrize("shape,extra,S", [((), (), 1), ((), (2,), 2), ((4,), (), 2), ((2, 3), (2,), 1)])
def test_trace_rule_equals_full_jacobian(shape, extra, S, rng):
    case = make_case(shape, rng)
    yshape = jnp.shape(case.op(case.x, **case.tr))
    entry = check_rules(case, extra + yshape, S, rng, x_sampler=lambda: indices(rng, shape),
                        per_element=_per_element)
    assert isinstance(entry.trace_rule, EmbeddingRule)


def test_window_source_is_one_scatter_equal_to_step_by_step(rng):
    """``accumulate`` (one scatter of a window's rows) equals adding the sources one step at a time."""
    case = make_case((4,), rng)
    entry, ops, params = bound_equation(lambda i: _op(i, **case.tr), case.x)
    rule, names, K = entry.trace_rule, ("weight",), 5
    template = rule.init(entry, ops, params, names, (2, 4, DIM), 2, jnp.float32)
    x_seq, u_seq = indices(rng, (K, 4)), normal(rng, (K, 2, 4, DIM, 2))
    fast = accumulate_sources(rule, entry, template, ops, x_seq, params, names, u_seq)
    eye = jnp.broadcast_to(jnp.eye(2), (2, 4, DIM, 2, 2))
    slow = template
    for k in range(K):
        slow = rule.update(entry, slow, (x_seq[k],) + tuple(ops[1:]), params, names, eye, u_seq[k])
    assert_close(fast["weight"], slow["weight"])


def test_trace_rule_two_step_closed_form():
    """S = 1, one position: row 2 gets D df^1, row 0 gets df^2; the contraction is δ times that."""
    table = jnp.ones((4, 2))
    eqn = jax.make_jaxpr(braintrace.embedding)(jnp.array(2), table).eqns[-1]
    entry = braintrace.primitives.get_etp_primitive(eqn.primitive)
    rule, names = entry.trace_rule, ("weight",)
    D, df1, df2 = jnp.full((2, 1, 1), 0.5), jnp.array([[2.0], [4.0]]), jnp.array([[-1.0], [1.0]])
    t = rule.init(entry, (jnp.array(2), table), eqn.params, names, (2,), 1, jnp.float32)
    t = rule.update(entry, t, (jnp.array(2), table), eqn.params, names, D, df1)
    t = rule.update(entry, t, (jnp.array(0), table), eqn.params, names, D, df2)
    want = jnp.zeros((4, 2)).at[2].set(0.5 * df1[:, 0]).at[0].set(df2[:, 0])
    assert_close(t["weight"][..., 0], want)
    g = rule.contract(entry, t, (jnp.array(0), table), eqn.params, names, jnp.array([[3.0], [1.0]]))["weight"]
    assert_close(g, want * jnp.array([3.0, 1.0]))


def test_bad_input(rng):
    table = normal(rng, (N, DIM))
    with pytest.raises(TypeError, match="`indices` has dtype float32; it must be an integer array"):
        braintrace.embedding(jnp.array([1.0]), table)
    with pytest.raises(TypeError, match="`indices` has unit mV"):
        braintrace.embedding(jnp.array([1]) * u.mV, table)
    with pytest.raises(ValueError, match=r"`table` must be 2-D .* got shape \(6,\)"):
        braintrace.embedding(jnp.array([1]), table[:, 0])
    with pytest.raises(TypeError, match="`table` has dtype int32"):
        braintrace.embedding(jnp.array([1]), table.astype(jnp.int32))


# --------------------------------------------------------------------------
# learning: the gradient claims
# --------------------------------------------------------------------------


def make_model(batch, tokens=None, seed=0):
    """Leaky model on embedded tokens: one index per step (``tokens=None``) or ``tokens`` of them."""
    rng = np.random.RandomState(seed)
    core = (DIM,) if tokens is None else (tokens, DIM)
    model = L.LeakyOp(braintrace.embedding, {"table": jnp.asarray(rng.randn(N, DIM))}, core, seed=seed)
    lead = (L.T,) if batch is None else (L.T, batch)
    xs = jnp.asarray(rng.randint(0, N, size=lead + (() if tokens is None else (tokens,))), jnp.int32)
    return model, xs


@pytest.mark.parametrize("batch,tokens", [(None, None), (2, None), (2, 3)])
def test_d_rtrl_equals_bptt_on_a_leaky_model(x64, batch, tokens):
    model, xs = make_model(batch, tokens)
    L.check_d_rtrl_equals_bptt(model, xs, batch)


def test_multi_step_and_es_d_rtrl_keep_the_exact_per_row_trace(x64):
    """ES_D_RTRL cannot factor an index input: it keeps the exact trace, so it equals BPTT here too."""
    model, xs = make_model(2)
    ys = L.targets(model, 2)
    bptt, _ = braintrace.bptt_gradients(model, xs, ys, L.loss_fn, batch_size=2)
    for learner, window in ((braintrace.ES_D_RTRL(model, 0.7), None), (braintrace.ES_D_RTRL(model, 0.7), 3),
                            (braintrace.D_RTRL(model, vjp_method="multi-step"), 2)):
        learner = L.compiled(learner, model, xs, 2)
        got, _ = braintrace.online_gradients(learner, xs, ys, L.loss_fn, batch_size=2, window=window)
        assert got[("w",)]["table"].dtype == jnp.float64
        assert O.tree_max_rel_err(got, bptt) < 1e-10


@pytest.mark.parametrize("learner", [braintrace.OTTT, braintrace.OTPE])
def test_presynaptic_trace_learners_refuse_an_index_input(learner):
    model, xs = make_model(2)
    L.reset(model, 2)
    with pytest.raises(CompilationError, match="not a vector it is linear in .*braintrace.embedding"):
        learner(model, leak=0.5).compile_graph(xs[0])
