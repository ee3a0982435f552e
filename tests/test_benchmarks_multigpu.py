"""Smoke test of ``python -m benchmarks.multigpu`` on simulated host devices: rows, table, gradient check.

The run is a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (the rest of the suite keeps
one CPU device). Timings are never checked; the strong-scaling gradients must equal the one-device run's to
float32 rounding.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_two_simulated_devices(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    out, md = tmp_path / "m.json", tmp_path / "m.md"
    argv = ["--models", "gru-8", "--learners", "es_d_rtrl", "--devices", "1,2,4", "--T", "4", "--per-device", "2",
            "--global-batch", "4", "--repeats", "1", "--out", str(out), "--md", str(md)]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.multigpu", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = json.loads(out.read_text())
    assert saved["meta"]["devices_available"] == 2 and saved["meta"]["devices_skipped"] == [4]
    rows = [(r["mode"], r["devices"], r["batch"]) for r in saved["rows"]]
    assert rows == [("weak", 1, 2), ("weak", 2, 4), ("strong", 1, 4), ("strong", 2, 4)]
    for r in saved["rows"]:
        assert r["run_s"] > 0 and r["sequences_per_s"] > 0 and r["temp_bytes_per_device"] >= 0
    strong = [r for r in saved["rows"] if r["mode"] == "strong"]
    assert strong[0]["grad_rel_diff_vs_1"] == 0.0 and strong[1]["grad_rel_diff_vs_1"] < 1e-5
    table = md.read_text()
    assert "efficiency" in table and "speed-up" in table and "not run: [4] devices" in proc.stdout
