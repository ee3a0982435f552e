"""The primitive registry: register_primitive end to end, identity under vmap, the table."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintrace
from braintrace.primitives import (
    REGISTRY,
    ETPPrimitive,
    FullJacobianRule,
    get_etp_primitive,
    is_etp_primitive,
    register_primitive,
)
from braintrace.primitives.definition import define_primitive

from .helpers import OpCase, assert_close, bound_equation, check_forward, check_grad, check_jvp_vjp, check_rules, \
    check_vmap_identity, check_xy_to_dw, etp_entries, normal


def _scaled_impl(x, w, *bias):
    y = 2.0 * jnp.tanh(0.5) * (x @ w)
    return y + bias[0] if bias else y


scaled_p = register_primitive("test_registry_scaled_mm", _scaled_impl)
gain_p = register_primitive(
    "test_registry_gain",
    lambda w: jnp.exp(w),
    x_invar_index=None,
    trainable_invars_fn=lambda params, n: {"weight": 0},
    diagonal_names=("weight",),
    gradient_enabled=True,
)
batched_only_p = register_primitive("test_registry_batched_only", _scaled_impl, batched=True)


def scaled(x, weight, bias=None):
    return scaled_p.bind(x, weight, *(() if bias is None else (bias,)))


def scaled_ref(x, weight, bias=None):
    return _scaled_impl(x, weight, *(() if bias is None else (bias,)))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_case(bias, rng, xshape=(3,)):
    tr = {"weight": normal(rng, (3, 4))}
    if bias:
        tr["bias"] = normal(rng, (4,))
    return OpCase("scaled", scaled, scaled_ref, normal(rng, xshape), tr)


def test_register_returns_a_registered_primitive_with_a_batched_partner():
    entry = REGISTRY.get(scaled_p)
    assert isinstance(entry, ETPPrimitive) and entry.name == "test_registry_scaled_mm"
    assert is_etp_primitive(scaled_p) and get_etp_primitive(scaled_p) is entry
    assert not entry.batched
    partner = entry.batched_partner
    assert partner is not None and partner.batched and partner.name == "test_registry_scaled_mm_batched"
    assert REGISTRY.get(partner.primitive) is partner
    assert isinstance(entry.trace_rule, FullJacobianRule)
    assert entry.trainable_invars({}, 3) == {"weight": 1, "bias": 2}
    assert entry.trainable_invars({}, 2) == {"weight": 1}
    assert REGISTRY.get(batched_only_p).batched_partner is None
    assert entry.x_linear and partner.x_linear


def test_x_linear_reaches_the_batched_partner():
    prim = register_primitive("test_registry_index_lookup", lambda i, t: t[i], x_linear=False)
    entry = REGISTRY.get(prim)
    assert not entry.x_linear and not entry.batched_partner.x_linear


@pytest.mark.parametrize("bias", [False, True])
def test_custom_primitive_end_to_end(bias, rng):
    case = make_case(bias, rng)
    check_forward(case)
    check_grad(case, rng)
    check_jvp_vjp(case, rng)
    check_xy_to_dw(case, rng)
    entry = check_vmap_identity(case, rng=rng)
    assert entry is REGISTRY.get(scaled_p).batched_partner
    # vmap of the batched partner merges axes and keeps it
    batched = make_case(bias, rng, xshape=(2, 3))
    batched.op = lambda x, **tr: entry.primitive.bind(x, *tr.values())
    assert check_vmap_identity(batched, rng=rng) is entry
    check_rules(case, (2, 4), 2, rng)


def test_vmap_over_a_non_leading_axis(rng):
    w = normal(rng, (3, 4))
    xs = normal(rng, (3, 5))  # mapped axis 1
    f = jax.vmap(lambda x: scaled(x, w), in_axes=1)
    assert [e.primitive for e in etp_entries(f, xs)] == [REGISTRY.get(scaled_p).batched_partner.primitive]
    assert_close(f(xs), jax.vmap(lambda x: scaled_ref(x, w), in_axes=1)(xs))


def test_vmap_over_weights_gives_plain_values(rng):
    x = normal(rng, (3,))
    ws = normal(rng, (2, 3, 4))
    assert_close(jax.vmap(lambda w: scaled(x, w))(ws), jax.vmap(lambda w: scaled_ref(x, w))(ws))
    xs = normal(rng, (2, 3))
    assert_close(jax.vmap(scaled)(xs, ws), jax.vmap(scaled_ref)(xs, ws))


def test_batched_registration(rng):
    x, w = normal(rng, (2, 3)), normal(rng, (3, 4))
    assert_close(batched_only_p.bind(x, w), _scaled_impl(x, w))
    xs = normal(rng, (5, 2, 3))
    f = jax.vmap(lambda x: batched_only_p.bind(x, w))
    assert [e.primitive for e in etp_entries(f, xs)] == [batched_only_p]
    assert_close(f(xs), _scaled_impl(xs, w))
    g = jax.grad(lambda w: jnp.sum(jnp.sin(batched_only_p.bind(x, w))))(w)
    assert_close(g, jax.grad(lambda w: jnp.sum(jnp.sin(_scaled_impl(x, w))))(w))


def test_x_free_custom_primitive(rng):
    w = normal(rng, (4,))
    case = OpCase("gain", lambda x, weight: gain_p.bind(weight), lambda x, weight: jnp.exp(weight), None,
                  {"weight": w})
    check_forward(case)
    check_grad(case, rng)
    check_xy_to_dw(case, rng)
    check_rules(case, (2, 4), 2, rng)
    entry = REGISTRY.get(gain_p)
    assert entry.gradient_enabled and entry.batched_partner is None
    xs = normal(rng, (3, 4))
    f = jax.vmap(lambda x: gain_p.bind(w) * x)
    assert [e.primitive for e in etp_entries(f, xs)] == [gain_p]


def test_full_jacobian_contract_is_the_vjp(rng):
    # one step from a zero trace with D = 0: Σ δ ε = VJP of y with cotangent Σ_s δ df
    case = make_case(True, rng)
    entry = REGISTRY.get(scaled_p)
    ops = (case.x, case.tr["weight"], case.tr["bias"])
    rule = entry.trace_rule
    t = rule.init(entry, ops, {}, ("weight",), (2, 4), 2, jnp.float32)
    df, delta = normal(rng, (2, 4, 2)), normal(rng, (2, 4, 2))
    t = rule.update(entry, t, ops, {}, ("weight",), jnp.zeros((2, 4, 2, 2)), df)
    g = rule.contract(entry, t, ops, {}, ("weight",), delta)["weight"]
    dy = jnp.sum(delta * df, axis=(0, 2))
    assert_close(g, entry.xy_to_dw(ops, {}, dy, names=("weight",))["weight"])


def test_builtin_table():
    names = {e.name for e in REGISTRY}
    for n in ("etp_mv", "etp_mm", "etp_elemwise", "etp_conv", "etp_conv_batched", "etp_sparse_mv",
              "etp_sparse_mm", "etp_lora_mv", "etp_lora_mm", "etp_embed", "etp_embed_batched", "etp_grouped_mv",
              "etp_grouped_mm", "etp_einsum", "etp_einsum_batched"):
        assert n in names, n
    # only an index input is not a vector the primitive is linear in
    assert {e.name for e in REGISTRY if not e.x_linear} >= {"etp_embed", "etp_embed_batched"}
    assert all(e.x_linear for e in REGISTRY if e.name.startswith(("etp_mv", "etp_mm", "etp_conv", "etp_einsum")))
    for e in REGISTRY:
        if e.x_invar_index is not None and not e.batched:
            assert e.batched_partner is not None and e.batched_partner.batched, e.name
            assert type(e.batched_partner.trace_rule) is type(e.trace_rule), e.name
    assert REGISTRY.get(braintrace.primitives.etp_elemwise_p).gradient_enabled
    assert not REGISTRY.get(braintrace.primitives.etp_mm_p).gradient_enabled
    assert len(REGISTRY) == len(list(REGISTRY))


def test_non_etp_lookups():
    assert REGISTRY.get(jax.lax.add_p) is None
    assert REGISTRY.get([1, 2]) is None  # unhashable
    assert not is_etp_primitive(jax.lax.add_p)
    assert jax.lax.add_p not in REGISTRY


def test_registration_errors():
    with pytest.raises(TypeError, match="impl_fn must be callable"):
        register_primitive("test_registry_bad", 3)
    with pytest.raises(ValueError, match="y_outvar_index=1"):
        register_primitive("test_registry_bad_out", _scaled_impl, y_outvar_index=1)
    with pytest.raises(ValueError, match="already registered"):
        REGISTRY.add(REGISTRY.get(scaled_p))


def test_define_primitive_is_one_call_for_every_rule(rng):
    entry = define_primitive("test_registry_defined", lambda x, w: x * w, batched=True)
    x, w = normal(rng, (2, 3)), normal(rng, (3,))
    y, ty = jax.jvp(lambda x: entry.primitive.bind(x, w), (x,), (jnp.ones_like(x),))
    assert_close(y, x * w)
    assert_close(ty, jnp.broadcast_to(w, x.shape))
    assert_close(jax.jit(lambda x: entry.primitive.bind(x, w))(x), x * w)


def _xy_to_dw_seq_reference(entry, ops, params, x_seq, dy_seq):
    xi, out = entry.x_invar_index, {}
    for k in range(x_seq.shape[0]):
        o = list(ops)
        o[xi] = x_seq[k]
        for n, v in entry.xy_to_dw(tuple(o), params, dy_seq[k]).items():
            out[n] = np.asarray(v, np.float64) + out.get(n, 0.0)
    return out


@pytest.mark.parametrize("which", ["mm", "mv", "batched_only", "custom_unbatched", "conv", "sparse"])
def test_xy_to_dw_seq_is_the_sum_over_the_window(which, rng):
    """The window axis merged into the batch axis, handed to the batched partner, or vmapped: one sum either way."""
    K, w, b = 3, normal(rng, (5, 4)), normal(rng, (4,))
    if which == "mm":
        fn, x = (lambda x, w, b: braintrace.matmul(x, w, b)), normal(rng, (2, 5))
    elif which == "mv":
        fn, x = (lambda x, w, b: braintrace.matmul(x, w, b)), normal(rng, (5,))
    elif which == "batched_only":
        fn, x = (lambda x, w, b: batched_only_p.bind(x, w, b)), normal(rng, (2, 5))
    elif which == "custom_unbatched":
        fn, x = (lambda x, w, b: scaled_p.bind(x, w, b)), normal(rng, (5,))
    elif which == "conv":
        w, b = normal(rng, (3, 3, 2, 4)), normal(rng, (4,))
        fn, x = (lambda x, w, b: braintrace.conv(x, w, b)), normal(rng, (2, 6, 6, 2))
    else:
        import saiunit as u

        mask = np.asarray(rng.random((5, 4)) < 0.5, np.float32)
        mask[0, 0] = 1.0
        sp = u.sparse.CSR.fromdense(jnp.asarray(mask))
        w = normal(rng, (sp.data.shape[0],))
        fn, x = (lambda x, w, b: braintrace.sparse_matmul(x, w, sparse_mat=sp, bias=b)), normal(rng, (2, 5))
    entry, ops, params = bound_equation(fn, x, w, b)
    x_seq = normal(rng, (K,) + tuple(x.shape))
    y = entry.call(ops, params)
    dy_seq = normal(rng, (K,) + tuple(y.shape))
    got = jax.jit(lambda xs, dys: entry.xy_to_dw_seq(ops, xs, params, dys))(x_seq, dy_seq)
    want = _xy_to_dw_seq_reference(entry, ops, params, x_seq, dy_seq)
    assert set(got) == set(want)
    for n in want:
        assert_close(got[n], want[n], err_msg=n)
    only = entry.xy_to_dw_seq(ops, x_seq, params, dy_seq, names=("weight",))
    assert set(only) == {"weight"}
