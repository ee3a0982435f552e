"""Memory and time of BPTT, D_RTRL and ES_D_RTRL against sequence length, with the issue's target ratios.

Run from the repository root::

    python -m benchmarks.run --quick                    # small grid, < 2 min on 2 CPU cores
    python -m benchmarks.run --out results.json         # full grid (time-budgeted)
    python -m benchmarks.run --device --out gpu.json    # the largest configs, for a GPU

Every (config, method) is measured as described in :mod:`benchmarks.measure`;
by default each runs in a fresh subprocess so that peak RSS belongs to it.
Configs whose run would exceed the time budget (estimated from the same
method at a shorter T) are compiled only: their memory is reported, their
time is not. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks.methods import method_names, parse_method
from benchmarks.models import ModelSpec
from benchmarks.targets import evaluate_targets, format_targets

__all__ = ["MODES", "Options", "plan", "run_benchmarks", "format_table", "main"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Options:
    """What to measure and how."""

    models: list[tuple[str, int]]
    T: list[int]
    windows: list[int]
    window_kinds: list[str] = dataclasses.field(default_factory=lambda: ["ms"])  # 'ms' and/or 'win'
    memory_only_T: list[int] = dataclasses.field(default_factory=list)
    methods: list[str] | None = None
    memory_only_methods: list[str] | None = None  # default: the methods but the forward pass
    batch: int = 16
    warmup: int = 1
    repeats: int = 5
    time_budget_s: float | None = 60.0  # seconds of timed repeats per measurement (the warm-up call is extra)
    mem_budget_gb: float | None = None
    isolate: str = "method"  # 'method', 'config' or 'none'


MODES = {
    # < 2 minutes on 2 CPU cores; T=10000 is compiled only (its memory is exact, it is not timed)
    "quick": dict(
        models=[("gru", 64), ("lif", 256)], T=[100, 1000], memory_only_T=[10000], windows=[10],
        window_kinds=["win"], memory_only_methods=["es_d_rtrl", "d_rtrl", "bptt"], repeats=5, time_budget_s=8.0, isolate="config",
    ),
    "full": dict(
        models=[("gru", 64), ("gru", 256), ("gru", 512), ("lif", 256), ("lif", 1024), ("lif", 4096)],
        T=[100, 1000, 10000], windows=[10, 100], window_kinds=["ms", "win"], repeats=5, time_budget_s=60.0,
        isolate="method",
    ),
    "device": dict(
        models=[("gru", 512), ("lif", 4096)], T=[100, 1000, 10000], windows=[10, 100],
        window_kinds=["ms", "win"], repeats=10, time_budget_s=60.0, isolate="method",
    ),
}


def plan(opts: Options) -> list[list[dict]]:
    """Groups of items ``{spec, method, memory_only}``, in the order they run (per model, T ascending).

    A group is what one process measures under ``isolate='config'``: the
    methods of one timed config, followed by the compile-only configs of the
    same model at longer T. Forward passes are not compiled at memory-only T.
    """
    methods = opts.methods or method_names(opts.windows, opts.window_kinds)
    groups: list[list[dict]] = []
    for kind, size in opts.models:
        first = len(groups)
        for T in sorted(set(opts.T) | set(opts.memory_only_T)):
            spec = ModelSpec(kind, size, T, batch=opts.batch)
            timed = T in opts.T
            chosen = methods if timed else (opts.memory_only_methods or [m for m in methods if m != "forward"])
            items = [{"spec": spec, "method": m, "memory_only": not timed} for m in chosen]
            if not timed and len(groups) > first and not groups[-1][0]["memory_only"]:
                groups[-1] += items
            elif items:
                groups.append(items)
    return groups


def _key(rec: dict) -> tuple:
    c = rec["config"]
    return c["kind"], c["size"], c["batch"], rec["method"]


def _estimate_skip(spec: ModelSpec, method: str, done: list[dict], opts: Options) -> str | None:
    """A reason to compile only, if the same method at a shorter T predicts one sequence over the budget."""
    if opts.time_budget_s is None:
        return None
    key = (spec.kind, spec.size, spec.batch, method)
    prev = [r for r in done if _key(r) == key and r.get("status") == "ok" and r["config"]["T"] < spec.T]
    if not prev:
        return None
    ref = max(prev, key=lambda r: r["config"]["T"])
    per_seq = ref["time_per_step_s"] * spec.T
    if per_seq <= opts.time_budget_s:
        return None
    return (
        f"not timed: {ref['time_per_step_s'] * 1e3:.3g} ms/step at T={ref['config']['T']} predicts "
        f"{per_seq:.0f} s per sequence > time budget {opts.time_budget_s:.0f} s"
    )


def _job(items: list[dict], opts: Options) -> dict:
    return {
        "items": [dict(it, spec=it["spec"].to_dict()) for it in items],
        "warmup": opts.warmup,
        "repeats": opts.repeats,
        "time_budget_s": opts.time_budget_s,
        "mem_budget_gb": opts.mem_budget_gb,
    }


def _run_job(job: dict, scope: str, on_compiled=None):
    """Measure the job's items in this process, yielding one record per item."""
    from benchmarks.measure import default_mem_budget, machine_info, measure

    budget = job["mem_budget_gb"] * 2**30 if job["mem_budget_gb"] else default_mem_budget()
    for it in job["items"]:
        rec = measure(
            ModelSpec(**it["spec"]), it["method"], warmup=job["warmup"], repeats=job["repeats"],
            time_budget_s=job["time_budget_s"], mem_budget_bytes=budget, memory_only=it["memory_only"],
            on_compiled=on_compiled,
        )
        if rec.get("status") == "memory-only" and it.get("reason"):
            rec["reason"] = it["reason"]
        rec["rss_scope"] = scope
        rec["machine"] = machine_info()
        yield rec


