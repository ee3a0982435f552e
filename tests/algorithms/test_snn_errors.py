"""Bad input to the SNN learners and their trace helpers, and the helpers themselves."""

import re

import numpy as np
import pytest

import brainstate
import braintrace
import jax.numpy as jnp

import oracle as O

from .snn_models import LIFNet, TwoLayer

N_IN = 3


def adaptive():
    return O.make_adaptive(N_IN, 4, 2, seed=0, grouped=True)


# -- leak --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [braintrace.OTTT, braintrace.OTPE])
def test_missing_leak_is_a_type_error(cls):
    with pytest.raises(TypeError, match="leak"):
        cls(TwoLayer())
    with pytest.raises(TypeError, match="leak.*required"):
        cls(TwoLayer(), leak=None)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True])
@pytest.mark.parametrize("cls", [braintrace.OTTT, braintrace.OTPE])
def test_leak_outside_unit_interval_is_a_value_error(cls, bad):
    with pytest.raises(ValueError, match=r"`leak` must be a real number in \[0, 1\]"):
        cls(TwoLayer(), leak=bad)


# -- modes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, allowed",
    [
        (lambda m: braintrace.OTTT(m, "B", leak=0.5), "('A', 'O')"),
        (lambda m: braintrace.OTPE(m, "exact", leak=0.5), "('full', 'approx')"),
        (lambda m: braintrace.EProp(m, feedback="sym"), "('symmetric', 'random')"),
        (lambda m: braintrace.OSTTP(m, [], target_timing="start"), "('per-step', 'end')"),
    ],
)
def test_bad_mode_strings_list_the_allowed_values(make, allowed):
    with pytest.raises(ValueError, match="must be one of " + re.escape(allowed)):
        make(TwoLayer())


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5"])
def test_bad_kappa(bad):
    with pytest.raises(ValueError, match=r"kappa_filter_decay must be a real number in \[0, 1\)"):
        braintrace.EProp(TwoLayer(), kappa_filter_decay=bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: braintrace.EProp(m, "random", vjp_method="multi-step"),
        lambda m: braintrace.EProp(m, kappa_filter_decay=0.5, vjp_method="multi-step"),
        lambda m: braintrace.OTTT(m, leak=0.5, vjp_method="multi-step"),
        lambda m: braintrace.OSTTP(m, [np.zeros((2, 4))], vjp_method="multi-step"),
    ],
)
def test_multi_step_is_refused_where_it_is_not_meaningful(make):
    with pytest.raises(ValueError, match="multi-step.*single-step"):
        make(TwoLayer())


def test_multi_step_is_accepted_where_it_is_meaningful():
    m = TwoLayer()
    for learner in (braintrace.EProp(m, vjp_method="multi-step"), braintrace.OTPE(m, leak=0.5, vjp_method="multi-step"),
                    braintrace.OSTLRecurrent(m, vjp_method="multi-step"),
                    braintrace.OSTLFeedforward(m, 0.5, vjp_method="multi-step")):
        assert learner.vjp_method == "multi-step"


# -- num_state > 1 -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [braintrace.OTTT, braintrace.OTPE])
def test_groups_with_several_states_are_refused_at_compile_time(cls):
    learner = cls(adaptive(), leak=0.5)
    with pytest.raises(braintrace.CompilationError, match=r"\(`va`\) with num_state=2.*scalar `leak`.*D_RTRL"):
        learner.compile_graph(jnp.zeros(N_IN))
    assert learner.graph is None  # nothing half-installed: a second try raises again
    with pytest.raises(braintrace.CompilationError):
        learner.compile_graph(jnp.zeros(N_IN))


@pytest.mark.parametrize("cls", [braintrace.OTTT, braintrace.OTPE])
def test_alif_neurons_are_refused_naming_both_states(cls):
    net = LIFNet(n_in=N_IN, neuron="ALIF")
    with pytest.raises(braintrace.CompilationError, match=r"`inp.weight` reaches the hidden group \(`lif.(a|v)`, `lif.(a|v)`\)"):
        cls(net, leak=0.9).compile_graph(jnp.zeros(N_IN))


def test_d_rtrl_family_accepts_several_states():
    braintrace.EProp(adaptive()).compile_graph(jnp.zeros(N_IN))
    net = LIFNet(n_in=N_IN, neuron="ALIF")  # (v, a): 8 neurons × 2 states per batch element
    learner = braintrace.OSTTP(net, [np.ones((2, 16))]).compile_graph(jnp.zeros(N_IN))
    (gi,) = learner.feedback_matrices
    assert learner.graph.hidden_groups[gi].num_state == 2


# -- OSTTP ---------------------------------------------------------------------------


def test_osttp_feedback_list_must_match_the_hidden_groups():
    m = TwoLayer()
    with pytest.raises(braintrace.CompilationError, match=r"B_list has 2 matrices.*1 hidden group.*\(`h`\)"):
        braintrace.OSTTP(m, [np.ones((2, 4))] * 2).compile_graph(jnp.zeros(N_IN))
    with pytest.raises(braintrace.CompilationError, match=r"shape \(2, 5\); it must be \(n_target, 4\)"):
        braintrace.OSTTP(m, [np.ones((2, 5))]).compile_graph(jnp.zeros(N_IN))
    with pytest.raises(braintrace.CompilationError, match="names `r`"):
        braintrace.OSTTP(m, {"r": np.ones((2, 4))}).compile_graph(jnp.zeros(N_IN))
    with pytest.raises(TypeError, match="B_list must be a sequence"):
        braintrace.OSTTP(m, np.ones((2, 4)))
    learner = braintrace.OSTTP(m, {("h",): np.ones((2, 4))}).compile_graph(jnp.zeros(N_IN))
    assert learner.n_target == 2


