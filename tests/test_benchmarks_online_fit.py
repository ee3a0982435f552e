"""Smoke test of ``benchmarks/online_fit.py``: the smallest config runs and the JSON has its shape (no timing checked)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import online_fit  # noqa: E402


@pytest.mark.slow
def test_online_fit_benchmark_runs(tmp_path):
    out = tmp_path / "of.json"
    returned = online_fit.main(["--model", "gru-8", "--T", "4", "--batch", "2", "--updates", "1,4", "--repeats", "1",
                                "--sharded", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(returned))
    rows = saved["results"]
    assert [(r["method"], r["update_every"]) for r in rows] == [
        ("online_gradients", 4), ("online_gradients_sharded1", 4), ("online_fit", 1), ("online_fit", 4)]
    for r in rows:
        assert r["compile_s"] >= 0 and r["run_s"] > 0 and r["time_per_step_s"] == pytest.approx(r["run_s"] / 4)
    assert all(r["paired_ratio"] > 0 for r in rows[1:])
    assert saved["meta"]["spec"]["size"] == 8 and saved["meta"]["machine"]["backend"]
