"""Networks from the field's stack: ``brainpy.state`` neurons and synapses, ``braintools`` surrogates (issue 17, pattern 4).

The networks of ``benchmarks/interop.py`` (input ``braintrace.nn.Linear`` →
``brainpy.state`` LIF / ALIF / exponential synapse + LIF, through
``DeltaProj`` / ``AlignPostProj`` → read-out) and the same networks built from
``braintrace.nn`` must compile to the same graph (element-wise groups, no
probing) and give the same gradients. With a stateless read-out D_RTRL is exact
on all of them, so both builds are compared with BPTT (``tests/oracle.py``) in
float64 at 1e-8. Before the fix ``braintools``' spike primitive (and
``saiunit``'s ``exprel`` in ``exp_euler_step``) made the neuron's group "mix
positions": exact, but its blocks were probed position by position (~550× slower
at N=256). Skipped when ``brainpy`` or ``braintools`` is not installed (the
``interop`` extra).
"""

import importlib.metadata
import os
import sys

import pytest

pytest.importorskip("brainpy.state")
braintools = pytest.importorskip("braintools")

import brainstate
import jax.numpy as jnp
import numpy as np

import braintrace
import oracle as O
from learning import compile_recording_warnings
from algorithms.snn_models import f64, online_sum  # noqa: F401 - f64 is a fixture

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from benchmarks.interop import KINDS, InteropNet, build_pair, main as benchmark_main

N_IN, N, N_OUT, B, T = 4, 6, 3, 2, 12
# the input weight's path in each build; the read-out is `readout.W` in both
INPUT_WEIGHT = {"brainpy.state": ("proj", "comm", "weight"), "braintrace.nn": ("inp", "weight")}


@pytest.fixture(autouse=True)
def unit_dt():
    """brainpy.state's neurons and synapses read the step from the environment."""
    with brainstate.environ.context(dt=1.0):
        yield


def structure(graph):
    """The graph without its state names: groups and relations as shapes, flags and indices."""
    groups = tuple((g.varshape, g.num_state, g.elementwise) for g in graph.hidden_groups)
    relations = tuple(
        (r.primitive.name, r.trainable_names, r.hidden_groups, r.x_shape, r.y_shape, r.covered)
        for r in graph.hidden_param_op_relations
    )
    return groups, relations


@pytest.mark.parametrize("readout", ["linear", "leaky"])
@pytest.mark.parametrize("kind", KINDS)
def test_same_graph_as_braintrace_nn_and_no_probing(kind, readout):
    nets = build_pair(kind, N_IN, N, N_OUT, B, readout)
    x = jnp.zeros((B, N_IN))
    (bp, bp_warn), (bt, bt_warn) = (compile_recording_warnings(nets[s], x) for s in ("brainpy.state", "braintrace.nn"))
    assert not bp_warn and not bt_warn, bp_warn + bt_warn
    assert structure(bp.graph) == structure(bt.graph)
    assert all(g.elementwise for g in bp.graph.hidden_groups)
    weights = {r.weight_path for r in bp.graph.hidden_param_op_relations}
    assert weights == {INPUT_WEIGHT["brainpy.state"], ("readout", "W")} if readout == "leaky" else {
        INPUT_WEIGHT["brainpy.state"]
    }


def _data(seed=0):
    rng = np.random.RandomState(seed)
    xs = jnp.asarray((rng.rand(T, B, N_IN) < 0.5).astype(np.float64))
    targets = jnp.asarray(rng.randn(T, B, N_OUT))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, loss


@pytest.mark.parametrize("kind", KINDS)
def test_equal_gradients_to_braintrace_nn_and_to_bptt(f64, kind):
    nets = build_pair(kind, N_IN, N, N_OUT, B, "linear")
    xs, loss = _data()
    got = {}
    for stack, net in nets.items():
        want, _ = O.bptt_grads(net, xs, loss)
        learner, caught = compile_recording_warnings(net, xs[0])
        assert not caught, caught
        grads, _ = online_sum(learner, xs, loss)
        w_in = INPUT_WEIGHT[stack]
        assert jnp.result_type(grads[w_in]["weight"]) == jnp.float64
        assert float(jnp.abs(want[w_in]["weight"]).max()) > 1e-3  # spikes and surrogate gradients flow
        for k in want:  # D_RTRL is exact here: element-wise transitions, a stateless read-out
            np.testing.assert_allclose(
                np.asarray(grads[k]["weight"]), np.asarray(want[k]["weight"]), rtol=1e-8, atol=1e-12
            )
        got[stack] = {"input": grads[w_in], "readout": grads[("readout", "weight")]}
    for part in ("input", "readout"):
        for key in got["braintrace.nn"][part]:
            np.testing.assert_allclose(
                np.asarray(got["brainpy.state"][part][key]), np.asarray(got["braintrace.nn"][part][key]),
                rtol=1e-8, atol=1e-12,
            )


def test_braintools_surrogate_in_a_braintrace_lif(f64):
    """The issue's first case: ``braintrace.nn.LIF(surrogate=braintools.surrogate.Sigmoid(4))``, same as ``'sigmoid'``."""
    xs, loss = _data(1)
    grads = {}
    for name, surrogate in [("braintools", braintools.surrogate.Sigmoid(alpha=4.0)), ("braintrace", "sigmoid")]:
        net = InteropNet("lif", "braintrace.nn", N_IN, N, N_OUT, "linear", surrogate=surrogate)
        brainstate.nn.init_all_states(net, batch_size=B)
        want, _ = O.bptt_grads(net, xs, loss)
        learner, caught = compile_recording_warnings(net, xs[0])
        assert not caught, caught
        assert learner.graph.hidden_groups[0].elementwise
        grads[name], _ = online_sum(learner, xs, loss)
        assert O.tree_max_rel_err(grads[name], want) < 1e-8
    assert O.tree_max_rel_err(grads["braintools"], grads["braintrace"]) < 1e-8


def test_field_packages_bring_no_other_braintrace():
    names = {(d.metadata["Name"] or "").lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}
    assert {n for n in names if "brainscale" in n} == set()
    others = {n: v for n, v in names.items() if "braintrace" in n and v != braintrace.__version__}
    assert not others, f"a package named braintrace other than ours is installed: {others}"
    for dist in ("brainpy", "braintools"):
        requires = importlib.metadata.requires(dist) or []
        assert not [r for r in requires if "braintrace" in r.lower() or "brainscale" in r.lower()]


@pytest.mark.slow
def test_benchmark_script_prints_its_table(capsys):
    rows = benchmark_main(["--models", "lif", "--methods", "forward", "--size", "4", "--batch", "2", "--T", "3", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "| lif | forward |" in out and "brainpy.state / braintrace.nn" in out
    assert set(rows[0]["step_ms"]) == {"brainpy.state", "braintrace.nn"} and rows[0]["ratio"] > 0
