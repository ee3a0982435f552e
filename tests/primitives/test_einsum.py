"""braintrace.einsum: etp_einsum / etp_einsum_batched against ``jnp.einsum`` (+ bias), and its trace rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace.primitives import EinsumRule, etp_einsum_batched_p, etp_einsum_p

from learning import x64  # noqa: F401

from . import leaky_models as L
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

# id: (subscripts, x shape, weight shape, bias shape or None, the same contraction for jnp.einsum)
SPECS = {
    "dense": ("...i,io->...o", (2, 3), (3, 4), (4,), "bi,io->bo"),
    "dense_unbatched": ("i,io->o", (3,), (3, 4), (4,), "i,io->o"),
    "grouped": ("...gi,gio->...go", (2, 2, 3), (2, 3, 4), (2, 4), "bgi,gio->bgo"),
    "transposed_weight": ("bi,oi->bo", (2, 3), (4, 3), (4,), "bi,oi->bo"),
    "bias_not_trailing": ("bi,gio->gbo", (2, 3), (2, 3, 4), (2, 4), "bi,gio->gbo"),
    "x_only_sum": ("bki,io->bo", (2, 5, 3), (3, 4), None, "bki,io->bo"),
    "sequence": ("bti,io->bto", (2, 3, 3), (3, 4), (4,), "bti,io->bto"),
    "elementwise_weight": ("...i,i->...i", (2, 3), (3,), (3,), "bi,i->bi"),
    "scalar_weight": ("...i,->...i", (2, 3), (), None, "bi,->bi"),
}


def make_case(name, rng, dtype=jnp.float32, bias=True):
    sub, xs, ws, bs, plain = SPECS[name]

    def op(x, weight, bias=None):
        return braintrace.einsum(sub, x, weight, bias=bias)

    def ref(x, weight, bias=None):
        y = jnp.einsum(plain, x, weight)
        if bias is None:
            return y
        letters = plain.split("->")[1]
        w_letters = plain.split(",")[1].split("->")[0]
        shape = tuple(n if c in w_letters else 1 for c, n in zip(letters, y.shape))
        return y + bias.reshape(shape)

    tr = {"weight": normal(rng, ws, dtype)}
    if bias and bs is not None:
        tr["bias"] = normal(rng, bs, dtype)
    return OpCase(name, op, ref, normal(rng, xs, dtype), tr)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("name", list(SPECS))
def test_forward_grad_jvp_vjp_xy_to_dw(name, rng):
    case = make_case(name, rng)
    check_forward(case)
    check_grad(case, rng)
    check_jvp_vjp(case, rng)
    entry = check_xy_to_dw(case, rng)
    assert entry.primitive is etp_einsum_p
    assert isinstance(entry.trace_rule, EinsumRule)
    assert entry.x_linear


@pytest.mark.parametrize("name", ["dense", "grouped", "bias_not_trailing"])
def test_float64(name):
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        case = make_case(name, rng, dtype=jnp.float64)
        y = case.op(case.x, **case.tr)
        assert y.dtype == jnp.float64
        check_forward(case)
        check_grad(case, rng)
        check_xy_to_dw(case, rng)
        check_rules(case, (2,) + y.shape, 2, rng)


def test_the_ellipsis_is_written_out_as_letters(rng):
    x, w = normal(rng, (5, 2, 3)), normal(rng, (3, 4))
    eqn = jax.make_jaxpr(lambda x: braintrace.einsum("...i,io->...o", x, w))(x).eqns[-1]
    assert eqn.primitive is etp_einsum_p
    sub = eqn.params["subscripts"]
    lhs, out = sub.split("->")
    assert lhs.split(",")[1] == "io" and len(lhs.split(",")[0]) == 3 and out[-1] == "o" and len(out) == 3
    assert_close(braintrace.einsum("...i,io->...o", x, w), x @ w)


def test_units(rng):
    x, w, b = normal(rng, (2, 2, 3)), normal(rng, (2, 3, 4)), normal(rng, (2, 4))
    y = braintrace.einsum("...gi,gio->...go", x * u.mV, w * u.siemens, bias=b * u.uA)
    assert u.get_unit(y) == u.mV * u.siemens
    assert_close(y.to_decimal(u.uA), jnp.einsum("bgi,gio->bgo", x, w) * 1e3 + b)

    def loss(wm):
        return braintrace.einsum("...gi,gio->...go", x * u.mV, wm * u.siemens).to_decimal(u.mA).sum()

    assert_close(jax.jit(jax.grad(loss))(w), jax.grad(lambda wm: jnp.einsum("bgi,gio->bgo", x, wm).sum())(w))
    f = jax.jit(jax.vmap(lambda xi: braintrace.einsum("gi,gio->go", xi * u.mV, w * u.siemens).to_decimal(u.mA)))
    assert_close(f(x), jnp.einsum("bgi,gio->bgo", x, w))


@pytest.mark.parametrize("name", ["dense", "grouped", "bias_not_trailing", "elementwise_weight"])
def test_vmap_keeps_identity(name, rng):
    entry = check_vmap_identity(make_case(name, rng), rng=rng)
    assert entry.primitive is etp_einsum_batched_p
    # vmap of the batched form merges the new axis into its batch axes
    sub = SPECS[name][0]
    case = make_case(name, rng)
    xs = normal(rng, (4, 3) + case.x.shape)
    f = jax.vmap(jax.vmap(lambda x: braintrace.einsum(sub, x, **case.tr)))
    eqns = [e for e in jax.make_jaxpr(f)(xs).eqns if e.primitive in (etp_einsum_p, etp_einsum_batched_p)]
    assert [e.primitive for e in eqns] == [etp_einsum_batched_p]
    assert_close(f(xs), jax.vmap(jax.vmap(lambda x: case.ref(x, **case.tr)))(xs))


def test_grad_under_vmap_and_xy_to_dw_seq(rng):
    case = make_case("grouped", rng)
    xs = normal(rng, (3,) + case.x.shape)
    w, b = case.tr["weight"], case.tr["bias"]

    def loss(w, b, x):
        return jnp.sum(braintrace.einsum("...gi,gio->...go", x, w, bias=b) ** 2)

    def loss_ref(w, b, x):
        return jnp.sum(case.ref(x, w, b) ** 2)

    got = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1)), (None, None, 0)))(w, b, xs)
    want = jax.vmap(jax.grad(loss_ref, argnums=(0, 1)), (None, None, 0))(w, b, xs)
    for g, v in zip(got, want):
        assert_close(g, v)
    # the window form of xy_to_dw (the learners' multi-step path) sums the steps
    from .helpers import bound_equation

    entry, ops, params = bound_equation(lambda x: braintrace.einsum("...gi,gio->...go", x, w, bias=b), case.x)
    dy = normal(rng, (3, 2, 2, 4))
    seq = entry.xy_to_dw_seq(ops, xs, params, dy)
    one = [entry.xy_to_dw((xs[k],) + tuple(ops[1:]), params, dy[k]) for k in range(3)]
    for n in ("weight", "bias"):
        assert_close(seq[n], sum(o[n] for o in one))


# every spec once, alternating the state count (S = 1 takes a separate path) and extra hidden batch axes
RULE_CASES = [(n, (2,) if i % 2 else (), 1 + (i // 2) % 2) for i, n in enumerate(SPECS)]


@pytest.mark.parametrize("name,extra,S", RULE_CASES)
def test_trace_rule_equals_full_jacobian(name, extra, S, rng):
    case = make_case(name, rng)
    yshape = jnp.shape(case.op(case.x, **case.tr))
    xshape = jnp.shape(case.x)
    entry = check_rules(case, extra + yshape, S, rng, x_sampler=lambda: normal(rng, xshape))
    assert isinstance(entry.trace_rule, EinsumRule)


def test_trace_rule_under_vmap_equals_full_jacobian(rng):
    """The batched primitive (what ``jax.vmap`` binds) has the same rule, with ``x``'s extra batch axes."""
    case = make_case("bias_not_trailing", rng)

    def vmapped(fn):
        return lambda x, weight, bias: jax.vmap(lambda xi: fn(xi, weight, bias))(x)

    batched = OpCase("vmapped", vmapped(case.op), vmapped(case.ref), normal(rng, (3,) + case.x.shape), case.tr)
    yshape = jnp.shape(batched.op(batched.x, **batched.tr))
    entry = check_rules(batched, yshape, 2, rng, x_sampler=lambda: normal(rng, batched.x.shape))
    assert entry.primitive is etp_einsum_batched_p


