"""Data-parallel scaling: ``online_gradients`` with the batch split over the devices of one host.

For each model (default GRU-1024 and recurrent LIF-16384, T=1000) and learner
(default ES_D_RTRL and D_RTRL, their default windows), and for 1, 2, 4 and 8
devices (those of ``--devices`` that the host has):

- *weak scaling*: ``--per-device`` sequences on every device (a global batch
  of ``n × per-device``); efficiency ``t(1) / t(n)``, the time of one call
  on one device over that on ``n`` (1.0 is perfect);
- *strong scaling*: a global batch of ``--global-batch`` split over ``n``
  devices; speed-up ``t(1) / t(n)``, and the gradients compared with the
  one-device run's on the same inputs and weights (the largest difference
  relative to the largest gradient entry; float32 rounding, since the
  all-reduce sums the devices' parts in another order).

Every row has the time of one jitted call (``online_gradients`` over the whole
sequence, median of ``--repeats`` after two warm-up calls), the time per sequence
and the throughput in sequences per second, the compile time, XLA's compiled
memory analysis (per device: an SPMD program is one device's part) and, where
the backend reports it, each device's peak memory.

Run it on the host whose devices it should use::

    python -m benchmarks.multigpu --out multigpu.json --md multigpu.md
    # a CPU check with four simulated devices (about two minutes on 2 cores):
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.multigpu --quick

Timings are never asserted on; the gradient comparison is reported, not
asserted (the tests check it at small size).
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
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import braintrace

from .measure import machine_info
from .models import ModelSpec, build_model, make_data, mse_loss

__all__ = ["main", "run_one", "scaling_table"]

LEARNER_OPTIONS: dict[str, dict[str, Any]] = {"es_d_rtrl": {"decay_or_rank": 0.9}, "d_rtrl": {}}


def _compiled_call(spec: ModelSpec, learner_name: str, n_devices: int, seed: int = 0):
    """A compiled ``online_gradients`` of ``spec``'s model, its batch split over the first ``n_devices``."""
    xs, ys = make_data(spec, seed)
    model = build_model(spec, seed)
    with warnings.catch_warnings():  # the read-out's "learned from its instantaneous gradient" note
        warnings.simplefilter("ignore", UserWarning)
        learner = braintrace.compile(model, learner_name, xs[0], **LEARNER_OPTIONS.get(learner_name, {}))
    mesh = Mesh(np.array(jax.devices()[:n_devices]), ("batch",))
    braintrace.shard_batch(learner, mesh)
    seq = NamedSharding(mesh, PartitionSpec(None, "batch"))
    xs, ys = jax.device_put(xs, seq), jax.device_put(ys, seq)

    def body(xs, ys):
        return braintrace.online_gradients(learner, xs, ys, mse_loss, batch_size=spec.batch)

    jitted = brainstate.transform.jit(body)
    t0 = time.perf_counter()
    compiled = jitted.lower(xs, ys).compile()
    compile_s = time.perf_counter() - t0
    return jitted, compiled, xs, ys, compile_s


def _memory(compiled) -> dict:
    mem = compiled.memory_analysis()
    out = {}
    for field in ("temp", "argument", "output"):
        value = getattr(mem, f"{field}_size_in_bytes", None) if mem is not None else None
        if value is not None:
            out[f"{field}_bytes_per_device"] = int(value)
    return out


def _device_peaks(n_devices: int) -> list[int] | None:
    peaks = []
    for d in jax.devices()[:n_devices]:
        stats = d.memory_stats() if hasattr(d, "memory_stats") else None
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        peaks.append(int(stats["peak_bytes_in_use"]))
    return peaks


def run_one(spec: ModelSpec, learner_name: str, n_devices: int, repeats: int) -> tuple[dict, Any]:
    """One row (times, memory) and the gradients of one call."""
    jitted, compiled, xs, ys, compile_s = _compiled_call(spec, learner_name, n_devices)
    # two warm-up calls: states that come back with another sharding than they went in with (as the first call's
    # do) make the second call compile once more
    grads, _ = jax.block_until_ready(jitted(xs, ys))
    jax.block_until_ready(jitted(xs, ys))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(jitted(xs, ys))
        times.append(time.perf_counter() - t0)
    run_s = statistics.median(times)
    row = {"model": spec.model_name, "learner": learner_name, "devices": n_devices, "batch": spec.batch,
           "T": spec.T, "compile_s": compile_s, "run_s": run_s, "times_s": times,
           "time_per_sequence_s": run_s / spec.batch, "sequences_per_s": spec.batch / run_s,
           **_memory(compiled), "device_peak_bytes": _device_peaks(n_devices)}
    return row, jax.device_get(grads)


