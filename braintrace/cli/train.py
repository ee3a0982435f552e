"""``braintrace train``: train a recurrent network online and plot the learning curves.

With no arguments, a recurrent LIF network learns spike-encoded handwritten
digits online with ES_D_RTRL. Every sequence runs inside one jitted scan
(braintrace.online_gradients), followed by an optax Adam step. The command
prints the test accuracy and writes metrics.json and learning_curves.png into
the --out folder.

The learners and their one-line help come from
:mod:`braintrace.algorithms.catalog` (a learner added there is offered by
``--algorithm``); :data:`ALGORITHMS` holds only the keyword arguments this
command gives them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import textwrap
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..algorithms.catalog import LEARNERS, learner_class
from . import resume

__all__ = ["ALGORITHMS", "BPTT", "RESULT_FORMAT", "RESULT_PATTERN", "algorithm_names", "learners_help",
           "target_projections", "positive_int", "add_parser", "run", "train", "plot"]

#: The last line ``braintrace train`` prints (the README quotes it).
RESULT_FORMAT = "test accuracy: {accuracy:.3f} (chance {chance:.3f})"
#: A regular expression matching :data:`RESULT_FORMAT`'s lines.
RESULT_PATTERN = r"test accuracy: (?P<accuracy>\d\.\d{3}) \(chance (?P<chance>\d\.\d{3})\)"

#: ``--algorithm bptt``: :func:`braintrace.bptt_gradients`, for comparison (not a learner).
BPTT = "bptt"

#: The keyword arguments ``--algorithm NAME`` gives its learner, where it gives any (the leaks and
#: decays match the models' LIF decay ``exp(-1/10)`` and read-out decay 0.8). ``osttp`` also gets
#: one fixed random target projection per hidden group (see :func:`target_projections`).
ALGORITHMS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "es_d_rtrl": MappingProxyType({"decay_or_rank": 0.9}),
    "eprop": MappingProxyType({"feedback": "symmetric", "kappa_filter_decay": 0.8}),
    "ostl_ff": MappingProxyType({"decay_or_rank": 0.9}),
    "ottt": MappingProxyType({"mode": "A", "leak": 0.9}),
    "otpe": MappingProxyType({"mode": "full", "leak": 0.9}),
})
OSTTP = "osttp"

MODEL_CHOICES = ("lif", "alif", "gru")
TASK_CHOICES = ("digits", "copying", "evidence", "dms")
# default sizes per task: (hidden, epochs, batch, lr); --quick shrinks them
DEFAULTS = MappingProxyType({
    "digits": (128, 12, 64, 5e-3),
    "copying": (64, 20, 32, 1e-2),
    "evidence": (64, 20, 32, 5e-3),
    "dms": (64, 20, 32, 5e-3),
})
SEED_LIMIT = 2**32  # numpy's RandomState takes seeds in [0, 2**32)


def algorithm_names() -> tuple[str, ...]:
    """The choices of ``--algorithm``: the catalog's learners, then ``'bptt'``.

    Examples
    --------
    >>> from braintrace.cli.train import algorithm_names
    >>> algorithm_names()[:2], algorithm_names()[-1]
    (('es_d_rtrl', 'd_rtrl'), 'bptt')
    """
    return (*(spec.name for spec in LEARNERS), BPTT)


def _kwargs_text(name: str) -> str:
    kwargs = ALGORITHMS.get(name, {})
    if name == OSTTP:
        return " (a fixed random target projection per hidden layer)"
    return " (" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")" if kwargs else ""


def learners_help() -> str:
    """The ``--algorithm`` choices, one line each, for the epilog of ``braintrace train --help``.

    Examples
    --------
    >>> from braintrace.cli.train import learners_help
    >>> learners_help().splitlines()[:2]
    ['learners (--algorithm):', '  es_d_rtrl  factored input/output traces, O(B(I+O)S) memory']
    """
    rows = [(spec.name, spec.help + _kwargs_text(spec.name)) for spec in LEARNERS]
    rows.append((BPTT, "backpropagation through time, for comparison (memory grows with T)"))
    width = max(len(name) for name, _ in rows)
    indent = " " * (width + 4)
    lines = [textwrap.fill(f"  {name:<{width}}  {text}", 79, subsequent_indent=indent) for name, text in rows]
    return "learners (--algorithm):\n" + "\n".join(lines)


def positive_int(value: str) -> int:
    """An argparse type: a positive integer.

    Examples
    --------
    >>> from braintrace.cli.train import positive_int
    >>> positive_int("3")
    3
    """
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = 0.0
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return x


def _seed(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_LIMIT - 1}, got {value}")
    return n


def _per_task(index: int, fmt: str = "{}") -> str:
    return ", ".join(f"{task} {fmt.format(values[index])}" for task, values in DEFAULTS.items())


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a network online and plot its learning curves",
        description=__doc__.split("\n\n")[1],
        epilog=learners_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--algorithm", choices=algorithm_names(), default="es_d_rtrl", metavar="NAME",
                   help="the learner, one of the list below (default: %(default)s)")
    p.add_argument("--model", choices=MODEL_CHOICES, default="lif",
                   help="recurrent LIF or ALIF network, or GRU (default: %(default)s)")
    p.add_argument("--task", choices=TASK_CHOICES, default="digits",
                   help="spike-encoded handwritten digits, the copying task, evidence accumulation, or delayed "
                        "match-to-sample (default: %(default)s)")
    p.add_argument("--hidden", type=positive_int, metavar="N",
                   help=f"hidden units (default per task: {_per_task(0)})")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--epochs", type=positive_int, metavar="N",
                       help=f"passes over the training set (default per task: {_per_task(1)})")
    group.add_argument("--steps", type=positive_int, metavar="N", help="Adam steps in total, instead of --epochs")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help=f"sequences per Adam step (default per task: {_per_task(2)})")
    p.add_argument("--lr", type=_positive_float,
                   help=f"Adam learning rate (default per task: {_per_task(3, '{:g}')})")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the data, the weights and the spikes; the same seed gives the same numbers "
                        "(default: %(default)s)")
    p.add_argument("--encoding", choices=("bernoulli", "latency"), default="bernoulli",
                   help="digits only: spike trains with a rate, or one spike per pixel at a latency "
                        "(default: %(default)s)")
    p.add_argument("--out", default="braintrace-train", metavar="FOLDER",
                   help="folder for metrics.json and learning_curves.png, created if missing "
                        "(default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="reduced size (a few seconds of training)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, one line per epoch")
    resume.add_arguments(p)
    p.set_defaults(run=run)
    return p


def _rss_mb() -> float:
    """Resident memory of this process in MiB (peak where the current value is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class _Progress:
    """A rich progress bar (loss, accuracy, steps/s, RSS), or plain lines without rich or with --no-progress."""

    def __init__(self, total: int, plain: bool) -> None:
        self.total, self.bar = total, None
        if not plain:
            try:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:
                pass
            else:
                self.bar = Progress(
                    TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"),
                )
                self.task = self.bar.add_task("train", total=total, info="compiling ...")

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def step(self, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=info)

    def log(self, line: str) -> None:
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
        else:
            print(line, flush=True)


def _config(args: argparse.Namespace) -> dict:
    hidden, epochs, batch, lr = DEFAULTS[args.task]
    if args.quick:
        hidden, epochs = min(hidden, 32), 2
    return dict(
        task=args.task, model=args.model, algorithm=args.algorithm, encoding=args.encoding,
        hidden=args.hidden or hidden, batch_size=args.batch_size or batch, lr=args.lr or lr,
        epochs=None if args.steps else (args.epochs or epochs), steps=args.steps, seed=args.seed,
        quick=bool(args.quick), algorithm_kwargs=dict(ALGORITHMS.get(args.algorithm, {})),
    )


def target_projections(model: Any, example: Any, n_target: int, seed: int) -> list:
    """OSTTP's ``B_list`` for ``model``: one :class:`braintrace.FixedRandomFeedback` per hidden group
    that learns online and is not an output group, in graph order, drawn from ``seed``.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model, its states initialised.
    example : array_like
        An input of one time step.
    n_target : int
        The size of a target (the number of classes).
    seed : int
        Seed of the matrices (group ``g`` draws from ``seed + g``).

    Returns
    -------
    list of FixedRandomFeedback
        Matrices of shape ``(n_target, n_layer)``.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> from braintrace.cli.models import SpikingRNN
    >>> from braintrace.cli.train import target_projections
    >>> model = SpikingRNN(3, 4, 2)  # a LIF layer (learns from the target) and a leaky read-out
    >>> _ = brainstate.nn.init_all_states(model)
    >>> [b.matrix.shape for b in target_projections(model, jnp.zeros(3), n_target=2, seed=0)]
    [(2, 4)]
    """
    import braintrace
    from braintrace.algorithms.feedback import hidden_layer_groups, layer_size, output_batch_shape

    graph = braintrace.compile_etrace_graph(model, example)
    online = hidden_layer_groups(graph)
    batch, _ = output_batch_shape(graph, "OSTTP")
    return [
        braintrace.FixedRandomFeedback(n_target, layer_size(graph.hidden_groups[gi], batch, "OSTTP"), key=seed + gi)
        for gi in online
    ]


def _target_gradients(learner: Any, loss_fn: Any, n_target: int, batch_size: int) -> Any:
    """``grad_fn(x, target)`` for a learner called as ``learner(x_t, y_target_t)`` (OSTTP): the summed
    online gradients of a sequence in one scan, as :func:`braintrace.online_gradients` gives them for
    the other learners, with the one-hot label of every masked step as the projected target."""
    import brainstate
    import jax
    import jax.numpy as jnp

    model = learner.model
    params = model.states(brainstate.ParamState)

    def grad_fn(xs: Any, target: Any) -> Any:
        labels, weight = target
        y_star = jax.nn.one_hot(labels, n_target) * (weight > 0)[..., None]
        brainstate.nn.reset_all_states(model, batch_size=batch_size)
        learner.reset_state(batch_size)

        def step(carry, inputs):
            acc, total = carry
            x, y, y_t = inputs
            g, value = brainstate.transform.grad(lambda: loss_fn(learner(x, y_t), y), params, return_value=True)()
            return (jax.tree.map(jnp.add, acc, g), total + value), None

        zeros = jax.tree.map(jnp.zeros_like, {k: v.value for k, v in params.items()})
        (grads, total), _ = brainstate.transform.scan(step, (zeros, jnp.zeros(())), (xs, target, y_star))
        return grads, total

    return grad_fn


def _learner_and_grad_fn(cfg: dict, model: Any, task: Any, loss_fn: Any) -> Any:
    import jax.numpy as jnp

    import braintrace

    from . import CLIError

    name, B = cfg["algorithm"], cfg["batch_size"]
    if name == BPTT:
        return lambda x, y: braintrace.bptt_gradients(model, x, y, loss_fn, batch_size=B)
    cls, kwargs = learner_class(name), dict(ALGORITHMS.get(name, {}))
    example = jnp.zeros((B, task.n_in))
    if name == OSTTP:
        kwargs["B_list"] = target_projections(model, example, task.n_out, cfg["seed"])
    try:
        learner = cls(model, **kwargs)
    except (TypeError, ValueError) as err:
        shown = ", ".join(f"{k}={v!r}" for k, v in ALGORITHMS.get(name, {}).items())
        raise CLIError(f"--algorithm {name}: braintrace.{cls.__name__}(model, {shown}) failed: {err}") from err
    learner.compile_graph(example)
    if name == OSTTP:
        return _target_gradients(learner, loss_fn, task.n_out, B)
    return lambda x, y: braintrace.online_gradients(learner, x, y, loss_fn, batch_size=B)


class _Steps:
    """The compiled pieces of a run: the Adam training step, the prediction of a batch, and scoring."""

    def __init__(self, cfg: dict, model: Any, task: Any, B: int) -> None:
        import warnings

        import brainstate
        import jax.numpy as jnp
        import optax

        self.task, self.B = task, B
        params = model.states(brainstate.ParamState)

        def loss_fn(logits: Any, target: Any) -> Any:
            labels, weight = target  # weight: mask / number of masked steps in the batch
            return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels) * weight)

        with warnings.catch_warnings():  # the compiler's notes are what `braintrace graph` is for
            warnings.simplefilter("ignore", UserWarning)
            grad_fn = _learner_and_grad_fn(cfg, model, task, loss_fn)
        optimizer = optax.adam(cfg["lr"])
        self.opt_state = optimizer.init({k: v.value for k, v in params.items()})

        @brainstate.transform.jit
        def train_step(x, labels, mask, opt_state):
            weight = mask / jnp.maximum(jnp.sum(mask), 1.0)
            grads, loss = grad_fn(x, (labels, weight))
            values = {k: v.value for k, v in params.items()}
            updates, opt_state = optimizer.update(grads, opt_state, values)
            for k, v in optax.apply_updates(values, updates).items():
                params[k].value = v
            return loss, opt_state

        @brainstate.transform.jit
        def predict(x):
            brainstate.nn.reset_all_states(model, batch_size=B)
            return brainstate.transform.for_loop(model, x)  # (T, B, n_out)

        self.train_step, self.predict = train_step, predict

    def correct(self, logits: Any, labels: Any, mask: Any) -> tuple[float, float]:
        """(number correct, number of answers); arrays batch-major (N, T, ...)."""
        if self.task.per_step:
            hit = (logits.argmax(-1) == labels) * mask
            return float(hit.sum()), float(mask.sum())
        summed = (logits * mask[..., None]).sum(1)
        return float((summed.argmax(-1) == labels[:, -1]).sum()), float(len(labels))

    def evaluate(self, data: Any) -> float:
        """Accuracy on ``data``, in batches of the compiled size (the last one padded)."""
        import jax.numpy as jnp
        import numpy as np

        B, hits, total = self.B, 0.0, 0.0
        for i in range(0, len(data), B):
            sl = slice(i, i + B)
            x, n = data.x[sl], data.x[sl].shape[0]
            if n < B:  # pad: every call has the compiled batch size
                x = np.concatenate([x, np.zeros((B - n,) + x.shape[1:], x.dtype)])
            logits = np.asarray(self.predict(jnp.asarray(x.transpose(1, 0, 2)))).transpose(1, 0, 2)[:n]
            h, t = self.correct(logits, data.labels[sl], data.mask[sl])
            hits, total = hits + h, total + t
        return hits / total


