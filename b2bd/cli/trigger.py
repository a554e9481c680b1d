"""``b2bd trigger TASK [--base ID ...] [--format text|json]``: run one task now, in the foreground.

The run is journaled like a scheduled one, as ``<task>/manual-<UTC time>``, and its deliveries
are named ``manual-<UTC time>``; the reference date for cohorts is today's local date in the
task's timezone. Exit 0 when every transfer succeeded, 1 otherwise, 2 for usage and I/O errors
(unknown task, base not a target of the task, journal in use by a running daemon).

While it runs on a terminal, a progress line on stderr shows bases done and records read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
from typing import Any, TextIO

from b2bd.cli import UsageError
from b2bd.config import ConfigDirError, load_config
from b2bd.journal import Journal, JournalError, PupilKeyer
from b2bd.transfer.engine import Engine, Progress, RunResult, TransferResult

EXIT_SUCCEEDED = 0
EXIT_NOT_ALL = 1


def register(sub: Any) -> None:
    p = sub.add_parser("trigger", help="run one task now, in the foreground")
    p.add_argument("task", metavar="TASK", help="the task id")
    p.add_argument(
        "--base",
        action="append",
        default=None,
        metavar="ID",
        help="only this base (repeatable; must be one of the task's bases)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigDirError as exc:
        raise UsageError(str(exc)) from exc
    settings = config.settings
    if settings is None:
        raise UsageError(f"{args.config}: b2bd.yaml is not usable (see `b2bd validate`)")
    task = config.tasks.get(args.task)
    if task is None:
        known = ", ".join(sorted(config.tasks)) or "none"
        raise UsageError(
            f"no valid task {args.task!r} in {args.config} (valid tasks: {known}; "
            "an invalid task file is reported by `b2bd validate`)"
        )
    bases = list(dict.fromkeys(args.base)) if args.base else None
    if bases is not None:
        outside = [b for b in bases if b not in task.targets]
        if outside:
            raise UsageError(
                f"base(s) {', '.join(outside)} not among task {task.id}'s bases "
                f"({', '.join(task.targets) or 'none'})"
            )
    if not (bases or task.targets):
        raise UsageError(f"task {task.id} has no bases to run on (see `b2bd validate`)")
    try:
        journal = Journal.open(settings.state_dir)
    except (JournalError, OSError) as exc:
        raise UsageError(f"cannot open the journal in {settings.state_dir}: {exc}") from exc
    display = TtyProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        with Engine(config, journal, PupilKeyer(settings.state_dir)) as engine:
            slot = dt.datetime.now(dt.UTC).replace(microsecond=0)
            result = engine.run(
                task,
                slot,
                manual=True,
                bases=bases,
                on_progress=display.update if display else None,
            )
    finally:
        if display is not None:
            display.clear()
        journal.close()
    if args.format == "json":
        print(json.dumps(run_json(result), indent=2))
    else:
        for line in run_text(result):
            print(line)
    succeeded = all(t.outcome == "succeeded" for t in result.transfers)
    return EXIT_SUCCEEDED if succeeded else EXIT_NOT_ALL


def transfer_json(t: TransferResult) -> dict[str, Any]:
    return {
        "base": t.base,
        "outcome": t.outcome,
        "reason": t.reason,
        "message": t.message,
        "attempts": t.attempts,
        "counts": t.counts,
        "rejected": t.rejected,
        "rejected_by_reason": t.rejected_by_reason,
        "dropped": t.dropped,
        "read": t.read,
        "missing": t.missing,
        "watermark": t.watermark,
        "delivery": str(t.delivery) if t.delivery else None,
    }


def run_json(result: RunResult) -> dict[str, Any]:
    return {
        "run": result.run,
        "task": result.task,
        "slot": result.slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "manual": result.manual,
        "outcome": result.outcome,
        "transfers": [transfer_json(t) for t in result.transfers],
    }


def run_text(result: RunResult) -> list[str]:
    done = sum(t.outcome == "succeeded" for t in result.transfers)
    lines = [
        f"run {result.run}: {result.outcome} "
        f"({done} of {len(result.transfers)} transfers succeeded)"
    ]
    for t in result.transfers:
        if t.outcome == "succeeded":
            counts = " ".join(f"{kind}={n}" for kind, n in t.counts.items()) or "nothing"
            extra = f"read={t.read} rejected={t.rejected} missing={t.missing}"
            if t.rejected_by_reason:
                extra += " (" + ", ".join(f"{r}={n}" for r, n in t.rejected_by_reason.items()) + ")"
            lines.append(f"  {t.base}  succeeded  {counts}  {extra}  -> {t.delivery}")
        else:
            tries = f" after {t.attempts} attempts" if t.attempts > 1 else ""
            lines.append(f"  {t.base}  {t.outcome}  {t.reason}: {t.message}{tries}")
    return lines


class TtyProgress:
    """One self-rewriting status line (bases done, records read), at most 5 updates/s."""

    def __init__(self, stream: TextIO, interval: float = 0.2) -> None:
        self.stream = stream
        self.interval = interval
        self._lock = threading.Lock()
        self._records: dict[str, int] = {}
        self._started: set[str] = set()
        self._done = 0
        self._shown = 0.0
        self._width = 0

    def update(self, event: Progress) -> None:
        with self._lock:
            if event.event == "started":
                self._started.add(event.base)
            elif event.event == "finished":
                self._done += 1
            self._records[event.base] = max(self._records.get(event.base, 0), event.records)
            now = time.monotonic()
            if event.event != "finished" and now - self._shown < self.interval:
                return
            self._shown = now
            text = (
                f"{self._done} bases done, {len(self._started) - self._done} running, "
                f"{sum(self._records.values()):,} records read"
            )
            self._write(text)

    def _write(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        with self._lock:
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0
