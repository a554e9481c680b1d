"""A manual run (``b2bd trigger``): what was asked, checked against the config, and its summary.

The same :class:`TriggerRequest` is run in the CLI's own process (no daemon) or sent to the
running daemon over its control socket, and either way the run ends in the same summary
(:func:`run_summary`), which the CLI prints as text or JSON. Checking a request
(:func:`check_request`) is pure: the config in force is given.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from b2bd.config.model import Config, Task
from b2bd.faults import shown
from b2bd.shard import shard_of
from b2bd.transfer.results import Progress, RunResult, TransferResult

RefusalCode = Literal[
    "unknown-task",
    "disabled",
    "bad-base",
    "no-bases",
    "busy",
    "stopping",
    "bad-request",
]


class TriggerRefused(Exception):
    """A manual run that was not started, with a reason ``code`` and an operator message."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.code: RefusalCode = code
        self.message = message


@dataclass(frozen=True)
class TriggerRequest:
    """Run ``task`` now on ``bases`` (None: every base it targets). ``as_of`` (the reference
    date) and ``force`` are carried for ``trigger --as-of/--force`` (issue 11)."""

    task: str
    bases: tuple[str, ...] | None = None
    as_of: dt.date | None = None
    force: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "bases": None if self.bases is None else list(self.bases),
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "force": self.force,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TriggerRequest:
        """The request in a control-socket message; ValueError says what is wrong with it."""
        task = data.get("task")
        bases = data.get("bases")
        as_of = data.get("as_of")
        force = data.get("force", False)
        if not isinstance(task, str) or not task:
            raise ValueError("trigger needs a task id")
        if bases is not None and not (
            isinstance(bases, list) and all(isinstance(b, str) for b in bases)
        ):
            raise ValueError("bases must be a list of base ids")
        if not isinstance(force, bool):
            raise ValueError("force must be true or false")
        if as_of is not None and not isinstance(as_of, str):
            raise ValueError("as_of must be a date, YYYY-MM-DD")
        return cls(
            task,
            None if bases is None else tuple(dict.fromkeys(bases)),
            None if as_of is None else dt.date.fromisoformat(as_of),
            force,
        )


def check_request(
    config: Config, request: TriggerRequest, now: dt.datetime | None = None
) -> tuple[Task, tuple[str, ...]]:
    """The task and the bases a manual run of ``request`` covers, or :class:`TriggerRefused`:
    the task must be valid in ``config`` and enabled (unless ``force``), the bases among its
    targets, and ``as_of`` (given ``now``) not after today's local date in the task's zone: a
    run as of a day that has not come would send what has not happened."""
    task = config.tasks.get(request.task)
    if task is None:
        known = ", ".join(sorted(config.tasks)) or "none"
        raise TriggerRefused(
            "unknown-task",
            f"no valid task {shown(request.task)!r} (valid tasks: {known}; an invalid task file is "
            "reported by `b2bd validate`)",
        )
    if request.as_of is not None and now is not None:
        today = now.astimezone(task.schedule.timezone).date()
        if request.as_of > today:
            raise TriggerRefused(
                "bad-request",
                f"--as-of {request.as_of.isoformat()} is after today ({today.isoformat()} in "
                f"{task.schedule.timezone.key}): a run is as of today or a past date",
            )
    if not task.enabled and not request.force:
        # DESIGN section 5: the schedule never runs a suspended task; trigger only if forced.
        raise TriggerRefused(
            "disabled",
            f"task {task.id} is disabled (enabled: false in {task.file}): the schedule never "
            "runs it; give --force to run it once anyway",
        )
    if request.bases is None:
        bases = task.targets
    else:
        # Only the bases validation left the task: never one that is excluded, locked down
        # or in error in bases.yaml (the run-time guard would stop it anyway).
        outside = [b for b in request.bases if b not in task.targets]
        shard = config.settings.shard if config.settings else None
        elsewhere = [b for b in outside if shard is not None and not shard.owns(b)]
        if elsewhere and shard is not None:
            # Another instance owns it and keeps its watermarks: a run from here would resend
            # what that instance has delivered and move no watermark of its own.
            owners = ", ".join(f"{shown(b)} (shard {shard_of(b, shard.of)})" for b in elsewhere)
            raise TriggerRefused(
                "bad-base",
                f"base(s) {owners} belong to another instance: this one is shard {shard} "
                "(shard: in b2bd.yaml); trigger there",
            )
        if outside:
            raise TriggerRefused(
                "bad-base",
                f"base(s) {', '.join(shown(b) for b in outside)} not among task {task.id}'s bases "
                f"({', '.join(task.targets) or 'none'}; `b2bd validate` says why a base is "
                "left out)",
            )
        bases = request.bases
    if not bases:
        shard = config.settings.shard if config.settings else None
        where = f" here (this instance is shard {shard})" if shard is not None else ""
        raise TriggerRefused(
            "no-bases", f"task {task.id} has no bases to run on{where} (see `b2bd validate`)"
        )
    return task, tuple(bases)


def run_summary(result: RunResult) -> dict[str, Any]:
    """A finished manual run as JSON-ready data: what ``trigger --format json`` prints and the
    daemon sends at the end of a trigger."""
    return {
        "run": result.run,
        "task": result.task,
        "slot": result.slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reference_date": None if result.day is None else result.day.isoformat(),
        "as_of": result.as_of,
        "manual": result.manual,
        "outcome": result.outcome,
        "transfers": [transfer_summary(t) for t in result.transfers],
    }


def transfer_summary(t: TransferResult) -> dict[str, Any]:
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
        "joined": t.joined,
        "left": t.left,
        "watermark": t.watermark,
        "delivery": str(t.delivery) if t.delivery else None,
    }


def progress_json(event: Progress) -> dict[str, Any]:
    """A transfer's progress event as a control-socket line."""
    line: dict[str, Any] = {
        "type": "progress",
        "event": event.event,
        "run": event.run,
        "base": event.base,
        "records": event.records,
    }
    if event.event == "retry":
        line.update(attempt=event.attempt, wait=event.wait, reason=event.reason,
                    message=event.message)  # fmt: skip
    if event.result is not None:
        line.update(outcome=event.result.outcome, reason=event.result.reason)
    return line


def progress_from_json(line: dict[str, Any]) -> Progress | None:
    """The progress event a control-socket line carries (None for other events)."""
    if line.get("event") not in ("started", "records", "retry", "finished"):
        return None
    return Progress(
        str(line.get("run", "")),
        str(line.get("base", "")),
        line["event"],
        records=int(line.get("records") or 0),
        attempt=int(line.get("attempt") or 0),
        wait=float(line.get("wait") or 0.0),
        reason=line.get("reason"),
        message=str(line.get("message") or ""),
    )
