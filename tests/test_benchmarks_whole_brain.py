"""Smoke test of ``benchmarks/whole_brain.py``'s CPU quick mode: every item runs, the JSON and the report
have their shape. Timings are never checked."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from benchmarks import whole_brain
from benchmarks.op_profile import op_profile


@pytest.mark.slow
def test_quick_run_and_report(tmp_path):
    record = whole_brain.main(["--quick", "--out", str(tmp_path), "--budget", "600", "--profile", "3"])
    with open(tmp_path / "whole_brain.json") as f:
        saved = json.load(f)
    assert saved["meta"]["complete"] and not saved["skipped"]
    m = saved["measurements"]
    assert list(m) == ["connectome", "forward", "es_d_rtrl_win10", "bptt", "train", "es_d_rtrl_steps",
                       "es_d_rtrl_win10_csr", "compile_win10_T1000", "compile_win20"]
    for name, r in m.items():
        assert r["status"] == "ok", (name, r.get("reason"))
    assert m["connectome"]["events"] and m["connectome"]["neurons"] == 400
    assert 0 < m["forward"]["rate_mean"] < 1 and m["forward"]["over_capacity_steps"] >= 0
    for name in ("es_d_rtrl_win10", "es_d_rtrl_steps", "es_d_rtrl_win10_csr", "bptt"):
        assert m[name]["time_per_step_s"] > 0 and m[name]["compile_s"] > 0 and m[name]["temp_bytes"] > 0
    # the same loss on every path (the weights trained by "train" are restored)
    losses = [m[k]["loss"] for k in ("forward", "es_d_rtrl_win10", "bptt", "es_d_rtrl_steps", "es_d_rtrl_win10_csr")]
    assert max(losses) == pytest.approx(min(losses), rel=1e-5)
    assert m["compile_win10_T1000"]["temp_bytes"] <= 1.05 * m["es_d_rtrl_win10"]["temp_bytes"]  # not T
    assert len(m["train"]["losses"]) == m["train"]["steps"] // m["train"]["window"]
    assert m["train"]["time_per_step_s"] > 0 and m["train"]["first_chunk_s"] > 0
    assert record["measurements"].keys() == m.keys()
    text = whole_brain.main(["--report", str(tmp_path)])
    assert "es_d_rtrl_win10" in text and (tmp_path / "whole_brain.md").exists()
    assert m["es_d_rtrl_win10"]["profile"]["ops_ms_per_step"] > 0 and "operations per step" in text
    pytest.importorskip("matplotlib")
    assert (tmp_path / "whole_brain_loss.png").read_bytes().startswith(b"\x89PNG")


def test_budget_skips_later_items(tmp_path):
    saved = whole_brain.main(["--quick", "--out", str(tmp_path), "--budget", "0"])
    assert list(saved["measurements"]) == ["connectome", "forward"]  # items that need no time estimate
    assert "es_d_rtrl_win10" in saved["skipped"] and saved["meta"]["complete"]


def test_op_profile_names_the_operations():
    """The host path on a CPU: XLA's operations with their time, loops and conditionals not counted twice."""
    def f(x):
        return jax.lax.fori_loop(0, 3, lambda i, y: jnp.sin(y) @ x, x)

    p = op_profile(jax.jit(f), jnp.ones((64, 64)), top=3)
    assert p["source"] == "host" and p["ops"] >= 3 and 0 < len(p["top"]) <= 3 and p["ops_ms"] > 0
    assert not any(name.startswith(("while", "cond")) for name, _, _ in p["top"])
