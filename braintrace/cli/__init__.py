"""The ``braintrace`` command: ``train``, ``graph`` and ``bench``.

``braintrace train`` trains a recurrent spiking network online on
spike-encoded handwritten digits (or another task, model and learner),
``braintrace graph MODULE:FACTORY`` shows which weights of your model learn
online and why, and ``braintrace bench --quick`` runs the quick benchmarks of a
source checkout. ``braintrace SUBCOMMAND --help`` lists the options.

Bad arguments exit with argparse's usage message and status 2; expected
failures (a missing optional dependency, a model the compiler rejects) print
one line ``braintrace: error: ...`` and exit with status 1 (``--traceback``
shows the full traceback instead).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import bench, graph, train

__all__ = ["main", "build_parser", "CLIError"]


class CLIError(Exception):
    """An expected failure, reported as one line and exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    """The ``braintrace`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="braintrace",
        description="Online learning of recurrent and spiking networks by eligibility-trace propagation.",
        epilog="Run braintrace train to train a spiking network on handwritten digits.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"braintrace {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="one of these; braintrace COMMAND --help lists its options")
    sub.required = True
    train.add_parser(sub)
    graph.add_parser(sub)
    bench.add_parser(sub)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from ..errors import BraintraceError

    return (CLIError, BraintraceError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``braintrace`` command; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on an expected failure, 2 on bad arguments (raised by
        argparse as ``SystemExit``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("braintrace: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as err:
        if args.traceback:
            raise
        print(f"braintrace {args.command}: error: {err}", file=sys.stderr)
        return 1
