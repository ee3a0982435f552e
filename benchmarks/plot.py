"""Plot temp memory and time per sequence against T (log-log) from a ``benchmarks.run`` JSON.

Run from the repository root::

    python -m benchmarks.plot results.json --out docs/images/benchmarks_quick.png

One row per model, two panels: XLA temp memory (compiled memory analysis) and
median wall time per sequence. BPTT, D_RTRL and ES_D_RTRL are solid lines;
``vjp_method='multi-step'`` windows dashed, single-step rule on windows
dash-dotted; the forward pass dotted grey.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if __package__ in (None, ""):  # `python benchmarks/plot.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks.methods import parse_method

__all__ = ["plot_results", "main"]

STYLE = {
    "bptt": dict(color="tab:red", marker="o"),
    "d_rtrl": dict(color="tab:blue", marker="s"),
    "es_d_rtrl": dict(color="tab:green", marker="^"),
}


def _series(records, model, method, field):
    pts = sorted((r["config"]["T"], r[field]) for r in records
                 if r["model"] == model and r["method"] == method and r.get(field) is not None)
    return [t for t, _ in pts], [v for _, v in pts]


def _style(method: str) -> dict | None:
    if method == "forward":
        return dict(color="0.5", linestyle=":", marker=".")
    try:
        base, K, vjp = parse_method(method)
    except ValueError:
        return None
    if base not in STYLE:
        return None
    st = dict(STYLE[base])
    if K is not None:  # windows: dashed for vjp_method='multi-step', dash-dot for the single-step rule
        st.update(linestyle="--" if vjp == "multi-step" else "-.", alpha=0.7, fillstyle="none")
    return st


def plot_results(result: dict, out: str, windows: bool = True) -> str:
    """Draw ``result`` (the JSON of ``benchmarks.run``) into the PNG ``out``; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = result["results"]
    models = list(dict.fromkeys(r["model"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    if not windows:
        methods = [m for m in methods if parse_method(m)[1] is None]
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.6 * len(models)), squeeze=False)
    for row, model in zip(axes, models):
        for method in methods:
            st = _style(method)
            if st is None:
                continue
            T, mem = _series(records, model, method, "temp_bytes")
            if T and method != "forward":
                row[0].plot(T, [m / 2**20 for m in mem], label=method, **st)
            T, sec = _series(records, model, method, "time_s")
            if T:
                row[1].plot(T, sec, label=method, **st)
        for ax, ylabel in zip(row, ("XLA temp memory (MiB)", "time per sequence (s)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("sequence length T")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{model} (batch {records[0]['config']['batch']})")
            ax.grid(True, which="both", alpha=0.3)
        row[1].legend(fontsize=8)
    machine = result.get("meta", {}).get("machine", {})
    backend, kind = machine.get("backend", "?"), machine.get("device_kind", "")
    device = backend if kind in ("", backend) else f"{backend} ({kind})"
    commit = machine.get("braintrace_commit")
    fig.suptitle(f"braintrace benchmarks ({result.get('meta', {}).get('mode', '?')}"
                 f"{', commit ' + commit if commit else ''}): {device}; host {machine.get('cpu', '?')}, "
                 f"{machine.get('affinity_cpus') or machine.get('cpu_count')} CPUs", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="results of python -m benchmarks.run --out ...")
    parser.add_argument("--out", default="benchmarks.png", help="PNG to write")
    parser.add_argument("--no-windows", action="store_true", help="leave out the windowed methods")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        result = json.load(f)
    out = plot_results(result, args.out, windows=not args.no_windows)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
