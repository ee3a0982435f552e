"""Smoke test of ``python -m benchmarks.tasks``: a tiny run writes a JSON, a table and a figure of the right shape.

Accuracies and timings are not checked (one epoch on 16 sequences measures nothing); what is checked is that
every learner that applies trains, that the records hold the costs the docs quote, and the plan and targets logic.
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import tasks
from benchmarks.task_report import summarise, targets
from benchmarks.task_suite import TASKS, get_task, learner_options


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("optax")
    pytest.importorskip("sktime")
    out = tmp_path_factory.mktemp("tasks")
    argv = ["--size", "tiny", "--tasks", "vowels,copying", "--learners", "bptt,es_d_rtrl,ottt", "--seeds", "0,1",
            "--isolate", "none", "--out", str(out / "t.json"), "--md", str(out / "t.md"), "--fig", str(out / "t.png")]
    returned = tasks.main(argv)
    return out, returned


@pytest.mark.slow
def test_tiny_run_writes_json_table_and_figure(tiny):
    out, returned = tiny
    saved = json.loads((out / "t.json").read_text())
    assert saved["meta"]["complete"] and saved["meta"]["options"]["size"] == "tiny"
    # OTTT needs one state per neuron: it applies to the LIF network of `vowels`, not to the GRU of `copying`
    pairs = [(r["task"], r["learner"], r["seed"]) for r in saved["runs"]]
    assert pairs == [(t, lrn, s) for t, lrns in (("vowels", ("bptt", "es_d_rtrl", "ottt")), ("copying", ("bptt",
                     "es_d_rtrl"))) for lrn in lrns for s in (0, 1)]
    for r in saved["runs"]:
        assert r["status"] == "ok", r.get("reason")
        assert r["epochs"] == len(r["curve"]["test"]) == len(r["epoch_s"]) == 1
        assert 0.0 <= r["final"] <= 1.0 and r["finite"]
        for key in ("temp_bytes", "argument_bytes", "compile_s", "lower_s", "rss_peak_mb"):
            assert r[key] >= 0, key
    rows = {(r["task"], r["learner"]): r for r in saved["summary"]}
    assert rows[("vowels", "es_d_rtrl")]["seeds"] == [0, 1] and "vs_bptt" in rows[("vowels", "es_d_rtrl")]
    table = (out / "t.md").read_text()
    assert "### Japanese vowels" in table and "| ottt |" in table and "### Targets" in table
    assert (out / "t.png").stat().st_size > 1000 or not _has_matplotlib()
    assert returned["runs"] == saved["runs"]


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_plan_keeps_the_learners_that_apply():
    assert ("vowels", "otpe") in tasks.plan("cpu", None, None)
    assert ("evidence", "ottt") not in tasks.plan("cpu", None, None)  # ALIF: two states per neuron
    assert all(t != "pixel_mnist" for t, _ in tasks.plan("cpu", None, None))  # full size only
    assert tasks.plan("quick", ["sunspots"], ["es_d_rtrl"]) == [("sunspots", "es_d_rtrl")]
    with pytest.raises(ValueError, match="no 'quick' size"):
        tasks.plan("quick", ["pixel_mnist"], None)


def test_every_learner_name_resolves_through_the_catalog():
    from braintrace.algorithms.catalog import learner_class

    for spec in TASKS:
        assert spec.learners[0] == "bptt"
        for name in spec.learners[1:]:
            learner_class(name)
            assert isinstance(learner_options(name, spec.model), dict)
    with pytest.raises(ValueError, match="valid names"):
        tasks.main(["--learners", "nope", "--size", "tiny"])
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")


def test_targets_compare_es_d_rtrl_with_bptt():
    def run(learner, seed, final):
        return {"task": "row_mnist", "learner": learner, "seed": seed, "status": "ok", "metric": "accuracy",
                "final": final, "curve": {"test": [final]}, "epoch_s": [1.0], "T": 28, "description": "d",
                "temp_bytes": 100 if learner == "bptt" else 10}

    summary = summarise([run("bptt", 0, 0.90), run("bptt", 1, 0.92), run("es_d_rtrl", 0, 0.885), run("es_d_rtrl", 1, 0.90)])
    es = next(r for r in summary if r["learner"] == "es_d_rtrl")
    assert es["vs_bptt"] == pytest.approx(-1.75) and es["temp_vs_bptt"] == pytest.approx(0.1)
    assert targets(summary) == [{"task": "row_mnist", "target": "ES_D_RTRL >= BPTT - 2 points",
                                 "points_vs_bptt": pytest.approx(-1.75), "passed": True}]


def test_braintrace_bench_tasks_runs_the_checkouts_tasks_script(tmp_path, capfd):
    import argparse

    from braintrace.cli import bench

    script = "import sys\nprint('{name}', sys.argv[1:])\n"
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "run.py").write_text(script.format(name="RUN"))
    (tmp_path / "benchmarks" / "tasks.py").write_text(script.format(name="TASKS"))
    (tmp_path / "braintrace").mkdir()
    args = argparse.Namespace(quick=True, tasks="vowels", rest=["--seeds", "0"])
    assert bench.run(args, candidates=[tmp_path]) == 0
    assert "TASKS ['--quick', '--tasks', 'vowels', '--seeds', '0']" in capfd.readouterr().out
    assert bench.run(argparse.Namespace(quick=False, tasks="all", rest=[]), candidates=[tmp_path]) == 0
    assert "TASKS []" in capfd.readouterr().out
    assert bench.run(argparse.Namespace(quick=True, tasks=None, rest=[]), candidates=[tmp_path]) == 0
    assert "RUN ['--quick']" in capfd.readouterr().out


def test_learner_options_from_the_command_line():
    assert tasks._overrides(["es_d_rtrl.decay_or_rank=0.5", "eprop.feedback=random"]) == {
        "es_d_rtrl": {"decay_or_rank": 0.5}, "eprop": {"feedback": "random"}}
    with pytest.raises(ValueError, match="NAME.KEY=VALUE"):
        tasks._overrides(["decay=0.5"])


def test_resume_keeps_the_finished_pairs(tmp_path):
    run = {"task": "sunspots", "learner": "bptt", "seed": 0, "status": "ok", "metric": "nmse", "final": 0.2,
           "curve": {"test": [0.3, 0.2]}, "epoch_s": [1.0, 1.0], "T": 64, "description": "d"}
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"meta": {"started": "then", "commands": ["first"]}, "runs": [run], "summary": []}))
    result = tasks.main(["--size", "quick", "--tasks", "sunspots", "--learners", "bptt", "--resume", "--out", str(out)])
    assert result["runs"] == [run] and result["meta"]["complete"]
    assert result["meta"]["commands"][0] == "first" and len(result["meta"]["commands"]) == 2


def test_merge_combines_result_files(tmp_path):
    def run(task, learner, seed, final):
        return {"task": task, "learner": learner, "seed": seed, "status": "ok", "metric": "accuracy", "final": final,
                "curve": {"test": [final]}, "epoch_s": [1.0], "T": 20, "description": "d"}

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"meta": {"commands": ["A"], "complete": False}, "runs": [run("copying", "bptt", 0, 0.5)]}))
    b.write_text(json.dumps({"meta": {"command": "B", "complete": True},
                             "runs": [run("copying", "bptt", 0, 0.6), run("dms", "bptt", 0, 0.7)]}))
    out = tmp_path / "m.json"
    result = tasks.main(["--merge", str(a), str(b), "--out", str(out), "--md", str(tmp_path / "m.md")])
    assert [r["final"] for r in result["runs"]] == [0.6, 0.7]
    assert result["meta"]["commands"] == ["A", "B"] and not result["meta"]["complete"]
    assert json.loads(out.read_text())["summary"][0]["mean"] == 0.6 and "### Delayed" in (tmp_path / "m.md").read_text()
