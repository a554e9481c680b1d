"""``b2bd plan``: the next slots of every enabled task, merged in time order.

The only clock read is here (the default ``--from`` is now); which slots are shown is decided by
:func:`b2bd.plan.make_plan` over :mod:`b2bd.schedule`. Text output shows local time and UTC side
by side and notes slots moved or chosen by a clock change; JSON output is a list of
``{"task", "slot", "local"}`` in slot order.
Exit 0; 1 when the config has errors (the valid tasks are planned all the same, and stderr says
how many errors); 2 usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from b2bd.cli import SHARD_HELP, UsageError, shard_option
from b2bd.cli.configdir import load, shard_problem
from b2bd.clock import utc_now
from b2bd.config.model import DEFAULT_TIMEZONE
from b2bd.faults import shown
from b2bd.plan import Plan, make_plan
from b2bd.schedule import local_to_utc

DEFAULT_COUNT = 10
EXIT_CONFIG_ERRORS = 1  # README's exit codes: invalid config


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="print the next slots of every enabled task, local time and UTC",
        description=(
            "Print the next slots of every enabled task, merged in time order. Slots at or after "
            "--from and at or before --until are listed; disabled tasks and tasks with no slot "
            "left are left out."
        ),
    )
    p.add_argument(
        "--count",
        type=_positive,
        metavar="N",
        help=f"how many slots to print, all tasks together (default {DEFAULT_COUNT}; "
        "with --until: every slot up to it)",
    )
    p.add_argument(
        "--from",
        dest="start",
        metavar="ISO",
        help="start here instead of now; a time without an offset is read in b2bd.yaml's timezone",
    )
    p.add_argument("--until", metavar="ISO", help="stop here (inclusive); same forms as --from")
    p.add_argument("--task", metavar="ID", help="only this task")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--shard",
        type=shard_option,
        metavar="I/N",
        help=f"{SHARD_HELP} (default: b2bd.yaml's shard, if it has one)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    now = utc_now()
    config = load(args.config, now=now, shard=args.shard or "config")
    unknown = next((p for p in config.problems if p.rule == "shard-index"), None)
    if unknown is not None and args.shard is None:
        # Which tasks run here depends on the shard: planning every base would mislead.
        raise UsageError(
            f"{shard_problem(unknown, args.config)}; give --shard I/N to plan one shard"
        )
    errors = sum(p.severity == "error" for p in config.problems)
    zone = config.settings.timezone if config.settings else DEFAULT_TIMEZONE
    start = parse_instant(args.start, zone, "--from") if args.start else now
    until = parse_instant(args.until, zone, "--until") if args.until else None
    if until is not None and until < start:
        raise UsageError("--until is before --from")
    tasks = list(config.tasks.values())
    if args.task is not None:
        tasks = [t for t in tasks if t.id == args.task]
        if not tasks:
            raise UsageError(f"no valid task {shown(args.task)!r} in {args.config}")
    count = args.count if args.count is not None or until is not None else DEFAULT_COUNT
    shard = config.settings.shard if config.settings else args.shard
    plan = make_plan(tasks, start, until, count, shard)
    print(format_json(plan) if args.format == "json" else format_text(plan, zone), end="")
    if errors:  # the plan of what is valid, but a config in error is exit 1 as for validate
        print(
            f"b2bd: {args.config} has {errors} error(s) (see `b2bd validate`); planned the "
            f"{len(config.tasks)} valid task(s) only (exit 1)",
            file=sys.stderr,
        )
        return EXIT_CONFIG_ERRORS
    return 0


def parse_instant(text: str, zone: ZoneInfo, option: str) -> dt.datetime:
    """An ISO 8601 date or date-time; without an offset it is local time in ``zone`` (a time the
    clock skipped or showed twice is read as the calendar reads it: first instant at or after)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not an ISO 8601 date-time (e.g. 2026-03-29T01:30, "
            "2026-03-29T01:30:00+01:00, 2026-03-29T00:30Z)"
        ) from None
    if value.tzinfo is None:
        return local_to_utc(value, zone)
    return value.astimezone(dt.UTC)


def as_json(plan: Plan) -> list[dict[str, str]]:
    return [
        {
            "task": p.task,
            "slot": p.slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "local": p.local.isoformat(timespec="seconds"),
        }
        for p in plan.slots
    ]


def format_json(plan: Plan) -> str:
    return json.dumps(as_json(plan), indent=2) + "\n"


def format_text(plan: Plan, zone: ZoneInfo) -> str:
    """A table: local time (the task's zone), UTC, task, and a note on clock-change slots."""
    lines = [_heading(plan, zone)]
    if plan.slots:
        rows = [
            (_local_text(p.local, p.zone, zone), p.slot.strftime("%Y-%m-%d %H:%M UTC"), p.task,
             clock_change_note(p.slot, p.zone))
            for p in plan.slots
        ]  # fmt: skip
        widths = [max(len(r[i]) for r in [*rows, _HEADER]) for i in range(3)]
        for row in [_HEADER, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
            lines.append("  ".join([*cells, row[3]]).rstrip())
    else:
        lines.append("No slots.")
    left_out = _left_out(plan)
    if left_out:
        lines.append(left_out)
    return "\n".join(lines) + "\n"


_HEADER = ("LOCAL", "UTC", "TASK", "")


def clock_change_note(slot: dt.datetime, zone: ZoneInfo) -> str:
    """Why a slot sits where it does around a clock change, or "" for an ordinary slot."""
    local = slot.astimezone(zone)
    offset = local.utcoffset() or dt.timedelta(0)
    before = (slot - dt.timedelta(seconds=1)).astimezone(zone).utcoffset() or dt.timedelta(0)
    if offset > before:
        return "(clocks go forward here: a time in the skipped hour runs at this instant)"
    if local.replace(fold=1).utcoffset() != local.utcoffset():
        return f"(clocks go back later: first of two {local:%H:%M}s)"
    return ""


def _local_text(local: dt.datetime, zone: ZoneInfo, default: ZoneInfo) -> str:
    text = f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"
    return text if zone.key == default.key else f"{text} ({zone.key})"


def _heading(plan: Plan, zone: ZoneInfo) -> str:
    start = plan.start.astimezone(zone)
    span = f"from {start:%a %Y-%m-%d %H:%M} {start.tzname()}"
    if plan.until is not None:
        until = plan.until.astimezone(zone)
        span += f" until {until:%a %Y-%m-%d %H:%M} {until.tzname()}"
    noun = "slot" if len(plan.slots) == 1 else "slots"
    on = f" on shard {plan.shard}" if plan.shard is not None else ""
    return f"{len(plan.slots)} {noun}{on} {span} ({zone.key}):"


def _left_out(plan: Plan) -> str:
    parts: Mapping[str, int] = {
        "disabled": plan.disabled,
        "expired (no slot left)": plan.expired,
        "with no base on this shard": plan.elsewhere,
    }
    shown = [f"{n} {why}" for why, n in parts.items() if n]
    if not shown:
        return ""
    total = plan.disabled + plan.expired + plan.elsewhere
    return f"Left out {total} task{'s' if total != 1 else ''}: {', '.join(shown)}."


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
