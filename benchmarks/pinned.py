"""Time a grid on a many-core host as several small machines side by side.

One :mod:`benchmarks.run` per model, each pinned (``sched_setaffinity``, which
its worker processes inherit) to its own ``--cores`` physical cores, one
logical CPU per core (no SMT siblings), as many at a time as the host has cores
for; then the runs are merged (:mod:`benchmarks.merge`). XLA sizes its thread
pool from the affinity mask, so each run sees a ``--cores``-core machine::

    python -m benchmarks.pinned --cores 2 --models gru-64,lif-256 --outdir out -- --time-budget 8

Arguments after ``--`` go to every ``benchmarks.run``. Writes ``out/<model>.json``,
``out/<model>.log``, ``out/merged.json`` and ``out/merged.md``. Linux only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

if __package__ in (None, ""):  # `python benchmarks/pinned.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks.merge import merge_results
from benchmarks.run import REPO, format_table
from benchmarks.targets import format_targets

__all__ = ["physical_cores", "main"]


def physical_cores() -> list[list[int]]:
    """Logical CPUs (of this process's affinity) grouped by physical core, in CPU order."""
    allowed = os.sched_getaffinity(0)
    cores: dict[tuple[str, str], list[int]] = {}
    for path in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*"), key=lambda p: int(p.rsplit("cpu", 1)[1])):
        cpu = int(path.rsplit("cpu", 1)[1])
        if cpu not in allowed:
            continue
        try:
            with open(f"{path}/topology/physical_package_id") as f:
                pkg = f.read().strip()
            with open(f"{path}/topology/core_id") as f:
                core = f.read().strip()
        except OSError:  # no topology: every CPU its own core
            pkg, core = "0", str(cpu)
        cores.setdefault((pkg, core), []).append(cpu)
    return list(cores.values())


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", required=True, help="comma-separated, slowest first, e.g. lif-4096,gru-512")
    parser.add_argument("--cores", type=int, default=2, help="physical cores per run (default 2)")
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--deadline", type=float, help="seconds; then stop the runs still going (each keeps the "
                        "configs it finished) and merge")
    args = parser.parse_args(own)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    cores = physical_cores()
    slots = [sorted(c[0] for c in cores[i: i + args.cores]) for i in range(0, len(cores) - args.cores + 1, args.cores)]
    if not slots:
        raise SystemExit(f"this host has {len(cores)} physical cores in its affinity mask; --cores {args.cores} needs more")
    os.makedirs(args.outdir, exist_ok=True)
    print(f"{len(cores)} physical cores: {len(slots)} runs at a time on CPUs {slots}", flush=True)
    pending, running, outs = list(models), {}, []
    start = time.perf_counter()
    while pending or running:
        free = [s for s in range(len(slots)) if s not in running]
        while pending and free:
            model, slot = pending.pop(0), free.pop(0)
            out = os.path.join(args.outdir, f"{model}.json")
            log = open(os.path.join(args.outdir, f"{model}.log"), "w")
            cmd = [sys.executable, "-m", "benchmarks.run", "--models", model, "--out", out, *extra]
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=lambda cpus=slots[slot]: os.sched_setaffinity(0, cpus))
            running[slot] = (model, proc, log, out)
            print(f"  {model} on CPUs {slots[slot]}", flush=True)
        time.sleep(1.0)
        if args.deadline is not None and time.perf_counter() - start > args.deadline:
            pending = []
            for model, proc, _, _ in running.values():
                if proc.poll() is None:
                    print(f"  {model}: deadline, stopped", flush=True)
                    os.killpg(proc.pid, signal.SIGTERM)  # the run and its worker
        for slot, (model, proc, log, out) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[slot]
                print(f"  {model} done (exit {proc.returncode}, {time.perf_counter() - start:.0f} s)", flush=True)
                if os.path.exists(out):
                    outs.append(out)
    order = {os.path.join(args.outdir, f"{m}.json"): i for i, m in enumerate(models)}
    outs.sort(key=order.__getitem__)
    results = []
    for out in outs:
        with open(out) as f:
            results.append(json.load(f))
    merged = merge_results(results, outs)
    text = format_table(merged["results"]) + "\n\n" + format_targets(merged["targets"]) + "\n"
    with open(os.path.join(args.outdir, "merged.json"), "w") as f:
        json.dump(merged, f, indent=1)
    with open(os.path.join(args.outdir, "merged.md"), "w") as f:
        f.write(text)
    print(text)
    return merged


if __name__ == "__main__":
    main()
