"""Runs on its own (b2bd.daemon.runs), in front of a fake engine: transfers wait for their due
time, one outstanding transfer per (task, base) with the next queued behind it, a failing
transfer, removing a task and stopping. The fake implements the RunEngine protocol Runs depends
on (it is not our engine mocked): each transfer blocks on its worker thread until the test lets
it end, with the outcome the test chooses; what it would journal goes to a list."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from b2bd.config.model import BaseSelector, Cohort, DataSpec, Policy, Task
from b2bd.daemon.runs import Runs
from b2bd.schedule import Schedule, Weekly
from b2bd.transfer.engine import RunContext
from b2bd.transfer.results import (
    OnProgress,
    RunResult,
    TransferOutcome,
    TransferResult,
    run_outcome,
)

UTC = dt.UTC
SLOT = dt.datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
MINUTE = dt.timedelta(minutes=1)
WAIT = 30.0  # seconds: only a hang would take this long


class FakeJournal:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, type: str, **fields: Any) -> object:
        with self._lock:
            self.entries.append({"type": type, **fields})
        return None

    def of(self, type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.entries if e["type"] == type]


class FakeEngine:
    """Each transfer waits for :meth:`end` (or :meth:`fail`) of its (run, base)."""

    def __init__(self) -> None:
        self.journal = FakeJournal()
        self._cond = threading.Condition()
        self._endings: dict[tuple[str, str], TransferOutcome | Exception] = {}
        self.started: list[tuple[str, str]] = []  # (run, base) as workers took them
        self.frozen = False
        self._released = False

    # -- the test's side --------------------------------------------------------------------

    def end(self, run: str, base: str, outcome: TransferOutcome = "succeeded") -> None:
        with self._cond:
            self._endings[(run, base)] = outcome
            self._cond.notify_all()

    def fail(self, run: str, base: str, error: Exception) -> None:
        with self._cond:
            self._endings[(run, base)] = error
            self._cond.notify_all()

    def release_all(self) -> None:
        """Every transfer still blocked ends (succeeded, journaling nothing): the test is over."""
        with self._cond:
            self.frozen = self._released = True
            self._cond.notify_all()

    def wait_started(self, *pairs: tuple[str, str]) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: set(pairs) <= set(self.started), WAIT)

    # -- RunEngine ---------------------------------------------------------------------------

    def run_transfer(
        self, context: RunContext, base_id: str, on_progress: OnProgress | None = None
    ) -> TransferResult:
        key = (context.run, base_id)
        with self._cond:
            self.started.append(key)
            self._cond.notify_all()
            assert self._cond.wait_for(lambda: key in self._endings or self._released, WAIT)
            ending = self._endings.get(key, "succeeded")
        if isinstance(ending, Exception):
            raise ending
        if not self.frozen:
            self.journal.append(f"transfer-{ending}", run=context.run, base=base_id)
        return TransferResult(context.task.id, base_id, ending)

    def skip_transfer(self, context: RunContext, base_id: str, reason: str) -> TransferResult:
        self.journal.append("transfer-skipped", run=context.run, base=base_id, reason=reason)
        return TransferResult(context.task.id, base_id, "skipped", reason=reason)

    def finish_run(self, context: RunContext, results: Sequence[TransferResult]) -> RunResult:
        outcome = run_outcome(results)
        self.journal.append("run-finished", run=context.run, outcome=outcome)
        return RunResult(context.run, context.task.id, context.slot, context.manual, outcome,
                         tuple(results))  # fmt: skip

    def freeze(self) -> dict[tuple[str, str], TransferOutcome]:
        self.frozen = True
        return {(e["run"], e["base"]): e["type"].removeprefix("transfer-")
                for e in self.journal.entries if e["type"].startswith("transfer-")}  # fmt: skip


def task(task_id: str) -> Task:
    return Task(
        id=task_id,
        file=f"tasks/{task_id}.yaml",
        description="",
        enabled=True,
        direction="from-school",
        bases=BaseSelector(all=True),
        data=DataSpec(type="snapshot"),
        cohort=Cohort(group="ncy"),
        schedule=Schedule(Weekly(frozenset(range(7)), (dt.time(6, 0),)), ZoneInfo("UTC")),
        policy=Policy(),
        targets=("A", "B"),
    )


def context(run: str, task_id: str = "t", bases: tuple[str, ...] = ("A",)) -> RunContext:
    return RunContext(run, task(task_id), SLOT, False, run, SLOT.date(), bases)


class World:
    def __init__(self) -> None:
        self.engine = FakeEngine()
        self.pool = ThreadPoolExecutor(4)
        self.woken = threading.Event()
        self.runs = Runs(self.engine, self.pool, self._wake)
        self.finished: dict[str, RunResult] = {}
        self._done = threading.Condition()

    def _wake(self) -> None:
        """What the loop's waker hears: a transfer ended."""
        self.woken.set()
        with self._done:
            self._done.notify_all()

    def until(self, predicate: Callable[[], bool]) -> None:
        with self._done:
            assert self._done.wait_for(predicate, WAIT)

    def add(self, ctx: RunContext, due: dt.datetime = SLOT) -> None:
        def finished(result: RunResult) -> None:
            with self._done:
                self.finished[result.run] = result
                self._done.notify_all()

        self.runs.add(ctx, dict.fromkeys(ctx.bases, due), on_finished=finished)

    def wait_finished(self, *runs: str) -> None:
        self.until(lambda: set(runs) <= set(self.finished))

    def states(self) -> dict[str, dict[str, object]]:
        # in_flight() is typed list[dict[str, object]] (status JSON); the test knows the keys
        return {r["run"]: r["bases"] for r in self.runs.in_flight()}  # type: ignore[misc]


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.engine.release_all()
    w.pool.shutdown(wait=True)


