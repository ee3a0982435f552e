"""The ``braintrace`` command: train end to end, argument errors, graph, bench, and the README's number."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import re
import shutil
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
    # the rate says what it counts: optimizer steps, once compiled
    assert re.search(r"^\d+ Adam steps in \d+ s, compiling included \([\d.]+ Adam steps/s once compiled, ",
                     proc.stdout, re.M), proc.stdout
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


@functools.lru_cache
def _help(*argv: str) -> str:
    """What ``braintrace ARGV --help`` prints (once per process: bench's runs a subprocess)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return out.getvalue()


def _entries(text: str) -> dict[str, str]:
    """``{invocation: help}`` of every entry of every section (``options:``, ``learners ...:``) of a help text."""
    entries: dict[str, str] = {}
    current, in_section = None, False
    for line in text.splitlines():
        if not line.strip():
            current, in_section = None, False
        elif not line.startswith(" "):
            in_section = line.endswith(":")
        elif in_section and re.match(r"^  \S", line):
            invocation, _, rest = line.strip().partition("  ")
            current = invocation
            entries[current] = rest.strip()
        elif in_section and current is not None:
            entries[current] = (entries[current] + " " + line.strip()).strip()
    return entries


@pytest.mark.parametrize("argv", [[], ["train"], ["graph"], ["bench"]])
def test_help_is_plain_text_and_every_option_has_help(argv):
    text = _help(*argv)
    markup = re.findall(r"`|:(?:func|class|mod|data|meth|attr):|^\s*\.\. \w+::", text, re.M)
    assert not markup, f"reStructuredText {markup} in `braintrace {' '.join(argv)} --help`"
    entries = _entries(text)
    assert entries, text
    for invocation, help_text in entries.items():
        assert help_text, f"`{invocation}` has no help in `braintrace {' '.join(argv)} --help`"
        assert help_text.count("(default") <= 1, f"`{invocation}`: {help_text}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--hidden", "-3"], "--hidden: must be a positive integer"),
        (["train", "--epochs", "2", "--steps", "3"], "not allowed with argument"),
        (["train", "--model", "lstm"], "invalid choice: 'lstm'"),
        (["graph"], "the following arguments are required: MODULE:FACTORY"),
        (["graph", "x:y", "--input-shape", "3,a"], "expected positive integers"),
        (["train", "--seed", "-1"], "argument --seed: must be an integer from 0 to 4294967295, got -1"),
        (["train", "--seed", str(2**32)], "argument --seed: must be an integer from 0 to"),
        (["graph", "x:y", "--batch-size", "0"], "argument --batch-size: must be a positive integer"),
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


@pytest.mark.slow
def test_same_seed_same_numbers(tmp_path):
    runs = []
    for name in ("a", "b"):
        assert main(["train", *TINY, "--seed", "3", "--out", str(tmp_path / name)]) == 0
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert runs[0]["history"] == runs[1]["history"]
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]


def test_algorithm_offers_every_learner_of_the_catalog():
    from braintrace.algorithms.catalog import learner_names
    from braintrace.cli import build_parser
    from braintrace.cli.train import ALGORITHMS, algorithm_names, learners_help

    assert algorithm_names() == (*learner_names(), "bptt")
    assert set(ALGORITHMS) <= set(learner_names())  # the CLI's keyword arguments name catalog learners
    listed = learners_help()
    for name in algorithm_names():
        assert build_parser().parse_args(["train", "--algorithm", name]).algorithm == name
        assert re.search(rf"^  {name} +\S", listed, re.M), f"{name} has no line in the --help epilog"


@pytest.mark.slow
def test_osttp_learns_from_a_projected_target():
    """--algorithm osttp: one fixed random projection per hidden layer (not the read-out), and the
    hidden weights get a non-zero gradient from the projected label (a zero target would give zero)."""
    import brainstate
    import jax.numpy as jnp
    import numpy as np

    from braintrace.cli.models import build_model
    from braintrace.cli.tasks import build_task
    from braintrace.cli.train import _learner_and_grad_fn, target_projections

    task = build_task("digits", 0, True)
    B, hidden = 4, 8
    model = build_model("alif", task.n_in, hidden, task.n_out, 0)
    brainstate.nn.init_all_states(model, batch_size=B)
    (proj,) = target_projections(model, jnp.zeros((B, task.n_in)), task.n_out, 0)
    assert proj.matrix.shape == (task.n_out, hidden * 2)  # ALIF: (v, a) per neuron; none for the read-out
    cfg = dict(algorithm="osttp", batch_size=B, seed=0)
    loss = lambda logits, target: jnp.sum(logits * target[1][..., None])  # noqa: E731
    grad_fn = _learner_and_grad_fn(cfg, model, task, loss)
    data = task.train(np.random.RandomState(0))
    x = jnp.asarray(data.x[:B].transpose(1, 0, 2))
    labels, mask = jnp.asarray(data.labels[:B].T), jnp.asarray(data.mask[:B].T)
    grads, _ = grad_fn(x, (labels, mask))
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads[("inp", "weight")])) > 0


