"""Data parallelism over 4 host devices: batch-sharded runs equal one-device runs, states stay sharded.

The checks run in a subprocess (``tests/training/sharded_run.py``) started
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``, so that the rest
of the suite keeps its one CPU device. Gradients, parameters and losses must
equal the one-device run's to float32 rounding; the hidden states and every
trace leaf must come back split over the batch axis (``P('batch')``), the
parameter gradients replicated (summed over the devices).
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.slow  # one subprocess of ~25 s CPU


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(HERE))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    args = [sys.executable, os.path.join(HERE, "sharded_run.py")]
    try:
        import orbax.checkpoint  # noqa: F401
        args.append("--checkpoint")
    except ImportError:
        pass
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def spec_names(specs):
    return [s.replace("PartitionSpec", "P") for s in specs]


def test_four_devices(result):
    assert result["devices"] == 4


@pytest.mark.parametrize("learner", ["es_d_rtrl", "d_rtrl"])
def test_online_gradients_sharded_equals_one_device(result, learner):
    r = result[f"gradients_{learner}"]
    assert r["rel"] < 1e-5 and r["loss_rel"] < 1e-5
    assert spec_names(r["state_specs"]) == ["P('batch',)"], r["state_specs"]
    assert spec_names(r["grad_specs"]) == ["P()"], r["grad_specs"]


def test_online_fit_sharded_equals_one_device(result):
    r = result["online_fit"]
    assert r["rel"] < 1e-5 and r["loss_rel"] < 1e-5
    assert spec_names(r["state_specs"]) == ["P('batch',)"], r["state_specs"]


def test_learner_steps_after_shard_batch(result):
    r = result["learner_step"]
    assert r["rel"] < 1e-5
    assert spec_names(r["placed_specs"]) == ["P('batch',)"] and spec_names(r["state_specs"]) == ["P('batch',)"]


def test_checkpoint_restores_sharded(result):
    if "checkpoint" not in result:
        pytest.skip("orbax-checkpoint is not installed")
    r = result["checkpoint"]
    assert r["rel"] == 0 and spec_names(r["state_specs"]) == ["P('batch',)"]
