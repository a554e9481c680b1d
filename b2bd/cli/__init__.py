"""The ``b2bd`` command line: parses arguments and hands each command to its module.

Each command lives in ``b2bd/cli/<module>.py`` with ``register(subparsers)``; the module adds its
parser(s) and sets ``func`` to a ``run(args) -> int`` that prints and returns the exit code.
Decisions live in the package proper, not here.

Every parser is a :class:`Parser`: global options (``--config``) are accepted before or after
the command (``b2bd validate --config DIR``), options are never silently abbreviated, and a
mistyped command or choice is answered with the nearest valid one ("did you mean").

Whatever a command does not handle itself ends here as one line on stderr, never a traceback: a
:class:`UsageError` or an ``OSError`` (the path, what went wrong, what to do: exit 2). A reader
that stopped reading (``b2bd status | head``) ends the command quietly with 141, as a tool
killed by SIGPIPE would.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from b2bd import __version__
from b2bd.faults import explain
from b2bd.shard import Shard, parse_shard
from b2bd.statedir import running_as

# Command modules, in the order `b2bd --help` lists them.
COMMANDS = (
    "validate", "schema", "preflight", "migrate", "plan", "diff", "run", "trigger", "journal",
    "history", "status",
)  # fmt: skip

EXIT_USAGE = 2
CONFIG_HELP = "config dir: b2bd.yaml, bases.yaml, tasks/ (default: $B2BD_CONFIG or /etc/b2bd)"
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class UsageError(Exception):
    """A problem with how b2bd was called or with a file it was pointed at (exit 2)."""


def shard_option(text: str) -> Shard:
    """argparse type of ``--shard I/N`` (``validate``, ``plan``)."""
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SHARD_HELP = (
    "show shard I of N's view (0 <= I < N): the bases that instance owns, as `shard: {index: "
    "I, of: N}` in b2bd.yaml would select them"
)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the choice nearest ``word``, or ``""`` if none is near."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` without abbreviations, with "did you mean" for a bad choice, and
    with the global options on every command's parser too. Sub-commands are made of this class
    (argparse gives a sub-parser its parent's class), so nested ones get the same behaviour."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # On a command's parser the global option's default is "not given", so it leaves the
        # value parsed before the command (or the top-level default) in place.
        self.add_argument(
            "--config", type=Path, default=argparse.SUPPRESS, metavar="DIR", help=CONFIG_HELP
        )

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(c) for c in choices]
        hint = did_you_mean(str(value), names)
        what = "command" if isinstance(action, argparse._SubParsersAction) else "choice"
        raise argparse.ArgumentError(
            action, f"unknown {what} {value!r}{hint} (choose from {', '.join(names)})"
        )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; given the ``command`` word about to run, only the command modules
    up to the one that registers it are imported (each module imports what its commands need,
    and a daemon's or journal's imports cost ``validate`` a tenth of its start-up)."""
    parser = Parser(
        prog="b2bd",
        description="Scheduled B2B:Student pupil-data exchange between an LA and its schools.",
    )
    parser.set_defaults(config=Path(os.environ.get("B2BD_CONFIG", "/etc/b2bd")))
    parser.add_argument("--version", action="version", version=f"b2bd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"b2bd.cli.{name}").register(sub)
        if command is not None and command in sub.choices:
            break
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` when it can be told without the full parser, else None.

    Conservative: only ``--config DIR``/``--config=DIR`` may come before it; anything else
    (``-h``, ``--version``, ``--``, a typo) gets the full parser, so help and error messages list
    every command exactly as before.
    """
    words = iter(argv)
    for word in words:
        if not word.startswith("-"):
            return word
        option, has_value, _ = word.partition("=")
        if option != "--config":
            return None
        if not has_value:
            next(words, None)
    return None


GLOBAL_OPTIONS = ("--config", "--version", "--help", "-h")


def _unknown_leading_option(argv: Sequence[str]) -> str | None:
    """An option before the command word that is not a global one (argparse would otherwise
    take its value for the command and report that as an unknown command)."""
    words = iter(argv)
    for word in words:
        if not word.startswith("-") or word == "--":
            return None
        option, has_value, _ = word.partition("=")
        if option not in GLOBAL_OPTIONS:
            return option
        if option == "--config" and not has_value:
            next(words, None)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_word(words))
    if (option := _unknown_leading_option(words)) is not None:
        parser.error(f"unknown option {option!r}{did_you_mean(option, GLOBAL_OPTIONS)}")
    args = parser.parse_args(words)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"b2bd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        print(f"b2bd: {explain(exc, user=running_as())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is still buffered
    does not fail a second time on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a descriptor (embedded): nothing to flush
        pass
    finally:
        os.close(devnull)
