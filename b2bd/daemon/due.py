"""What to start now: on-time slots, catch-up after downtime, and what is missed (pure).

Every task has a *cursor*: the latest slot the journal shows as decided (started, skipped or
missed), or — for a task with no such history — the moment its config was applied, so a new
task has missed nothing. Slots in ``(cursor, now]`` are due. A slot no more than ``GRACE`` old is
on time and always runs. Older ones were missed (the daemon was down, suspended, or the clock
jumped) and the task's ``catch_up`` policy decides:

* ``none``: none of them runs;
* ``latest``: the newest runs once, if it is younger than ``starting_deadline``;
* ``all``: each one younger than ``starting_deadline`` runs, oldest first.

Every missed slot that does not run is reported, to be journaled as ``slot-missed``. There is no
cap on how many slots may be missed. Because the cursor comes from the journal, a slot already
started is never started again, whatever restarts happen.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from b2bd.config.model import Policy
from b2bd.schedule import Schedule, slots

# How late a wake-up may be and still count as running the slot on time rather than catching
# up: covers scheduling latency and a busy machine, not downtime.
GRACE = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class Due:
    run: tuple[dt.datetime, ...] = ()
    missed: tuple[dt.datetime, ...] = ()

    @property
    def cursor(self) -> dt.datetime | None:
        """The latest slot decided here, or None when nothing was due."""
        return max((*self.run, *self.missed), default=None)


def due(schedule: Schedule, policy: Policy, cursor: dt.datetime, now: dt.datetime) -> Due:
    pending = list(slots(schedule, cursor, now))
    if not pending:
        return Due()
    on_time = [s for s in pending if now - s <= GRACE]
    late = [s for s in pending if now - s > GRACE]
    deadline = policy.starting_deadline
    runnable = [s for s in late if deadline is None or now - s <= deadline]
    if policy.catch_up == "all":
        caught = runnable
    elif policy.catch_up == "latest" and runnable and not on_time:
        caught = runnable[-1:]
    else:
        caught = []
    return Due(run=(*caught, *on_time), missed=tuple(s for s in late if s not in caught))