def _relative_difference(a, b) -> float:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    scale = max(float(np.max(np.abs(x))) for x in lb) or 1.0
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(la, lb)) / scale


def scaling_table(rows: list[dict]) -> str:
    """The rows as a markdown table, with weak-scaling efficiency or strong-scaling speed-up against one device."""
    header = ("| model | learner | mode | devices | global batch | per call (s) | sequences/s | vs 1 device | "
              "compile (s) | temp/device (MiB) | grad diff vs 1 device |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    ones = {(r["model"], r["learner"], r["mode"]): r for r in rows if r["devices"] == 1}
    for r in rows:
        one = ones.get((r["model"], r["learner"], r["mode"]))
        ratio = f"{one['run_s'] / r['run_s']:.2f}" if one else "-"
        label = "efficiency " if r["mode"] == "weak" else "speed-up "
        temp = r.get("temp_bytes_per_device")
        diff = r.get("grad_rel_diff_vs_1")
        lines.append(f"| {r['model']} | {r['learner']} | {r['mode']} | {r['devices']} | {r['batch']} | "
                     f"{r['run_s']:.3f} | {r['sequences_per_s']:.1f} | {label}{ratio} | {r['compile_s']:.1f} | "
                     f"{'-' if temp is None else f'{temp / 2**20:.1f}'} | {'-' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the scaling measurement as ``argv`` says; returns what ``--out`` holds."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.multigpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="gru-1024,lif-16384", help="comma-separated gru-N / lif-N")
    p.add_argument("--learners", default="es_d_rtrl,d_rtrl", help="comma-separated, of: " + ", ".join(LEARNER_OPTIONS))
    p.add_argument("--devices", default="1,2,4,8", help="device counts (those above the host's are left out)")
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--per-device", type=int, default=16, help="sequences per device (weak scaling)")
    p.add_argument("--global-batch", type=int, default=64, help="sequences in all (strong scaling)")
    p.add_argument("--modes", default="weak,strong")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="GRU-32 and LIF-64, T=20, 2 per device, global batch 8")
    p.add_argument("--out", help="JSON file (rewritten after each row)")
    p.add_argument("--md", help="markdown table file")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.T, args.per_device, args.global_batch, args.repeats = "gru-32,lif-64", 20, 2, 8, 2
    available = len(jax.devices())
    counts = [n for n in (int(s) for s in args.devices.split(",")) if n <= available]
    skipped = [n for n in (int(s) for s in args.devices.split(",")) if n > available]
    result: dict = {"meta": {"machine": machine_info(), "options": vars(args), "devices_available": available,
                             "devices_skipped": skipped}, "rows": []}
    for model in args.models.split(","):
        kind, size = model.strip().split("-")
        for learner_name in args.learners.split(","):
            for mode in args.modes.split(","):
                reference = None
                for n in counts:
                    batch = n * args.per_device if mode == "weak" else args.global_batch
                    if batch % n:
                        continue
                    spec = ModelSpec(kind, int(size), args.T, batch=batch)
                    row, grads = run_one(spec, learner_name, n, args.repeats)
                    row["mode"] = mode
                    if mode == "strong":
                        reference = grads if n == counts[0] else reference
                        row["grad_rel_diff_vs_1"] = _relative_difference(grads, reference)
                    result["rows"].append(row)
                    print(f"{spec.model_name} {learner_name} {mode} devices={n} batch={batch}: "
                          f"{row['run_s']:.3f} s/call, {row['sequences_per_s']:.1f} seq/s", flush=True)
                    if args.out:
                        with open(args.out, "w") as f:
                            json.dump(result, f, indent=1)
    table = scaling_table(result["rows"])
    print(table)
    if skipped:
        print(f"not run: {skipped} devices (the host has {available})")
    if args.md:
        with open(args.md, "w") as f:
            f.write(table + "\n")
    return result


if __name__ == "__main__":
    main()
