"""braintrace.conv: etp_conv / etp_conv_batched against ``lax.conv_general_dilated``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u
from jax import lax

import braintrace
from braintrace.primitives import ConvRule, FullJacobianRule, etp_conv_batched_p, etp_conv_p

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

NHWC = ("NHWC", "HWIO", "NHWC")
NCHW = ("NCHW", "OIHW", "NCHW")
MIXED = ("NHWC", "OIHW", "NCHW")
NWC = ("NWC", "WIO", "NWC")
NCW = ("NCW", "OIW", "NCW")
NDHWC = ("NDHWC", "DHWIO", "NDHWC")
NCDHW = ("NCDHW", "OIDHW", "NCDHW")


def make_case(layout, batched, bias, rng, dtype=jnp.float32, spatial=None, groups=1, strides=1,
              padding="SAME", lhs_dilation=None, rhs_dilation=None, ksize=3, default_dn=False):
    lhs, rhs, out = layout
    n = len(lhs) - 2
    spatial = spatial or (5,) * n
    ci, co = 2 * groups, 2 * groups
    sizes = dict(zip([c for c in lhs if c not in "NC"], spatial), N=2, C=ci)
    xshape = tuple(sizes[c] for c in lhs if batched or c != "N")
    kshape = tuple({"O": co, "I": ci // groups}.get(c, ksize) for c in rhs)
    kw = dict(strides=strides, padding=padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
              feature_group_count=groups)

    def op(x, weight, bias=None):
        return braintrace.conv(x, weight, bias, dimension_numbers=None if default_dn else layout, **kw)

    def ref(x, weight, bias=None):
        s = (strides,) * n if isinstance(strides, int) else strides
        ld = (lhs_dilation,) * n if isinstance(lhs_dilation, int) else lhs_dilation
        rd = (rhs_dilation,) * n if isinstance(rhs_dilation, int) else rhs_dilation
        xb = x if batched else x[None]
        y = lax.conv_general_dilated(xb, weight, s, padding, ld, rd, layout, feature_group_count=groups)
        if bias is not None:
            shape = [1] * y.ndim
            shape[out.index("C")] = co
            y = y + bias.reshape(shape)
        return y if batched else y[0]

    tr = {"weight": normal(rng, kshape, dtype)}
    if bias:
        tr["bias"] = normal(rng, (co,), dtype)
    return OpCase(f"{lhs}-{rhs}", op, ref, normal(rng, xshape, dtype), tr)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# every layout batched and unbatched, with and without a bias; each (batched, bias) pair twice
MAIN = [(NHWC, False, False), (NHWC, True, True), (NCHW, False, True), (NCHW, True, False),
        (MIXED, False, False), (MIXED, True, True)]


@pytest.mark.parametrize("layout,batched,bias", MAIN)
def test_forward_grad_jvp_vjp_xy_to_dw(layout, batched, bias, rng):
    case = make_case(layout, batched, bias, rng)
    check_forward(case)
    check_grad(case, rng)
    check_jvp_vjp(case, rng)
    entry = check_xy_to_dw(case, rng)
    assert entry.primitive is (etp_conv_batched_p if batched else etp_conv_p)


OPTIONS = [
    dict(layout=NHWC, batched=True, default_dn=True),
    dict(layout=NHWC, batched=False, default_dn=True),
    dict(layout=NHWC, batched=True, strides=2, groups=2),
    dict(layout=NCHW, batched=False, strides=(2, 1), groups=2, padding="VALID"),
    dict(layout=NCHW, batched=True, rhs_dilation=2, padding=((1, 2), (0, 1))),
    dict(layout=MIXED, batched=False, lhs_dilation=(2, 1), padding=((1, 1), (2, 0))),
    dict(layout=NWC, batched=True, strides=2),
    dict(layout=NCW, batched=False, groups=2),
    dict(layout=NDHWC, batched=True, ksize=2, spatial=(3, 3, 3)),
    dict(layout=NCDHW, batched=False, ksize=2, spatial=(3, 4, 3), strides=2),
]


def _ids(opts):
    return opts["layout"][0] + "-" + "-".join(f"{k}={v}" for k, v in opts.items() if k != "layout")


@pytest.mark.parametrize("opts", OPTIONS, ids=_ids)
def test_options(opts, rng):
    case = make_case(bias=True, rng=rng, **opts)
    check_forward(case)
    check_grad(case, rng)
    check_xy_to_dw(case, rng)


def test_integer_and_bool_inputs_are_cast_to_the_kernel_dtype(rng):
    spikes = jnp.asarray(rng.random((2, 5, 5, 2)) < 0.3)
    k = normal(rng, (3, 3, 2, 4))
    want = lax.conv_general_dilated(spikes.astype(jnp.float32), k, (2, 2), ((1, 1), (1, 1)),
                                    dimension_numbers=NHWC)
    assert_close(braintrace.conv(spikes, k, strides=np.int64(2), padding=np.int32(1)), want)
    assert_close(braintrace.conv(spikes.astype(jnp.int32), k, strides=2, padding=1), want)


def test_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        case = make_case(NCHW, True, True, rng, dtype=jnp.float64, groups=2)
        y = case.op(case.x, **case.tr)
        assert y.dtype == jnp.float64
        check_forward(case)
        check_grad(case, rng)
        check_xy_to_dw(case, rng)
        check_rules(case, y.shape, 2, rng)


def test_units(rng):
    case = make_case(NCHW, True, True, rng)
    x, w, b = case.x, case.tr["weight"], case.tr["bias"]
    y = braintrace.conv(x * u.mV, w * u.siemens, b * u.uA, dimension_numbers=NCHW)
    assert u.get_unit(y) == u.mV * u.siemens
    assert_close(y.to_decimal(u.uA), case.ref(x, w) * 1e3 + b[:, None, None])
    g = jax.jit(jax.grad(lambda wm: braintrace.conv(x * u.mV, wm * u.siemens, dimension_numbers=NCHW)
                         .to_decimal(u.mA).sum()))(w)
    assert_close(g, jax.grad(lambda wm: case.ref(x, wm).sum())(w))
    f = jax.vmap(lambda xi: braintrace.conv(xi * u.mV, w * u.siemens, b * u.uA, dimension_numbers=NCHW)
                 .to_decimal(u.uA))
    assert_close(f(x), case.ref(x, w) * 1e3 + b[:, None, None])


@pytest.mark.parametrize("layout", [NHWC, NCHW])
@pytest.mark.parametrize("bias", [False, True])
def test_vmap_keeps_identity(layout, bias, rng):
    entry = check_vmap_identity(make_case(layout, False, bias, rng, groups=2), rng=rng)
    assert entry.primitive is etp_conv_batched_p
    entry = check_vmap_identity(make_case(layout, True, bias, rng), rng=rng)
    assert entry.primitive is etp_conv_batched_p


# --------------------------------------------------------------------------
# the trace rule
# --------------------------------------------------------------------------


def _per_element(layout, batched):
    """full[v, s, flat(K[k, c(v)])] == compact[v, k, s] and full is zero elsewhere."""
    dn = lax.conv_dimension_numbers((1,) * len(layout[0]), (1,) * len(layout[0]), layout)

    def check(entry, operands, params, full, compact):
        kernel = operands[1]
        f, c = full["weight"], compact["weight"]
        ids = jnp.arange(kernel.size).reshape(kernel.shape)
        canon = jnp.transpose(ids, dn.rhs_spec)
        mapk = canon.reshape(canon.shape[0], -1)  # (C_out, Kin)
        V = c.shape[:-2]
        y_ndim = jnp.ndim(operands[0])
        c_axis = len(V) - y_ndim + dn.out_spec[1] - (0 if batched else 1)
        grid = jax.lax.broadcasted_iota(jnp.int32, V, c_axis)
        idx = jnp.take(mapk, grid, axis=0)  # (*V, Kin)
        gathered = jnp.take_along_axis(f, idx[..., None, :], axis=-1)  # (*V, S, Kin)
        assert_close(jnp.swapaxes(gathered, -1, -2), c, err_msg="per-element conv trace")
        assert_close(jnp.abs(f).sum(), jnp.abs(gathered).sum(), err_msg="full trace off the kernel column")

    return check


# (options, S): the state count (S = 1 takes its own branch of the update) alternates so that
# each S meets batched and unbatched inputs, NHWC and NCHW, groups and a 1-D and 3-D kernel
RULE_CASES = [
    (dict(layout=NHWC, batched=True), 1),
    (dict(layout=NHWC, batched=False), 2),
    (dict(layout=NCHW, batched=True), 2),
    (dict(layout=NCHW, batched=False), 1),
    (dict(layout=NHWC, batched=True, strides=2, groups=2), 2),
    (dict(layout=NCHW, batched=False, strides=2, groups=2), 1),
    (dict(layout=MIXED, batched=True, groups=2, padding="VALID"), 1),
    (dict(layout=NCW, batched=False, rhs_dilation=2), 2),
    (dict(layout=NCDHW, batched=True, ksize=2, spatial=(3, 3, 2)), 2),
]


@pytest.mark.parametrize("opts,S", RULE_CASES, ids=[f"{S}-{_ids(o)}" for o, S in RULE_CASES])
def test_trace_rule_equals_full_jacobian(opts, S, rng):
    case = make_case(bias=True, rng=rng, **opts)
    batched = opts["batched"]
    yshape = jnp.shape(case.op(case.x, **case.tr))
    xshape = jnp.shape(case.x)
    extra = () if batched else (2,)  # unbatched: the hidden group carries a batch axis y lacks
    entry = check_rules(case, extra + yshape, S, rng, x_sampler=lambda: normal(rng, xshape),
                        per_element=_per_element(opts["layout"], batched))
    assert isinstance(entry.trace_rule, ConvRule)


def test_rule_handles_bias_name_itself(rng):
    # a learner that hands the bias to the conv rule gets the same gradient
    from .helpers import run_rules

    case = make_case(NCHW, True, True, rng)
    yshape = jnp.shape(case.op(case.x, **case.tr))
    run_rules(case, ("weight", "bias"), yshape, 2, rng)


def test_position_dependence_matters(rng):
    """A kernel-shaped trace (sum over positions) would not match: D and δ vary by position."""
    case = make_case(NHWC, True, False, rng)
    entry, operands, params = bound_equation(lambda x, w: case.op(x, w), case.x, case.tr["weight"])
    y = entry.call(operands, params)
    V, S = y.shape, 1
    rule = entry.trace_rule
    t = rule.init(entry, operands, params, ("weight",), V, S, jnp.float32)
    D = normal(rng, V + (S, S))
    for _ in range(2):
        t = rule.update(entry, t, operands, params, ("weight",), D, normal(rng, V + (S,)))
    delta = normal(rng, V + (S,))
    g = rule.contract(entry, t, operands, params, ("weight",), delta)["weight"]
    # product of sums: (Σ_v δ) · (Σ_v ε) per kernel element, spread over channels
    eps = t["weight"][..., 0]  # (N, H, W, C, Kin)
    wrong = jnp.einsum("c,ck->kc", delta[..., 0].sum((0, 1, 2)), eps.sum((0, 1, 2)))
    assert not np.allclose(np.asarray(g).reshape(-1, g.shape[-1]), np.asarray(wrong), rtol=1e-2)


def test_batch_group_count_rule_falls_back_to_full_jacobian(rng):
    x = normal(rng, (4, 5, 5, 2))
    k = normal(rng, (3, 3, 2, 4))
    _, _, params = bound_equation(lambda x, k: braintrace.conv(x, k), x, k)
    params = dict(params, batch_group_count=2)
    y = etp_conv_batched_p.bind(x, k, **params)
    want = lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=NHWC, batch_group_count=2)
    assert_close(y, want)
    from braintrace.primitives import REGISTRY

    entry = REGISTRY.get(etp_conv_batched_p)
    V, S = y.shape, 2
    rule, full = ConvRule(), FullJacobianRule()
    tc = rule.init(entry, (x, k), params, ("weight",), V, S, jnp.float32)
    tf = full.init(entry, (x, k), params, ("weight",), V, S, jnp.float32)
    D, df, delta = normal(rng, V + (S, S)), normal(rng, V + (S,)), normal(rng, V + (S,))
    tc = rule.update(entry, tc, (x, k), params, ("weight",), D, df)
    tf = full.update(entry, tf, (x, k), params, ("weight",), D, df)
    assert_close(rule.contract(entry, tc, (x, k), params, ("weight",), delta)["weight"],
                 full.contract(entry, tf, (x, k), params, ("weight",), delta)["weight"])


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def test_bad_input(rng):
    x = normal(rng, (2, 5, 5, 2))
    k = normal(rng, (3, 3, 2, 4))
    b = normal(rng, (4,))
    with pytest.raises(ValueError, match="`kernel` must have rank 3, 4 or 5"):
        braintrace.conv(x, k[0, 0])
    with pytest.raises(ValueError, match=r"`x` has shape \(5, 2\)"):
        braintrace.conv(x[0, 0], k)
    with pytest.raises(ValueError, match=r"`x` has shape \(2, 5, 5, 3\) \(3 input channels\)"):
        braintrace.conv(normal(rng, (2, 5, 5, 3)), k)
    with pytest.raises(ValueError, match="feature_group_count=2"):
        braintrace.conv(x, k, feature_group_count=2)
    with pytest.raises(ValueError, match=r"`bias` has shape \(3,\)"):
        braintrace.conv(x, k, b[:3])
    with pytest.raises(ValueError, match="`bias` has unit mV"):
        braintrace.conv(x * u.mV, k * u.siemens, b * u.mV)
    with pytest.raises(TypeError, match="`kernel` has dtype int32"):
        braintrace.conv(x, k.astype(jnp.int32))
    with pytest.raises(TypeError, match="`bias` has dtype int32"):
        braintrace.conv(x, k, b.astype(jnp.int32))
    with pytest.raises(ValueError, match="`strides`"):
        braintrace.conv(x, k, strides=(1, 1, 1))
    with pytest.raises(ValueError, match="`strides`"):
        braintrace.conv(x, k, strides=0)
    with pytest.raises(TypeError, match="`rhs_dilation` must be an int"):
        braintrace.conv(x, k, rhs_dilation="ab")
    with pytest.raises(ValueError, match="`padding`"):
        braintrace.conv(x, k, padding="FULL")
    with pytest.raises(ValueError, match="`padding`"):
        braintrace.conv(x, k, padding=((1, 1),))
    with pytest.raises(ValueError, match="`dimension_numbers`"):
        braintrace.conv(x, k, dimension_numbers=("NCW", "OIW", "NCW"))
    with pytest.raises(ValueError, match="`dimension_numbers`.*batch axis"):
        braintrace.conv(x, k, dimension_numbers=("HWCN", "HWIO", "HWCN"))
    with pytest.raises(ValueError, match="`batch_group_count`"):
        braintrace.conv(x, k, batch_group_count=2)
    with pytest.raises(ValueError, match="`feature_group_count` must be a positive int"):
        braintrace.conv(x, k, feature_group_count=0)
    with pytest.raises(ValueError, match="empty output"):
        braintrace.conv(normal(rng, (2, 2, 2, 2)), k, padding="VALID")
    with pytest.raises(ValueError, match="cannot convolve"):
        braintrace.conv(x, k, lhs_dilation=2, padding="SAME")
    with pytest.raises(ValueError, match=r"`x` has shape \(2, 5, 5, 3\)"):
        jax.jit(braintrace.conv)(normal(rng, (2, 5, 5, 3)), k)
