"""The scripts in ``examples/`` run, in a reduced size, and learn something."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import braintrace

pytestmark = pytest.mark.slow  # end-to-end runs of the example scripts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_copying_task_online_and_bptt(capsys):
    results = _load("copying_task").main(["--steps", "40", "--methods", "d_rtrl,bptt", "--hidden", "16"])
    assert set(results) == {"d_rtrl", "bptt"}
    for first, last, acc in results.values():
        assert last < first  # the loss falls
        assert 0.0 <= acc <= 1.0
    assert "recall acc" in capsys.readouterr().out


def test_digits_snn_quick(tmp_path):
    pytest.importorskip("sklearn")
    plot = tmp_path / "digits.png"
    out = _load("digits_snn").main(["--quick", "--plot", str(plot)])
    assert np.mean(out["losses"][-2:]) < np.mean(out["losses"][:2])
    assert out["test_accuracy"][-1] > 0.1  # chance
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.skipif(not hasattr(braintrace, "EProp"), reason="braintrace.EProp is not in this version (SNN learners)")
def test_evidence_accumulation_with_eprop_quick():
    out = _load("evidence_accumulation").main(["--quick"])
    assert len(out["losses"]) == 20 and np.isfinite(out["losses"]).all()
    assert out["test_accuracy"][-1] > 0.5  # chance


def test_whole_brain_scale_quick():
    out = _load("whole_brain_scale").main(["--quick"])
    assert out["events"]  # the recurrence is event-driven
    assert out["neurons"] == 300 and out["synapses"] > 10_000
    assert np.isfinite(out["losses"]).all() and out["last"] < out["first"]  # the loss falls
