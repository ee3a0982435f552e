"""Real tasks, every learner that applies, side by side with BPTT: accuracy (or NMSE), memory, time.

Run from the repository root::

    python -m benchmarks.tasks --quick                           # CI size: 1-2 min on 2 CPU cores
    python -m benchmarks.tasks --size cpu --out docs/data/tasks_cpu.json --md tasks_cpu.md \\
        --fig docs/img/tasks_cpu.png                             # the reduced CPU table of docs/tasks.md
    python -m benchmarks.tasks --size full --out docs/data/tasks_gpu.json --md tasks_gpu.md \\
        --fig docs/img/tasks_gpu.png                             # the full table, for a GPU

(``braintrace bench --tasks ...`` runs the same from a checkout.) Each
(task, learner, seed) is trained as :mod:`benchmarks.task_train` describes;
by default each (task, learner) runs in a fresh process (``--isolate
learner``), so that the peak RSS is its own. ``--out`` is rewritten after
every run (``meta.complete`` is false until the end). The printed table is
the mean ± standard deviation over the seeds; targets are printed after it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # `python benchmarks/tasks.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks.task_report import format_markdown, plot_curves, summarise
from benchmarks.task_suite import SIZES, TASKS, get_task, task_names

__all__ = ["main", "plan"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_TASKS = ("row_mnist", "vowels", "sunspots")


def plan(size: str, tasks: list[str] | None, learners: list[str] | None) -> list[tuple[str, str]]:
    """The (task, learner) pairs to run: the tasks that have ``size``, the learners that apply to each."""
    out = []
    for name in tasks or [t.name for t in TASKS]:
        spec = get_task(name)
        if spec.size(size) is None:
            if tasks is not None:
                raise ValueError(f"task {name!r} has no {size!r} size (sizes: {[k for k, _ in spec.sizes]}).")
            continue
        for learner in spec.learners:
            if learners is None or learner in learners:
                out.append((name, learner))
    return out


def _run_group(task: str, learner: str, seeds: list[int], size: str, overrides: dict | None = None) -> list[dict]:
    from benchmarks.task_train import train_run

    spec = get_task(task)
    return [train_run(spec, learner, seed, spec.size(size), size, overrides) for seed in seeds]  # type: ignore[arg-type]


def _run_subprocess(
    task: str, learner: str, seeds: list[int], size: str, timeout: float | None, overrides: dict
) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.json")
        job = json.dumps({"task": task, "learner": learner, "seeds": seeds, "size": size, "out": path,
                          "overrides": overrides})
        cmd = [sys.executable, "-m", "benchmarks.tasks", "--worker", job]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            reason = f"timed out after {timeout:.0f} s"
        else:
            if proc.returncode == 0 and os.path.exists(path):
                with open(path) as f:
                    return json.load(f)
            reason = f"worker exited with {proc.returncode}: {proc.stderr[-2000:]}"
    return [{"task": task, "learner": learner, "seed": s, "size": size, "status": "error", "reason": reason}
            for s in seeds]


def _overrides(items: list[str]) -> dict:
    """``['es_d_rtrl.decay_or_rank=0.5']`` -> ``{'es_d_rtrl': {'decay_or_rank': 0.5}}``."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not (sep and dot and name and option):
            raise ValueError(f"--learner-option {item!r}: expected NAME.KEY=VALUE, e.g. es_d_rtrl.decay_or_rank=0.5.")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(name, {})[option] = parsed
    return out


def _meta(args: argparse.Namespace, started: str, complete: bool) -> dict:
    from benchmarks.measure import machine_info

    command = " ".join(["python -m benchmarks.tasks", *sys.argv[1:]])
    return {"machine": machine_info(), "started": started, "complete": complete,
            "commands": [*getattr(args, "earlier_commands", []), command],
            "options": {k: v for k, v in vars(args).items() if k not in ("worker", "earlier_commands")}}


