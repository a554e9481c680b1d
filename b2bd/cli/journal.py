"""``b2bd journal verify|compact|cat``, ``b2bd history`` and ``b2bd status``.

All of them find the journal through ``state_dir`` in b2bd.yaml. ``history`` and ``status`` ask
the running daemon through its control socket when there is one (it also knows what is running
now); without one they, and ``cat``, only read (safe while the daemon runs: a record being
written at that moment is left out rather than reported). ``verify`` reads too, and when the
journal is intact acknowledges the repairs ``status`` shows (a ``repairs-acknowledged`` record,
written by the daemon when it runs). ``compact`` takes the journal's
lock, so it refuses while the daemon runs. Exit codes: 0 fine, 1 the journal is damaged (or in
use, for ``compact``; for ``status``: something needs attention, see :mod:`b2bd.report`), 2 usage.

Times are shown in UTC (``...Z``); ``--format json`` prints the same facts for scripts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from b2bd.cli import UsageError, did_you_mean
from b2bd.cli.client import DaemonError, find_daemon
from b2bd.config.load import ConfigDirError, load_config
from b2bd.config.model import Config, Settings
from b2bd.journal import Journal, JournalError, State
from b2bd.journal.log import (
    JOURNAL_DIR,
    JournalDamaged,
    read_journal,
    read_state,
    scan_journal,
    verify_history,
)
from b2bd.journal.records import Codec, Repair
from b2bd.report import history_report, iso, status_exit, status_report

EXIT_OK = 0
EXIT_DAMAGED = 1
DEFAULT_HISTORY_LIMIT = 20


def register(sub: Any) -> None:
    p = sub.add_parser(
        "journal",
        help="check, compact or print the run journal",
        description="Check (verify), compact or print (cat) the run journal in the state dir.",
    )
    actions = p.add_subparsers(dest="journal_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check every record; exit 1 naming segment and byte offset if damaged",
    )
    verify.set_defaults(func=run_verify)
    compact = actions.add_parser(
        "compact",
        help="write a checkpoint and delete older segments (refuses while the daemon runs)",
    )
    compact.set_defaults(func=run_compact)
    cat = actions.add_parser("cat", help="print records as JSON lines (for jq)")
    cat.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="T",
        help="only records of this type (repeatable), e.g. transfer-failed",
    )
    cat.set_defaults(func=run_cat)

    h = sub.add_parser("history", help="runs newest first, with each base's outcome")
    h.add_argument("task", nargs="?", metavar="TASK", help="only this task")
    h.add_argument("--limit", type=_positive, default=DEFAULT_HISTORY_LIMIT, metavar="N")
    h.add_argument("--format", choices=("text", "json"), default="text")
    h.set_defaults(func=run_history_command)

    s = sub.add_parser("status", help="per task: enabled, next slot, last run, failing bases")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.set_defaults(func=run_status)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def _config(args: argparse.Namespace) -> tuple[Config, Settings]:
    try:
        config = load_config(args.config)
    except ConfigDirError as exc:
        raise UsageError(str(exc)) from exc
    if config.settings is None:
        raise UsageError(
            f"{args.config}: b2bd.yaml is not usable, so the state dir is unknown "
            "(see `b2bd validate`)"
        )
    return config, config.settings


def _damaged(exc: JournalDamaged) -> int:
    print(f"b2bd: {exc}", file=sys.stderr)
    return EXIT_DAMAGED


# -- journal verify|compact|cat --------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    _, settings = _config(args)
    directory = settings.state_dir / JOURNAL_DIR
    if not directory.is_dir():
        print(f"no journal yet in {directory}")
        return EXIT_OK
    scan = scan_journal(directory, deep=True)
    damage = [*scan.damage]
    if (history := verify_history(directory)) is not None:
        damage.append(history)
    for d in damage:
        print(f"damaged: segment {d.segment}, byte {d.offset}: {d.what}")
    if scan.tail is not None:
        t = scan.tail
        print(
            f"damaged: segment {t.segment}, byte {t.offset}: {t.what} (the torn last record: "
            "opening the journal for writing cuts it off and keeps its bytes in a .broken file; "
            "if the daemon is running, it may be a record being written)"
        )
    if damage or scan.tail is not None:
        return EXIT_DAMAGED
    first = scan.segments[0].first_seq if scan.segments else 0
    print(
        f"journal intact: records {first}..{scan.next_seq - 1} in {len(scan.segments)} "
        f"segment(s) under {directory}"
    )
    repairs = read_state(settings.state_dir).repairs
    if repairs:
        _acknowledge(settings, repairs)
    return EXIT_OK


def _acknowledge(settings: Settings, repairs: tuple[Repair, ...]) -> None:
    """Show the repairs ``status`` has been showing and journal that they were seen."""
    for r in repairs:
        print(f"repaired on {iso(r.when)}: {_repair_text(r)}")
    up_to = max(r.seq for r in repairs)
    try:
        link = find_daemon(settings)
        if link is not None:  # the daemon holds the journal: it writes the record
            link.ask("acknowledge-repairs", up_to=up_to)
        else:
            with Journal.open(settings.state_dir) as journal:
                journal.append("repairs-acknowledged", up_to=up_to)
    except (DaemonError, UsageError, JournalError, OSError) as exc:
        print(f"b2bd: repairs not acknowledged: {exc}", file=sys.stderr)
        return
    print(f"acknowledged {len(repairs)} repair(s): status no longer shows them")


def _repair_text(r: Repair) -> str:
    return (
        f"segment {r.segment} cut at byte {r.offset}, {r.length} damaged byte(s) kept in "
        f"{r.broken_file}"
    )


def run_compact(args: argparse.Namespace) -> int:
    _, settings = _config(args)
    try:
        with Journal.open(settings.state_dir) as journal:
            result = journal.compact(history_days=settings.history_days)
    except JournalDamaged as exc:
        return _damaged(exc)
    except JournalError as exc:
        print(f"b2bd: cannot compact: {exc}", file=sys.stderr)
        return EXIT_DAMAGED
    except OSError as exc:
        raise UsageError(f"cannot open the journal in {settings.state_dir}: {exc}") from exc
    print(
        f"compacted: checkpoint is record {result.checkpoint.seq}; "
        f"removed {len(result.removed)} older segment(s); history keeps {result.history} "
        f"record(s) of the last {settings.history_days} day(s)"
    )
    return EXIT_OK


def run_cat(args: argparse.Namespace) -> int:
    _, settings = _config(args)
    wanted = frozenset(args.types) if args.types else None
    try:
        records = _records(settings.state_dir)
        out = sys.stdout.buffer
        encode = Codec.encoder.encode
        for record in records:
            if wanted is None or record.type in wanted:
                out.write(encode(record) + b"\n")
        out.flush()  # `b2bd journal cat | head`: BrokenPipeError, handled quietly by main
    except JournalDamaged as exc:
        return _damaged(exc)
    return EXIT_OK


def _records(state_dir: Path) -> Any:
    """Every record kept: the compactions' history, then the live journal."""
    if not (state_dir / JOURNAL_DIR).is_dir():
        return ()
    return read_journal(state_dir, with_history=True)


