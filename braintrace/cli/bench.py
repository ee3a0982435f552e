"""``braintrace bench``: the memory and time benchmarks of a source checkout.

The benchmarks are not part of the installed package: they live in
benchmarks/run.py of the repository. This command finds the checkout that
braintrace is installed from (pip install -e .), or the current folder if it
is a checkout, and runs python -m benchmarks.run there; --quick is the small
grid (a few minutes on 2 CPU cores). Other options go to benchmarks/run.py
unchanged (braintrace bench --quick --out r.json); they are listed below.
--tasks runs the task table instead (python -m benchmarks.tasks: accuracy,
memory and time of every learner on real tasks; --tasks row_mnist,vowels for a
subset).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "find_checkout", "benchmark_command"]


class _HelpWithBenchmarkOptions(argparse.Action):
    """``-h``: this command's help, then the options of the checkout's benchmarks/run.py."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        parser.print_help()
        root = find_checkout()
        if root is None:
            print(f"\n{_NO_CHECKOUT}")
        else:
            proc = subprocess.run(benchmark_command(["--help"]), cwd=root, capture_output=True, text=True)
            if proc.returncode == 0:  # its option list, less its heading and its own -h
                options = proc.stdout.split("\noptions:\n", 1)[-1].splitlines()
                text = "\n".join(line for line in options if not line.lstrip().startswith("-h, --help"))
            else:
                text = proc.stderr
            print(f"\noptions of benchmarks/run.py (in {root}):\n{text.rstrip()}")
        parser.exit()


_NO_CHECKOUT = (
    "the benchmarks live in the source checkout (benchmarks/run.py), which this installation does not "
    "have: clone the braintrace repository, run python -m pip install -e . in it, then "
    "braintrace bench --quick (or python -m benchmarks.run --quick) there."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench",
        help="run the benchmarks of a source checkout (benchmarks/run.py)",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_HelpWithBenchmarkOptions,
                   help="show this help message and the options of benchmarks/run.py, and exit")
    p.add_argument("--quick", action="store_true",
                   help="the small grid (a few minutes on 2 CPU cores; with --tasks: the CI-size table)")
    p.add_argument("--tasks", nargs="?", const="all", default=None, metavar="NAMES",
                   help="run the task table (benchmarks/tasks.py) instead; optionally a comma-separated subset")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="...",
                   help="options passed on to benchmarks/run.py (listed below)")
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


def benchmark_command(argv: list[str], script: str = "run") -> list[str]:
    """``python -m benchmarks.SCRIPT ARGV`` with this interpreter (run it from the checkout).

    Examples
    --------
    >>> from braintrace.cli.bench import benchmark_command
    >>> benchmark_command(["--quick"])[1:]
    ['-m', 'benchmarks.run', '--quick']
    >>> benchmark_command(["--tasks", "vowels"], "tasks")[1:]
    ['-m', 'benchmarks.tasks', '--tasks', 'vowels']
    """
    return [sys.executable, "-m", f"benchmarks.{script}", *argv]


def run(args: argparse.Namespace, candidates: list[Path] | None = None) -> int:
    from . import CLIError

    root = find_checkout(candidates)
    if root is None:
        raise CLIError(_NO_CHECKOUT)
    tasks = getattr(args, "tasks", None)
    script = "run" if tasks is None else "tasks"
    argv = (["--quick"] if args.quick else []) + ([] if tasks in (None, "all") else ["--tasks", tasks])
    argv += list(args.rest)
    print(f"braintrace bench: running python -m benchmarks.{script} {' '.join(argv)} in {root}", flush=True)
    # the checkout's folder comes first on the subprocess's sys.path (python -m from cwd): its
    # `benchmarks` package is the one that runs, whatever this process has imported
    return subprocess.run(benchmark_command(argv, script), cwd=root, check=False).returncode
