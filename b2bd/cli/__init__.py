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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; given the ``command`` word about to run, only the command modules
    up to the one that registers it are imported (each module imports what its commands need,
    and a daemon's or journal's imports cost ``validate`` a tenth of its start-up)."""
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
        if command is not None and command in sub.choices:
            break
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` when it can be told without the full parser, else None.

    Conservative: only ``--config DIR``/``--config=DIR`` (or an abbreviation argparse would
    accept) may come before it; anything else (``-h``, ``--``, a typo) gets the full parser, so
    help and error messages list every command exactly as before.
    """
    words = iter(argv)
    for word in words:
        if not word.startswith("-"):
            return word
        option, has_value, _ = word.partition("=")
        if len(option) < 3 or not "--config".startswith(option):
            return None
        if not has_value:
            next(words, None)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_word(words)).parse_args(words)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"b2bd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
