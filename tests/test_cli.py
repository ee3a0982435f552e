"""The ``braintrace`` command: train end to end, argument errors, graph, bench, and the README's number."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

from braintrace.cli import bench, main
from braintrace.cli.train import RESULT_FORMAT, RESULT_PATTERN

REPO = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--steps", "2", "--hidden", "8", "--batch-size", "16", "--no-progress"]


def _command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m braintrace.cli``."""
    script = Path(sys.executable).parent / ("braintrace.exe" if os.name == "nt" else "braintrace")
    return [str(script)] if script.exists() else [sys.executable, "-m", "braintrace.cli"]


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(_command() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _readout_line() -> str:
    """The line of the README's quick-start block that quotes `braintrace train`'s result."""
    text = (REPO / "README.md").read_text()
    assert "&& braintrace train" in text, "the README's main command is `braintrace train`"
    lines = [line.strip() for line in text.splitlines() if re.fullmatch(RESULT_PATTERN, line.strip())]
    assert len(lines) == 1, f"expected one README line matching {RESULT_PATTERN!r}, found {lines}"
    return lines[0]


def _readme_jax_version() -> str:
    """The jax version the README says its quoted numbers come from."""
    match = re.search(r"these come from jax (\d+\.\d+\.\d+)", (REPO / "README.md").read_text())
    assert match, "the README names the jax version of its quoted numbers"
    return match[1]


# ------------------------------------------------------------------ train


def test_train_end_to_end_through_the_console_script(tmp_path):
    out = tmp_path / "run"
    proc = _run(["train", "--quick", "--out", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    png = (out / "learning_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert metrics["config"]["task"] == "digits" and metrics["config"]["algorithm"] == "es_d_rtrl"
    assert metrics["config"]["model"] == "lif"
    assert len(metrics["history"]["loss"]) == len(metrics["history"]["step"]) > 0
    last = proc.stdout.strip().splitlines()[-1]
    assert last == RESULT_FORMAT.format(accuracy=metrics["test_accuracy"], chance=0.1)
    assert re.fullmatch(RESULT_PATTERN, last)
    # the README quotes a line of the same format
    assert re.fullmatch(RESULT_PATTERN, _readout_line())


def test_bad_option_gives_usage_and_exit_2(tmp_path):
    proc = _run(["train", "--algorithm", "sgd"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: braintrace train")
    assert "argument --algorithm: invalid choice: 'sgd'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--hidden", "-3"], "--hidden: must be a positive integer"),
        (["train", "--epochs", "2", "--steps", "3"], "not allowed with argument"),
        (["train", "--model", "lstm"], "invalid choice: 'lstm'"),
        (["graph"], "the following arguments are required: MODULE:FACTORY"),
        (["graph", "x:y", "--input-shape", "3,a"], "expected positive integers"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_argument_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_readme_quotes_a_clearly_better_than_chance_accuracy():
    accuracy = float(re.fullmatch(RESULT_PATTERN, _readout_line())["accuracy"])
    assert accuracy >= 0.5  # chance is 0.1


@pytest.mark.slow
def test_readme_number_is_what_the_default_command_prints(tmp_path):
    # `python -m` from the checkout: the code under test, also where the console script is another install's
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "braintrace.cli", "train", "--no-progress", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout.strip().splitlines()[-1]
    message = (
        f"`braintrace train` now prints {printed!r}; the README quotes {_readout_line()!r}. If a change of "
        "the learners moved the number, run `braintrace train` and put its output in the README."
    )
    if jax.__version__ == _readme_jax_version():
        assert printed == _readout_line(), message
    else:  # another jax rounds differently: the same run, to within a few test images
        got = float(re.fullmatch(RESULT_PATTERN, printed)["accuracy"])
        quoted = float(re.fullmatch(RESULT_PATTERN, _readout_line())["accuracy"])
        assert abs(got - quoted) <= 0.03, message


def test_same_seed_same_numbers(tmp_path):
    runs = []
    for name in ("a", "b"):
        assert main(["train", *TINY, "--seed", "3", "--out", str(tmp_path / name)]) == 0
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert runs[0]["history"] == runs[1]["history"]
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]


def test_a_learner_this_version_lacks_is_a_clean_error(tmp_path, monkeypatch, capsys):
    from braintrace.cli import train

    monkeypatch.setattr(train, "ALGORITHMS", train.ALGORITHMS + (train.Algorithm("nope", "NoSuchLearner"),))
    assert main(["train", *TINY, "--algorithm", "nope", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("braintrace train: error: --algorithm nope needs braintrace.NoSuchLearner")
    assert "es_d_rtrl" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "task, model, algorithm",
    [("copying", "gru", "d_rtrl"), ("evidence", "alif", "es_d_rtrl"), ("dms", "lif", "bptt")],
)
def test_tasks_models_and_algorithms(task, model, algorithm, tmp_path, capsys):
    argv = ["train", *TINY, "--task", task, "--model", model, "--algorithm", algorithm, "--out", str(tmp_path)]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["task"] == task and len(metrics["history"]["loss"]) == 2
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


# ------------------------------------------------------------------ graph

SEEDS_GRU = '''
import brainstate
import jax.numpy as jnp
import braintrace


class GRUNet(brainstate.nn.Module):
    def __init__(self, n_in, n_rec, n_out):
        super().__init__()
        self.rnn = braintrace.nn.GRUCell(n_in, n_rec)
        self.readout = braintrace.nn.Linear(n_rec, n_out)

    def update(self, x):
        return self.readout(self.rnn(x))


def make():
    return GRUNet(10, 64, 10)


def make_with_input():
    model = GRUNet(10, 16, 10)
    brainstate.nn.init_all_states(model, batch_size=4)
    return model, jnp.zeros((4, 10))
'''


def _sections(text: str) -> dict[str, list[str]]:
    sections, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = sections.setdefault(line[:-1], [])
        elif line.startswith("  ") and current is not None:
            current.append(line.strip())
    return sections


def test_graph_of_the_seeds_gru_network(tmp_path, capsys):
    (tmp_path / "seeds_gru.py").write_text(SEEDS_GRU)
    dot = tmp_path / "gru.dot"
    assert main(["graph", f"{tmp_path / 'seeds_gru.py'}:make", "--input-shape", "10", "--dot", str(dot)]) == 0
    out = capsys.readouterr().out
    sections = _sections(out)
    online = sections["Learned online (eligibility traces)"]
    excluded = sections["Not learned online (instantaneous gradient only)"]
    assert sorted(line.split()[0] for line in online) == ["rnn.Wh.weight", "rnn.Wz.weight"]
    assert all("rnn.h" in line for line in online)
    reasons = {line.split()[0]: line.split(None, 1)[1] for line in excluded}
    assert sorted(reasons) == ["readout.weight", "rnn.Wr.weight"]
    assert reasons["rnn.Wr.weight"].startswith("weight to weight:")
    assert reasons["readout.weight"].startswith("not connected to a hidden state:")
    text = dot.read_text()
    assert text.startswith('digraph "GRUNet" {') and text.rstrip().endswith("}")
    assert '"w:rnn.Wz.weight" -> "h:rnn.h" [style=solid' in text
    assert '"w:rnn.Wr.weight" -> "h:rnn.h" [style=dashed' in text
    assert '"w:readout.weight" -> "output" [style=dashed' in text


def test_graph_factory_from_a_module_with_its_own_input(tmp_path, monkeypatch, capsys):
    (tmp_path / "seeds_gru_mod.py").write_text(SEEDS_GRU)
    monkeypatch.chdir(tmp_path)
    assert main(["graph", "seeds_gru_mod:make_with_input"]) == 0
    out = capsys.readouterr().out
    assert "input shape (4, 10)" in out and "rnn.Wz.weight" in out


def test_graph_png_without_dot_is_a_clear_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "net.py").write_text(SEEDS_GRU)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["graph", f"{tmp_path / 'net.py'}:make", "--input-shape", "10", "--png", str(tmp_path / "g.png")]) == 1
    err = capsys.readouterr().err
    assert "Graphviz's `dot` program is not on PATH" in err and "Traceback" not in err
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


@pytest.mark.parametrize(
    "spec, extra, message",
    [
        ("no_colon", [], "is not MODULE:FACTORY"),
        ("missing_file.py:make", [], "no such file"),
        ("net.py:absent", [], "has no callable 'absent'"),
        ("net.py:make", [], "give --input-shape"),
        ("net.py:bad", ["--input-shape", "3"], "braintrace.errors.NotSupportedError"),
    ],
)
def test_graph_expected_errors_exit_1(spec, extra, message, tmp_path, monkeypatch, capsys):
    bad = textwrap.dedent('''
        import brainstate, jax, jax.numpy as jnp, braintrace

        class Bad(brainstate.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = brainstate.ParamState(jnp.ones((3, 3)))
                self.h = brainstate.HiddenState(jnp.zeros(3))

            def update(self, x):
                self.h.value = jax.lax.cond(jnp.sum(x) > 0,
                    lambda: jnp.tanh(braintrace.matmul(self.h.value, self.w.value) + x),
                    lambda: self.h.value)
                return self.h.value

        def bad():
            return Bad()
    ''')
    (tmp_path / "net.py").write_text(SEEDS_GRU + bad)
    monkeypatch.chdir(tmp_path)
    status = main(["graph", spec, *extra])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("braintrace graph: error: ") and "Traceback" not in err
    if message.startswith("braintrace.errors"):
        assert "cond" in err
    else:
        assert message in err


# ------------------------------------------------------------------ bench


def test_bench_calls_the_checkouts_run_main(tmp_path, capsys):
    (tmp_path / "braintrace").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "run.py").write_text("def main(argv=None):\n    print('ARGV', argv)\n    return {}\n")
    args = argparse.Namespace(quick=True, rest=["--out", "r.json"])
    saved = {m: mod for m, mod in sys.modules.items() if m == "benchmarks" or m.startswith("benchmarks.")}
    try:
        assert bench.run(args, candidates=[tmp_path]) == 0
    finally:  # give the real `benchmarks` modules back to the other tests of this process
        for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert "ARGV ['--quick', '--out', 'r.json']" in capsys.readouterr().out


def test_bench_without_a_checkout_says_where_the_benchmarks_are(tmp_path, capsys):
    from braintrace.cli import CLIError

    with pytest.raises(CLIError, match="the benchmarks live in the source checkout"):
        bench.run(argparse.Namespace(quick=True, rest=[]), candidates=[tmp_path])


def test_bench_finds_this_checkout():
    if not (REPO / "benchmarks" / "run.py").is_file():
        pytest.skip("benchmarks/run.py is not in this checkout")
    assert bench.find_checkout([REPO]) == REPO