def test_trace_rule_two_step_closed_form():
    """'bi,io->bo' with S = 1: ε^2[b, o, i] = D^2 x^1[b, i] df^1 + x^2[b, i] df^2."""
    x1, x2 = jnp.array([[1.0, 2.0]]), jnp.array([[3.0, -1.0]])
    w = jnp.ones((2, 3))
    eqn = jax.make_jaxpr(lambda x: braintrace.einsum("bi,io->bo", x, w))(x1).eqns[-1]
    entry = braintrace.primitives.get_etp_primitive(eqn.primitive)
    rule, names = entry.trace_rule, ("weight",)
    D, df1, df2 = jnp.full((1, 3, 1, 1), 0.5), jnp.full((1, 3, 1), 2.0), jnp.full((1, 3, 1), -1.0)
    t = rule.init(entry, (x1, w), eqn.params, names, (1, 3), 1, jnp.float32)
    t = rule.update(entry, t, (x1, w), eqn.params, names, D, df1)
    t = rule.update(entry, t, (x2, w), eqn.params, names, D, df2)
    want = 0.5 * x1[0] * 2.0 + x2[0] * -1.0  # per input i, the same for every output o
    assert_close(t["weight"][0, :, :, 0], jnp.broadcast_to(want, (3, 2)))
    g = rule.contract(entry, t, (x2, w), eqn.params, names, jnp.ones((1, 3, 1)))["weight"]
    assert_close(g, jnp.broadcast_to(want[:, None], (2, 3)))


