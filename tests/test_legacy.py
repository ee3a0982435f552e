"""The deprecated v0.1 class API (``braintrace.legacy``): results equal the new API, one warning per class."""

import subprocess
import sys
import warnings

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saiunit as u

import braintrace
from braintrace import legacy

LEGACY_CLASSES = [getattr(legacy, name) for name in legacy.DEPRECATIONS]


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees every legacy class as never instantiated."""
    for cls in LEGACY_CLASSES:
        monkeypatch.setattr(cls, "_deprecation_warned", False)


def _no_deprecation_warning(make):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        obj = make()
    assert not [w for w in record if issubclass(w.category, DeprecationWarning)], [str(w.message) for w in record]
    return obj


def _first_and_second(make, match):
    with pytest.warns(DeprecationWarning, match=match) as record:
        first = make()
    assert len([w for w in record if issubclass(w.category, DeprecationWarning)]) == 1
    assert record[0].filename == __file__, "the warning must point at the user's line"
    second = _no_deprecation_warning(make)
    return first, second


def _ops():
    key = jax.random.PRNGKey(0)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x = jax.random.normal(k1, (2, 3))
    w = jax.random.normal(k2, (3, 4))
    b = jax.random.normal(k3, (4,))
    mask = jnp.array([[1.0, 0.0, 1.0, 1.0]] * 3)
    xi = jax.random.normal(k4, (2, 6, 6, 2))
    kern = jax.random.normal(k2, (3, 3, 2, 4))
    csr = u.sparse.CSR.fromdense(jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))
    data = jnp.arange(1.0, 6.0)
    B, A = jax.random.normal(k3, (3, 2)), jax.random.normal(k4, (2, 4))
    return [
        ("MatMulOp", "braintrace.matmul", lambda: braintrace.MatMulOp(), (x, {"weight": w, "bias": b}),
         braintrace.matmul(x, w, b)),
        ("MatMulOp", "braintrace.matmul", lambda: braintrace.MatMulOp(weight_mask=mask, weight_fn=jnp.abs),
         (x, {"weight": w}), braintrace.matmul(x, jnp.abs(w) * mask)),
        ("ElemWiseOp", "braintrace.element_wise", lambda: braintrace.ElemWiseOp(jax.nn.softplus),
         (None, {"weight": b}), braintrace.element_wise(b, jax.nn.softplus)),
        ("ConvOp", "braintrace.conv", lambda: braintrace.ConvOp(jax.ShapeDtypeStruct(xi.shape, xi.dtype), 2, "VALID"),
         (xi, {"weight": kern, "bias": b}), braintrace.conv(xi, kern, b, strides=2, padding="VALID")),
        ("SpMatMulOp", "braintrace.sparse_matmul", lambda: braintrace.SpMatMulOp(csr),
         (x, {"weight": data}), braintrace.sparse_matmul(x, data, sparse_mat=csr)),
        ("LoraOp", "braintrace.lora_matmul", lambda: braintrace.LoraOp(alpha=0.5),
         (x, {"B": B, "A": A, "bias": b}), braintrace.lora_matmul(x, B, A, alpha=0.5, bias=b)),
    ]


@pytest.mark.parametrize("case", range(6))
def test_op_equals_new_api_and_warns_once(case):
    name, replacement, make, args, expected = _ops()[case]
    first, second = _first_and_second(make, replacement)
    assert type(first).__name__ == name
    np.testing.assert_array_equal(first(*args), expected)
    np.testing.assert_array_equal(second(*args), expected)


def test_ops_bind_the_etp_primitive():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        op = braintrace.MatMulOp()
    jaxpr = jax.make_jaxpr(lambda x, w: op(x, {"weight": w}))(jnp.ones(3), jnp.ones((3, 2)))
    assert [e.primitive for e in jaxpr.jaxpr.eqns] == [braintrace.primitives.etp_mv_p]


def test_bare_array_weights_and_elemwise_call_forms():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        mm, ew = braintrace.MatMulOp(), braintrace.ElemWiseOp()
    w = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(mm(jnp.ones(3), w), braintrace.matmul(jnp.ones(3), w))
    np.testing.assert_array_equal(ew(w), w)
    with pytest.raises(KeyError, match="'weight'"):
        mm(jnp.ones(3), {"kernel": w})
    with pytest.raises(TypeError, match="takes no input"):
        ew(jnp.ones(3), w)


def test_etrace_param_equals_param_state_plus_primitive():
    w = {"weight": jnp.arange(6.0).reshape(3, 2), "bias": jnp.ones(2)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        op = braintrace.MatMulOp()
    with pytest.warns(DeprecationWarning, match="brainstate.ParamState plus an ETP primitive") as record:
        param = braintrace.ETraceParam(w, op)
    assert len(record) == 1 and record[0].filename == __file__
    _no_deprecation_warning(lambda: braintrace.ETraceParam(w, op))
    assert isinstance(param, brainstate.ParamState)
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(param.execute(x), braintrace.matmul(x, w["weight"], w["bias"]))
    with pytest.raises(TypeError, match="legacy operator"):
        braintrace.ETraceParam(w, lambda x, w: x)


def test_elemwise_param_equals_element_wise():
    v = jnp.array([0.5, -1.0, 2.0])
    with pytest.warns(DeprecationWarning, match="braintrace.element_wise"):
        tau = braintrace.ElemWiseParam(v, jnp.exp)
    via_op = _no_deprecation_warning(lambda: braintrace.ElemWiseParam({"weight": v}, _elemwise_op(jnp.exp)))
    expected = braintrace.element_wise(v, jnp.exp)
    np.testing.assert_array_equal(tau.execute(), expected)
    np.testing.assert_array_equal(via_op.execute(), expected)
    with pytest.raises(TypeError, match="no input"):
        tau.execute(jnp.ones(3))


def _elemwise_op(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return braintrace.ElemWiseOp(fn)


def test_nontemp_param_equals_plain_jax():
    w = jnp.arange(6.0).reshape(3, 2)
    with pytest.warns(DeprecationWarning, match="plain JAX ops"):
        p = braintrace.NonTempParam(w, lambda x, w: x @ w)
    _no_deprecation_warning(lambda: braintrace.NonTempParam(w, jnp.matmul))
    x = jnp.ones((4, 3))
    np.testing.assert_array_equal(p.execute(x), x @ w)
    jaxpr = jax.make_jaxpr(lambda x: p.execute(x))(x)
    assert not any(braintrace.primitives.is_etp_primitive(e.primitive) for e in jaxpr.jaxpr.eqns)
    with pytest.raises(TypeError, match="ETraceParam"):
        braintrace.NonTempParam(w, _elemwise_op(None))


class _NewRNN(brainstate.nn.Module):
    def __init__(self, w_rec, w_in, tau):
        super().__init__()
        self.w_rec = brainstate.ParamState({"weight": w_rec})
        self.w_in = brainstate.ParamState(w_in)
        self.tau = brainstate.ParamState(tau)
        self.h = brainstate.HiddenState(jnp.zeros(w_rec.shape[0]))

    def update(self, x):
        decay = braintrace.element_wise(self.tau.value, jax.nn.sigmoid)
        rec = braintrace.matmul(self.h.value, self.w_rec.value["weight"])
        self.h.value = decay * self.h.value + jnp.tanh(x @ self.w_in.value + rec)
        return self.h.value


class _OldRNN(brainstate.nn.Module):
    def __init__(self, w_rec, w_in, tau):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.w_rec = braintrace.ETraceParam({"weight": w_rec}, braintrace.MatMulOp())
            self.w_in = braintrace.NonTempParam(w_in, lambda x, w: x @ w)
            self.tau = braintrace.ElemWiseParam(tau, braintrace.ElemWiseOp(jax.nn.sigmoid))
        self.h = brainstate.HiddenState(jnp.zeros(w_rec.shape[0]))

    def update(self, x):
        decay = self.tau.execute()
        self.h.value = decay * self.h.value + jnp.tanh(self.w_in.execute(x) + self.w_rec.execute(self.h.value))
        return self.h.value


def test_legacy_params_learn_online_like_the_new_api():
    """D_RTRL over a model of legacy params gives the gradients of the same model on ParamState + primitives."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    args = (0.3 * jax.random.normal(k1, (4, 4)), jax.random.normal(k2, (2, 4)), jax.random.normal(k3, (4,)))
    xs = jax.random.normal(k1, (3, 2))
    grads = []
    for cls in (_NewRNN, _OldRNN):
        model = cls(*args)
        brainstate.nn.init_all_states(model)
        learner = braintrace.D_RTRL(model)
        learner.compile_graph(xs[0])
        assert len(learner.graph.hidden_param_op_relations) == 2  # w_rec and tau learn online
        params = model.states(brainstate.ParamState)
        step = brainstate.transform.grad(lambda x: jnp.sum(learner(x) ** 2), params)
        total = None
        for x in xs:
            g = step(x)
            total = g if total is None else jax.tree.map(jnp.add, total, g)
        grads.append(total)
    new, old = grads
    assert set(new) == set(old)
    for path in new:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new[path], old[path])


