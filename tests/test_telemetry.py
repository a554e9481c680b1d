"""The metrics bookkeeping (b2bd/telemetry.py), fed journal entries built as the journal
builds them."""

from __future__ import annotations

import datetime as dt
import math

from b2bd.journal.entries import build_entry
from b2bd.journal.state import replay
from b2bd.telemetry import LOOP_STALE, Telemetry, View, Vitals, health, liveness

T0 = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)


def rec(type_: str, seq: int, minutes: int = 0, **fields: object):
    return build_entry(type_, seq, T0 + dt.timedelta(minutes=minutes), fields)


def succeeded(seq: int, task: str, base: str, minutes: int = 0, **more: object):
    return rec("transfer-succeeded", seq, minutes, run=f"{task}/r", task=task, base=base,
               direction="from-school", data_type="snapshot", cohort_group="ncy",
               **more)  # fmt: skip


def by_name(t: Telemetry, view: View) -> dict[str, dict[tuple[str, ...], object]]:
    return {s.name: dict(s.samples) for s in t.series(view)}


def test_transfers_records_and_slots_are_counted_by_ids() -> None:
    t = Telemetry()
    for record in [
        succeeded(1, "t", "8814001", counts={"pupil": 5, "mark": 40},
                  rejected_by_reason={"upn-format": 2}),
        succeeded(2, "t", "8814001", 30, counts={"pupil": 1}),
        rec("transfer-failed", 3, run="t/r", task="t", base="8814002", reason="unreachable",
            message="share gone", attempts=1),
        rec("transfer-skipped", 4, run="t/r", task="t", base="8815005", reason="lockdown"),
        rec("slot-missed", 5, task="t", slot=T0),
        rec("slot-skipped", 6, task="t", slot=T0, reason="previous transfer still running",
            base="8814001"),
        rec("daemon-started", 7, pid=1, version="x"),
    ]:  # fmt: skip
        t.entry(record)
    view = View(targets={"t": ("8814001", "8814002")})
    got = by_name(t, view)
    assert got["b2bd_transfers"] == {
        ("t", "8814001", "succeeded"): 2,
        ("t", "8814002", "failed"): 1,
        ("t", "8815005", "skipped"): 1,
    }
    assert got["b2bd_records"] == {("t", "mark"): 40, ("t", "pupil"): 6}
    assert got["b2bd_records_rejected"] == {("t", "upn-format"): 2}
    assert got["b2bd_slots_missed"] == {("t",): 1}
    assert got["b2bd_slots_skipped"] == {("t",): 1}
    late = (T0 + dt.timedelta(minutes=30)).timestamp()
    assert got["b2bd_task_last_success_timestamp_seconds"] == {("t", "8814001"): late}
    assert got["b2bd_journal_bytes"] == {}


def test_last_success_comes_from_the_replayed_state_and_only_for_pairs_targeted_now() -> None:
    state = replay([succeeded(1, "t", "8814001"), succeeded(2, "gone", "8814001"),
                    succeeded(3, "t", "8819999")])  # fmt: skip
    t = Telemetry()
    t.seed(state)
    got = by_name(t, View(targets={"t": ("8814001",)}))
    assert got["b2bd_task_last_success_timestamp_seconds"] == {("t", "8814001"): T0.timestamp()}
    assert got["b2bd_transfers"] == {}  # counters count from this start


def test_a_value_not_shaped_like_an_id_is_never_a_label() -> None:
    t = Telemetry()
    t.entry(succeeded(1, "t", "8814001", counts={'pupil"} evil{x="': 1, "a b": 2},
                       rejected_by_reason={"Ünïcode": 3}))  # fmt: skip
    got = by_name(t, View())
    assert got["b2bd_records"] == {("t", "other"): 3}
    assert got["b2bd_records_rejected"] == {("t", "other"): 3}


def test_config_loads_and_failures() -> None:
    t = Telemetry()
    t.loaded(T0, start=True, errors=0, warnings=4)
    t.loaded(T0 + dt.timedelta(minutes=1), start=False, errors=1, warnings=4)
    got = by_name(t, View())
    assert got["b2bd_config_last_reload_successful"] == {(): 0}
    assert got["b2bd_config_last_reload_success_timestamp_seconds"] == {(): T0.timestamp()}
    assert got["b2bd_config_reloads"] == {(): 1}
    assert got["b2bd_config_reload_failures"] == {(): 1}
    assert got["b2bd_config_problems"] == {("error",): 1, ("warning",): 4}
    t.loaded(T0 + dt.timedelta(minutes=2), start=False, errors=None, warnings=0)  # unreadable
    got = by_name(t, View())
    assert got["b2bd_config_reload_failures"] == {(): 2}
    assert got["b2bd_config_problems"] == {("error",): 1, ("warning",): 4}
    t.loaded(T0 + dt.timedelta(minutes=3), start=False, errors=0, warnings=0)
    got = by_name(t, View())
    assert got["b2bd_config_last_reload_successful"] == {(): 1}
    assert got["b2bd_config_last_reload_success_timestamp_seconds"] == {
        (): (T0 + dt.timedelta(minutes=3)).timestamp()
    }


