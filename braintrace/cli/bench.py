"""``braintrace bench``: the memory and time benchmarks of a source checkout.

The benchmarks are not part of the installed package: they live in
``benchmarks/run.py`` of the repository. This command finds the checkout that
braintrace is installed from (``pip install -e .``), or the current folder if
it is a checkout, and calls ``benchmarks.run.main(argv)``; ``--quick`` is the
small grid (a few minutes on 2 CPU cores). Other options go to
``benchmarks/run.py`` unchanged (``braintrace bench --quick --out r.json``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "find_checkout"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench",
        help="run the benchmarks of a source checkout (benchmarks/run.py)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    p.add_argument("--quick", action="store_true", help="the small grid")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options passed on to benchmarks/run.py")
    p.set_defaults(run=run)
    return p


def find_checkout(candidates: list[Path] | None = None) -> Path | None:
    """The first folder holding ``benchmarks/run.py`` and ``braintrace/``: the installed package's
    parent (editable install), then the current folder."""
    if candidates is None:
        package = Path(__file__).resolve().parents[1]
        candidates = [package.parent, Path.cwd()]
    for root in candidates:
        if (root / "benchmarks" / "run.py").is_file() and (root / "braintrace").is_dir():
            return root
    return None


def run(args: argparse.Namespace, candidates: list[Path] | None = None) -> int:
    from . import CLIError

    root = find_checkout(candidates)
    if root is None:
        raise CLIError(
            "the benchmarks live in the source checkout (benchmarks/run.py), which this installation does not "
            "have: clone the braintrace repository, `python -m pip install -e .` from it, and run "
            "`braintrace bench --quick` (or `python -m benchmarks.run --quick`) there."
        )
    argv = (["--quick"] if args.quick else []) + list(args.rest)
    sys.path.insert(0, str(root))
    try:
        for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
            del sys.modules[name]  # a `benchmarks` package from elsewhere must not shadow the checkout's
        module = importlib.import_module("benchmarks.run")
    except ImportError as err:
        raise CLIError(f"cannot import benchmarks/run.py from {root}: {err}") from err
    finally:
        sys.path.remove(str(root))
    main = getattr(module, "main", None)
    if not callable(main):
        raise CLIError(f"{os.path.join(root, 'benchmarks', 'run.py')} has no main(argv).")
    print(f"braintrace bench: running benchmarks/run.py {' '.join(argv)} from {root}", flush=True)
    main(argv)
    return 0
