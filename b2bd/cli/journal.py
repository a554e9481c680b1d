"""``b2bd journal verify|compact|cat``, ``b2bd history`` and ``b2bd status``.

All of them find the journal through ``state_dir`` in b2bd.yaml. ``verify``, ``cat``, ``history``
and ``status`` only read (safe while the daemon runs: a record being written at that moment is
left out rather than reported); ``compact`` takes the journal's lock, so it refuses while the
daemon runs. Exit codes: 0 fine, 1 the journal is damaged (or in use, for ``compact``), 2 usage.

Times are shown in UTC (``...Z``); ``--format json`` prints the same facts for scripts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from b2bd.cli import UsageError
from b2bd.config import ConfigDirError, load_config
from b2bd.config.model import Config, Settings, Task
from b2bd.journal import Journal, JournalError, State
from b2bd.journal.history import RunHistory, run_history
from b2bd.journal.log import JOURNAL_DIR, JournalDamaged, read_journal, read_state, scan_journal
from b2bd.journal.records import Codec, Outcome

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


def _iso(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


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
    for damage in scan.damage:
        print(f"damaged: segment {damage.segment}, byte {damage.offset}: {damage.what}")
    if scan.tail is not None:
        t = scan.tail
        print(
            f"damaged: segment {t.segment}, byte {t.offset}: {t.what} (the torn last record: "
            "opening the journal for writing cuts it off and keeps its bytes in a .broken file; "
            "if the daemon is running, it may be a record being written)"
        )
    if not scan.intact:
        return EXIT_DAMAGED
    first = scan.segments[0].first_seq if scan.segments else 0
    print(
        f"journal intact: records {first}..{scan.next_seq - 1} in {len(scan.segments)} "
        f"segment(s) under {directory}"
    )
    return EXIT_OK


def run_compact(args: argparse.Namespace) -> int:
    _, settings = _config(args)
    try:
        with Journal.open(settings.state_dir) as journal:
            result = journal.compact()
    except JournalDamaged as exc:
        return _damaged(exc)
    except JournalError as exc:
        print(f"b2bd: cannot compact: {exc}", file=sys.stderr)
        return EXIT_DAMAGED
    except OSError as exc:
        raise UsageError(f"cannot open the journal in {settings.state_dir}: {exc}") from exc
    print(
        f"compacted: checkpoint is record {result.checkpoint.seq}; "
        f"removed {len(result.removed)} older segment(s)"
    )
    return EXIT_OK


def run_cat(args: argparse.Namespace) -> int:
    _, settings = _config(args)
    wanted = frozenset(args.types) if args.types else None
    try:
        records = read_journal(settings.state_dir)
        out = sys.stdout.buffer
        encode = Codec.encoder.encode
        for record in records:
            if wanted is None or record.type in wanted:
                out.write(encode(record) + b"\n")
        out.flush()
    except JournalDamaged as exc:
        return _damaged(exc)
    except BrokenPipeError:  # `b2bd journal cat | head`
        sys.stdout = open(  # noqa: SIM115 (replaces stdout for the interpreter's exit)
            "/dev/null", "w"
        )
    return EXIT_OK


# -- history ---------------------------------------------------------------------------------------


def run_history_command(args: argparse.Namespace) -> int:
    _, settings = _config(args)
    try:
        runs = run_history(_records(settings.state_dir), args.task, args.limit)
    except JournalDamaged as exc:
        return _damaged(exc)
    if args.format == "json":
        print(json.dumps([_run_json(r) for r in runs], indent=2))
        return EXIT_OK
    if not runs:
        print("no runs in the journal" + (f" for task {args.task}" if args.task else ""))
    for r in runs:
        for line in _run_text(r):
            print(line)
    return EXIT_OK


def _records(state_dir: Path) -> Iterable[Any]:
    if not (state_dir / JOURNAL_DIR).is_dir():
        return ()
    return read_journal(state_dir)


def _run_json(r: RunHistory) -> dict[str, Any]:
    return {
        "run": r.run,
        "task": r.task,
        "slot": _iso(r.slot),
        "manual": r.manual,
        "started": _iso(r.started),
        "finished": _iso(r.finished),
        "outcome": r.outcome,
        "bases": [
            {
                "base": base,
                "outcome": t.outcome if (t := r.transfers.get(base)) else None,
                "reason": t.reason if t else None,
                "message": t.message if t else None,
                "attempts": t.attempts if t else None,
                "counts": t.counts if t else {},
                "rejected": t.rejected if t else 0,
                "missing": t.missing if t else 0,
                "when": _iso(t.when) if t else None,
            }
            for base in _bases(r)
        ],
    }


def _bases(r: RunHistory) -> list[str]:
    return list(dict.fromkeys([*r.bases, *r.transfers]))


def _run_text(r: RunHistory) -> list[str]:
    outcome = r.outcome or ("in progress or interrupted")
    finished = f", finished {_iso(r.finished)}" if r.finished else ""
    lines = [f"{r.run}  {outcome}  (started {_iso(r.started)}{finished})"]
    for base in _bases(r):
        t = r.transfers.get(base)
        if t is None:
            lines.append(f"  {base}  no outcome")
        elif t.outcome == "succeeded":
            counts = " ".join(f"{k}={v}" for k, v in sorted(t.counts.items())) or "nothing new"
            extra = "".join(
                f", {n} {label}"
                for n, label in ((t.rejected, "rejected"), (t.missing, "missing"))
                if n
            )
            lines.append(f"  {base}  succeeded  {counts}{extra}")
        elif t.outcome == "failed":
            lines.append(
                f"  {base}  failed  {t.reason}: {t.message} (after {t.attempts} attempt(s))"
            )
        else:
            lines.append(f"  {base}  skipped  {t.reason}")
    return lines


# -- status ----------------------------------------------------------------------------------------


def _next_slot_finder() -> Callable[[Task, dt.datetime], dt.datetime | None] | None:
    try:
        from b2bd.calendar import next_slot  # optional: the calendar may not be there
    except ImportError:
        return None
    return lambda task, now: next_slot(task.schedule, now)


def run_status(args: argparse.Namespace) -> int:
    config, settings = _config(args)
    now = dt.datetime.now(dt.UTC)
    try:
        state = (
            read_state(settings.state_dir)
            if (settings.state_dir / JOURNAL_DIR).is_dir()
            else State()
        )
    except JournalDamaged as exc:
        return _damaged(exc)
    report = status_report(config, state, now, _next_slot_finder())
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        for line in _status_text(report):
            print(line)
    return EXIT_OK


def status_report(
    config: Config,
    state: State,
    now: dt.datetime,
    next_slot: Callable[[Task, dt.datetime], dt.datetime | None] | None,
) -> dict[str, Any]:
    """What ``status`` shows, as JSON-ready data (pure: ``now`` and the calendar are given)."""
    tasks = []
    for task_id, task in sorted(config.tasks.items()):
        last = state.last_run.get(task_id)
        nxt: str | None = None
        if next_slot is not None and task.enabled:
            try:
                nxt = _iso(next_slot(task, now))
            except Exception:  # the calendar is someone else's code; status must still print
                nxt = None
        failing = state.failing(task_id)
        tasks.append(
            {
                "task": task_id,
                "enabled": task.enabled,
                "next_slot": nxt if next_slot is not None else "-",
                "last_run": None
                if last is None
                else {
                    "run": last.run,
                    "outcome": last.outcome,
                    "started": _iso(last.started),
                    "finished": _iso(last.finished),
                },
                "failing": [_failing_json(base, o) for base, o in failing.items()],
                "in_progress": sorted(
                    run for run, p in state.runs_in_progress.items() if p.task == task_id
                ),
            }
        )
    return {
        "now": _iso(now),
        "tasks": tasks,
        "config_problems": [msgspec.to_builtins(p) for p in state.rejected_config],
        "config_errors_on_disk": sum(p.severity == "error" for p in config.problems),
    }


def _failing_json(base: str, o: Outcome) -> dict[str, Any]:
    return {"base": base, "reason": o.reason, "message": o.message, "since": _iso(o.when)}


def _status_text(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if not report["tasks"]:
        lines.append("no valid tasks in the config dir")
    for t in report["tasks"]:
        last = t["last_run"]
        if last is None:
            last_text = "never run"
        else:
            outcome = last["outcome"] or "in progress or interrupted"
            last_text = f"{last['run']} {outcome}"
        enabled = "enabled" if t["enabled"] else "disabled"
        nxt = t["next_slot"] or "none"
        lines.append(f"{t['task']}  {enabled}  next {nxt}  last {last_text}")
        for f in t["failing"]:
            lines.append(
                f"  failing {f['base']}: {f['reason']}: {f['message']} (since {f['since']})"
            )
        for run in t["in_progress"]:
            if last is None or run != last["run"]:
                lines.append(f"  unfinished run {run}")
    if report["config_problems"]:
        lines.append("config problems in force (the last good version of these files is used):")
        for p in report["config_problems"]:
            lines.append(f"  {p['file']}:{p['line']}:{p['column']}: {p['rule']}: {p['message']}")
    if report["config_errors_on_disk"]:
        lines.append(
            f"the config dir has {report['config_errors_on_disk']} error(s) now "
            "(see `b2bd validate`)"
        )
    return lines
