"""What ``b2bd plan`` shows: the slots of the enabled tasks in a window, merged in time order,
and how many tasks were left out and why (pure: the window's start is given; the command is
:mod:`b2bd.cli.plan`)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from b2bd.config.model import Task
from b2bd.schedule import merge_slots, next_slot
from b2bd.shard import Shard

_TICK = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Planned:
    """One slot of one task, with the zone its local time is shown in."""

    task: str
    slot: dt.datetime
    zone: ZoneInfo

    @property
    def local(self) -> dt.datetime:
        return self.slot.astimezone(self.zone)


@dataclass(frozen=True)
class Plan:
    """What ``b2bd plan`` shows: the slots, and how many tasks were left out and why."""

    start: dt.datetime
    until: dt.datetime | None
    slots: tuple[Planned, ...]
    disabled: int
    expired: int
    shard: Shard | None = None
    elsewhere: int = 0  # tasks left out: none of their bases is on this shard


def make_plan(
    tasks: Sequence[Task],
    start: dt.datetime,
    until: dt.datetime | None,
    count: int | None,
    shard: Shard | None = None,
) -> Plan:
    """The slots ``start <= s <= until`` of the enabled tasks, at most ``count`` in all.

    A task is *expired* when it has no slot at or after ``start`` at all (not merely none
    before ``until``). With a ``shard`` (the tasks' targets are already that shard's), a task
    without a target runs on other instances only and is left out. Pure: ``start`` is given.
    """
    after = start - _TICK  # the calendar's `after` is exclusive; plan's --from is inclusive
    here = [t for t in tasks if shard is None or t.targets]
    enabled = [t for t in here if t.enabled]
    live = {t.id: t for t in enabled if next_slot(t.schedule, after) is not None}
    merged = merge_slots({i: t.schedule for i, t in live.items()}, after, until)
    chosen = merged if count is None else itertools.islice(merged, count)
    slots = tuple(Planned(task, slot, live[task].schedule.timezone) for slot, task in chosen)
    return Plan(
        start,
        until,
        slots,
        len(here) - len(enabled),
        len(enabled) - len(live),
        shard,
        len(tasks) - len(here),
    )