def test_osttp_target_checks():
    learner = braintrace.OSTTP(TwoLayer(), [np.ones((2, 4))]).compile_graph(jnp.zeros(N_IN))
    with pytest.raises(ValueError, match="needs `y_target` at every call"):
        learner(jnp.zeros(N_IN))
    with pytest.raises(ValueError, match=r"y_target has shape \(3,\), expected \(2,\)"):
        learner(jnp.zeros(N_IN), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"expected \(4, 2\)"):
        learner(braintrace.MultiStepData(jnp.zeros((4, N_IN))), jnp.zeros(2))
    end = braintrace.OSTTP(TwoLayer(), [np.ones((2, 4))], target_timing="end").compile_graph(jnp.zeros(N_IN))
    end(jnp.zeros(N_IN))  # no target: allowed
    end(braintrace.MultiStepData(jnp.zeros((4, N_IN))), jnp.zeros(2))


def test_eprop_random_feedback_needs_matching_batch_axes():
    class Odd(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = brainstate.ParamState(jnp.ones((N_IN, 4)))
            self.h = brainstate.HiddenState(jnp.zeros((2, 4)))

        def update(self, x):
            self.h.value = 0.5 * self.h.value + braintrace.matmul(x, self.w.value)
            return braintrace.matmul(self.h.value, jnp.ones((4, 3))).T  # (3, batch): batch axis moved

    learner = braintrace.EProp(Odd(), "random", random_feedback_key=0)
    with pytest.raises(braintrace.CompilationError, match=r"\(`h`\) has per-position shape \(2, 4\)"):
        learner.compile_graph(jnp.zeros((2, N_IN)))
    assert learner.graph is None


# -- helpers -------------------------------------------------------------------------


def test_presynaptic_trace_and_kappa_filter():
    tr = braintrace.PresynapticTrace(jnp.zeros(2), leak=0.5)
    for x in ([1.0, 0.0], [0.0, 1.0], [1.0, 1.0]):
        out = tr.update(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), [1.25, 1.5])
    assert tr.leak == 0.5
    tr.reset_state()
    assert float(jnp.abs(tr.trace.value).max()) == 0.0
    f = braintrace.KappaFilter({"a": jnp.ones(2)}, kappa=0.9)
    np.testing.assert_allclose(np.asarray(f.update({"a": 3 * jnp.ones(2)})["a"]), [1.2, 1.2], rtol=1e-6)
    assert f.kappa == 0.9
    assert isinstance(tr, brainstate.ShortTermState) and tr.trace is tr
    f.reset_state(5)
    assert f.value["a"].shape == (5,) and float(jnp.abs(f.value["a"]).max()) == 0.0
    with pytest.raises(ValueError, match=r"`leak` must be a real number in \(0, 1\)"):
        braintrace.PresynapticTrace(jnp.zeros(2), leak=2.0)
    with pytest.raises(ValueError, match=r"`kappa`"):
        braintrace.KappaFilter(jnp.zeros(2), kappa=-1.0)


def test_fixed_random_feedback_is_frozen_and_checks_shapes():
    a = braintrace.FixedRandomFeedback(3, 5, key=7, init_scale=0.2)
    b = braintrace.FixedRandomFeedback(3, 5, key=7, init_scale=0.2)
    assert a.matrix.shape == (3, 5)
    np.testing.assert_array_equal(np.asarray(a.matrix), np.asarray(b.matrix))
    assert not a.states()  # not a State: never trained, never in a model's states
    y = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(np.asarray(a.project(y)), np.asarray(y) @ np.asarray(a.matrix), rtol=1e-6)
    with pytest.raises(ValueError, match="n_target=3"):
        a.project(jnp.ones(4))
    with pytest.raises(ValueError, match="`n_layer` must be a positive int"):
        braintrace.FixedRandomFeedback(3, 0)
    with pytest.raises(ValueError, match="`init_scale` must be a positive number"):
        braintrace.FixedRandomFeedback(3, 2, init_scale=0.0)


def test_top_level_exports():
    for name in ["EProp", "OSTLRecurrent", "OSTLFeedforward", "OTTT", "OTPE", "OSTTP",
                 "PresynapticTrace", "KappaFilter", "FixedRandomFeedback"]:
        assert name in braintrace.__all__ and name in braintrace.algorithms.__all__
        assert getattr(braintrace, name) is getattr(braintrace.algorithms, name)
    assert issubclass(braintrace.EProp, braintrace.ParamDimVjpAlgorithm)
    assert issubclass(braintrace.OSTTP, braintrace.ParamDimVjpAlgorithm)
    assert issubclass(braintrace.OSTLFeedforward, braintrace.IODimVjpAlgorithm)
    assert issubclass(braintrace.OTTT, braintrace.ETraceVjpAlgorithm)
    assert issubclass(braintrace.OTPE, braintrace.ETraceVjpAlgorithm)