# -- history ---------------------------------------------------------------------------------------


def run_history_command(args: argparse.Namespace) -> int:
    config, settings = _config(args)
    link = find_daemon(settings)
    try:
        if link is not None:
            runs = link.ask("history", task=args.task, limit=args.limit)
        else:
            runs = history_report(_records(settings.state_dir), args.task, args.limit)
    except JournalDamaged as exc:
        return _damaged(exc)
    except DaemonError as exc:
        if exc.code == "unknown-task":
            raise UsageError(unknown_task(args.task, config)) from None
        print(f"b2bd: {exc.message}", file=sys.stderr)
        return EXIT_DAMAGED
    if args.task and not runs and args.task not in config.tasks:
        raise UsageError(unknown_task(args.task, config))
    print_history(runs, args.task, args.format)
    return EXIT_OK


def unknown_task(task: str, config: Config) -> str:
    """The message for a task id that is neither in the config nor in the journal."""
    hint = did_you_mean(task, list(config.tasks))
    known = ", ".join(sorted(config.tasks)) or "none"
    return f"no task {task!r} in the config or the journal{hint} (tasks: {known})"


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


# -- status ----------------------------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    config, settings = _config(args)
    link = find_daemon(settings)
    if link is not None:
        try:
            report = link.ask("status")
        except DaemonError as exc:
            print(f"b2bd: {exc.message}", file=sys.stderr)
            return EXIT_DAMAGED
        print_status(report, args.format)
        return status_exit(report)
    now = dt.datetime.now(dt.UTC)
    try:
        state = (
            read_state(settings.state_dir)
            if (settings.state_dir / JOURNAL_DIR).is_dir()
            else State()
        )
    except JournalDamaged as exc:
        return _damaged(exc)
    report = status_report(config, state, now)
    print_status(report, args.format)
    return status_exit(report)