def _write(args: argparse.Namespace, started: str, runs: list[dict], complete: bool) -> dict:
    result = {"meta": _meta(args, started, complete), "runs": runs, "summary": summarise(runs)}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.tasks",
        description="Train every task of benchmarks/task_suite.py with BPTT and the online learners that apply; "
        "write a JSON, a markdown table and a figure of the learning curves.",
    )
    p.add_argument("--quick", action="store_true",
                   help=f"CI size: --size quick, tasks {', '.join(QUICK_TASKS)}, one seed, --isolate none")
    p.add_argument("--size", choices=SIZES, default=None,
                   help="run size: tiny (tests), quick (CI), cpu (the reduced CPU table), full (GPU); default cpu")
    p.add_argument("--tasks", default=None, help=f"comma-separated subset of: {', '.join(task_names())}")
    p.add_argument("--learners", default=None, help="comma-separated subset (names of braintrace.algorithms.catalog, "
                   "and bptt)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; --quick: 0)")
    p.add_argument("--isolate", choices=("learner", "none"), default=None,
                   help="one process per (task, learner), so peak RSS is its own (the default); or everything in "
                   "this process (the default of --quick)")
    p.add_argument("--learner-option", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="override a learner's hyper-parameter, e.g. es_d_rtrl.decay_or_rank=0.5 (repeatable; "
                   "VALUE is read as JSON, else kept as a string)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per (task, learner) process")
    p.add_argument("--out", default=None, help="JSON file of every run and the summary")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in --out and run only the (task, learner) pairs it lacks")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="run nothing: merge the runs of these --out files (of one machine) into --out, --md, --fig")
    p.add_argument("--md", default=None, help="markdown file for the table")
    p.add_argument("--fig", default=None, help="PNG of the learning curves (needs matplotlib)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size is None:
        args.size = "quick" if args.quick else "cpu"
    if args.quick and args.tasks is None:
        args.tasks = ",".join(QUICK_TASKS)
    if args.seeds is None:
        args.seeds = "0" if args.quick else "0,1,2"
    if args.isolate is None:
        args.isolate = "none" if args.quick else "learner"
    return args


def _finish(args: argparse.Namespace, result: dict) -> dict:
    table = format_markdown(result)
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table)
    if args.fig:
        print(f"wrote {args.fig}" if plot_curves(result, args.fig) else "no figure: matplotlib is not installed")
    return result


def _merge(args: argparse.Namespace) -> dict:
    """The runs of several result files as one (the later file wins for a repeated task, learner and seed)."""
    parts = []
    for path in args.merge:
        with open(path) as f:
            parts.append(json.load(f))
    by_key: dict = {}
    for part in parts:
        for r in part["runs"]:
            by_key[(r["task"], r["learner"], r["seed"])] = r
    meta = dict(parts[0]["meta"])
    meta["commands"] = [c for p in parts for c in (p["meta"].get("commands") or [p["meta"].get("command", "")])]
    meta["complete"] = all(p["meta"].get("complete") for p in parts)
    meta["merged_from"] = list(args.merge)
    runs = list(by_key.values())
    result = {"meta": meta, "runs": runs, "summary": summarise(runs)}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return _finish(args, result)


def main(argv: list[str] | None = None) -> dict:
    """Run the table as ``argv`` says; returns what ``--out`` holds."""
    args = _parse(argv)
    if args.worker:  # one (task, learner) in this process, for the parent's --isolate learner
        job = json.loads(args.worker)
        done = _run_group(job["task"], job["learner"], job["seeds"], job["size"], job.get("overrides"))
        with open(job["out"], "w") as f:
            json.dump(done, f)
        return {"runs": done}
    if args.merge:
        return _merge(args)
    from braintrace.algorithms.catalog import learner_class

    learners = None if args.learners is None else [s.strip() for s in args.learners.split(",") if s.strip()]
    for name in learners or []:
        if name != "bptt":
            learner_class(name)  # an unknown name fails here, with the valid ones listed
    overrides = _overrides(args.learner_option)
    tasks = None if args.tasks is None else [s.strip() for s in args.tasks.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = plan(args.size, tasks, learners)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print(f"braintrace task table ({args.size}): {len(jobs)} (task, learner) pairs x {len(seeds)} seeds, "
          f"isolate={args.isolate}", flush=True)
    runs: list[dict] = []
    if args.resume and args.out and os.path.exists(args.out):
        with open(args.out) as f:
            previous = json.load(f)
        started = previous["meta"]["started"]
        meta = previous["meta"]
        args.earlier_commands = meta.get("commands") or [c for c in [meta.get("command")] if c]
        runs = [r for r in previous["runs"] if r.get("status") == "ok"]
        kept = {(r["task"], r["learner"]) for r in runs}
        jobs = [j for j in jobs if j not in kept]
        print(f"resuming {args.out}: {len(kept)} pairs kept, {len(jobs)} to run", flush=True)
    for task, learner in jobs:
        t0 = time.perf_counter()
        if args.isolate == "none":
            part = _run_group(task, learner, seeds, args.size, overrides)
        else:
            part = _run_subprocess(task, learner, seeds, args.size, args.timeout, overrides)
        runs.extend(part)
        for r in part:
            value = f"{r['final']:.3f}" if r.get("status") == "ok" else f"ERROR {r.get('reason', '')[:200]}"
            print(f"  {task:14s} {learner:10s} seed {r['seed']}: {r.get('metric', '')} {value}", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        _write(args, started, runs, complete=False)
    return _finish(args, _write(args, started, runs, complete=True))


if __name__ == "__main__":
    main()
