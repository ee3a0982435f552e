"""Time per step of true online training (``braintrace.online_fit``) against ``online_gradients``.

For one model (default GRU-512, T=1000, batch 16, ES_D_RTRL) it times

- ``online_gradients``: the gradient of the whole sequence and one Adam step,
  jitted together (the usual per-sequence loop; the reference row);
- ``online_fit`` with an Adam step every ``K`` steps, ``K`` in ``--updates``
  (default 1, 10, 100): the states and traces run on across the updates;
- with ``--sharded``, ``online_gradients`` again on inputs, states and traces
  placed on a one-device mesh (``NamedSharding`` and ``braintrace.shard_batch``):
  what sharding costs when there is a single device.

Compile and run time are reported apart: each jitted function (for
``online_fit`` its chunk step, :class:`braintrace.training.fit.FitStep`, the
function ``online_fit`` feeds every chunk of a stream) is called once
(compile and run), once more untimed (a function whose output states come
back with another sharding than its inputs had, as on a one-device mesh,
compiles once more there), then timed ``--repeats`` times (median); the
compile time is the first call less that median.

Usage::

    python -m benchmarks.online_fit --quick --out online_fit_cpu.json   # GRU-64, T=100: about a minute on 2 cores
    python -m benchmarks.online_fit --sharded --out online_fit_gpu.json  # GRU-512, T=1000, on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import optax

import braintrace
from braintrace.training.fit import FitStep
from braintrace.training.gradients import resolve_window
from braintrace.training.losses import SequenceLoss

from .measure import machine_info
from .models import ModelSpec, build_model, make_data, mse_loss

__all__ = ["main", "online_gradients_call", "online_fit_call", "time_online_gradients", "time_online_fit",
           "paired_ratio"]

LEARNER_OPTIONS: dict[str, dict[str, Any]] = {"es_d_rtrl": {"decay_or_rank": 0.9}, "d_rtrl": {}}


def _learner(spec: ModelSpec, name: str, xs: jax.Array) -> braintrace.ETraceAlgorithm:
    model = build_model(spec)
    with warnings.catch_warnings():  # the read-out's "learned from its instantaneous gradient" note
        warnings.simplefilter("ignore", UserWarning)
        return braintrace.compile(model, name, xs[0], **LEARNER_OPTIONS.get(name, {}))


def _params(learner: braintrace.ETraceAlgorithm) -> dict:
    return learner.model.states(brainstate.ParamState)


def _timed(call, repeats: int) -> dict:
    """``compile_s`` (first call less the median), ``run_s`` (median of ``repeats`` after a warm-up call)."""
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - t0
    jax.block_until_ready(call())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    run = statistics.median(times)
    return {"compile_s": max(first - run, 0.0), "run_s": run, "times_s": times}


def online_gradients_call(spec: ModelSpec, name: str, *, sharded: bool = False):
    """A call of one jitted (online_gradients + Adam step) over the sequence (not yet compiled)."""
    xs, ys = make_data(spec)
    learner = _learner(spec, name, xs)
    if sharded:
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("batch",))
        braintrace.shard_batch(learner, mesh)
        seq = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "batch"))
        xs, ys = jax.device_put(xs, seq), jax.device_put(ys, seq)
    params, opt = _params(learner), optax.adam(1e-3)
    opt_state = opt.init({k: v.value for k, v in params.items()})

    @brainstate.transform.jit
    def step(xs, ys, opt_state):
        grads, loss = braintrace.online_gradients(learner, xs, ys, mse_loss, batch_size=spec.batch)
        values = {k: v.value for k, v in params.items()}
        updates, opt_state = opt.update(grads, opt_state, values)
        for k, v in optax.apply_updates(values, updates).items():
            params[k].value = v
        return loss, opt_state

    return lambda: step(xs, ys, opt_state)


def time_online_gradients(spec: ModelSpec, name: str, repeats: int, *, sharded: bool = False,
                          call=None) -> dict:
    """Compile and run time of one jitted (online_gradients + Adam step) over the sequence."""
    call = call or online_gradients_call(spec, name, sharded=sharded)
    row = _timed(call, repeats)
    return {"method": "online_gradients" + ("_sharded1" if sharded else ""), "update_every": spec.T, **row,
            "time_per_step_s": row["run_s"] / spec.T}


def paired_ratio(a, b, rounds: int) -> float:
    """Median over ``rounds`` of ``time(b) / time(a)``, the two compiled calls run back to back, in turn
    first (neither a load that drifts between separate measurements nor the order biases it)."""

    def timed(call) -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        return time.perf_counter() - t0

    ratios = []
    for i in range(rounds):
        if i % 2:
            tb, ta = timed(b), timed(a)
        else:
            ta, tb = timed(a), timed(b)
        ratios.append(tb / ta)
    return statistics.median(ratios)


def online_fit_call(spec: ModelSpec, name: str, K: int):
    """A call of ``online_fit``'s chunk step (an Adam step every ``K`` steps) on the sequence, and its window."""
    xs, ys = make_data(spec)
    learner = _learner(spec, name, xs)
    opt = optax.adam(1e-3)
    window = resolve_window("online_fit", learner, "auto", K, False)
    step = FitStep(learner, opt, SequenceLoss(mse_loss, owner="online_fit"), K, window)
    opt_state = opt.init({k: v.value for k, v in _params(learner).items()})
    learner.reset(spec.batch)
    return (lambda: step(opt_state, xs, ys, None)), window


