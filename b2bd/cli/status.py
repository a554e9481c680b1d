"""``b2bd status``: per task, enabled, next slot, last run, failing bases; repairs to see.

Asked of the running daemon through its control socket when there is one (it also knows what
is running now); without one, replayed from the journal in the state dir. What is reported is
:func:`b2bd.report.status_report`. Exit codes: 0 fine, 1 something needs attention (see
:mod:`b2bd.report`) or the journal is damaged, 2 usage or I/O (also when the daemon answers
with such an error). Times are shown in UTC (``...Z``);
``--format json`` prints the same facts for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from b2bd.cli.client import DaemonError, error_exit, find_daemon
from b2bd.cli.configdir import with_settings
from b2bd.cli.journal import damaged, has_journal
from b2bd.clock import utc_now
from b2bd.journal.reader import JournalDamaged, read_state
from b2bd.journal.state import State
from b2bd.report import status_exit, status_report


def register(sub: Any) -> None:
    s = sub.add_parser("status", help="per task: enabled, next slot, last run, failing bases")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    config, settings = with_settings(args.config)
    link = find_daemon(settings)
    if link is not None:
        try:
            report = link.ask("status")
        except DaemonError as exc:
            print(f"b2bd: {exc.message}", file=sys.stderr)
            return error_exit(exc.code)
        print_status(report, args.format)
        return status_exit(report)
    now = utc_now()
    try:
        state = read_state(settings.state_dir) if has_journal(settings.state_dir) else State()
    except JournalDamaged as exc:
        return damaged(exc)
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
