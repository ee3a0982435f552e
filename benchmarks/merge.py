"""Merge the JSON results of several runs into one table, one JSON and the targets.

For grids split across processes, e.g. one run per model side by side, each
pinned to its own two cores of a larger host (``taskset -c 0,1 python -m
benchmarks.run --models gru-512 --out gru512.json &`` ...)::

    python -m benchmarks.merge gru64.json lif256.json --out all.json --md all.md

Records keep the order of the files; the targets are evaluated on all of
them together (a ratio still compares two measurements of the same run, as
each run measures a whole model). ``meta`` keeps each run's own ``meta`` under
``runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if __package__ in (None, ""):  # `python benchmarks/merge.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks.run import format_table
from benchmarks.targets import evaluate_targets, format_targets

__all__ = ["merge_results", "main"]


def merge_results(results: list[dict], sources: list[str] | None = None) -> dict:
    """One result dict (``meta``, ``results``, ``targets``) from several.

    Raises ``ValueError`` if a (config, method) appears in two of them.
    """
    records: list[dict] = []
    seen: dict[tuple, int] = {}
    for i, res in enumerate(results):
        for r in res.get("results", []):
            key = (json.dumps(r["config"], sort_keys=True), r["method"])
            if key in seen:
                where = sources or [str(j) for j in range(len(results))]
                raise ValueError(
                    f"{r['name']} {r['method']} is in both {where[seen[key]]} and {where[i]}; merge runs of "
                    "disjoint configs."
                )
            seen[key] = i
            records.append(r)
    metas = [dict(res.get("meta", {}), source=(sources[i] if sources else i)) for i, res in enumerate(results)]
    return {"meta": {"mode": "merged", "runs": metas}, "results": records, "targets": evaluate_targets(records)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help="JSON files written by benchmarks.run --out")
    parser.add_argument("--out", help="write the merged JSON here")
    parser.add_argument("--md", help="write the markdown table and targets here")
    args = parser.parse_args(argv)
    results = []
    for path in args.inputs:
        with open(path) as f:
            results.append(json.load(f))
    merged = merge_results(results, args.inputs)
    text = format_table(merged["results"]) + "\n\n" + format_targets(merged["targets"]) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(merged, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
    return merged


if __name__ == "__main__":
    main()
