"""The ``b2bd`` command line: parses arguments and hands each command to its module.

Each command lives in ``b2bd/cli/<module>.py`` with ``register(subparsers)``; the module adds its
parser(s) and sets ``func`` to a ``run(args) -> int`` that prints and returns the exit code.
Decisions live in the package proper, not here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Command modules, in the order `b2bd --help` lists them.
COMMANDS = ("validate", "onboard", "plan", "daemon", "trigger", "journal")

EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with how b2bd was called or with a file it was pointed at (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2bd",
        description="Scheduled B2B:Student pupil-data exchange between an LA and its schools.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("B2BD_CONFIG", "/etc/b2bd")),
        help="config dir: b2bd.yaml, bases.yaml, tasks/ (default: $B2BD_CONFIG or /etc/b2bd)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"b2bd.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"b2bd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