def print_status(report: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(report, indent=2))
    else:
        for line in _status_text(report):
            print(line)


def _status_text(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    daemon = report["daemon"]
    if daemon is None:
        lines.append("daemon: not answering on its control socket; status from the journal")
    else:
        lines.append(
            f"daemon: running, pid {daemon['pid']}, b2bd {daemon['version']}, "
            f"since {daemon['started']}"
        )
    if not report["tasks"]:
        lines.append("no valid tasks in the config dir")
    for t in report["tasks"]:
        lines.extend(_task_text(t))
    if report["config_problems"]:
        lines.append("config problems in force (the last good version of these files is used):")
        for p in report["config_problems"]:
            lines.append(f"  {p['file']}:{p['line']}:{p['column']}: {p['rule']}: {p['message']}")
    if report["config_errors_on_disk"]:
        lines.append(
            f"the config dir has {report['config_errors_on_disk']} error(s) now "
            "(see `b2bd validate`)"
        )
    if report["repairs"]:
        lines.append("journal repairs (`b2bd journal verify` checks the journal and acknowledges):")
        for r in report["repairs"]:
            lines.append(
                f"  {r['when']}: segment {r['segment']} cut at byte {r['offset']}, "
                f"{r['length']} damaged byte(s) kept in {r['broken_file']}"
            )
    return lines


def _task_text(t: dict[str, Any]) -> list[str]:
    last = t["last_run"]
    if last is None:
        last_text = "never run"
    else:
        last_text = f"{last['run']} {last['outcome'] or 'in progress or interrupted'}"
    enabled = "enabled" if t["enabled"] else "disabled"
    lines = [f"{t['task']}  {enabled}  next {t['next_slot'] or 'none'}  last {last_text}"]
    failing = {f["base"]: f for f in t["failing"]}
    for b in t["bases"]:
        success = b["last_success"] or "never"
        if b["base"] in failing:
            f = failing[b["base"]]
            lines.append(
                f"  failing {f['base']}: {f['reason']}: {f['message']} "
                f"(since {f['since']}; last success {success})"
            )
        elif b["outcome"] is None:
            lines.append(f"  {b['base']}  no transfer yet")
        else:
            lines.append(f"  {b['base']}  {b['outcome']}  last success {success}")
    for run in t["in_progress"]:
        if last is None or run != last["run"]:
            lines.append(f"  unfinished run {run}")
    for r in t["running"] or ():
        bases = ", ".join(f"{base} {what}" for base, what in r["bases"].items())
        lines.append(f"  running now: {r['run']} ({bases})")
    return lines
