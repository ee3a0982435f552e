"""``braintrace train --resume DIR`` continues a run bit for bit.

The oracle is the uninterrupted run: a run of 4 steps against one of 2 steps
resumed to 4, for an online learner and for BPTT. Their histories (every
step's loss and accuracy) and their final weights must be identical.
"""

import json

import numpy as np
import pytest

pytest.importorskip("orbax.checkpoint")

import braintrace  # noqa: E402
from braintrace.cli import main  # noqa: E402

TINY = ["--quick", "--hidden", "8", "--batch-size", "16", "--no-progress", "--task", "evidence"]


def weights(out):
    import brainstate
    import jax

    from braintrace.cli.models import build_model
    from braintrace.cli.tasks import build_task

    cfg = json.loads((out / "checkpoint.json").read_text())["config"]
    task = build_task(cfg["task"], cfg["seed"], cfg["quick"])
    model = build_model(cfg["model"], task.n_in, cfg["hidden"], task.n_out, cfg["seed"])
    brainstate.nn.init_all_states(model, batch_size=cfg["batch_size"])
    extra = braintrace.checkpoint.restore(out / "checkpoint", model)
    return [np.asarray(x) for x in jax.tree.leaves({k: v.value for k, v in model.states().items()})], extra


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["es_d_rtrl", "bptt"])
def test_resume_continues_bit_identically(tmp_path, algorithm):
    straight, part = tmp_path / "straight", tmp_path / "part"
    common = [*TINY, "--algorithm", algorithm, "--checkpoint-every", "2"]
    assert main(["train", *common, "--steps", "4", "--out", str(straight)]) == 0
    assert main(["train", *common, "--steps", "2", "--out", str(part)]) == 0
    assert json.loads((part / "checkpoint.json").read_text())["step"] == 2
    assert main(["train", "--resume", str(part), "--steps", "4", "--no-progress"]) == 0
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((part / "metrics.json").read_text())
    assert a["history"] == b["history"] and a["test_accuracy"] == b["test_accuracy"]
    assert len(b["history"]["loss"]) == 4
    wa, ea = weights(straight)
    wb, eb = weights(part)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    assert int(ea["step"]) == int(eb["step"]) == 4


def test_resume_errors(tmp_path, capsys):
    assert main(["train", *TINY, "--steps", "1", "--resume", str(tmp_path)]) == 1
    assert "no checkpoint.json there" in capsys.readouterr().err
