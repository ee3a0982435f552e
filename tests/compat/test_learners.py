"""0.2.0 learner facts (compat-0.2.0.md §8) that braintrace keeps; the differences are in docs/migration.md."""

import warnings

import brainstate
import jax.numpy as jnp
import pytest

import braintrace


@pytest.fixture
def cell():
    c = braintrace.nn.GRUCell(2, 3)
    brainstate.nn.init_all_states(c)
    return c


def compiled(learner):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return learner.compile_graph(jnp.zeros(2))


def test_running_index_counts_time_steps_and_resets(cell):
    learner = compiled(braintrace.D_RTRL(cell))
    assert learner.is_compiled and learner.running_index is learner.step_count
    learner(jnp.ones(2))
    learner(braintrace.MultiStepData(jnp.ones((3, 2))))
    assert int(learner.running_index.value) == 4
    learner.reset_state()
    assert int(learner.running_index.value) == 0


def test_state_views(cell):
    learner = braintrace.D_RTRL(cell)
    assert learner.model4compile is cell
    assert set(learner.param_states) == {("Wz", "weight"), ("Wr", "weight"), ("Wh", "weight")}
    assert set(learner.hidden_states) == {("h",)}
    assert learner.state_id_to_path[id(cell.h)] == ("h",)
    assert learner.path_to_states[("h",)] is cell.h


def test_iodim_trace_views(cell):
    learner = compiled(braintrace.ES_D_RTRL(cell, 3))
    assert learner.decay == 0.5
    assert {k.kind for k in learner.etrace_xs} == {"x"} and {k.kind for k in learner.etrace_dfs} == {"f"}
    assert braintrace.pp_prop is braintrace.ES_D_RTRL and issubclass(braintrace.ES_D_RTRL, braintrace.IODimVjpAlgorithm)


def test_errors_catchable_as_in_0_2_0(cell):
    with pytest.raises(AssertionError):
        braintrace.D_RTRL(cell, vjp_method="both")
    with pytest.raises(AssertionError):
        braintrace.ES_D_RTRL(cell, 1.5)
    with pytest.raises(AssertionError):
        braintrace.ES_D_RTRL(cell, 0)
    with pytest.raises(ValueError, match="compile_graph"):  # 0.2.0 raised ValueError before compiling
        braintrace.D_RTRL(cell)(jnp.ones(2))


def test_ostl_regimes_and_osttp_timing_name(cell):
    assert braintrace.OSTLRecurrent.regime == "with-H" and braintrace.OSTLFeedforward.regime == "without-H"
    assert braintrace.OSTLFeedforward(cell).decay == 1e-6
    B = braintrace.FixedRandomFeedback(2, 3, key=0)
    assert braintrace.OSTTP(cell, [B], target_timing="sequence-end").target_timing == "end"


def test_compile_resolves_0_2_0_names(cell):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learner = braintrace.compile(cell, "PP_PROP", jnp.zeros(2), decay_or_rank=0.9)
    assert isinstance(learner, braintrace.ES_D_RTRL) and learner.is_compiled
