"""The daemon's decisions on their own (b2bd.daemon.due, pure): which slots run or are missed
around the grace boundary and the starting deadline, and the task cursors at start, at every
reload, after a removal, a suspension and for a task another shard runs. Tables of rows; the
clock is the ``now`` passed in."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from b2bd.config.model import BaseSelector, Cohort, DataSpec, Policy, Task
from b2bd.daemon.due import (
    GRACE,
    Due,
    journal_cursors,
    next_look,
    reconfigure,
)
from b2bd.daemon.due import (
    due as due_slots,
)
from b2bd.schedule import Schedule, Weekly

UTC = dt.UTC
SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
# Every day at 06:00 UTC.
DAILY = Schedule(Weekly(frozenset(range(7)), (dt.time(6, 0),)), ZoneInfo("UTC"))
D = dt.datetime(2026, 12, 3, 6, 0, tzinfo=UTC)  # today's slot
D1, D2, D3 = D - DAY, D - 2 * DAY, D - 3 * DAY  # the slots of the days before


def task(task_id: str = "t", *, enabled: bool = True, schedule: Schedule = DAILY) -> Task:
    return Task(
        id=task_id,
        file=f"tasks/{task_id}.yaml",
        description="",
        enabled=enabled,
        direction="from-school",
        bases=BaseSelector(ids=("8814001",)),
        data=DataSpec(type="snapshot"),
        cohort=Cohort(group="ncy"),
        schedule=schedule,
        policy=Policy(),
        targets=("8814001",),
    )


def policy(catch_up: str, deadline: dt.timedelta | None = dt.timedelta(hours=12)) -> Policy:
    # the table rows give catch_up as a plain str; Policy's field is the CatchUp Literal
    return Policy(catch_up=catch_up, starting_deadline=deadline)  # type: ignore[arg-type]


# -- due: one slot around the grace boundary --------------------------------------------------

GRACE_ROWS = [
    # (how late the wake-up is, catch_up, runs?, missed?)
    (dt.timedelta(0), "none", True, False),
    (GRACE - SECOND, "none", True, False),
    (GRACE, "none", True, False),  # at the boundary it is still on time
    (GRACE + SECOND, "none", False, True),  # a second later it is missed
    (GRACE + SECOND, "latest", True, False),  # ...or caught up, inside the starting deadline
    (GRACE + SECOND, "all", True, False),
    (dt.timedelta(microseconds=1) + GRACE, "none", False, True),
]


@pytest.mark.parametrize(("late", "catch_up", "runs", "missed"), GRACE_ROWS)
def test_one_slot_around_the_grace_boundary(
    late: dt.timedelta, catch_up: str, runs: bool, missed: bool
) -> None:
    decision = due_slots(DAILY, policy(catch_up), D1, D + late)
    assert decision.run == ((D,) if runs else ())
    assert decision.missed == ((D,) if missed else ())
    assert decision.cursor == D  # decided either way: never looked at again


# -- due: catch-up after downtime ------------------------------------------------------------

CATCH_UP_ROWS = [
    # id, catch_up, starting_deadline, cursor, now, run, missed
    ("latest: the newest late slot inside the deadline", "latest", 12 * HOUR,
     D2, D + 2 * HOUR, (D,), (D1,)),
    ("latest: at the deadline exactly it still runs", "latest", 12 * HOUR,
     D1, D + 12 * HOUR, (D,), ()),
    ("latest: a second past the deadline it is missed", "latest", 12 * HOUR,
     D1, D + 12 * HOUR + SECOND, (), (D,)),
    ("all: each late slot inside the deadline, oldest first", "all", 30 * HOUR,
     D3, D + 2 * HOUR, (D1, D), (D2,)),
    ("none: every late slot is missed", "none", 12 * HOUR,
     D3, D + 2 * HOUR, (), (D2, D1, D)),
    ("latest, no deadline: a month late still runs the newest", "latest", None,
     D - 30 * DAY, D + 2 * HOUR, (D,), tuple(D - n * DAY for n in range(29, 0, -1))),
    ("all, no deadline: a month of slots, oldest first", "all", None,
     D - 30 * DAY, D + 2 * HOUR, tuple(D - n * DAY for n in range(29, -1, -1)), ()),
    ("none, no deadline: still none", "none", None,
     D2, D + 2 * HOUR, (), (D1, D)),
    # Downtime ended just in time for today's slot: it runs on time, and "latest" runs no
    # late slot beside it (the newest wanted run is this one); "all" catches up as well.
    ("latest beside an on-time slot: only the on-time one", "latest", None,
     D3, D + 30 * SECOND, (D,), (D2, D1)),
    ("latest beside an on-time slot, inside the deadline", "latest", 48 * HOUR,
     D2, D + GRACE, (D,), (D1,)),
    ("all beside an on-time slot: the late ones first", "all", None,
     D3, D + 30 * SECOND, (D2, D1, D), ()),
    ("all beside an on-time slot, deadline cuts the oldest", "all", 36 * HOUR,
     D3, D + 30 * SECOND, (D1, D), (D2,)),
    ("none beside an on-time slot: the on-time one runs", "none", None,
     D2, D + 30 * SECOND, (D,), (D1,)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("catch_up", "deadline", "cursor", "now", "run", "missed"),
    [row[1:] for row in CATCH_UP_ROWS],
    ids=[row[0] for row in CATCH_UP_ROWS],
)
def test_catch_up_policies(
    catch_up: str,
    deadline: dt.timedelta | None,
    cursor: dt.datetime,
    now: dt.datetime,
    run: tuple[dt.datetime, ...],
    missed: tuple[dt.datetime, ...],
) -> None:
    decision = due_slots(DAILY, policy(catch_up, deadline), cursor, now)
    assert decision == Due(run=run, missed=missed)
    assert decision.cursor == D


@pytest.mark.parametrize(
    ("cursor", "now"),
    [(D, D + GRACE), (D, D1 + 23 * HOUR), (D1, D - SECOND)],
    ids=["the slot already decided", "before any slot", "a second before the slot"],
)
def test_nothing_due_decides_nothing(cursor: dt.datetime, now: dt.datetime) -> None:
    decision = due_slots(DAILY, policy("all", None), cursor, now)
    assert decision == Due()
    assert decision.cursor is None  # the cursor stays where it was


# -- journal_cursors: the cursors at start ---------------------------------------------------

APPLIED_AT = D - 10 * DAY
BACK = D1 + HOUR  # when a task came back (added again, resumed): after its last decided slot

START_ROWS = [
    # id, decided (journal), tasks the last config-applied ran here (None: no config-applied),
    # running since (journal), cursors
    ("no config-applied: the last decided slot of each task",
     {"a": D1, "b": D2}, None, {}, {"a": D1, "b": D2}),
    ("applied but never decided: from that config-applied",
     {"a": D1}, ("a", "b"), {}, {"a": D1, "b": APPLIED_AT}),
    ("a decided slot wins over the config-applied", {"a": D1}, ("a",), {}, {"a": D1}),
    ("came back after its last decided slot: from when it came back",
     {"a": D3}, ("a",), {"a": BACK}, {"a": BACK}),
    ("a slot decided since it came back wins", {"a": D}, ("a",), {"a": BACK}, {"a": D}),
    ("came back, never decided: from when it came back, not the config-applied",
     {}, ("a",), {"a": BACK}, {"a": BACK}),
    ("not run by the last config-applied (removed, suspended): no cursor, counts from now",
     {"a": D1, "b": D2}, ("a",), {"a": APPLIED_AT}, {"a": D1}),
    ("an empty journal: no cursor", {}, None, {}, {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("decided", "running", "since", "cursors"),
    [row[1:] for row in START_ROWS],
    ids=[row[0] for row in START_ROWS],
)
def test_cursors_from_the_journal(
    decided: dict[str, dt.datetime],
    running: tuple[str, ...] | None,
    since: dict[str, dt.datetime],
    cursors: dict[str, dt.datetime],
) -> None:
    applied_at = None if running is None else APPLIED_AT
    assert journal_cursors(decided, running, applied_at, since) == cursors


# -- reconfigure: the cursors at every config applied ----------------------------------------

NOW = D + 5 * HOUR
A, B = task("a"), task("b")
A_OFF = replace(A, enabled=False)
A_ELSEWHERE = replace(A, targets=())  # every base it reaches belongs to another shard

RECONFIGURE_ROWS = [
    # id, old tasks (None: start), new tasks, cursors before, cursors after, seeded, dropped,
    # removed
    ("start: journal cursors kept, a task without one counts from now",
     None, [A, B], {"a": D2}, {"a": D2, "b": NOW}, {"b"}, (), ()),
    ("start: a journal cursor of a task no longer configured is dropped, nothing removed",
     None, [A], {"a": D2, "gone": D1}, {"a": D2}, set(), ("gone",), ()),
    ("reload: every cursor kept",
     [A, B], [A, B], {"a": D1, "b": D2}, {"a": D1, "b": D2}, set(), (), ()),
    ("reload: a new task counts from now",
     [A], [A, B], {"a": D1}, {"a": D1, "b": NOW}, {"b"}, (), ()),
    ("reload: a removed task's cursor is dropped and its waiting transfers skipped",
     [A, B], [A], {"a": D1, "b": D2}, {"a": D1}, set(), ("b",), ("b",)),
    ("start: a suspended task counts from now",
     None, [A_OFF], {"a": D2}, {"a": NOW}, {"a"}, (), ()),
    ("reload: suspending moves the cursor to now",
     [A], [A_OFF], {"a": D2}, {"a": NOW}, {"a"}, (), ()),
    ("reload: resuming counts from now, the suspended slots are not missed",
     [A_OFF], [A], {"a": D2}, {"a": NOW}, {"a"}, (), ()),
    ("start: a task with no base on this shard counts from now",
     None, [A_ELSEWHERE], {"a": D2}, {"a": NOW}, {"a"}, (), ()),
    ("reload: given a base of this shard, it counts from now",
     [A_ELSEWHERE], [A], {"a": D2}, {"a": NOW}, {"a"}, (), ()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "before", "after", "seeded", "dropped", "removed"),
    [row[1:] for row in RECONFIGURE_ROWS],
    ids=[row[0] for row in RECONFIGURE_ROWS],
)
def test_reconfigure(
    old: list[Task] | None,
    new: list[Task],
    before: dict[str, dt.datetime],
    after: dict[str, dt.datetime],
    seeded: set[str],
    dropped: tuple[str, ...],
    removed: tuple[str, ...],
) -> None:
    change = reconfigure(
        None if old is None else {t.id: t for t in old}, {t.id: t for t in new}, before, NOW
    )
    assert change.cursors == after
    assert change.seeded == seeded
    assert change.kept == set(after) - seeded
    assert change.dropped == dropped
    assert change.removed == removed


def test_seeding_after_a_restart_and_a_reload_keeps_the_journal_cursor() -> None:
    """Down across two slots, started, then reloaded before the loop looked: the reload keeps
    the cursor from the journal, so both slots are still decided (not forgotten as 'new')."""
    tasks = {"a": replace(A, policy=policy("latest"))}
    started = reconfigure(None, tasks, journal_cursors({"a": D2}), D + 2 * HOUR)
    reloaded = reconfigure(tasks, tasks, started.cursors, D + 2 * HOUR + SECOND)
    assert reloaded.cursors == {"a": D2}
    decision = due_slots(DAILY, tasks["a"].policy, reloaded.cursors["a"], D + 2 * HOUR + SECOND)
    assert decision == Due(run=(D,), missed=(D1,))


def test_a_task_removed_and_added_again_has_missed_nothing_in_between() -> None:
    tasks = {"a": A, "b": B}
    cursors = {"a": D3, "b": D3}
    removed = reconfigure(tasks, {"a": A}, cursors, D2 + HOUR)
    assert removed.removed == ("b",)
    back = reconfigure({"a": A}, tasks, removed.cursors, D + HOUR)
    assert back.cursors == {"a": D3, "b": D + HOUR}
    assert back.seeded == {"b"}
    # The slots while it was gone are neither run nor missed; the next one runs on time.
    assert due_slots(DAILY, B.policy, back.cursors["b"], D + 2 * HOUR) == Due()
    assert due_slots(DAILY, B.policy, back.cursors["b"], D + DAY) == Due(run=(D + DAY,))


# What the journal shows of the running daemon's decisions (pure: the replay of its
# config-applied records). A restart before the task's next slot must decide what the running
# daemon would have: the slots while it was away or suspended are neither run nor missed.
A_LATEST = replace(A, policy=policy("latest", None))
A_LATEST_OFF = replace(A_LATEST, enabled=False)
AWAY_ROWS = [
    # id, the task's config at each of D2+1h, D1+1h (the config applied while it was away),
    # D+1h; a restart at D+2h
    ("suspended, resumed, restarted", [A_LATEST, A_LATEST_OFF, A_LATEST]),
    ("removed, added again, restarted", [A_LATEST, None, A_LATEST]),
]


@pytest.mark.parametrize(
    "configs", [row[1] for row in AWAY_ROWS], ids=[row[0] for row in AWAY_ROWS]
)
def test_a_restart_decides_what_the_running_daemon_did(configs: list[Task | None]) -> None:
    from b2bd.journal.entries import build_entry
    from b2bd.journal.state import replay, running_tasks

    cursors: dict[str, dt.datetime] = {"a": D3}  # its D3 slot was decided (ran)
    old: dict[str, Task] = {"a": A_LATEST}
    journal = []
    for n, (at, the_task) in enumerate(zip((D2 + HOUR, D1 + HOUR, D + HOUR), configs, strict=True)):
        new = {} if the_task is None else {"a": the_task}
        change = reconfigure(old, new, cursors, at)
        # What the daemon journals when it applies the config, and what it decides at once.
        idle = [t for t, x in new.items() if not x.enabled]
        fields = {"files": {}, "tasks": sorted(new), "idle": idle}
        journal.append(build_entry("config-applied", n + 1, at, fields))
        cursors, old = change.cursors, new
    running_daemon = cursors
    assert running_daemon == {"a": D + HOUR}  # it came back at D+1h: D2..D are not wanted
    journal.insert(0, build_entry("slot-missed", 0, D3, {"task": "a", "slot": D3}))
    state = replay(journal)
    applied = state.applied_config
    assert applied is not None
    restarted = journal_cursors(
        state.last_slot_decided, running_tasks(state), applied.when, state.running_since
    )
    assert restarted == running_daemon
    after = reconfigure(None, old, restarted, D + 2 * HOUR)
    assert due_slots(DAILY, A_LATEST.policy, after.cursors["a"], D + 2 * HOUR) == Due()
    assert due_slots(DAILY, A_LATEST.policy, after.cursors["a"], D + DAY) == Due(run=(D + DAY,))


@pytest.mark.parametrize(
    ("tasks", "idle"), [(["a"], ["a"]), ([], [])], ids=["suspended", "removed"]
)
def test_coming_back_while_the_daemon_was_down_counts_from_the_start(
    tasks: list[str], idle: list[str]
) -> None:
    """The last config-applied before the restart had the task away (suspended, removed): the
    slots since were not wanted here; the start counts it from now, as a reload would have."""
    from b2bd.journal.entries import build_entry
    from b2bd.journal.state import replay, running_tasks

    state = replay([
        build_entry("config-applied", 1, D3 - HOUR, {"files": {}, "tasks": ["a"], "idle": []}),
        build_entry("slot-missed", 2, D3, {"task": "a", "slot": D3}),
        build_entry("config-applied", 3, D2 + HOUR, {"files": {}, "tasks": tasks, "idle": idle}),
    ])  # fmt: skip
    cursors = journal_cursors(
        state.last_slot_decided, running_tasks(state), D2 + HOUR, state.running_since
    )
    assert cursors == {}
    start = reconfigure(None, {"a": A_LATEST}, cursors, D + 2 * HOUR)
    assert start.cursors == {"a": D + 2 * HOUR} and start.seeded == {"a"}


def test_a_reload_keeps_the_order_of_the_cursors() -> None:
    change = reconfigure({"b": B, "a": A}, {"a": A, "c": task("c"), "b": B},
                         {"b": D1, "a": D1}, NOW)  # fmt: skip
    assert list(change.cursors) == ["b", "a", "c"]


# -- next_look: when the loop looks at a task again ------------------------------------------

EXPIRED = replace(DAILY, expires=(D - 2 * DAY).date())

NEXT_ROWS = [
    ("the next slot after the cursor", A, D1 + HOUR, D),
    ("a cursor on a slot: the one after it", A, D, D + DAY),
    ("suspended: never", A_OFF, D1, None),
    ("no base on this shard: never", A_ELSEWHERE, D1, None),
    ("expired: no slot left", task(schedule=EXPIRED), D2, None),
    ("expired, one slot still ahead of the cursor", task(schedule=EXPIRED), D3 - HOUR, D3),
]


@pytest.mark.parametrize(
    ("the_task", "cursor", "expected"),
    [row[1:] for row in NEXT_ROWS],
    ids=[row[0] for row in NEXT_ROWS],
)
def test_next_look(the_task: Task, cursor: dt.datetime, expected: dt.datetime | None) -> None:
    assert next_look(the_task, cursor) == expected
