"""braintrace 0.2.0 drop-in: the helpers of compat-0.2.0.md §9 (the legacy classes' behaviour:
``tests/test_legacy.py``)."""

import inspect

import brainstate
import jax
import jax.numpy as jnp
import pytest
import saiunit as u

import braintrace

from .helpers import REQUIRED, assert_signature



def test_eligibility_trace_is_a_short_term_state():
    trace = braintrace.EligibilityTrace(jnp.zeros(3))
    assert isinstance(trace, brainstate.ShortTermState) and trace.value.shape == (3,)


# ----------------------------------------------------------------- PresynapticTrace

def test_presynaptic_trace_update_and_leak_range():
    assert_signature(braintrace.PresynapticTrace, [("init_value", REQUIRED), ("leak", REQUIRED)])
    tr = braintrace.PresynapticTrace(jnp.zeros(()), 0.5)
    assert float(tr.update(1.0)) == 1.0 and float(tr.update(1.0)) == 1.5
    with pytest.raises(ValueError):
        braintrace.PresynapticTrace(jnp.zeros(()), 1.5)


def test_presynaptic_trace_is_a_short_term_state_with_open_leak_range():
    assert issubclass(braintrace.PresynapticTrace, brainstate.ShortTermState)
    for leak in (0.0, 1.0):
        with pytest.raises(ValueError):
            braintrace.PresynapticTrace(jnp.zeros(()), leak)


def test_presynaptic_trace_reset_takes_a_batch_size():
    tr = braintrace.PresynapticTrace(jnp.zeros((6, 3)), 0.5)
    tr.update(jnp.ones((6, 3)))
    tr.reset_state(4)
    assert tr.value.shape == (4, 3) and float(jnp.abs(tr.value).sum()) == 0.0
    scalar = braintrace.PresynapticTrace(jnp.zeros(()), 0.5)
    scalar.reset_state(4)
    assert scalar.value.shape == (4,)


# ----------------------------------------------------------------- KappaFilter

def test_kappa_filter_attribute_and_range():
    assert_signature(braintrace.KappaFilter, [("init_value", REQUIRED), ("kappa", REQUIRED)])
    assert braintrace.KappaFilter(jnp.zeros(()), 0.25).kappa == 0.25
    with pytest.raises(ValueError):
        braintrace.KappaFilter(jnp.zeros(()), -0.1)


def test_kappa_filter_is_a_convex_low_pass_with_kappa_below_one():
    f = braintrace.KappaFilter(jnp.zeros(()), 0.5)
    assert float(f.update(2.0)) == 1.0  # (1 - kappa) x + kappa v
    assert float(f.update(2.0)) == 1.5
    with pytest.raises(ValueError):
        braintrace.KappaFilter(jnp.zeros(()), 1.0)


# ----------------------------------------------------------------- FixedRandomFeedback

def test_fixed_random_feedback_sizes_and_projection():
    assert_signature(braintrace.FixedRandomFeedback, [("n_target", REQUIRED), ("n_layer", REQUIRED),
                                                      ("key", None), ("init_scale", 0.1)])
    fb = braintrace.FixedRandomFeedback(3, 4, jax.random.PRNGKey(0))
    assert (fb.n_target, fb.n_layer) == (3, 4)
    assert fb.project(jnp.ones((2, 3))).shape == (2, 4)


def test_fixed_random_feedback_matrix_is_called_B():
    fb = braintrace.FixedRandomFeedback(3, 4, jax.random.PRNGKey(0))
    assert fb.B.shape == (3, 4)


# ----------------------------------------------------------------- GradExpon

def test_grad_expon_020_signature_and_state():
    assert_signature(braintrace.GradExpon, [("grad_shape", REQUIRED), ("tau_or_decay", REQUIRED)])
    acc = braintrace.GradExpon({"w": jnp.zeros(2)}, 0.5)
    assert isinstance(acc.gradients, brainstate.LongTermState) and acc.decay == 0.5
    assert acc.update({"w": jnp.ones(2)}) is None
    with brainstate.environ.context(dt=1.0 * u.ms):
        assert abs(float(braintrace.GradExpon({"w": jnp.zeros(2)}, 10.0 * u.ms).decay) - 0.904837) < 1e-6
    with pytest.raises(AssertionError):
        braintrace.GradExpon({"w": jnp.zeros(2)}, 1.5)
    with pytest.raises(TypeError):
        braintrace.GradExpon({"w": jnp.zeros(2)}, 2)


# ----------------------------------------------------------------- ETP operators

