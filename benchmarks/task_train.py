"""Training one (task, learner, seed) of ``python -m benchmarks.tasks``, with its costs.

Protocol (:func:`train_run`), public API only:

1. load the task's data (:mod:`braintrace.datasets`), build the model
   (:func:`braintrace.cli.models.build_model`) with weights from ``seed``,
   and the learner from :mod:`braintrace.algorithms.catalog` (``'bptt'``:
   :func:`braintrace.bptt_gradients`), compiled on one step's input;
2. the training step (gradients of the sequence loss by
   :func:`braintrace.online_gradients` or :func:`braintrace.bptt_gradients`,
   then an optax Adam update) is jitted, lowered and compiled ahead of time:
   ``lower_s`` and ``compile_s``, and XLA's memory analysis of the compiled
   step (``temp_bytes``: the working memory of one training step, where BPTT's
   grows with ``T``; ``argument_bytes``: parameters, optimizer state, traces
   and the batch);
3. every epoch: the shuffled training batches (the wall time is
   ``epoch_s``), the mean training loss, and the test metric (accuracy, or
   NMSE for a prediction task) — the learning curve;
4. ``ru_maxrss`` of the process at the end (``rss_peak_mb``; per task and
   learner only when each runs in its own process), and on accelerators the
   device's ``peak_bytes_in_use``.

Losses: cross-entropy at every scored step (the sequence's label at each
scored step of a classification), weighted by mask / number of scored steps
in the batch; mean squared error for prediction. A sequence's answer is the
arg-max of its logits summed over its scored steps (per step for copying).
"""

from __future__ import annotations

import time
import traceback
import warnings
from typing import Any

import numpy as np

from benchmarks.measure import peak_rss_mb
from benchmarks.task_suite import Size, TaskSpec, learner_options

__all__ = ["train_run", "device_peak_mb"]


