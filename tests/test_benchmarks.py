"""Smoke test of ``benchmarks/``: the smallest config runs and the table / JSON / targets have their shape.

Timings are never checked (they are measurements, not properties).
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import run
from benchmarks.methods import method_names, parse_method

METHODS = ["forward", "es_d_rtrl", "es_d_rtrl_ms5", "bptt"]
MEMORY_ONLY = ["bptt"]  # compiled only at T=10 (fewer compiles: a quicker test)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    argv = [
        "--models", "gru-8", "--T", "5", "--memory-only-T", "10", "--windows", "5", "--batch", "2",
        "--methods", ",".join(METHODS), "--warmup", "1", "--repeats", "1", "--time-budget", "0",
        "--memory-only-methods", ",".join(MEMORY_ONLY), "--isolate", "none", "--out", str(out),
    ]
    returned = run.main(argv)
    with open(out) as f:
        return returned, json.load(f)


@pytest.mark.slow
def test_json_structure(result):
    returned, saved = result
    assert set(saved) == {"meta", "results", "targets"}
    assert saved["meta"]["machine"]["backend"] and saved["meta"]["options"]["isolate"] == "none"
    timed = [r for r in saved["results"] if r["config"]["T"] == 5]
    compiled = [r for r in saved["results"] if r["config"]["T"] == 10]
    assert [r["method"] for r in timed] == METHODS
    assert [r["method"] for r in compiled] == MEMORY_ONLY
    for r in timed:
        assert r["status"] == "ok", r.get("reason")
        assert r["config"] == {"kind": "gru", "size": 8, "T": 5, "batch": 2, "n_in": 32, "n_out": 10}
        assert len(r["times_s"]) == 1 and r["time_s"] > 0 and r["time_per_step_s"] == pytest.approx(r["time_s"] / 5)
        for key in ("temp_bytes", "argument_bytes", "output_bytes", "compile_s", "lower_s", "rss_peak_mb"):
            assert r[key] >= 0, key
    for r in compiled:
        assert r["status"] == "memory-only" and "temp_bytes" in r and "time_s" not in r
    for r in timed:  # ES_D_RTRL methods are also timed back to back with the forward pass
        paired = r["method"].startswith("es_d_rtrl")
        assert ("paired_forward_ratio" in r) == paired, r["method"]
        if paired:
            assert len(r["paired_forward_ratios"]) == len(r["times_s"]) and r["paired_forward_ratio"] > 0
    # the forward pass, BPTT and the online methods compute the same summed loss
    losses = [r["loss"] for r in timed]
    assert max(losses) == pytest.approx(min(losses), rel=1e-4)
    assert returned["results"] == saved["results"]


@pytest.mark.slow
def test_table_rows_and_targets(result):
    _, saved = result
    table = run.format_table(saved["results"])
    lines = table.splitlines()
    assert lines[0] == "| config | method | time/seq | time/step | × forward | temp MiB | RSS MiB | compile s |"
    rows = [line for line in lines[2:] if line.startswith("| GRU-8")]
    assert len(rows) == len(saved["results"])
    assert all(row.count("|") == 9 for row in rows)
    assert "memory-only" in table and "Not timed:" in table
    names = [t["target"] for t in saved["targets"]]
    assert any("bptt: temp memory T=10 / T=5" in n for n in names)
    assert "GRU-8 B=2 T=5: es_d_rtrl step / forward step" in names
    per_step = next(t for t in saved["targets"] if t["target"] == "GRU-8 B=2 T=5: es_d_rtrl step / forward step")
    es = next(r for r in saved["results"] if r["method"] == "es_d_rtrl")
    fwd = next(r for r in saved["results"] if r["method"] == "forward" and r["config"]["T"] == 5)
    # the conservative one of the back-to-back ratio and the ratio of the fastest calls
    assert per_step["measured"] == pytest.approx(max(es["paired_forward_ratio"], es["min_s"] / fwd["min_s"]))
    assert per_step["detail"].startswith("paired calls") and "fastest calls" in per_step["detail"]
    assert "GRU-8 B=2 T=5: es_d_rtrl_ms5 step / forward step" in names
    gru512 = [t for t in saved["targets"] if t["target"].startswith("GRU-512")]
    assert gru512 and all(t["passed"] is None and t["measured"] is None for t in gru512)
    for t in saved["targets"]:
        assert set(t) == {"target", "limit", "measured", "passed", "detail"}
    text = run.format_targets(saved["targets"])
    assert "(pass" in text or "(fail" in text
    assert "n/a (not timed in this run" in text


def test_method_names():
    assert method_names([10]) == ["forward", "es_d_rtrl", "es_d_rtrl_ms10", "d_rtrl_ms10", "d_rtrl", "bptt"]
    assert method_names([10], ["ms", "win"])[2:6] == ["es_d_rtrl_ms10", "d_rtrl_ms10", "es_d_rtrl_win10", "d_rtrl_win10"]
    assert parse_method("es_d_rtrl_ms100") == ("es_d_rtrl", 100, "multi-step")
    assert parse_method("d_rtrl_win5") == ("d_rtrl", 5, "single-step")
    with pytest.raises(ValueError, match="unknown method"):
        parse_method("rtrl")


@pytest.mark.slow
def test_plot(result, tmp_path):
    pytest.importorskip("matplotlib")
    from benchmarks.plot import plot_results

    out = plot_results(result[1], str(tmp_path / "plot.png"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_merge_splits_and_rejects_overlaps(result, tmp_path):
    from benchmarks.merge import main as merge_main, merge_results

    _, saved = result
    assert saved["meta"]["complete"] is True
    timed = dict(saved, results=[r for r in saved["results"] if r["config"]["T"] == 5])
    compiled = dict(saved, results=[r for r in saved["results"] if r["config"]["T"] == 10])
    paths = []
    for name, part in (("timed.json", timed), ("compiled.json", compiled)):
        paths.append(str(tmp_path / name))
        with open(paths[-1], "w") as f:
            json.dump(part, f)
    merged = merge_main(paths + ["--out", str(tmp_path / "all.json"), "--md", str(tmp_path / "all.md")])
    assert merged["results"] == saved["results"]
    assert merged["targets"] == saved["targets"]  # the memory target spans both files
    assert [m["source"] for m in merged["meta"]["runs"]] == paths
    assert (tmp_path / "all.md").read_text().startswith("| config | method |")
    with pytest.raises(ValueError, match="in both"):
        merge_results([timed, timed])


def test_decompose_prints_the_three_variants():
    from benchmarks.decompose import main as decompose_main

    text = decompose_main(["--model", "gru-8", "--T", "4", "--batch", "2", "--window", "2", "--rounds", "1"])
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split(" | ")[0][2:] for r in rows] == ["forward", "traces", "gradient"]
    assert rows[0].endswith("| 1 | 1 |")
    with pytest.raises(SystemExit, match="gru-N or lif-N"):
        decompose_main(["--model", "rnn-8"])
    with pytest.raises(ValueError, match="must divide"):
        decompose_main(["--model", "gru-8", "--T", "5", "--window", "2"])
