"""What to start now: on-time slots, catch-up after downtime, and what is missed (pure).

Every task has a *cursor*: the latest slot the journal shows as decided (started, skipped or
missed), or — when later, or for a task with no such history — the moment the task came into
force here (added, added again, resumed from a suspension), so a new or returning task has
missed nothing, whether the daemon restarted since or not. Slots in ``(cursor, now]`` are
due. A slot no more than ``GRACE`` old is on time and always runs. Older ones were missed (the
daemon was down, suspended, or the clock jumped) and the task's ``catch_up`` policy decides:

* ``none``: none of them runs;
* ``latest``: the newest runs once, if it is younger than ``starting_deadline``;
* ``all``: each one younger than ``starting_deadline`` runs, oldest first.

Every missed slot that does not run is reported, to be journaled as ``slot-missed``. There is no
cap on how many slots may be missed. Because the cursor comes from the journal, a slot already
started is never started again, whatever restarts happen.

The cursors themselves are decided here too: :func:`journal_cursors` at start (from what the
journal says was decided and applied), :func:`reconfigure` at every config applied (which
cursors are kept, seeded from now, or dropped with their task), and :func:`next_look` says when
the loop next has to look at a task. The daemon loop (:mod:`b2bd.daemon.loop`) only carries
these decisions out: it reads no clock of its own into them and this module does no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from b2bd.config.model import Policy, Task
from b2bd.schedule import Schedule, next_slot, slots

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


def journal_cursors(
    decided: Mapping[str, dt.datetime],
    running: Iterable[str] | None = None,
    applied_at: dt.datetime | None = None,
    since: Mapping[str, dt.datetime] | None = None,
) -> dict[str, dt.datetime]:
    """The cursors at start, from the journal: the cursor the running daemon had for each task
    the last ``config-applied`` before this start ran here (``running``, at ``applied_at``).

    That is the later of the task's last decided slot (``decided``) and when it came into force
    (``since``: added, added again or resumed, as the journal's ``config-applied`` records show
    it; not known from older records); a task with neither counts from that config-applied,
    so the slots since then were missed while the daemon was down. A task that config did not
    run (absent, suspended, no base of this shard) gets no cursor: coming back at this start,
    it counts from now, as it would have in the running daemon. Without a ``config-applied``
    (``applied_at`` None), every task's last decided slot.
    """
    if running is None or applied_at is None:
        return dict(decided)
    since = since or {}
    cursors: dict[str, dt.datetime] = {}
    for task_id in running:
        known = [t for t in (decided.get(task_id), since.get(task_id)) if t is not None]
        cursors[task_id] = max(known, default=applied_at)
    return cursors


@dataclass(frozen=True)
class Reconfigured:
    """What applying a config does to the cursors (see :func:`reconfigure`)."""

    cursors: dict[str, dt.datetime]
    """The cursor of every task in the new config, and of no other task."""
    seeded: frozenset[str]
    """Tasks counted from now: new (no history), suspended, or resuming from a suspension."""
    dropped: tuple[str, ...]
    """Tasks whose cursor is gone with them (no longer in the config), in the cursors' order."""
    removed: tuple[str, ...]
    """Of ``dropped``, the tasks that were in force until now: their transfers still waiting
    are to be skipped ("task removed")."""

    @property
    def kept(self) -> frozenset[str]:
        """Tasks that go on from the cursor they had."""
        return frozenset(self.cursors) - self.seeded


def reconfigure(
    old: Mapping[str, Task] | None,
    new: Mapping[str, Task],
    cursors: Mapping[str, dt.datetime],
    now: dt.datetime,
) -> Reconfigured:
    """The cursors once the tasks ``new`` replace ``old`` (None at start: nothing was in force)
    at ``now``, from the ``cursors`` so far (at start, :func:`journal_cursors`).

    A task with no cursor has missed nothing: it counts from ``now``. So does an :func:`idle`
    task (its slots are not missed, they are not wanted here) and one that was idle until now
    (resuming from a suspension, or given a base of this shard). Every other task keeps its
    cursor. A cursor whose task is gone is dropped; a task that was in
    ``old`` is *removed*. A task removed and added again later has no cursor left, so it counts
    from the moment it came back. The journal's ``config-applied`` records which tasks run, so
    :func:`journal_cursors` after a restart gives the cursors decided here.
    """
    dropped = tuple(task_id for task_id in cursors if task_id not in new)
    removed = tuple(task_id for task_id in dropped if old is not None and task_id in old)
    # In the order the cursors had, new tasks after them: the loop's order stays stable.
    order = [t for t in cursors if t in new] + [t for t in new if t not in cursors]
    kept: dict[str, dt.datetime] = {}
    seeded: set[str] = set()
    for task_id in order:
        task, was, cursor = new[task_id], old.get(task_id) if old else None, cursors.get(task_id)
        if cursor is None or idle(task) or (was is not None and idle(was)):
            seeded.add(task_id)
            kept[task_id] = now
        else:
            kept[task_id] = cursor
    return Reconfigured(kept, frozenset(seeded), dropped, removed)


def next_look(task: Task, cursor: dt.datetime) -> dt.datetime | None:
    """When the loop next has to look at ``task``: its first slot after its cursor; None for an
    :func:`idle` task (never due here: no slot is run, missed or skipped in this journal) or a
    schedule with no slot left."""
    return None if idle(task) else next_slot(task.schedule, cursor)


def idle(task: Task) -> bool:
    """A task this instance never runs on schedule: suspended, or without a base of its own
    (every base it reaches belongs to another shard: another instance runs it)."""
    return not task.enabled or not task.targets