def test_a_transfer_waits_for_its_due_time_then_the_run_finishes(world: World) -> None:
    world.add(context("r1", bases=("A", "B")), due=SLOT + MINUTE)
    assert world.runs.next_due() == SLOT + MINUTE
    world.runs.dispatch(SLOT)  # not yet
    assert world.states() == {"r1": {"A": "waiting", "B": "waiting"}}
    assert world.engine.started == []

    world.runs.dispatch(SLOT + MINUTE)
    world.engine.wait_started(("r1", "A"), ("r1", "B"))
    assert world.runs.next_due() is None
    assert world.states() == {"r1": {"A": "running", "B": "running"}}
    world.engine.end("r1", "B")
    world.engine.end("r1", "A")
    world.wait_finished("r1")
    assert world.finished["r1"].outcome == "succeeded"
    assert [t.base for t in world.finished["r1"].transfers] == ["A", "B"]  # the run's order
    assert world.engine.journal.of("run-finished") == [
        {"type": "run-finished", "run": "r1", "outcome": "succeeded"}
    ]
    assert world.runs.active == 0
    assert world.woken.is_set()  # the loop hears a transfer end


def test_one_outstanding_transfer_per_task_and_base_the_next_queues_behind(world: World) -> None:
    world.add(context("r1", bases=("A", "B")))
    world.runs.dispatch(SLOT)
    world.engine.wait_started(("r1", "A"), ("r1", "B"))
    assert world.runs.busy("t", "A") and world.runs.busy("t", "B")
    assert not world.runs.busy("other", "A")  # another task at the same base is free

    world.add(context("r2", bases=("A",)))  # the loop queues it (overlap: queue)
    world.add(context("o1", task_id="other", bases=("A",)))
    world.runs.dispatch(SLOT)
    world.engine.wait_started(("o1", "A"))  # another task is not held up
    assert world.runs.holder("t", "A") == "r1"
    assert world.states()["r2"] == {"A": "queued"}
    assert ("r2", "A") not in world.engine.started

    world.engine.end("r1", "A")
    world.engine.wait_started(("r2", "A"))  # as soon as the pair is free: no dispatch needed
    assert world.runs.holder("t", "A") == "r2"
    assert world.states()["r1"] == {"A": "done", "B": "running"}
    world.engine.end("r1", "B")
    world.engine.end("r2", "A")
    world.engine.end("o1", "A")
    world.wait_finished("r1", "r2", "o1")
    assert not world.runs.busy("t", "A")
    assert world.engine.started.index(("r2", "A")) > world.engine.started.index(("r1", "A"))