def test_durations_fall_in_their_buckets_and_running_counts_down() -> None:
    t = Telemetry()
    t.began("t")
    t.began("t")
    assert by_name(t, View())["b2bd_transfers_running"] == {(): 2}
    t.ended("t", 0.5)
    t.ended("t", 7200.0)
    got = by_name(t, View())
    assert got["b2bd_transfers_running"] == {(): 0}
    histogram = got["b2bd_transfer_duration_seconds"][("t",)]
    # by_name() gives every sample as object; this one is a histogram
    cumulative = dict(histogram.cumulative())  # type: ignore[attr-defined]
    assert cumulative[1] == 1 and cumulative[3600] == 1 and cumulative[math.inf] == 2
    assert histogram.total == 7200.5  # type: ignore[attr-defined]


def test_health_names_every_reason() -> None:
    assert health(Vitals(loop_age=1.0)) == []
    stuck = Vitals(
        loop_age=LOOP_STALE + 1,
        watch_error="inotify limit",
        journal_failed="EIO",
        journal_probe="read-only",
        stopping=True,
    )
    reasons = health(stuck)
    assert len(reasons) == 5
    assert "loop has not turned" in reasons[1]
    assert health(Vitals(loop_age=None)) == ["the daemon's loop has not started"]


def test_a_snapshot_is_not_changed_by_later_feeding() -> None:
    t = Telemetry()
    t.entry(succeeded(1, "t", "8814001", counts={"pupil": 1}))
    t.began("t")
    t.ended("t", 2.0)
    snap = t.snapshot()
    t.entry(succeeded(2, "t", "8814001", 5, counts={"pupil": 1}))
    t.began("t")
    t.began("t")
    t.ended("t", 2.0)
    t.loaded(T0, start=False, errors=2, warnings=0)
    view = View(targets={"t": ("8814001",)})
    assert by_name(snap, view) == by_name(Telemetry().snapshot(), view) | {
        "b2bd_transfers": {("t", "8814001", "succeeded"): 1},
        "b2bd_records": {("t", "pupil"): 1},
        "b2bd_task_last_success_timestamp_seconds": {("t", "8814001"): T0.timestamp()},
        "b2bd_transfer_duration_seconds": by_name(snap, view)["b2bd_transfer_duration_seconds"],
    }
    (histogram,) = by_name(snap, view)["b2bd_transfer_duration_seconds"].values()
    assert histogram.count == 1  # type: ignore[attr-defined]  # a histogram series, as above
    assert snap.series(view) != t.series(view)


def test_liveness_fails_only_for_what_a_restart_can_fix() -> None:
    """The liveness probe (/livez): a stuck loop. A full, read-only or failed journal or a
    watcher the kernel refuses stays as it is after a restart: /healthz (readiness) says it."""
    sick = Vitals(loop_age=1.0, watch_error="inotify limit", journal_failed="EIO",
                  journal_probe="read-only", stopping=True)  # fmt: skip
    assert len(health(sick)) == 4
    assert liveness(sick) == []
    assert liveness(Vitals(loop_age=LOOP_STALE + 1)) == [
        f"the daemon's loop has not turned for {LOOP_STALE + 1:.0f} s"
    ]
    assert liveness(Vitals(loop_age=None)) == ["the daemon's loop has not started"]


def test_a_task_gone_from_the_config_is_forgotten_but_its_last_success_comes_back() -> None:
    """Series of a task removed from the config go (a config author renaming tasks must not
    pile up series until the next restart); its last success is the journal's, so it shows
    again if the task comes back."""
    t = Telemetry()
    for seq, task in enumerate(("kept", "gone"), 1):
        t.entry(succeeded(seq, task, "8814001", counts={"pupil": 1},
                          rejected_by_reason={"date": 1}))  # fmt: skip
        t.entry(rec("slot-missed", seq + 10, task=task, slot=T0))
        t.entry(rec("slot-skipped", seq + 20, task=task, slot=T0, base="8814001",
                    reason="previous transfer still running"))  # fmt: skip
        t.began(task)
        t.ended(task, 1.0)
    t.forget_tasks_but({"kept"})
    view = View(targets={"kept": ("8814001",), "gone": ("8814001",)})
    for series in t.series(view):
        if "task" in series.labels and series.name != "b2bd_task_last_success_timestamp_seconds":
            tasks = {values[series.labels.index("task")] for values, _ in series.samples}
            assert "gone" not in tasks, series.name
    assert by_name(t, view)["b2bd_task_last_success_timestamp_seconds"] == {
        ("kept", "8814001"): T0.timestamp(),
        ("gone", "8814001"): T0.timestamp(),
    }