def device_peak_mb() -> float | None:
    """The accelerator's ``peak_bytes_in_use`` in MiB (``None`` on a CPU)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        return None
    return stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats else None


def _grad_fn(name: str, model: Any, options: dict, B: int, n_in: int, loss_fn: Any) -> Any:
    import jax.numpy as jnp

    import braintrace
    from braintrace.algorithms.catalog import learner_class

    if name == "bptt":
        return lambda x, y: braintrace.bptt_gradients(model, x, y, loss_fn, batch_size=B)
    learner = learner_class(name)(model, **options)
    learner.compile_graph(jnp.zeros((B, n_in), jnp.float32))
    return lambda x, y: braintrace.online_gradients(learner, x, y, loss_fn, batch_size=B)


def _answers(out: np.ndarray, mask: np.ndarray, per_sequence: bool) -> np.ndarray:
    """Predicted classes: per sequence from logits summed over scored steps, else per step."""
    if per_sequence:
        return (out * mask[..., None]).sum(0).argmax(-1)
    return out.argmax(-1)


def train_run(
    spec: TaskSpec, learner: str, seed: int, size: Size, size_name: str, overrides: dict | None = None
) -> dict:
    """Train ``learner`` on ``spec`` from ``seed`` at ``size``; a JSON-serialisable record.

    ``overrides`` (``{learner name: {keyword: value}}``) replace hyper-parameters of
    :func:`~benchmarks.task_suite.learner_options`. ``status`` is ``'ok'`` or
    ``'error'`` (with ``reason`` and a traceback).
    """
    options = {} if learner == "bptt" else {**learner_options(learner, spec.model), **(overrides or {}).get(learner, {})}
    rec: dict = {"task": spec.name, "learner": learner, "seed": seed, "size": size_name, "model": spec.model,
                 "metric": spec.metric, "hidden": size.hidden, "batch": size.batch, "lr": size.lr,
                 "epochs": size.epochs, "learner_options": options}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the compiler's notes (`braintrace graph` shows them)
            _train(spec, learner, options, seed, size, rec)
    except Exception as err:  # noqa: BLE001 - recorded; the table goes on
        rec.update(status="error", reason=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=10))
    rec["rss_peak_mb"] = peak_rss_mb()
    dev = device_peak_mb()
    if dev is not None:
        rec["device_peak_mb"] = dev
    return rec


def _train(spec: TaskSpec, learner: str, options: dict, seed: int, size: Size, rec: dict) -> None:
    import brainstate
    import jax
    import jax.numpy as jnp
    import optax

    from braintrace import datasets
    from braintrace.cli.models import build_model

    t0 = time.perf_counter()
    train, test, description = spec.load(size, seed)
    rec.update(description=description, T=train.n_steps, n_train=train.n_sequences, n_test=test.n_sequences,
               data_s=time.perf_counter() - t0)
    B, T, n_in = size.batch, train.n_steps, int(np.prod(train.inputs.shape[2:]))
    classify = spec.metric == "accuracy"
    n_out = int(max(train.targets.max(), test.targets.max())) + 1 if classify else int(train.targets.shape[-1])
    model = build_model(spec.model, n_in, size.hidden, n_out, seed)
    brainstate.nn.init_all_states(model, batch_size=B)
    params = model.states(brainstate.ParamState)

    def loss_fn(out: Any, target: Any) -> Any:
        y, weight = target
        if classify:
            return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(out, y) * weight)
        return jnp.sum(jnp.sum((out - y) ** 2, axis=-1) * weight)

    t0 = time.perf_counter()
    grad_fn = _grad_fn(learner, model, options, B, n_in, loss_fn)
    rec["setup_s"] = time.perf_counter() - t0
    optimizer = optax.adam(size.lr)
    opt_state = optimizer.init({k: v.value for k, v in params.items()})

    @brainstate.transform.jit
    def train_step(x, y, mask, opt_state):
        weight = mask / jnp.maximum(jnp.sum(mask), 1.0)
        grads, loss = grad_fn(x, (y, weight))
        values = {k: v.value for k, v in params.items()}
        updates, opt_state = optimizer.update(grads, opt_state, values)
        for k, v in optax.apply_updates(values, updates).items():
            params[k].value = v
        return loss, opt_state

    @brainstate.transform.jit
    def predict(x):
        brainstate.nn.reset_all_states(model, batch_size=B)
        return brainstate.transform.for_loop(model, x)

    def batch_arrays(b: datasets.Sequences) -> tuple:
        y = b.targets
        if b.per_sequence:  # the sequence's label at every step
            y = np.broadcast_to(y[None, :], (T, B))
        return jnp.asarray(b.inputs.reshape(T, B, n_in)), jnp.asarray(y), jnp.asarray(b.mask)

    example = batch_arrays(train.take(np.arange(B) % train.n_sequences))
    t0 = time.perf_counter()
    lowered = train_step.lower(*example, opt_state)
    rec["lower_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    rec["compile_s"] = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    if mem is not None:
        for field in ("temp", "argument", "output"):
            value = getattr(mem, f"{field}_size_in_bytes", None)
            if value is not None:
                rec[f"{field}_bytes"] = int(value)

    def evaluate(data: datasets.Sequences) -> float:
        outs = []
        N = data.n_sequences
        pad = (-N) % B
        x = data.inputs.reshape(T, N, n_in)
        if pad:
            x = np.concatenate([x, np.zeros((T, pad, n_in), x.dtype)], axis=1)
        for i in range(0, N + pad, B):
            outs.append(np.asarray(predict(jnp.asarray(x[:, i : i + B]))))
        out = np.concatenate(outs, axis=1)[:, :N]
        if not classify:
            return datasets.nmse(out, data.targets, data.mask)
        answers = _answers(out, data.mask, data.per_sequence)
        if data.per_sequence:
            return float((answers == data.targets).mean())
        return float(((answers == data.targets) * data.mask).sum() / data.mask.sum())

    rng = np.random.RandomState(seed)
    curve: dict[str, list] = {"epoch": [], "train_loss": [], "test": []}
    epoch_s: list[float] = []
    if train.n_sequences < B:
        raise ValueError(f"{spec.name}: {train.n_sequences} training sequences, fewer than the batch {B}.")
    for epoch in range(size.epochs):
        losses = []
        t0 = time.perf_counter()
        for b in train.batches(B, rng):
            loss, opt_state = train_step(*batch_arrays(b), opt_state)
            losses.append(loss)
        losses = [float(v) for v in jax.block_until_ready(losses)]
        epoch_s.append(time.perf_counter() - t0)
        curve["epoch"].append(epoch + 1)
        curve["train_loss"].append(float(np.mean(losses)))
        curve["test"].append(evaluate(test))
    rec.update(status="ok", curve=curve, epoch_s=epoch_s, final=curve["test"][-1],
               steps_per_epoch=train.n_sequences // B, finite=bool(np.all(np.isfinite(curve["train_loss"]))))