BAD = [
    ("ii,io->o", "repeats \\['i'\\] in x"),
    ("i,io", "exactly one '->'"),
    ("i,io,o->o", "names 3 operands"),
    ("i,...io->o", "puts '...' on the weight"),
    ("i,iok->o", "sums the weight's axes \\['k'\\] on their own"),
    ("i,io->ob", "output letters \\['b'\\] that neither operand carries"),
    ("i...,io->...o", "other than at the start of both"),
    ("...i,io->o", "other than at the start of both"),
    ("i,io->oo", "repeats \\['o'\\] in the output"),
    ("i1,io->o", "not letters"),
]


@pytest.mark.parametrize("sub,match", BAD)
def test_unsupported_subscripts_are_refused(sub, match):
    with pytest.raises(ValueError, match=match):
        braintrace.einsum(sub, jnp.ones((3,)), jnp.ones((3, 4)))


def test_bad_input(rng):
    x, w = normal(rng, (2, 3)), normal(rng, (3, 4))
    with pytest.raises(TypeError, match="`subscripts` must be a str"):
        braintrace.einsum(None, x, w)
    with pytest.raises(ValueError, match=r"the weight has shape \(3, 4\) but 'bi,i->b' names 1 axes"):
        braintrace.einsum("bi,i->b", x, w)
    with pytest.raises(ValueError, match=r"`x` has shape \(2, 3\) but 'i,io->o' names 1 axes"):
        braintrace.einsum("i,io->o", x, w)
    with pytest.raises(ValueError, match=r"letter 'i' has size 3 in `x`.* but 4 in the weight"):
        braintrace.einsum("bi,oi->bo", x, w)
    with pytest.raises(ValueError, match=r"`bias` has shape \(3,\); expected \(4,\)"):
        braintrace.einsum("bi,io->bo", x, w, bias=jnp.ones(3))
    with pytest.raises(ValueError, match="`bias` has unit mV"):
        braintrace.einsum("bi,io->bo", x * u.mV, w * u.siemens, bias=jnp.ones(4) * u.mV)
    with pytest.raises(TypeError, match="`weight` has dtype int32"):
        braintrace.einsum("bi,io->bo", x, w.astype(jnp.int32))


# --------------------------------------------------------------------------
# learning: the gradient claims
# --------------------------------------------------------------------------

LEARN = {
    # id: (subscripts, core hidden shape, x shape per step (no batch), weight shape, bias shape)
    "grouped": ("...gi,gio->...go", (2, 4), (2, 3), (2, 3, 4), (2, 4)),
    "bias_not_trailing": ("...ki,gio->...gko", (2, 3, 4), (3, 3), (2, 3, 4), (2, 4)),
}


def make_model(name, batch, recurrent=False, seed=0):
    sub, core, xshape, wshape, bshape = LEARN[name]
    rng = np.random.RandomState(seed)
    n_h = core[-1] if recurrent else 0
    wshape = wshape[:-2] + (wshape[-2] + n_h, wshape[-1])
    params = {"weight": jnp.asarray(rng.randn(*wshape) * 0.5), "bias": jnp.asarray(rng.randn(*bshape) * 0.1)}

    def op(inp, weight, bias):
        return braintrace.einsum(sub, inp, weight, bias=bias)

    model = L.LeakyOp(op, params, core, recurrent=recurrent, seed=seed)
    lead = (L.T,) if batch is None else (L.T, batch)
    xs = jnp.asarray(rng.randn(*lead, *xshape))
    return model, xs


def plain_op(name):
    sub = LEARN[name][0]
    ins, out = sub.replace("...", "").split("->")
    w_letters = ins.split(",")[1]

    def ref(x, weight, bias):
        y = jnp.einsum(sub, x, weight)
        shape = tuple(n if c in w_letters else 1 for c, n in zip(out, y.shape[y.ndim - len(out):]))
        return y + bias.reshape(shape)

    return ref


@pytest.mark.parametrize("name,batch", [("grouped", None), ("bias_not_trailing", 2)])
def test_d_rtrl_equals_bptt_on_a_leaky_model(x64, name, batch):
    model, xs = make_model(name, batch)
    L.check_d_rtrl_equals_bptt(model, xs, batch)


@pytest.mark.slow
@pytest.mark.parametrize("name,batch", [("grouped", 2)])
def test_d_rtrl_equals_the_diagonal_reference_when_recurrent(x64, name, batch):
    model, xs = make_model(name, batch, recurrent=True)
    L.check_d_rtrl_equals_diagonal_reference(model, xs, batch)


@pytest.mark.parametrize("name,batch", [("bias_not_trailing", 2)])
def test_es_d_rtrl_equals_its_recurrence_by_hand(x64, name, batch):
    model, xs = make_model(name, batch)
    L.check_es_d_rtrl_equals_by_hand(model, xs, batch, plain_op(name))