def test_resolution_and_star_import():
    assert braintrace.MatMulOp is legacy.MatMulOp
    assert braintrace.legacy is legacy
    for name in legacy.DEPRECATIONS:
        assert name not in braintrace.__all__
        assert getattr(braintrace, name) is getattr(legacy, name)
        assert legacy.DEPRECATIONS[name] in legacy.deprecation_message(name)
    namespace: dict = {}
    exec("from braintrace import *", namespace)
    assert not set(legacy.DEPRECATIONS) & set(namespace)
    with pytest.raises(AttributeError, match="has no attribute 'NotAThing'"):
        braintrace.NotAThing  # noqa: B018


def test_import_does_not_warn():
    code = "import braintrace, sys; assert 'braintrace.legacy' not in sys.modules; print(braintrace.__version__)"
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == braintrace.__version__


# -- braintrace 0.2.0 signatures and options --------------------------------------------


def _quiet(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return make()


def test_020_operator_options():
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    x, w = jax.random.normal(k1, (2, 3)), jax.random.normal(k2, (3, 4))
    mask = jnp.array([[1.0, 0.0, 1.0, 1.0]] * 3)
    masked_first = _quiet(lambda: braintrace.MatMulOp(mask, jnp.exp))
    fn_first = _quiet(lambda: braintrace.MatMulOp(mask, jnp.exp, apply_weight_fn_before_mask=True))
    np.testing.assert_allclose(masked_first(x, w), braintrace.matmul(x, jnp.exp(w * mask)), rtol=1e-6)
    np.testing.assert_allclose(fn_first(x, w), braintrace.matmul(x, jnp.exp(w) * mask), rtol=1e-6)
    csr = u.sparse.CSR.fromdense(jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    data = jnp.array([-1.0, 2.0, -3.0])
    sp = _quiet(lambda: braintrace.SpMatMulOp(csr, jnp.abs))
    np.testing.assert_array_equal(sp(jnp.ones(2), data), braintrace.sparse_matmul(jnp.ones(2), jnp.abs(data),
                                                                                  sparse_mat=csr))
    B, A = jnp.ones((3, 2)), jnp.ones((2, 4))
    assert _quiet(braintrace.LoraOp).alpha is None
    np.testing.assert_array_equal(_quiet(braintrace.LoraOp)(x, {"B": B, "A": A}), braintrace.lora_matmul(x, B, A))
    xi, kern = jnp.ones((1, 6, 6, 2)), jnp.ones((3, 3, 2, 4))
    conv = _quiet(lambda: braintrace.ConvOp(None, (1, 2), "SAME", rhs_dilation=2))
    np.testing.assert_array_equal(conv(xi, kern), braintrace.conv(xi, kern, strides=(1, 2), rhs_dilation=2))
    with pytest.raises(TypeError, match="xinfo"):
        _quiet(lambda: braintrace.ConvOp(3, 1, "SAME"))


def test_etrace_param_020_arguments():
    w = {"weight": jnp.ones((3, 2))}
    param = _quiet(lambda: braintrace.ETraceParam(weight=w, op=braintrace.MatMulOp(), grad=None, name="w"))
    assert param.name == "w"
    elem = _quiet(lambda: braintrace.ElemWiseParam(weight=jnp.zeros(2), op=jnp.exp))
    np.testing.assert_array_equal(elem.execute(), jnp.ones(2))
    for exc in (AssertionError, ValueError, braintrace.errors.InvalidArgumentError):
        with pytest.raises(exc, match="`grad`='full' is not supported"):
            _quiet(lambda: braintrace.ETraceParam(w, braintrace.MatMulOp(), "full"))


def test_fake_params_are_constants_computed_in_plain_jax():
    w = jnp.arange(6.0).reshape(3, 2)
    op = _quiet(braintrace.MatMulOp)
    fake, _ = _first_and_second(lambda: braintrace.FakeETraceParam({"weight": w}, op), "a constant array")
    assert not isinstance(fake, brainstate.State) and fake.value["weight"] is w
    x = jnp.ones((4, 3))
    np.testing.assert_array_equal(fake.execute(x), braintrace.matmul(x, w))
    assert not any(braintrace.primitives.is_etp_primitive(e.primitive)
                   for e in jax.make_jaxpr(fake.execute)(x).jaxpr.eqns)
    plain = _quiet(lambda: braintrace.FakeETraceParam(w, lambda x, w: x @ w))
    np.testing.assert_array_equal(plain.execute(x), x @ w)
    tau, _ = _first_and_second(lambda: braintrace.FakeElemWiseParam(jnp.zeros(3), jax.nn.sigmoid, name="tau"),
                               "a plain JAX function")
    assert tau.name == "tau" and not isinstance(tau, brainstate.State)
    np.testing.assert_array_equal(tau.execute(), jnp.full(3, 0.5))
    via_op = _quiet(lambda: braintrace.FakeElemWiseParam({"weight": jnp.zeros(3)}, braintrace.ElemWiseOp(jnp.exp)))
    np.testing.assert_array_equal(via_op.execute(), jnp.ones(3))
    assert not any(braintrace.primitives.is_etp_primitive(e.primitive)
                   for e in jax.make_jaxpr(via_op.execute)().jaxpr.eqns)
    with pytest.raises(TypeError, match="no input"):
        tau.execute(jnp.ones(3))
    with pytest.raises(TypeError, match="callable"):
        _quiet(lambda: braintrace.FakeETraceParam(w, None))


def test_a_fake_param_in_a_learned_model_is_a_silent_constant():
    class Net(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = brainstate.ParamState(0.3 * jnp.ones((3, 3)))
            self.fixed = _quiet(lambda: braintrace.FakeETraceParam(jnp.ones((2, 3)), braintrace.MatMulOp()))
            self.h = brainstate.HiddenState(jnp.zeros(3))

        def update(self, x):
            self.h.value = jnp.tanh(self.fixed.execute(x) + braintrace.matmul(self.h.value, self.w.value))
            return self.h.value

    net = Net()
    brainstate.nn.init_all_states(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner = braintrace.D_RTRL(net)
        learner.compile_graph(jnp.ones(2))
    assert [r.weight_path for r in learner.graph.hidden_param_op_relations] == [("w",)]
    assert set(net.states(brainstate.ParamState)) == {("w",)}


def test_dir_lists_the_legacy_names_without_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        names = dir(braintrace)
    assert set(braintrace.legacy.DEPRECATIONS) <= set(names)
    assert "matmul" in names and not set(braintrace.legacy.DEPRECATIONS) & set(braintrace.__all__)
