"""What ``b2bd status`` and ``b2bd history`` report, as JSON-ready data (pure).

The CLI builds these from the journal on disk when no daemon is running, and a running daemon
builds them from its own journal and what it has in flight and sends them over the control
socket; either way the CLI prints the same text from the same data (``--format json`` prints it
as is). Nothing here reads a clock or a file: ``now``, the config, the replayed state and the
records are given.

``status`` exit code (:func:`status_exit`): 0 when all is well; 1 when a task's last run failed
or was partial, a base of a task is failing, config problems are in force (journaled by the
daemon, or errors in the config dir now), or a journal repair is not yet acknowledged by
``b2bd journal verify``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import msgspec

from b2bd.config.model import Config, Task
from b2bd.journal.entries import Entry, Outcome
from b2bd.journal.history import RunHistory, run_history
from b2bd.journal.state import State
from b2bd.schedule import next_slot

EXIT_OK = 0
EXIT_ATTENTION = 1


def iso(when: dt.datetime | None) -> str | None:
    """An instant as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (None stays None)."""
    if when is None:
        return None
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# -- status ----------------------------------------------------------------------------------------


def status_report(
    config: Config,
    state: State,
    now: dt.datetime,
    *,
    running: list[dict[str, Any]] | None = None,
    daemon: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per task: enabled, next slot, last run, each target base's latest outcome and last
    success, the bases failing and why; then the config problems in force and the journal
    repairs not yet acknowledged. ``running`` (runs in flight: ``{"run", "task", "bases":
    {base: "waiting"|"queued"|"running"}}``) and ``daemon`` (``{"pid", "version", ...}``) come
    from a running daemon; without one they are None."""
    tasks = [_task_status(task, state, now, running) for _, task in sorted(config.tasks.items())]
    report: dict[str, Any] = {
        "now": iso(now),
        "daemon": daemon,
        "tasks": tasks,
        "config_problems": [msgspec.to_builtins(p) for p in state.rejected_config],
        "config_errors_on_disk": sum(p.severity == "error" for p in config.problems),
        "repairs": [
            {
                "seq": r.seq,
                "when": iso(r.when),
                "segment": r.segment,
                "offset": r.offset,
                "length": r.length,
                "broken_file": r.broken_file,
            }
            for r in state.repairs
        ],
    }
    report["ok"] = status_exit(report) == EXIT_OK
    return report


def _task_status(
    task: Task, state: State, now: dt.datetime, running: list[dict[str, Any]] | None
) -> dict[str, Any]:
    last = state.last_run.get(task.id)
    upcoming = next_slot(task.schedule, now) if task.enabled else None
    failing = state.failing(task.id)
    bases = []
    for base in task.targets:
        outcome = state.last_outcome.get((task.id, base))
        success = state.last_success.get((task.id, base))
        bases.append(
            {
                "base": base,
                "outcome": outcome.outcome if outcome else None,
                "reason": outcome.reason if outcome else None,
                "message": outcome.message if outcome else None,
                "since": iso(outcome.when) if outcome else None,
                "last_success": iso(success.when) if success else None,
                "last_success_run": success.run if success else None,
            }
        )
    return {
        "task": task.id,
        "enabled": task.enabled,
        "next_slot": iso(upcoming),
        "last_run": None
        if last is None
        else {
            "run": last.run,
            "outcome": last.outcome,
            "started": iso(last.started),
            "finished": iso(last.finished),
        },
        "bases": bases,
        "failing": [
            _failing_json(task.id, base, o, state)
            for base, o in failing.items()
            if base in task.targets
        ],
        "in_progress": sorted(
            run for run, p in state.runs_in_progress.items() if p.task == task.id
        ),
        "running": None if running is None else [r for r in running if r["task"] == task.id],
    }


def _failing_json(task: str, base: str, o: Outcome, state: State) -> dict[str, Any]:
    success = state.last_success.get((task, base))
    return {
        "base": base,
        "reason": o.reason,
        "message": o.message,
        "since": iso(o.when),
        "last_success": iso(success.when) if success else None,
    }


def status_exit(report: dict[str, Any]) -> int:
    """The exit code of ``status`` for a report (see the module docstring)."""
    attention = (
        report["config_problems"]
        or report["config_errors_on_disk"]
        or report["repairs"]
        or any(
            t["failing"] or (t["last_run"] and t["last_run"]["outcome"] in ("failed", "partial"))
            for t in report["tasks"]
        )
    )
    return EXIT_ATTENTION if attention else EXIT_OK


# -- history ---------------------------------------------------------------------------------------


def history_report(
    records: Iterable[Entry], task: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The runs in ``records`` (only ``task``'s), newest first, at most ``limit``."""
    return [run_json(r) for r in run_history(records, task, limit)]


def run_json(r: RunHistory) -> dict[str, Any]:
    return {
        "run": r.run,
        "task": r.task,
        "slot": iso(r.slot),
        "manual": r.manual,
        "started": iso(r.started),
        "finished": iso(r.finished),
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
                "when": iso(t.when) if t else None,
            }
            for base in dict.fromkeys([*r.bases, *r.transfers])
        ],
    }
