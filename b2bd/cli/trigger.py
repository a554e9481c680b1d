"""``b2bd trigger TASK [--base ID ...] [--as-of DATE] [--force] [--format text|json]``: run one
task now (as of DATE: as it would have run on that local date).

With a daemon running (found through its control socket), the daemon runs it beside its
schedule, under the task's ``overlap`` policy: ``skip`` refuses while a transfer of the task on
one of those bases is outstanding (exit 75, EX_TEMPFAIL: try again later), ``queue`` waits its
turn. Without a daemon it runs here, in the foreground, as before. Either way the run is
journaled like a scheduled one, as ``<task>/manual-<UTC time>``, its deliveries are named
``manual-<UTC time>``, and the same summary is printed. Exit 0 when every transfer succeeded,
1 otherwise (or when the daemon stopped before the run finished), 2 for usage and I/O errors
(unknown task, a disabled task without ``--force``, base not a target of the task, journal in
use without a reachable daemon, the pupil key missing or unreadable while the journal holds
digests).

On a terminal a progress line on stderr shows bases done, records read, and retries waiting
and why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from b2bd.cli import UsageError, did_you_mean
from b2bd.cli.client import DaemonLink, error_exit, find_daemon
from b2bd.cli.configdir import load, unusable
from b2bd.clock import utc_now
from b2bd.config.load import TASKS_DIR
from b2bd.config.model import Config, Settings, Task
from b2bd.faults import shown
from b2bd.journal.keys import KeyFileError, PupilKeyer, open_keyer
from b2bd.journal.reader import JournalError, repair_message
from b2bd.journal.state import State
from b2bd.journal.writer import Journal, JournalBusy, JournalFailed
from b2bd.statedir import root_refusal
from b2bd.transfer.engine import Engine
from b2bd.transfer.manual import (
    TriggerRefused,
    TriggerRequest,
    check_request,
    progress_from_json,
    run_summary,
)
from b2bd.transfer.results import Progress

EXIT_SUCCEEDED = 0
EXIT_NOT_ALL = 1
EXIT_BUSY = 75  # EX_TEMPFAIL: refused under overlap: skip; try again later
USAGE_REFUSALS = frozenset({"unknown-task", "disabled", "bad-base", "no-bases", "bad-request"})


def register(sub: Any) -> None:
    p = sub.add_parser("trigger", help="run one task now (through the daemon when it runs)")
    p.add_argument("task", metavar="TASK", help="the task id")
    p.add_argument(
        "--base",
        action="append",
        default=None,
        metavar="ID",
        help="only this base (repeatable; must be one of the task's bases)",
    )
    p.add_argument(
        "--as-of",
        type=_local_date,
        metavar="DATE",
        help="run as it would have run on this local date YYYY-MM-DD (cohort, windows, "
        "academic year; nothing dated or changed after it is sent); default today",
    )
    p.add_argument(
        "--force", action="store_true", help="run it even if it is disabled (enabled: false)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def _local_date(text: str) -> dt.date:
    """``--as-of``: a date written YYYY-MM-DD (Python would also take 20260905)."""
    try:
        day = dt.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    return day


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    settings = config.settings
    if settings is None:
        raise UsageError(unusable(config, args.config, "so no run can start"))
    request = request_from_args(args)
    try:
        task, bases = check_request(config, request, now=utc_now())
    except TriggerRefused as refused:
        if refused.code == "unknown-task" and (why := why_not_valid(config, request.task)):
            raise UsageError(f"no valid task {shown(request.task)!r}: {why}") from None
        hint = (
            did_you_mean(request.task, list(config.tasks)) if refused.code == "unknown-task" else ""
        )
        raise UsageError(f"{refused.message}{hint}") from None
    display = TtyProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        link = find_daemon(settings)
        if link is not None:
            outcome = trigger_through(link, request, display)
        else:
            outcome = trigger_here(config, settings, task, bases, display, request.as_of)
    finally:
        if display is not None:
            display.clear()
    if isinstance(outcome, int):
        return outcome
    if args.format == "json":
        print(json.dumps(outcome, indent=2))
    else:
        for line in run_text(outcome):
            print(line)
    succeeded = all(t["outcome"] == "succeeded" for t in outcome["transfers"])
    return EXIT_SUCCEEDED if succeeded else EXIT_NOT_ALL


def why_not_valid(config: Config, task_id: str) -> str:
    """Why ``task_id`` is not among the valid tasks, when the config says: the ``tasks/`` folder
    cannot be read (missing, not a folder, not ours to read), or its own file
    (``tasks/<id>.yaml``) has errors. The first such error as validate prints it, or ""."""
    own = {f"{TASKS_DIR}/{task_id}.yaml", f"{TASKS_DIR}/{task_id}.yml"}
    found = sorted(
        p
        for p in config.problems
        if p.severity == "error" and (p.file == f"{TASKS_DIR}/" or p.file in own)
    )
    if not found:
        return ""
    p = found[0]
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    return (
        f"{p.file}:{p.line}:{p.column}: error: {p.message} [{p.rule}]{more} (see `b2bd validate`)"
    )


def request_from_args(args: argparse.Namespace) -> TriggerRequest:
    """What the command line asks for (parsing only; executing is elsewhere)."""
    bases = tuple(dict.fromkeys(args.base)) if args.base else None
    return TriggerRequest(args.task, bases, as_of=args.as_of, force=args.force)


def trigger_here(
    config: Config,
    settings: Settings,
    task: Task,
    bases: tuple[str, ...],
    display: TtyProgress | None,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """Run the task in this process (no daemon is running) and return its summary."""
    journal = open_journal(settings.state_dir)
    try:
        state = journal.state()
        keyer = checked_keyer(settings.state_dir, state)
        with Engine(config, journal, keyer, state=state) as engine:
            slot = utc_now().replace(microsecond=0)
            try:
                result = engine.run(
                    task,
                    slot,
                    manual=True,
                    bases=bases,
                    as_of=as_of,
                    on_progress=display.update if display else None,
                )
            except KeyboardInterrupt:
                # Leaving the Engine waits for the transfers still running (a stuck share can
                # hold one for long): say so, and start no retry meanwhile.
                engine.stop.set()
                print(
                    "b2bd: interrupted: waiting for the transfers running now to end (Ctrl-C "
                    "again to leave them); the run stays unfinished in the journal and the "
                    "daemon's next start closes it as interrupted",
                    file=sys.stderr,
                    flush=True,
                )
                raise
    except JournalFailed as exc:
        raise UsageError(
            f"{exc}; the run is unfinished in the journal (deliveries already written stay, and "
            "the next run of the task sends their data again)"
        ) from None
    finally:
        journal.close()
    return run_summary(result)


def checked_keyer(state_dir: Path, state: State) -> PupilKeyer:
    """The pupil keyer, its key loaded before any work: a missing or unreadable key while the
    journal holds digests stops here with the reason (never a silent new key)."""
    try:
        return open_keyer(state_dir, journal_holds_digests=state.holds_digests)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None


def open_journal(state_dir: Path) -> Journal:
    """The journal opened for writing, its repairs reported on stderr; a UsageError (one line)
    when it cannot be. As root, refuses a state dir that belongs to another user (the service's):
    files root would create there could not be written by the service afterwards."""
    if (refusal := root_refusal(state_dir, "trigger ...")) is not None:
        raise UsageError(refusal)
    try:
        journal = Journal.open(state_dir)
    except JournalBusy as exc:
        raise UsageError(
            f"cannot open the journal in {state_dir}: {exc}; a daemon holds it but "
            "answers on none of its control socket places (see `control_socket` in b2bd.yaml)"
        ) from None
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    for repair in journal.repairs:
        print(f"b2bd: warning: {repair_message(repair)}", file=sys.stderr)
    return journal


def trigger_through(
    link: DaemonLink, request: TriggerRequest, display: TtyProgress | None
) -> dict[str, Any] | int:
    """Have the running daemon run it; its summary, or the exit code of a refusal or of a
    daemon that stopped first (the reason is printed on stderr)."""
    try:
        for line in link.request("trigger", **request.to_json()):
            kind = line.get("type")
            if kind == "result":
                return dict(line["result"])
            if kind == "error":
                return _refused(str(line.get("code")), str(line.get("message")))
            if kind == "accepted":
                for base, holder in (line.get("queued") or {}).items():
                    _note(display, f"{base} waits for run {holder} (overlap: queue)")
            elif line.get("event") == "stopping":
                _note(display, str(line.get("message")))
            elif display is not None and (event := progress_from_json(line)) is not None:
                display.update(event)
    except KeyboardInterrupt:
        print(
            "b2bd: stopped watching; the run goes on in the daemon "
            f"(`b2bd history {request.task}` shows it)",
            file=sys.stderr,
        )
        raise
    raise UsageError(f"the daemon at {link.path} sent no result")  # pragma: no cover


def _refused(code: str, message: str) -> int:
    """README's table: a usage refusal 2 (raised), ``busy`` (overlap: skip) 75, a stopping
    daemon 1 (the run did not happen), the daemon's own I/O failure as :func:`error_exit`."""
    if code in USAGE_REFUSALS:
        raise UsageError(message)
    print(f"b2bd: {message}", file=sys.stderr)
    if code == "busy":
        return EXIT_BUSY
    return EXIT_NOT_ALL if code in ("stopping", "stopped") else error_exit(code)


def _note(display: TtyProgress | None, text: str) -> None:
    if display is not None:
        display.note(text)
    else:
        print(f"b2bd: {text}", file=sys.stderr)


def run_text(summary: dict[str, Any]) -> list[str]:
    transfers = summary["transfers"]
    done = sum(t["outcome"] == "succeeded" for t in transfers)
    as_of = f" as of {summary['reference_date']}" if summary.get("as_of") else ""
    lines = [
        f"run {summary['run']}{as_of}: {summary['outcome']} "
        f"({done} of {len(transfers)} transfers succeeded)"
    ]
    for t in transfers:
        if t["outcome"] == "succeeded":
            counts = " ".join(f"{kind}={n}" for kind, n in t["counts"].items()) or "nothing"
            extra = f"read={t['read']} rejected={t['rejected']} missing={t['missing']}"
            if t.get("joined") or t.get("left"):  # changed data: pupils crossing the cohort's edge
                extra += f" joined={t['joined']} left={t['left']}"
            if t["rejected_by_reason"]:
                why = ", ".join(f"{r}={n}" for r, n in t["rejected_by_reason"].items())
                extra += f" ({why})"
            lines.append(f"  {t['base']}  succeeded  {counts}  {extra}  -> {t['delivery']}")
        else:
            tries = f" after {t['attempts']} attempts" if t["attempts"] > 1 else ""
            lines.append(f"  {t['base']}  {t['outcome']}  {t['reason']}: {t['message']}{tries}")
    return lines


class TtyProgress:
    """One self-rewriting status line: bases done and running, records read, and the latest
    thing worth a word (a retry waiting and why, a base queued behind another run, the daemon
    stopping); at most 5 updates/s."""

    def __init__(self, stream: TextIO, interval: float = 0.2) -> None:
        self.stream = stream
        self.interval = interval
        self._lock = threading.Lock()
        self._records: dict[str, int] = {}
        self._started: set[str] = set()
        self._done = 0
        self._shown = 0.0
        self._width = 0
        self._news = ""

    def update(self, event: Progress) -> None:
        with self._lock:
            if event.event == "started":
                self._started.add(event.base)
            elif event.event == "finished":
                self._done += 1
            elif event.event == "retry":
                self._news = (
                    f"{event.base}: attempt {event.attempt} failed ({event.reason}: "
                    f"{event.message}); retry in {event.wait:g}s"
                )
            self._records[event.base] = max(self._records.get(event.base, 0), event.records)
            now = time.monotonic()
            urgent = event.event in ("finished", "retry")
            if not urgent and now - self._shown < self.interval:
                return
            self._shown = now
            self._write(self._text())

    def note(self, text: str) -> None:
        with self._lock:
            self._news = text
            self._write(self._text())

    def _text(self) -> str:
        text = (
            f"{self._done} bases done, {len(self._started) - self._done} running, "
            f"{sum(self._records.values()):,} records read"
        )
        return f"{text}; {self._news}" if self._news else text

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