def time_online_fit(spec: ModelSpec, name: str, K: int, repeats: int, call=None) -> dict:
    """Compile and run time of ``online_fit``'s chunk step with an Adam step every ``K`` steps."""
    call, window = call or online_fit_call(spec, name, K)
    row = _timed(call, repeats)
    return {"method": "online_fit", "update_every": K, "window": window, **row,
            "time_per_step_s": row["run_s"] / spec.T}


def _table(rows: list[dict]) -> str:
    ref = next((r["time_per_step_s"] for r in rows if r["method"] == "online_gradients"), None)
    lines = ["| method | update every | compile (s) | run (s) | per step (ms) | / online_gradients | paired |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['time_per_step_s'] / ref:.2f}" if ref else "-"
        paired = f"{r['paired_ratio']:.2f}" if "paired_ratio" in r else "-"
        lines.append(f"| {r['method']} | {r['update_every']} | {r['compile_s']:.1f} | {r['run_s']:.3f} | "
                     f"{1e3 * r['time_per_step_s']:.3f} | {ratio} | {paired} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gru-512", help="gru-N or lif-N")
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--learner", default="es_d_rtrl", choices=sorted(LEARNER_OPTIONS))
    p.add_argument("--updates", default="1,10,100", help="comma-separated update_every values (divisors of T)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sharded", action="store_true", help="also time online_gradients on a one-device mesh")
    p.add_argument("--quick", action="store_true", help="GRU-64, T=100, batch 4, 2 repeats (a CPU check)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.T, args.batch, args.repeats = "gru-64", 100, 4, 2
    kind, size = args.model.split("-")
    spec = ModelSpec(kind, int(size), args.T, batch=args.batch)
    updates = [int(k) for k in args.updates.split(",")]
    plain = online_gradients_call(spec, args.learner)
    rows = [time_online_gradients(spec, args.learner, args.repeats, call=plain)]
    if args.sharded:
        sharded = online_gradients_call(spec, args.learner, sharded=True)
        rows.append(time_online_gradients(spec, args.learner, args.repeats, sharded=True, call=sharded))
        rows[-1]["paired_ratio"] = paired_ratio(plain, sharded, max(4 * args.repeats, 10))
        print(f"one-device mesh / plain, paired: {rows[-1]['paired_ratio']:.3f}", flush=True)
    for K in updates:
        call = online_fit_call(spec, args.learner, K)
        rows.append(time_online_fit(spec, args.learner, K, args.repeats, call=call))
        rows[-1]["paired_ratio"] = paired_ratio(plain, call[0], max(4 * args.repeats, 10))
        print(f"online_fit update_every={K}: {1e3 * rows[-1]['time_per_step_s']:.3f} ms/step, "
              f"{rows[-1]['paired_ratio']:.2f} x online_gradients (paired)", flush=True)
    result = {"meta": {"machine": machine_info(), "spec": spec.to_dict(), "learner": args.learner,
                       "options": vars(args)}, "results": rows}
    print(f"{spec.name}, {args.learner}")
    print(_table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