def _check_finite(loss: float, step: int, total: int, epoch: int, lr: float) -> None:
    from . import CLIError

    if not math.isfinite(loss):
        raise CLIError(
            f"the training loss is {loss} at Adam step {step + 1} of {total} (epoch {epoch + 1}); "
            f"training stopped, no metrics written. Lower --lr (now {lr:g}) or change the seed."
        )


def train(cfg: dict, progress_plain: bool = False, log: Any = print, checkpoints: Any = None) -> dict:
    """Train as configured by ``cfg`` (see :func:`_config`) and return the metrics."""
    import brainstate
    import jax
    import jax.numpy as jnp
    import numpy as np

    from .models import build_model
    from .tasks import build_task

    t_start = time.perf_counter()
    extra = {"encoding": cfg["encoding"]} if cfg["task"] == "digits" else {}
    task = build_task(cfg["task"], cfg["seed"], cfg["quick"], **extra)
    B = cfg["batch_size"]
    model = build_model(cfg["model"], task.n_in, cfg["hidden"], task.n_out, cfg["seed"])
    brainstate.nn.init_all_states(model, batch_size=B)
    run = _Steps(cfg, model, task, B)

    rng = np.random.RandomState(cfg["seed"])
    per_epoch = max(len(task.train(np.random.RandomState(0))) // B, 1)
    total = cfg["steps"] or cfg["epochs"] * per_epoch
    n_epochs = -(-total // per_epoch)
    log(f"task: {task.description} (chance accuracy {task.chance:.2f})")
    log(f"model: {cfg['model']} ({cfg['hidden']} hidden), algorithm: {cfg['algorithm']}, batch {B}, "
        f"{total} Adam steps (lr {cfg['lr']:g}), seed {cfg['seed']}")
    hist: dict[str, list] = {"step": [], "loss": [], "train_acc": [], "epoch_step": [], "test_acc": []}
    t_train, compile_s = 0.0, None
    # a resumed run: the step, the epoch, its batches already taken (the data drawn again from rng)
    step, first_epoch, done, hist, opt_state = resume.start(checkpoints, model, run.opt_state, rng, hist, log)
    with _Progress(total, progress_plain) as bar:
        for epoch in range(first_epoch, n_epochs):
            epoch_rng = rng.get_state()
            data = task.train(rng)
            order = rng.permutation(len(data))
            for b in range(done if epoch == first_epoch else 0, per_epoch):
                if step >= total:
                    break
                idx = order[b * B : (b + 1) * B]
                x = jnp.asarray(data.x[idx].transpose(1, 0, 2))
                labels, mask = data.labels[idx], data.mask[idx]
                t0 = time.perf_counter()
                loss, opt_state = run.train_step(x, jnp.asarray(labels.T), jnp.asarray(mask.T), opt_state)
                loss = float(loss)
                dt = time.perf_counter() - t0
                _check_finite(loss, step, total, epoch, cfg["lr"])
                compile_s, t_train = (dt, t_train) if compile_s is None else (compile_s, t_train + dt)
                step += 1
                hits, count = run.correct(np.asarray(run.predict(x)).transpose(1, 0, 2), labels, mask)
                hist["step"].append(step)
                hist["loss"].append(loss)
                hist["train_acc"].append(hits / count)
                if checkpoints is not None and checkpoints.due(step, total):
                    checkpoints.save(model, opt_state, cfg, resume.Position(step, epoch, b + 1, epoch_rng, hist))
                rate = (step - 1) / t_train if t_train > 0 else 0.0
                bar.step(f"loss {loss:.3f}  acc {np.mean(hist['train_acc'][-per_epoch:]):.2f}  "
                         f"{rate:.1f} Adam steps/s  RSS {_rss_mb():.0f} MiB")
            test_acc = run.evaluate(task.test)
            hist["epoch_step"].append(step)
            hist["test_acc"].append(test_acc)
            bar.log(f"epoch {epoch + 1}/{n_epochs}: loss {np.mean(hist['loss'][-per_epoch:]):.3f}, "
                    f"train acc {np.mean(hist['train_acc'][-per_epoch:]):.3f}, test acc {test_acc:.3f}")
    return dict(
        config=cfg, task=task.description, chance=task.chance, history=hist,
        test_accuracy=hist["test_acc"][-1], seconds=time.perf_counter() - t_start, compile_seconds=compile_s,
        steps_per_second=(step - 1) / t_train if t_train > 0 else None, peak_rss_mib=_peak_rss_mb(),
        jax_version=jax.__version__,
    )


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def plot(metrics: dict, path: str) -> bool:
    """Write the learning curves (loss; train and test accuracy) as a PNG; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    import numpy as np

    h, cfg = metrics["history"], metrics["config"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    steps, loss = np.asarray(h["step"]), np.asarray(h["loss"])
    k = max(1, len(loss) // 20)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    ax1.plot(steps, loss, color="0.8", lw=0.8, label="per step")
    ax1.plot(steps[k - 1 :], smooth, color="C0", label=f"mean of {k}")
    ax1.set(xlabel="optimizer step", ylabel="cross-entropy", title="training loss")
    ax1.legend(frameon=False)
    acc = np.asarray(h["train_acc"])
    ax2.plot(steps[k - 1 :], np.convolve(acc, np.ones(k) / k, mode="valid"), color="C0", label="train (batch)")
    ax2.plot(h["epoch_step"], h["test_acc"], "o-", color="C1", label="test")
    ax2.axhline(metrics["chance"], color="0.5", ls="--", lw=0.8, label="chance")
    ax2.set(xlabel="optimizer step", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    ax2.legend(frameon=False, loc="lower right")
    fig.suptitle(f"{cfg['task']}: {cfg['model']} + {cfg['algorithm']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def run(args: argparse.Namespace) -> int:
    cfg, checkpoints, out = resume.resolve(args, _config(args), default_out="braintrace-train")
    from .tasks import TaskUnavailable

    from . import CLIError

    try:  # before training: a run must not be lost to an --out it cannot write
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        what = "is a file, not a folder" if os.path.isfile(out) else f"cannot be created ({err.strerror})"
        raise CLIError(f"--out {out} {what}; give a folder for metrics.json and learning_curves.png.") from err
    try:
        metrics = train(cfg, progress_plain=args.no_progress, checkpoints=checkpoints)
    except TaskUnavailable as err:
        raise CLIError(str(err)) from err
    json_path = os.path.join(out, "metrics.json")
    with open(json_path, "w") as f:
        json.dump(metrics, f, indent=1)
    png_path = os.path.join(out, "learning_curves.png")
    if plot(metrics, png_path):
        print(f"wrote {json_path} and {png_path}")
    else:
        print(f"wrote {json_path}; no PNG: matplotlib is not installed (pip install matplotlib)")
    rate = metrics["steps_per_second"]
    print(f"{len(metrics['history']['step'])} Adam steps in {metrics['seconds']:.0f} s, compiling included "
          f"({'%.1f Adam steps/s once compiled, ' % rate if rate else ''}peak RSS {metrics['peak_rss_mib']:.0f} MiB)")
    print(RESULT_FORMAT.format(accuracy=metrics["test_accuracy"], chance=metrics["chance"]))
    return 0
