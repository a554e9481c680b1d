"""Catch-up, restarts and overlap, driven by an injected clock (no sleeping until wall times)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest

from b2bd.daemon.loop import Daemon
from b2bd.journal.writer import Journal
from tests.support.clocks import ManualClock
from tests.support.deployment import Deployment
from tests.support.slow_school import release

UTC = dt.UTC
# Daily at 06:00 London = 06:00 UTC in winter.
SLOT_2 = dt.datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
SLOT_3 = dt.datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
SLOT_4 = dt.datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


_started: list[Running] = []


@pytest.fixture(autouse=True)
def _stop_leftover_daemons() -> Iterator[None]:
    yield
    while _started:
        running = _started.pop()
        if running.thread.is_alive():
            running.daemon.request_stop()
            running.thread.join(timeout=60)


class Running:
    """A daemon on a thread of this process, with a clock the test moves."""

    def __init__(self, deployment: Deployment, clock: ManualClock, **kwargs: object) -> None:
        # kwargs: the test's own Daemon keyword arguments, passed through unchecked
        self.daemon = Daemon(deployment.config, clock=clock, **kwargs)  # type: ignore[arg-type]
        self.clock = clock
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        _started.append(self)

    def _run(self) -> None:
        self.code = self.daemon.run()

    def advance_to(self, when: dt.datetime) -> None:
        self.clock.advance((when - self.clock.now()).total_seconds())
        self.daemon.wake.set()

    def stop(self) -> int:
        self.daemon.request_stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        assert self.code is not None
        return self.code


def seed_history(d: Deployment, last_started: dt.datetime) -> None:
    """A journal saying the task ran at ``last_started`` and the daemon then went down."""
    applied_at = last_started - dt.timedelta(days=7)
    with Journal.open(d.state, clock=lambda: applied_at) as journal:
        journal.append("config-applied", files={}, commit=None, tasks=["t"])
    with Journal.open(d.state, clock=lambda: last_started) as journal:
        run = f"t/{last_started:%Y%m%dT%H%M%SZ}"
        journal.append("run-started", run=run, task="t", slot=last_started, manual=False,
                       bases=["8814001"])  # fmt: skip
        journal.append("run-finished", run=run, task="t", outcome="succeeded")


def slots_of(d: Deployment, type: str) -> list[str]:
    return [r["slot"] for r in d.records(type)]


@pytest.mark.parametrize(
    ("catch_up", "started", "missed"),
    [
        ("latest", ["2026-12-04T06:00:00Z"], ["2026-12-03T06:00:00Z"]),
        ("none", [], ["2026-12-03T06:00:00Z", "2026-12-04T06:00:00Z"]),
        ("all", ["2026-12-03T06:00:00Z", "2026-12-04T06:00:00Z"], []),
    ],
)
def test_catch_up_after_downtime_across_two_slots(
    deployment: Deployment, catch_up: str, started: list[str], missed: list[str]
) -> None:
    deployment.add_school("8814001")
    policy = f"policy: {{catch_up: {catch_up}, starting_deadline: 3d}}\n"
    deployment.add_task("t", "8814001", policy=policy)
    seed_history(deployment, SLOT_2)
    clock = ManualClock(SLOT_4 + dt.timedelta(hours=3))
    running = Running(deployment, clock)
    deployment.wait_for(
        lambda: (
            len(deployment.records("run-finished")) == 1 + len(started)
            and len(deployment.records("slot-missed")) == len(missed)
        ),
        what="runs",
    )
    assert running.stop() == 0
    assert slots_of(deployment, "run-started") == ["2026-12-02T06:00:00Z", *started]
    assert slots_of(deployment, "slot-missed") == missed

    # Restarting twice in a row starts nothing new and reports nothing twice.
    for minutes in (5, 10):
        clock = ManualClock(SLOT_4 + dt.timedelta(hours=3, minutes=minutes))
        again = Running(deployment, clock)
        deployment.wait_for(
            lambda n=minutes: len(deployment.records("daemon-started")) == (2 if n == 5 else 3)
        )
        assert again.stop() == 0
    assert slots_of(deployment, "run-started") == ["2026-12-02T06:00:00Z", *started]
    assert slots_of(deployment, "slot-missed") == missed


def test_latest_respects_the_starting_deadline(deployment: Deployment) -> None:
    deployment.add_school("8814001")
    deployment.add_task(
        "t", "8814001", policy="policy: {catch_up: latest, starting_deadline: 2h}\n"
    )
    seed_history(deployment, SLOT_2)
    running = Running(deployment, ManualClock(SLOT_4 + dt.timedelta(hours=3)))
    deployment.wait_for(lambda: len(deployment.records("slot-missed")) == 2, what="missed")
    assert running.stop() == 0
    assert slots_of(deployment, "run-started") == ["2026-12-02T06:00:00Z"]


def test_a_new_task_has_missed_nothing_and_runs_at_its_next_slot(deployment: Deployment) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    clock = ManualClock(SLOT_3 - dt.timedelta(hours=1))
    running = Running(deployment, clock)
    deployment.wait_for(lambda: deployment.records("config-applied"), what="applied")
    assert deployment.records("run-started") == []
    running.advance_to(SLOT_3)
    deployment.wait_for(lambda: deployment.records("run-finished"), what="the slot's run")
    assert running.stop() == 0
    assert slots_of(deployment, "run-started") == ["2026-12-03T06:00:00Z"]
    assert deployment.records("slot-missed") == []


@pytest.mark.usefixtures("slow_schools")
def test_overlap_skip_a_slow_transfer_is_not_run_twice(deployment: Deployment) -> None:
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001", policy="policy: {overlap: skip}\n")
    clock = ManualClock(SLOT_3 - dt.timedelta(minutes=1))
    running = Running(deployment, clock)
    deployment.wait_for(lambda: deployment.records("config-applied"), what="applied")
    running.advance_to(SLOT_3)
    deployment.wait_for(lambda: deployment.records("run-started"), what="first run")
    running.advance_to(SLOT_4)  # the transfer is still blocked on its slow source
    deployment.wait_for(lambda: deployment.records("slot-skipped"), what="slot-skipped")
    release(folder)
    deployment.wait_for(lambda: deployment.records("run-finished"), what="first run to end")
    assert running.stop() == 0
    (skipped,) = deployment.records("slot-skipped")
    assert (skipped["slot"], skipped["base"]) == ("2026-12-04T06:00:00Z", "8814001")
    assert slots_of(deployment, "run-started") == ["2026-12-03T06:00:00Z"]
    assert len(deployment.records("transfer-succeeded")) == 1


@pytest.mark.usefixtures("slow_schools")
def test_overlap_queue_runs_the_next_slot_after_the_slow_one(deployment: Deployment) -> None:
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001", policy="policy: {overlap: queue}\n")
    clock = ManualClock(SLOT_3 - dt.timedelta(minutes=1))
    running = Running(deployment, clock)
    deployment.wait_for(lambda: deployment.records("config-applied"), what="applied")
    running.advance_to(SLOT_3)
    deployment.wait_for(lambda: deployment.records("run-started"), what="first run")
    running.advance_to(SLOT_4)
    deployment.wait_for(lambda: len(deployment.records("run-started")) == 2, what="queued run")
    assert deployment.records("transfer-succeeded") == []  # the second waits for the first
    release(folder)  # the first transfer ends...
    deployment.wait_for(lambda: deployment.records("transfer-succeeded"), what="first transfer")
    release(folder)  # ...then the queued one reads the pipe again
    deployment.wait_for(lambda: len(deployment.records("run-finished")) == 2, what="both runs")
    assert running.stop() == 0
    succeeded = deployment.records("transfer-succeeded")
    assert [r["run"] for r in succeeded] == ["t/20261203T060000Z", "t/20261204T060000Z"]
    assert deployment.records("slot-skipped") == []


def test_jitter_delays_each_base_by_its_stable_offset(deployment: Deployment) -> None:
    from b2bd.schedule import jitter_offset

    deployment.add_school("8814001")
    deployment.add_task("t", "8814001", policy="policy: {jitter: 30m}\n")
    offset = jitter_offset("t", "8814001", dt.timedelta(minutes=30))
    assert offset > dt.timedelta(0)
    clock = ManualClock(SLOT_3 - dt.timedelta(minutes=1))
    running = Running(deployment, clock)
    deployment.wait_for(lambda: deployment.records("config-applied"), what="applied")
    running.advance_to(SLOT_3)
    deployment.wait_for(lambda: deployment.records("run-started"), what="run-started")
    running.advance_to(SLOT_3 + offset - dt.timedelta(seconds=1))
    assert deployment.records("transfer-succeeded") == []
    running.advance_to(SLOT_3 + offset)
    deployment.wait_for(lambda: deployment.records("transfer-succeeded"), what="transfer")
    assert running.stop() == 0
    (done,) = deployment.records("transfer-succeeded")
    assert done["ts"] >= (SLOT_3 + offset).strftime("%Y-%m-%dT%H:%M:%S")


def test_removed_task_stops_being_scheduled(deployment: Deployment) -> None:
    deployment.add_school("8814001")
    path = deployment.add_task("t", "8814001")
    clock = ManualClock(SLOT_3 - dt.timedelta(hours=1))
    running = Running(deployment, clock)
    deployment.wait_for(lambda: deployment.records("config-applied"), what="applied")
    path.unlink()
    running.daemon.request_reload()
    deployment.wait_for(lambda: len(deployment.records("config-applied")) == 2, what="reload")
    running.advance_to(SLOT_4)
    running.advance_to(SLOT_4 + dt.timedelta(minutes=5))
    assert running.stop() == 0
    assert deployment.records("config-applied")[-1]["tasks"] == []
    assert deployment.records("run-started") == []


def test_a_dead_watcher_thread_is_restarted_and_changes_still_apply(
    deployment: Deployment,
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    running = Running(deployment, ManualClock(SLOT_3 - dt.timedelta(hours=1)))
    deployment.wait_for(running.daemon.watcher.alive, what="the watcher")
    observer = running.daemon.watcher._observer
    assert observer is not None
    observer.stop()  # the watcher thread dies
    observer.join(timeout=10)
    running.daemon.wake.set()
    deployment.wait_for(lambda: running.daemon.watcher.restarts == 1, what="restart")
    deployment.add_task("u", "8814001")
    deployment.wait_for(
        lambda: deployment.records("config-applied")[-1]["tasks"] == ["t", "u"], what="new task"
    )
    assert running.stop() == 0


def test_a_task_applied_before_downtime_catches_up_its_first_slot(
    deployment: Deployment,
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001", policy="policy: {catch_up: none}\n")
    first = Running(deployment, ManualClock(SLOT_3 - dt.timedelta(hours=2)))
    deployment.wait_for(lambda: deployment.records("config-applied"), what="applied")
    assert first.stop() == 0  # down before the task ever reached a slot
    second = Running(deployment, ManualClock(SLOT_3 + dt.timedelta(hours=2)))
    deployment.wait_for(lambda: deployment.records("slot-missed"), what="slot-missed")
    assert second.stop() == 0
    assert slots_of(deployment, "slot-missed") == ["2026-12-03T06:00:00Z"]
    assert deployment.records("run-started") == []


def test_rejected_problems_stay_in_the_replayed_state(deployment: Deployment) -> None:
    from b2bd.journal.reader import read_journal
    from b2bd.journal.state import replay

    deployment.add_school("8814001")
    path = deployment.add_task("t", "8814001")
    running = Running(deployment, ManualClock(SLOT_3 - dt.timedelta(hours=2)))
    deployment.wait_for(lambda: deployment.records("config-applied"), what="applied")
    path.write_text(path.read_text().replace("06:00", "6:00"))
    running.daemon.request_reload()
    deployment.wait_for(lambda: deployment.records("config-rejected"), what="rejected")
    assert running.stop() == 0
    state = replay(read_journal(deployment.state))
    assert [(p.file, p.rule) for p in state.rejected_config] == [("tasks/t.yaml", "time-format")]


def test_a_run_cut_short_by_a_crash_is_closed_at_the_next_start(deployment: Deployment) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    with Journal.open(deployment.state, clock=lambda: SLOT_2) as journal:
        journal.append("config-applied", files={}, commit=None, tasks=["t"])
        journal.append("run-started", run="t/20261202T060000Z", task="t", slot=SLOT_2,
                       manual=False, bases=["8814001"])  # fmt: skip
    running = Running(deployment, ManualClock(SLOT_2 + dt.timedelta(hours=1)))
    deployment.wait_for(lambda: deployment.records("run-finished"), what="closed run")
    assert running.stop() == 0
    (failed,) = deployment.records("transfer-failed")
    assert (failed["run"], failed["base"], failed["reason"]) == (
        "t/20261202T060000Z", "8814001", "internal",
    )  # fmt: skip
    assert deployment.records("run-finished")[0]["outcome"] == "failed"
    assert slots_of(deployment, "run-started") == ["2026-12-02T06:00:00Z"]  # not started again


def test_a_suspended_task_misses_nothing_and_resumes_at_its_next_slot(
    deployment: Deployment,
) -> None:
    deployment.add_school("8814001")
    path = deployment.add_task(
        "t", "8814001", policy="policy: {catch_up: all, starting_deadline: 3d}\n"
    )
    path.write_text(path.read_text() + "enabled: false\n")
    running = Running(deployment, ManualClock(SLOT_2 - dt.timedelta(hours=1)))
    deployment.wait_for(running.daemon.watcher.alive, what="the watcher")
    running.advance_to(SLOT_3 + dt.timedelta(hours=1))  # two slots pass while suspended
    path.write_text(path.read_text().replace("enabled: false\n", "enabled: true\n"))
    running.daemon.request_reload()
    deployment.wait_for(lambda: len(deployment.records("config-applied")) == 2, what="resumed")
    assert deployment.records("run-started") == [] and deployment.records("slot-missed") == []
    running.advance_to(SLOT_4)
    deployment.wait_for(lambda: deployment.records("run-finished"), what="the next slot")
    assert running.stop() == 0
    assert slots_of(deployment, "run-started") == ["2026-12-04T06:00:00Z"]
    assert deployment.records("slot-missed") == []