def test_out_naming_a_file_fails_before_training(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert main(["train", *TINY, "--out", str(taken)]) == 1
    out, err = capsys.readouterr()
    assert err == f"braintrace train: error: --out {taken} is a file, not a folder; give a folder for " \
                  "metrics.json and learning_curves.png.\n"
    assert "task:" not in out  # nothing trained
    assert taken.read_text() == "not a folder"


def test_a_non_finite_loss_stops_training_at_its_step(tmp_path, capsys):
    # lr = inf: the first step's loss is finite, the update makes the weights inf, the second loss nan
    assert main(["train", *TINY, "--lr", "inf", "--out", str(tmp_path / "run")]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("braintrace train: error: the training loss is nan at Adam step 2 of 2 (epoch 1)")
    assert err.count("\n") == 1 and "--lr" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, model, algorithm",
    [("copying", "gru", "d_rtrl"), ("evidence", "alif", "es_d_rtrl"), ("dms", "lif", "bptt"),
     ("digits", "lif", "osttp")],
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


README_RNN = '''
import brainstate, jax.numpy as jnp, braintrace


class RNN(brainstate.nn.Module):
    def __init__(self, n_in, n_rec, n_out):
        super().__init__()
        self.w_in = brainstate.ParamState(jnp.ones((n_in, n_rec)) * 0.1)
        self.w_rec = brainstate.ParamState(jnp.ones((n_rec, n_rec)) * 0.1)
        self.w_out = brainstate.ParamState(jnp.ones((n_rec, n_out)) * 0.1)
        self.h = brainstate.HiddenState(jnp.zeros(n_rec))

    def update(self, x):
        rec = braintrace.matmul(self.h.value, self.w_rec.value)
        self.h.value = jnp.tanh(x @ self.w_in.value + rec)
        return self.h.value @ self.w_out.value


def make():
    return RNN(3, 4, 2)
'''


def test_graph_dot_connects_plain_weights_and_the_output_and_has_a_legend(tmp_path, capsys):
    (tmp_path / "rnn.py").write_text(README_RNN)
    (tmp_path / "gru.py").write_text(SEEDS_GRU)
    assert main(["graph", f"{tmp_path / 'rnn.py'}:make", "--input-shape", "3", "--dot", str(tmp_path / "r.dot")]) == 0
    assert main(["graph", f"{tmp_path / 'gru.py'}:make", "--input-shape", "10", "--dot", str(tmp_path / "g.dot")]) == 0
    rnn, gru = (tmp_path / "r.dot").read_text(), (tmp_path / "g.dot").read_text()
    assert '"w:w_rec" -> "h:h" [style=solid' in rnn
    assert '"w:w_in" -> "h:h" [style=dotted' in rnn  # x @ w_in feeds h through a plain op
    assert '"w:w_out" -> "output" [style=dotted' in rnn  # h @ w_out is the output
    assert '"h:h" -> "output"' in rnn and '"h:rnn.h" -> "output"' in gru
    # a two-line edge label is DOT's line break, not a literal backslash-n
    assert 'label="etp_mv\\nweight to weight"' in gru and "\\\\n" not in gru
    for text in (rnn, gru):
        assert "subgraph cluster_legend" in text and "weight learned online (eligibility trace)" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graph_png_renders(tmp_path, capsys):
    (tmp_path / "rnn.py").write_text(README_RNN)
    png = tmp_path / "g.png"
    assert main(["graph", f"{tmp_path / 'rnn.py'}:make", "--input-shape", "3", "--png", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


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
        ("net.py:make", ["--input-shape", "7"],
         "GRUNet cannot take an input of shape (7,) (--input-shape): GRUCell(in_size=10, out_size=64): expected "
         "input with last axis 10, got shape (7,). Give the shape of one time step"),
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
    assert err.startswith("braintrace graph: error: ") and "Traceback" not in err and err.count("\n") == 1
    if message.startswith("braintrace.errors"):
        assert "cond" in err
    else:
        assert message in err


# ------------------------------------------------------------------ bench


def test_bench_runs_the_checkouts_benchmarks_in_a_subprocess(tmp_path, capfd):
    (tmp_path / "braintrace").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "run.py").write_text(
        "import os, sys\nprint('ARGV', sys.argv[1:], 'FROM', os.getcwd())\nsys.exit(3)\n")
    path_before = list(sys.path)
    status = bench.run(argparse.Namespace(quick=True, rest=["--out", "r.json"]), candidates=[tmp_path])
    assert status == 3  # its exit status is the command's
    assert sys.path == path_before
    assert f"ARGV ['--quick', '--out', 'r.json'] FROM {tmp_path}" in capfd.readouterr().out


def test_bench_help_lists_the_options_of_the_benchmarks():
    if not (REPO / "benchmarks" / "run.py").is_file():
        pytest.skip("benchmarks/run.py is not in this checkout")
    out = _help("bench")
    assert out.startswith("usage: braintrace bench")
    listed = out.split("options of benchmarks/run.py", 1)[1]
    for option in ("--models", "--T", "--out", "--md", "--methods", "--batch", "--repeats", "--isolate"):
        assert f"  {option} " in listed


def test_bench_without_a_checkout_says_where_the_benchmarks_are(tmp_path, capsys):
    from braintrace.cli import CLIError

    with pytest.raises(CLIError, match="the benchmarks live in the source checkout"):
        bench.run(argparse.Namespace(quick=True, rest=[]), candidates=[tmp_path])


def test_bench_finds_this_checkout():
    if not (REPO / "benchmarks" / "run.py").is_file():
        pytest.skip("benchmarks/run.py is not in this checkout")
    assert bench.find_checkout([REPO]) == REPO
