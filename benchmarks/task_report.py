"""Summaries, the markdown table, the targets and the figure of ``python -m benchmarks.tasks``."""

from __future__ import annotations

import statistics

from benchmarks.task_suite import get_task

__all__ = ["summarise", "targets", "format_markdown", "plot_curves", "TARGET_POINTS", "TARGET_TASKS"]

#: ES_D_RTRL's accuracy may fall at most this many percentage points below BPTT's ...
TARGET_POINTS = 2.0
#: ... on these tasks (sequential row MNIST; the spiking and the speech task).
TARGET_TASKS = ("row_mnist", "spiking_mnist", "vowels")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (task, learner): the metric's mean and std over seeds and the mean costs."""
    order: list[tuple[str, str]] = []
    for r in runs:
        if (r["task"], r["learner"]) not in order:
            order.append((r["task"], r["learner"]))
    rows = []
    for task, learner in order:
        group = [r for r in runs if r["task"] == task and r["learner"] == learner]
        ok = [r for r in group if r.get("status") == "ok"]
        row: dict = {"task": task, "learner": learner, "seeds": [r["seed"] for r in ok],
                     "errors": [r.get("reason", "") for r in group if r.get("status") != "ok"]}
        if ok:
            row["metric"] = ok[0]["metric"]
            row["mean"], row["std"] = _mean_std([r["final"] for r in ok])
            row["best_mean"] = statistics.fmean(
                [max(r["curve"]["test"]) if r["metric"] == "accuracy" else min(r["curve"]["test"]) for r in ok]
            )
            for key in ("temp_bytes", "argument_bytes", "rss_peak_mb", "device_peak_mb", "compile_s", "lower_s"):
                vals = [r[key] for r in ok if key in r]
                if vals:
                    row[key] = statistics.fmean(vals)
            row["epoch_s"] = statistics.fmean([statistics.median(r["epoch_s"]) for r in ok])
            row["T"], row["description"] = ok[0]["T"], ok[0]["description"]
            row["finite"] = all(r.get("finite", True) for r in ok)
        rows.append(row)
    for row in rows:
        base = next((b for b in rows if b["task"] == row["task"] and b["learner"] == "bptt" and "mean" in b), None)
        if base is not None and "mean" in row:
            scale = 100.0 if row["metric"] == "accuracy" else 1.0
            row["vs_bptt"] = (row["mean"] - base["mean"]) * scale
            if "temp_bytes" in row and base.get("temp_bytes"):
                row["temp_vs_bptt"] = row["temp_bytes"] / base["temp_bytes"]
    return rows


def targets(summary: list[dict]) -> list[dict]:
    """ES_D_RTRL within :data:`TARGET_POINTS` points of BPTT on each task of :data:`TARGET_TASKS` that ran."""
    out = []
    for task in TARGET_TASKS:
        es = next((r for r in summary if r["task"] == task and r["learner"] == "es_d_rtrl" and "vs_bptt" in r), None)
        if es is not None:
            out.append({"task": task, "target": f"ES_D_RTRL >= BPTT - {TARGET_POINTS:g} points",
                        "points_vs_bptt": es["vs_bptt"], "passed": es["vs_bptt"] >= -TARGET_POINTS})
    return out


def _mib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**20:.1f}"


def format_markdown(result: dict) -> str:
    """The tables (one per task) and the targets, as markdown."""
    summary = result["summary"]
    meta = result.get("meta", {})
    m = meta.get("machine", {})
    lines = [
        f"Run size `{meta.get('options', {}).get('size', '?')}`, {m.get('backend', '?')} ({m.get('device_kind', '')}; "
        f"{m.get('cpu', '')}, {m.get('affinity_cpus', '?')} cores), jax {m.get('jax', '?')}, braintrace commit "
        f"{m.get('braintrace_commit', '?')}{' (modified)' if m.get('braintrace_dirty') else ''}. "
        f"Mean ± standard deviation over seeds; memory and times are means over seeds.",
        "",
    ]
    for task in dict.fromkeys(r["task"] for r in summary):
        rows = [r for r in summary if r["task"] == task]
        spec = get_task(task)
        first: dict = next((r for r in rows if "description" in r), {})
        lines += [f"### {spec.title}", "", f"{first.get('description', '')}.", ""]
        metric = "test NMSE (lower is better)" if spec.metric == "nmse" else "test accuracy (%)"
        delta = "Δ vs BPTT" if spec.metric == "nmse" else "Δ vs BPTT (points)"
        lines += [
            f"| learner | {metric} | {delta} | seeds | step temp memory (MiB) | × BPTT | peak RSS (MiB) | "
            "time / epoch (s) | compile (s) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if "mean" not in r:
                lines.append(f"| {r['learner']} | failed: {'; '.join(r['errors'])[:120]} | | 0 | | | | | |")
                continue
            scale = 100.0 if r["metric"] == "accuracy" else 1.0
            value = f"{r['mean'] * scale:.1f} ± {r['std'] * scale:.1f}" if scale == 100.0 else (
                f"{r['mean']:.3f} ± {r['std']:.3f}")
            d = "" if r["learner"] == "bptt" or "vs_bptt" not in r else (
                f"{r['vs_bptt']:+.1f}" if scale == 100.0 else f"{r['vs_bptt']:+.3f}")
            ratio = f"{r['temp_vs_bptt']:.2f}" if "temp_vs_bptt" in r and r["learner"] != "bptt" else ""
            lines.append(
                f"| {r['learner']} | {value}{'' if r.get('finite', True) else ' (loss not finite)'} | {d} | "
                f"{len(r['seeds'])} | {_mib(r.get('temp_bytes'))} | {ratio} | {r.get('rss_peak_mb', 0):.0f} | "
                f"{r['epoch_s']:.2f} | {r.get('compile_s', 0):.1f} |"
            )
        lines.append("")
    t = targets(summary)
    if t:
        lines += ["### Targets", ""]
        for x in t:
            lines.append(f"- {x['task']}: {x['target']}: {x['points_vs_bptt']:+.1f} points "
                         f"({'pass' if x['passed'] else 'FAIL'})")
        lines.append("")
    return "\n".join(lines)


def plot_curves(result: dict, path: str) -> bool:
    """Test metric per epoch (mean over seeds, band = min..max), one panel per task; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    import numpy as np

    runs = [r for r in result["runs"] if r.get("status") == "ok"]
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    if not tasks:
        return False
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    learners = list(dict.fromkeys(r["learner"] for r in runs))
    colours = {name: f"C{i}" for i, name in enumerate(learners)}
    for ax, task in zip(axes.flat, tasks):
        spec = get_task(task)
        for learner in learners:
            group = [r for r in runs if r["task"] == task and r["learner"] == learner]
            if not group:
                continue
            n = min(len(r["curve"]["test"]) for r in group)
            ys = np.array([r["curve"]["test"][:n] for r in group]) * (100.0 if spec.metric == "accuracy" else 1.0)
            x = np.arange(1, n + 1)
            style = {"lw": 2.0, "color": "k"} if learner == "bptt" else {"lw": 1.2, "color": colours[learner]}
            ax.plot(x, ys.mean(0), label=learner, **style)
            if len(group) > 1:
                ax.fill_between(x, ys.min(0), ys.max(0), color=style["color"], alpha=0.15, lw=0)
        ax.set_title(spec.title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)" if spec.metric == "accuracy" else "test NMSE")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles: dict = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