def test_etp_operator_signatures():
    assert_signature(braintrace.matmul, [("x", REQUIRED), ("weight", REQUIRED), ("bias", None)])
    assert_signature(braintrace.element_wise, [("weight", REQUIRED)])
    assert inspect.signature(braintrace.element_wise).parameters["fn"].default(3.0) == 3.0
    assert_signature(braintrace.conv, [("x", REQUIRED), ("kernel", REQUIRED), ("bias", None)])
    conv_kw = inspect.signature(braintrace.conv).parameters
    for name in ("strides", "padding", "lhs_dilation", "rhs_dilation", "feature_group_count", "batch_group_count",
                 "dimension_numbers"):
        assert conv_kw[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert_signature(braintrace.sparse_matmul, [("x", REQUIRED), ("weight_data", REQUIRED), ("sparse_mat", REQUIRED),
                                                ("bias", None)], keyword_only=("sparse_mat", "bias"))
    assert_signature(braintrace.lora_matmul, [("x", REQUIRED), ("B", REQUIRED), ("A", REQUIRED), ("alpha", 1.0),
                                              ("bias", None)], keyword_only=("alpha", "bias"))
    x, B, A = jnp.ones((2, 3)), jnp.ones((3, 2)), jnp.ones((2, 4))
    assert float(braintrace.lora_matmul(x, B, A, alpha=0.5)[0, 0]) == 0.5 * 6.0  # alpha * x @ B @ A


def test_register_primitive_020_signature():
    assert_signature(braintrace.register_primitive, [("name", REQUIRED), ("impl_fn", REQUIRED)])
    prim = braintrace.register_primitive("compat_020_probe", lambda x, w: x @ w)
    for method in ("register_yw_to_w", "register_xy_to_dw", "register_init_drtrl", "register_init_pp",
                   "register_etp_rules"):
        assert callable(getattr(prim, method))


def test_register_primitive_020_rules_are_derived_and_the_gradient_is_exact():
    """The 0.2.0 form learns like braintrace.matmul; registered rules warn that they are not called."""
    prim = braintrace.register_primitive("compat_020_mv", lambda x, w: x @ w)
    with pytest.warns(UserWarning, match="derives the yw_to_w, xy_to_dw rule"):
        prim.register_etp_rules(yw_to_w=lambda *a: None, xy_to_dw=lambda *a: None)
    with pytest.warns(UserWarning, match="init_pp"):
        assert prim.register_init_pp(jnp.zeros_like) is jnp.zeros_like
    with pytest.raises(TypeError, match="must be callable"):
        prim.register_yw_to_w(3)
    assert set(prim.rules) == {"yw_to_w", "xy_to_dw", "init_pp"}

    class RNN(brainstate.nn.Module):
        def __init__(self, op):
            super().__init__()
            self.op = op
            self.w = brainstate.ParamState(0.3 * jax.random.normal(jax.random.PRNGKey(0), (4, 4)))
            self.h = brainstate.HiddenState(jnp.zeros(4))

        def update(self, x):
            self.h.value = jnp.tanh(x + self.op(self.h.value, self.w.value))
            return self.h.value

    grads = []
    for op in (prim.bind, braintrace.matmul):
        model = RNN(op)
        brainstate.nn.init_all_states(model)
        learner = braintrace.D_RTRL(model)
        learner.compile_graph(jnp.ones(4))
        params = model.states(brainstate.ParamState)
        step = brainstate.transform.grad(lambda x, lr=learner: jnp.sum(lr(x) ** 2), params)
        grads.append([step(x) for x in jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)][-1])
    assert float(jnp.abs(grads[1][("w",)]).sum()) > 0
    assert jnp.allclose(grads[0][("w",)], grads[1][("w",)], atol=1e-6)


# ----------------------------------------------------------------- legacy classes (deprecated)

@pytest.mark.parametrize("name,expected", [
    ("MatMulOp", [("weight_mask", None), ("weight_fn", "any"), ("apply_weight_fn_before_mask", False)]),
    ("ConvOp", [("xinfo", REQUIRED), ("window_strides", REQUIRED), ("padding", REQUIRED)]),
    ("SpMatMulOp", [("sparse_mat", REQUIRED), ("weight_fn", "any")]),
    ("LoraOp", [("alpha", None)]),
    ("ETraceParam", [("weight", REQUIRED), ("op", REQUIRED), ("grad", None), ("name", None)]),
    ("ElemWiseParam", [("weight", REQUIRED), ("op", "any"), ("name", None)]),
    ("FakeETraceParam", [("value", REQUIRED), ("op", REQUIRED)]),
    ("FakeElemWiseParam", [("weight", REQUIRED), ("op", "any"), ("name", None)]),
])
def test_legacy_020_signatures(name, expected):
    cls = getattr(braintrace, name)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert [p.name for p in params][: len(expected)] == [n for n, _ in expected]
    for p, (_, default) in zip(params, expected):
        assert default == "any" or p.default == default


def test_legacy_020_signatures_that_hold():
    assert_signature(braintrace.ElemWiseOp, [("fn", None)])
    assert [p for p in inspect.signature(braintrace.NonTempParam.__init__).parameters][1:3] == ["value", "op"]
