"""``braintrace bench``: the memory and time benchmarks of a source checkout.

The benchmarks are not part of the installed package: they live in
``benchmarks/run.py`` of the repository. This command finds the checkout that
braintrace is installed from (``pip install -e .``), or the current folder if
it is a checkout, and calls ``benchmarks.run.main(argv)``; ``--quick`` is the
small grid (a few minutes on 2 CPU cores). Other options go to
``benchmarks/run.py`` unchanged (``braintrace bench --quick --out r.json``).
``--tasks`` runs the task table instead (``benchmarks/tasks.py``: accuracy,
memory and time of every learner on real tasks; ``--tasks row_mnist,vowels``
for a subset).
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
    p.add_argument("--quick", action="store_true", help="the small grid (with --tasks: the CI-size table)")
    p.add_argument("--tasks", nargs="?", const="all", default=None, metavar="NAMES",
                   help="run the task table (benchmarks/tasks.py) instead; optionally a comma-separated subset")
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
    tasks = getattr(args, "tasks", None)
    script = "run" if tasks is None else "tasks"
    argv = (["--quick"] if args.quick else []) + ([] if tasks in (None, "all") else ["--tasks", tasks])
    argv += list(args.rest)
    sys.path.insert(0, str(root))
    try:
        for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
            del sys.modules[name]  # a `benchmarks` package from elsewhere must not shadow the checkout's
        module = importlib.import_module(f"benchmarks.{script}")
    except ImportError as err:
        raise CLIError(f"cannot import benchmarks/{script}.py from {root}: {err}") from err
    finally:
        sys.path.remove(str(root))
    main = getattr(module, "main", None)
    if not callable(main):
        raise CLIError(f"{os.path.join(root, 'benchmarks', script + '.py')} has no main(argv).")
    print(f"braintrace bench: running benchmarks/{script}.py {' '.join(argv)} from {root}", flush=True)
    main(argv)
    return 0
