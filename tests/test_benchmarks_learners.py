"""Smoke test of ``benchmarks/learners.py``: a tiny run has the JSON, table and figure it promises.

Timings and cosines are never checked beyond their type (they are measurements), except BPTT's
cosine with itself.
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import learners


@pytest.mark.slow  # about 30 s on 2 shared cores
def test_tiny_run(tmp_path):
    out, md, png = tmp_path / "l.json", tmp_path / "l.md", tmp_path / "l.png"
    argv = ["--learners", "rflo,es_d_rtrl,bptt", "--time-models", "gru-8", "--T", "4", "--repeats", "1",
            "--copy-models", "gru-8", "--copy-T", "12", "--sweep-T", "12", "--seeds", "1",
            "--out", str(out), "--md", str(md), "--plot", str(png)]
    returned = learners.main(argv)
    saved = json.loads(out.read_text())
    assert saved["meta"]["complete"] and saved["rows"] == json.loads(json.dumps(returned["rows"]))
    assert list(saved["rows"]) == ["rflo", "es_d_rtrl", "bptt", "forward"]
    for name in ("rflo", "es_d_rtrl", "bptt", "forward"):
        entry = saved["rows"][name]["time"]["GRU-8"]
        assert entry["time_per_step_s"] > 0 and len(entry["times_s"]) == 1, name
    assert saved["rows"]["rflo"]["memory"] == "O(B|θ|S)" and saved["rows"]["rflo"]["time"]["GRU-8"]["trace_bytes"] > 0
    assert saved["rows"]["bptt"]["cosine"]["GRU-8"]["all"] == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= saved["rows"]["rflo"]["cosine"]["GRU-8"]["hidden"] <= 1.0
    assert set(saved["sweep"]["es_d_rtrl"]) == {"12"}
    table = md.read_text()
    assert table.startswith("| learner | trace memory | ms/step GRU-8 |") and "`rflo`" in table
    assert png.stat().st_size > 1000


def test_options_and_copying_data():
    assert learners.learner_options("ottt", "lif")["leak"] == pytest.approx(0.951229, abs=1e-6)
    assert learners.learner_options("some_new_learner", "gru") == {}
    x, (labels, mask) = learners.copying_batch(14, 3, seed=0)
    assert x.shape == (14, 3, 5) and float(mask[:9].sum()) == 0.0 and float(mask[9:].sum()) == 15.0
    with pytest.raises(ValueError, match="shorter than twice"):
        learners.copying_batch(8, 3, seed=0)


def _run(names, time=None, cosine=None, sweep=None, **settings):
    meta = {"T": 100, "copy_T": 100, "sweep_model": "GRU-4", "sweep_T": [2, 4], "seeds": 3, "copy_batch": 16,
            "time_models": ["GRU-8"], "copy_models": ["GRU-4"], "learners": names, "argv": [], "started": "now",
            "measured": {"time": time is not None, "cosine": cosine is not None}, "options": {}, **settings}
    rows = {n: {"memory": "O(1)", "time": dict(time or {}), "cosine": dict(cosine or {})} for n in names}
    rows["forward"] = {"memory": "-", "time": {"GRU-8": {"time_per_step_s": 9.0}} if time else {}, "cosine": {}}
    return {"meta": meta, "rows": rows, "sweep": {n: dict(sweep) for n in names} if sweep else {}}


def test_merge_keeps_other_learners_and_forward():
    base = _run(["bptt"], time={"GRU-8": {"time_per_step_s": 1.0}}, cosine={"GRU-4": {"hidden": 1.0, "all": 1.0}},
                sweep={"2": {"hidden": 1.0, "all": 1.0}})
    new = _run(["uoro", "rtrl"], time={"GRU-8": "MemoryError: the dense influence has 2,100,000,000 entries, over"})
    merged = learners.merge_results(base, new)
    assert list(merged["rows"]) == ["rtrl", "uoro", "bptt", "forward"]  # catalog order
    assert merged["rows"]["forward"] == base["rows"]["forward"] and merged["rows"]["bptt"] == base["rows"]["bptt"]
    assert merged["rows"]["rtrl"]["cosine"] == {} and merged["rows"]["rtrl"]["runs"] == {"time": "time: uoro,rtrl"}
    assert merged["meta"]["runs"]["time: uoro,rtrl"]["forward_time"] == {"GRU-8": {"time_per_step_s": 9.0}}
    later = learners.merge_results(merged, _run(["rtrl"], cosine={"GRU-4": {"hidden": 0.5, "all": 0.6}},
                                                sweep={"4": {"hidden": 0.5, "all": 0.6}}))
    assert later["rows"]["rtrl"]["time"] == merged["rows"]["rtrl"]["time"]
    assert later["rows"]["rtrl"]["cosine"]["GRU-4"]["hidden"] == 0.5 and later["sweep"]["rtrl"] == {"4": {"hidden": 0.5, "all": 0.6}}
    assert "| `rtrl` | O(1) | — (influence 2.1e9 entries) | 0.500 (0.600) |" in learners.format_table(later)
    with pytest.raises(ValueError, match="copy_batch"):
        learners.merge_results(base, _run(["rtrl"], cosine={}, copy_batch=4))
    learners.merge_results(base, _run(["rtrl"], time={}, copy_batch=4))  # the copying settings only matter for cosines