def _worker(job_path: str, out_path: str) -> None:
    with open(job_path) as f:
        job = json.load(f)
    scope = "method" if len(job["items"]) == 1 else "config"
    records: list[dict] = []

    def save(extra=()):  # rewritten as results come: a crash or a timeout keeps what was measured
        with open(out_path, "w") as f:
            json.dump(records + list(extra), f)

    for rec in _run_job(job, scope, on_compiled=lambda partial: save([dict(partial, rss_scope=scope)])):
        records.append(rec)
        save()


def _run_subprocess(job: dict, timeout: float | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = os.path.join(tmp, "job.json"), os.path.join(tmp, "out.json")
        with open(job_path, "w") as f:
            json.dump(job, f)
        cmd = [sys.executable, "-m", "benchmarks.run", "--worker", job_path, out_path]
        why = None
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
            if proc.returncode != 0:
                why = f"worker exited with code {proc.returncode}: {proc.stderr.strip()[-400:]}"
        except subprocess.TimeoutExpired:
            why = f"worker timed out after {timeout:.0f} s"
        records = []
        if os.path.exists(out_path):
            with open(out_path) as f:
                records = json.load(f)
    for r in records:
        if r.get("status") == "running":  # compiled, then killed or crashed while running
            r.update(status="skipped", reason=f"not timed: {why or 'the run did not finish'} "
                                              "(memory numbers are from the compiled executable)")
    for it in job["items"][len(records):]:
        spec = ModelSpec(**it["spec"])
        records.append({"config": it["spec"], "name": spec.name, "model": spec.model_name,
                        "method": it["method"], "status": "error", "reason": why or "no result"})
    return records


def run_benchmarks(opts: Options, log=print, on_records=None) -> list[dict]:
    """Measure every planned (config, method); returns the records in plan order.

    ``on_records(records)``, if given, is called with all records so far after
    each process finishes (``main`` rewrites its ``--out`` file then, so an
    interrupted run keeps what it measured).
    """
    records: list[dict] = []
    for items in plan(opts):
        for it in items:
            why = None if it["memory_only"] else _estimate_skip(it["spec"], it["method"], records, opts)
            if why:
                it.update(memory_only=True, reason=why)
        job = _job(items, opts)
        if opts.isolate == "none":
            parts = ([r] for r in _run_job(job, "process"))
        elif opts.isolate == "config":
            parts = iter([_run_subprocess(job, _timeout(opts, len(items)))])
        else:
            parts = (_run_subprocess(dict(job, items=[it]), _timeout(opts, 1)) for it in job["items"])
        for new in parts:
            for r in new:
                log(_progress(r))
            records += new
            if on_records is not None:
                on_records(records)
    return records


def _timeout(opts: Options, n: int) -> float | None:
    if opts.time_budget_s is None:
        return None
    return n * (3 * opts.time_budget_s + 300)


def _progress(r: dict) -> str:
    s = f"  {r['name']:<22} {r['method']:<16} {r['status']:<11}"
    if r["status"] == "ok":
        s += f" {_fmt_time(r['time_s'])}/seq"
    if "temp_bytes" in r:
        s += f"  temp {r['temp_bytes'] / 2**20:.3g} MiB"
    if r["status"] in ("skipped", "error"):
        s += f"  ({r.get('reason', '')[:120]})"
    return s


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _mb(b) -> str:
    if b is None:
        return "—"
    mib = b / 2**20
    return f"{mib:.0f}" if mib >= 1000 else f"{mib:.3g}"


def forward_time(records: list[dict], rec: dict) -> float | None:
    """Median time of the forward pass of the same config, if measured."""
    for r in records:
        if r["config"] == rec["config"] and r["method"] == "forward" and r.get("status") == "ok":
            return r["time_s"]
    return None


def format_table(records: list[dict]) -> str:
    """The markdown results table (one row per config and method) and notes on the rows not timed.

    ``compile s`` is braintrace's graph compilation plus tracing, lowering and XLA
    compilation; ``× forward`` is the time over the forward pass of the same config
    (in parentheses, for ES_D_RTRL: the median ratio of back-to-back calls).
    """
    lines = [
        "| config | method | time/seq | time/step | × forward | temp MiB | RSS MiB | compile s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes: dict[str, list[str]] = {}
    for r in records:
        ok = r.get("status") == "ok"
        fwd = forward_time(records, r)
        ratio = f"{r['time_s'] / fwd:.3g}" if ok and fwd else "—"
        if ok and "paired_forward_ratio" in r:
            ratio += f" ({r['paired_forward_ratio']:.3g})"
        comp = f"{sum(r.get(k, 0.0) for k in ('setup_s', 'lower_s', 'compile_s')):.2f}" if "compile_s" in r else "—"
        rss = f"{r['rss_peak_mb']:.0f}" if "rss_peak_mb" in r else "—"
        if not ok:
            notes.setdefault(f"{r.get('status')}: {r.get('reason', '')}", []).append(f"{r['name']} {r['method']}")
        lines.append(
            f"| {r['name']} | {r['method']} | {_fmt_time(r['time_s']) if ok else r.get('status', '?')} | "
            f"{_fmt_time(r.get('time_per_step_s'))} | {ratio} | {_mb(r.get('temp_bytes'))} | {rss} | {comp} |"
        )
    text = "\n".join(lines)
    if notes:
        text += "\n\nNot timed:\n" + "\n".join(f"- {why} — {'; '.join(rows)}" for why, rows in notes.items())
    return text


def _parse_models(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        kind, _, size = item.strip().lower().partition("-")
        out.append((kind, int(size)))
    return out


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def options_from_args(args: argparse.Namespace) -> Options:
    mode = "device" if args.device else "quick" if args.quick else "full"
    base = dict(MODES[mode])
    opts = Options(**base)
    if args.models:
        opts.models = _parse_models(args.models)
    if args.T:
        opts.T = _ints(args.T)
        opts.memory_only_T = [t for t in opts.memory_only_T if t not in opts.T]
    if args.memory_only_T is not None:
        opts.memory_only_T = _ints(args.memory_only_T)
    if args.memory_only_methods:
        opts.memory_only_methods = [m.strip() for m in args.memory_only_methods.split(",")]
        for m in opts.memory_only_methods:
            parse_method(m)
    if args.windows:
        opts.windows = _ints(args.windows)
    if args.window_kinds:
        opts.window_kinds = [k.strip() for k in args.window_kinds.split(",")]
        if not set(opts.window_kinds) <= {"ms", "win"}:
            raise SystemExit(f"--window-kinds takes 'ms' and/or 'win', got {args.window_kinds!r}")
    if args.methods:
        opts.methods = [m.strip() for m in args.methods.split(",")]
        for m in opts.methods:
            parse_method(m)
    for name in ("batch", "warmup", "repeats", "mem_budget_gb", "isolate"):
        if getattr(args, name) is not None:
            setattr(opts, name, getattr(args, name))
    if args.time_budget is not None:
        opts.time_budget_s = None if args.time_budget <= 0 else args.time_budget
    if args.memory_only:
        opts.memory_only_T = sorted(set(opts.T) | set(opts.memory_only_T))
        opts.T = []
    return opts


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small grid (GRU-64, LIF-256; T 100, 1000; T=10000 memory only)")
    mode.add_argument("--device", action="store_true", help="the largest configs (GRU-512, LIF-4096), for a GPU")
    parser.add_argument("--out", help="write the JSON results here")
    parser.add_argument("--md", help="write the markdown table and targets here")
    parser.add_argument("--models", help="override the models, e.g. gru-64,lif-256")
    parser.add_argument("--T", help="override the timed sequence lengths, e.g. 100,1000")
    parser.add_argument("--memory-only-T", dest="memory_only_T", help="sequence lengths compiled only (memory)")
    parser.add_argument("--memory-only-methods", dest="memory_only_methods",
                        help="methods compiled at the memory-only T (default: all but forward)")
    parser.add_argument("--memory-only", action="store_true", help="compile every config only (no timing)")
    parser.add_argument("--windows", help="window lengths K, e.g. 10,100")
    parser.add_argument("--window-kinds", dest="window_kinds",
                        help="ms (vjp_method='multi-step') and/or win (single-step rule on K-step windows)")
    parser.add_argument("--methods", help="subset of methods, e.g. forward,bptt,es_d_rtrl,d_rtrl_ms10")
    parser.add_argument("--batch", type=int, help="sequences per batch (default: 16)")
    parser.add_argument("--warmup", type=int, help="untimed calls before the timed ones (default: 1)")
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default: 5, with --device 10)")
    parser.add_argument("--time-budget", dest="time_budget", type=float,
                        help="seconds of timed runs per measurement (<= 0: none)")
    parser.add_argument("--mem-budget-gb", dest="mem_budget_gb", type=float,
                        help="run only if temp+args+outputs fit (default: half the RAM, 90%% of a GPU)")
    parser.add_argument("--isolate", choices=("method", "config", "none"),
                        help="fresh process per method (RSS per method), per config, or none")
    parser.add_argument("--worker", nargs=2, metavar=("JOB", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return {}

    opts = options_from_args(args)
    mode_name = "device" if args.device else "quick" if args.quick else "full"
    n = sum(len(g) for g in plan(opts))
    print(f"braintrace benchmarks ({mode_name}): {n} measurements, isolate={opts.isolate}", flush=True)
    start, load_start = time.perf_counter(), os.getloadavg()

    def assemble(records: list[dict], complete: bool) -> dict:
        machine = next((r["machine"] for r in records if "machine" in r), {})
        kept = [{k: v for k, v in r.items() if k != "machine"} for r in records]
        meta = {"mode": mode_name, "options": dataclasses.asdict(opts), "machine": machine,
                "elapsed_s": time.perf_counter() - start, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "complete": complete}
        return {"meta": meta, "results": kept, "targets": evaluate_targets(kept)}

    def save(result: dict) -> None:
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)

    records = run_benchmarks(opts, log=lambda s: print(s, flush=True),
                             on_records=lambda recs: save(assemble(recs, complete=False)))
    result = assemble(records, complete=True)
    elapsed, machine, records, targets = (result["meta"]["elapsed_s"], result["meta"]["machine"],
                                          result["results"], result["targets"])
    print()
    print(f"machine: {machine.get('cpu')} ({machine.get('affinity_cpus') or machine.get('cpu_count')} CPUs), "
          f"backend {machine.get('backend')} {machine.get('device_kind')}; jax {machine.get('jax')}; "
          f"total {elapsed:.0f} s; load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print()
    print(format_table(records))
    print()
    print(format_targets(targets))
    if args.out:
        save(result)
        print(f"\nwrote {args.out}")
    if args.md:
        with open(args.md, "w") as f:
            f.write(format_table(records) + "\n\n" + format_targets(targets) + "\n")
        print(f"wrote {args.md}")
    return result


if __name__ == "__main__":
    main()
