"""``braintrace train --checkpoint-every N`` and ``--resume DIR``: checkpoints of a training run and its continuation.

A run started with ``--checkpoint-every N`` saves every ``N`` optimizer steps
and at its last step (needs ``pip install 'braintrace[checkpoint]'``):
``OUT/checkpoint/`` (:mod:`braintrace.checkpoint`: the
model's states, the optimizer state, the global random key, where the run
stands: step, epoch, batch and the data generator's state at the epoch's
start) and ``OUT/checkpoint.json`` (the configuration and the history so
far). ``braintrace train --resume OUT`` rebuilds the model and the data from
the saved configuration, restores the checkpoint and continues: the steps it
takes, their losses and the final weights are bit for bit those of the run
that was never interrupted. ``--steps``/``--epochs`` given with ``--resume``
set a new total; every other option comes from the checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

import numpy as np

__all__ = ["Position", "Checkpoints", "add_arguments", "saved_config", "resolve", "start"]

CHECKPOINT, RUN_JSON = "checkpoint", "checkpoint.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--resume DIR`` and ``--checkpoint-every N`` to ``braintrace train``."""
    parser.add_argument("--resume", metavar="DIR", help="continue the run whose --out was DIR, bit for bit "
                        "(options other than --steps/--epochs come from its checkpoint)")
    parser.add_argument("--checkpoint-every", type=_positive, default=None, metavar="N",
                        help="save a checkpoint every N optimizer steps and at the last one, for --resume")


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return int(value)


@dataclasses.dataclass
class Position:
    """Where a run stands after ``step`` optimizer steps.

    Attributes
    ----------
    step : int
        Optimizer steps taken.
    epoch, batch : int
        The epoch being run and the batches of it already taken.
    rng_state : tuple
        ``numpy.random.RandomState.get_state()`` at the start of ``epoch``
        (the epoch's data and order are drawn again from it).
    history : dict
        The metrics' history so far.
    """

    step: int
    epoch: int
    batch: int
    rng_state: Any
    history: dict


def saved_config(directory: str) -> dict:
    """The configuration of the run saved in ``directory``."""
    from . import CLIError

    path = os.path.join(directory, RUN_JSON)
    if not os.path.isfile(path):
        raise CLIError(f"--resume {directory}: no {RUN_JSON} there; give the --out folder of a braintrace train run.")
    with open(path) as f:
        return json.load(f)["config"]


class Checkpoints:
    """Saving and restoring one training run's checkpoints in its ``--out`` folder.

    Parameters
    ----------
    out : str
        The run's output folder.
    every : int or None
        Save every ``every`` optimizer steps and at the last one (``None``:
        never).
    resume : str, optional
        The folder to resume from.
    """

    def __init__(self, out: str, every: int | None = None, resume: str | None = None) -> None:
        self.out, self.every, self.resume = out, every, resume

    def due(self, step: int, total: int) -> bool:
        """Whether step ``step`` (1-based) of ``total`` is saved."""
        return self.every is not None and (step == total or step % self.every == 0)

    def save(self, model: Any, opt_state: Any, cfg: dict, at: Position) -> None:
        """Write the checkpoint of ``model`` and ``opt_state`` at position ``at`` (replacing the last one)."""
        import braintrace

        name, keys, pos, has_gauss, cached = at.rng_state
        os.makedirs(self.out, exist_ok=True)
        braintrace.checkpoint.save(
            os.path.join(self.out, CHECKPOINT), model, overwrite=True, opt_state=opt_state, step=at.step,
            rng_keys=np.asarray(keys, np.uint32),
        )
        run = dict(config=cfg, every=self.every, step=at.step, epoch=at.epoch, batch=at.batch, history=at.history,
                   rng=dict(name=name, pos=int(pos), has_gauss=int(has_gauss), cached=float(cached)))
        tmp = os.path.join(self.out, RUN_JSON + ".tmp")
        with open(tmp, "w") as f:
            json.dump(run, f)
        os.replace(tmp, os.path.join(self.out, RUN_JSON))

    def restore(self, model: Any, opt_state: Any) -> tuple[Any, Position]:
        """``(optimizer state, position)`` of the checkpoint in ``resume``; the model's states restored."""
        import braintrace

        from . import CLIError

        assert self.resume is not None
        with open(os.path.join(self.resume, RUN_JSON)) as f:
            run = json.load(f)
        extra = braintrace.checkpoint.restore(os.path.join(self.resume, CHECKPOINT), model, opt_state=opt_state)
        if int(extra["step"]) != run["step"]:
            raise CLIError(
                f"--resume {self.resume}: {CHECKPOINT}/ is at step {int(extra['step'])} but {RUN_JSON} at step "
                f"{run['step']} (a save was interrupted); the run cannot be continued exactly."
            )
        rng = run["rng"]
        state = (rng["name"], np.asarray(extra["rng_keys"], np.uint32), rng["pos"], rng["has_gauss"], rng["cached"])
        return extra["opt_state"], Position(run["step"], run["epoch"], run["batch"], state, run["history"])


def resolve(args: argparse.Namespace, cfg: dict, default_out: str) -> tuple[dict, Checkpoints, str]:
    """``(configuration, checkpoints, output folder)`` of ``braintrace train``'s arguments.

    Without ``--resume``: ``cfg`` as given. With it: the saved configuration,
    with ``--steps``/``--epochs`` as the new total if given; the output goes
    to the resumed folder unless ``--out`` names another.
    """
    if not args.resume:
        return cfg, Checkpoints(args.out, args.checkpoint_every), args.out
    saved = saved_config(args.resume)
    with open(os.path.join(args.resume, RUN_JSON)) as f:
        every = args.checkpoint_every or json.load(f)["every"]
    if args.steps:
        saved.update(steps=args.steps, epochs=None)
    elif args.epochs:
        saved.update(epochs=args.epochs, steps=None)
    out = args.resume if args.out == default_out else args.out
    return saved, Checkpoints(out, every, args.resume), out


def start(checkpoints: Checkpoints | None, model: Any, opt_state: Any, rng: np.random.RandomState, history: dict,
          log: Any) -> tuple[int, int, int, dict, Any]:
    """``(step, epoch, batches taken in it, history, optimizer state)`` a run starts from.

    A fresh run starts at zero; a resumed one restores ``model``, sets ``rng``
    to its state at the start of the saved epoch and says so through ``log``.
    """
    if checkpoints is None or not checkpoints.resume:
        return 0, 0, 0, history, opt_state
    opt_state, at = checkpoints.restore(model, opt_state)
    rng.set_state(at.rng_state)
    log(f"resumed {checkpoints.resume} at step {at.step}")
    return at.step, at.epoch, at.batch, at.history, opt_state
