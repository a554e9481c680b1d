"""``b2bd history [TASK]``: runs newest first, each base's outcome.

Asked of the running daemon through its control socket when there is one; without one, read
from the journal (and the compactions' history) in the state dir. Exit codes: 0 fine, 1 the
journal is damaged, 2 usage or I/O (a task neither in the config nor in the journal; a daemon
answering with an I/O error). Times are shown
in UTC (``...Z``); ``--format json`` prints the same facts for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from b2bd.cli import UsageError, did_you_mean
from b2bd.cli.client import DaemonError, error_exit, find_daemon
from b2bd.cli.configdir import with_settings
from b2bd.cli.journal import EXIT_OK, damaged, records
from b2bd.config.model import Config
from b2bd.faults import shown
from b2bd.journal.reader import JournalDamaged
from b2bd.report import history_report

DEFAULT_HISTORY_LIMIT = 20


def register(sub: Any) -> None:
    h = sub.add_parser("history", help="runs newest first, with each base's outcome")
    h.add_argument("task", nargs="?", metavar="TASK", help="only this task")
    h.add_argument("--limit", type=_positive, default=DEFAULT_HISTORY_LIMIT, metavar="N")
    h.add_argument("--format", choices=("text", "json"), default="text")
    h.set_defaults(func=run_history_command)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def run_history_command(args: argparse.Namespace) -> int:
    config, settings = with_settings(args.config)
    link = find_daemon(settings)
    try:
        if link is not None:
            runs = link.ask("history", task=args.task, limit=args.limit)
        else:
            runs = history_report(records(settings.state_dir), args.task, args.limit)
    except JournalDamaged as exc:
        return damaged(exc)
    except DaemonError as exc:
        if exc.code == "unknown-task":
            raise UsageError(unknown_task(args.task, config)) from None
        print(f"b2bd: {exc.message}", file=sys.stderr)
        return error_exit(exc.code)
    if args.task and not runs and args.task not in config.tasks:
        raise UsageError(unknown_task(args.task, config))
    print_history(runs, args.task, args.format)
    return EXIT_OK


def unknown_task(task: str, config: Config) -> str:
    """The message for a task id that is neither in the config nor in the journal."""
    hint = did_you_mean(task, list(config.tasks))
    known = ", ".join(sorted(config.tasks)) or "none"
    return f"no task {shown(task)!r} in the config or the journal{hint} (tasks: {known})"


def print_history(runs: list[dict[str, Any]], task: str | None, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(runs, indent=2))
        return
    if not runs:
        print("no runs in the journal" + (f" for task {task}" if task else ""))
    for r in runs:
        for line in _run_text(r):
            print(line)


def _run_text(r: dict[str, Any]) -> list[str]:
    outcome = r["outcome"] or "in progress or interrupted"
    finished = f", finished {r['finished']}" if r["finished"] else ""
    lines = [f"{r['run']}  {outcome}  (started {r['started']}{finished})"]
    for b in r["bases"]:
        base = b["base"]
        if b["outcome"] is None:
            lines.append(f"  {base}  no outcome")
        elif b["outcome"] == "succeeded":
            counts = " ".join(f"{k}={v}" for k, v in sorted(b["counts"].items())) or "nothing new"
            extra = "".join(
                f", {n} {label}"
                for n, label in ((b["rejected"], "rejected"), (b["missing"], "missing"))
                if n
            )
            lines.append(f"  {base}  succeeded  {counts}{extra}")
        elif b["outcome"] == "failed":
            lines.append(
                f"  {base}  failed  {b['reason']}: {b['message']} "
                f"(after {b['attempts']} attempt(s))"
            )
        else:
            lines.append(f"  {base}  skipped  {b['reason']}")
    return lines