def test_a_transfer_that_raises_fails_its_base_and_the_queue_goes_on(world: World) -> None:
    world.add(context("r1", bases=("A", "B")))
    world.add(context("r2", bases=("A",)))
    world.runs.dispatch(SLOT)
    world.engine.wait_started(("r1", "A"), ("r1", "B"))
    world.engine.fail("r1", "A", RuntimeError("the share went away"))
    world.engine.end("r1", "B")
    world.wait_finished("r1")
    result = world.finished["r1"]
    assert result.outcome == "partial"
    failed = result.transfers[0]
    assert (failed.base, failed.outcome, failed.reason) == ("A", "failed", "internal")
    assert failed.message == "the share went away"
    world.engine.wait_started(("r2", "A"))  # the pair was freed by the failure
    world.engine.end("r2", "A", "failed")
    world.wait_finished("r2")
    assert world.finished["r2"].outcome == "failed"


def test_removing_a_task_skips_what_waits_and_leaves_what_runs(world: World) -> None:
    world.add(context("r1", bases=("A",)))
    world.runs.dispatch(SLOT)
    world.engine.wait_started(("r1", "A"))
    world.add(context("r2", bases=("A", "B")), due=SLOT + MINUTE)  # A queued, B waiting
    world.add(context("o1", task_id="other", bases=("B",)), due=SLOT + MINUTE)

    world.runs.drop_waiting("task removed", "t")
    world.wait_finished("r2")
    assert [t.outcome for t in world.finished["r2"].transfers] == ["skipped", "skipped"]
    skipped = world.engine.journal.of("transfer-skipped")
    assert {(e["run"], e["base"], e["reason"]) for e in skipped} == {
        ("r2", "A", "task removed"),
        ("r2", "B", "task removed"),
    }
    assert world.runs.busy("t", "A")  # r1 still runs
    assert not world.runs.busy("t", "B")
    assert world.runs.next_due() == SLOT + MINUTE  # the other task's transfer still waits
    world.engine.end("r1", "A")
    world.wait_finished("r1")
    assert world.finished["r1"].outcome == "succeeded"
    assert world.states() == {"o1": {"B": "waiting"}}


def test_stopping_skips_what_waits_and_abandons_what_is_still_running(world: World) -> None:
    world.add(context("r1", bases=("A", "B")))
    world.runs.dispatch(SLOT)
    world.engine.wait_started(("r1", "A"), ("r1", "B"))
    world.add(context("r2", bases=("A",)))  # queued behind r1
    world.add(context("r3", task_id="other", bases=("A",)), due=SLOT + MINUTE)

    world.runs.drop_waiting("daemon stopping")  # no new transfers
    world.wait_finished("r2", "r3")
    assert {e["run"] for e in world.engine.journal.of("transfer-skipped")} == {"r2", "r3"}
    assert world.runs.active == 1

    # B ends on its own; A is stuck. The grace period ends: A is journaled as failed.
    world.engine.end("r1", "B")
    world.until(lambda: world.states()["r1"]["B"] == "done")
    assert world.runs.abandon("interrupted: grace period over") == 1
    assert world.engine.frozen
    (failed,) = world.engine.journal.of("transfer-failed")
    assert (failed["run"], failed["base"], failed["message"]) == (
        "r1",
        "A",
        "interrupted: grace period over",
    )
    assert world.finished["r1"].outcome == "partial"
    assert world.runs.active == 0
    # The stuck worker ends too late: nothing more is journaled or finished.
    entries = len(world.engine.journal.entries)
    world.engine.end("r1", "A")
    world.pool.shutdown(wait=True)
    assert len(world.engine.journal.entries) == entries
    assert len(world.engine.journal.of("run-finished")) == 3


def test_abandoning_counts_a_transfer_journaled_just_before_as_its_outcome(world: World) -> None:
    """A worker that journaled its outcome but whose callback had not run yet when the grace
    period ended: that outcome stands, it is not journaled a second time as failed."""
    world.add(context("r1", bases=("A",)))
    world.runs.dispatch(SLOT)
    world.engine.wait_started(("r1", "A"))
    world.engine.journal.append("transfer-succeeded", run="r1", base="A")  # as the engine would
    assert world.runs.abandon("interrupted") == 0
    assert world.engine.journal.of("transfer-failed") == []
    assert world.finished["r1"].outcome == "succeeded"
