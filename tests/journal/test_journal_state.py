"""Replay: what each record does to the state, and replay == replay after compaction."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bd.journal.entries import Codec, ConfigProblem, Entry, StateSnapshot, build_entry
from b2bd.journal.memory import bits_of, encode_bits, key_of
from b2bd.journal.reader import frame
from b2bd.journal.state import replay, restore, snapshot
from b2bd.journal.writer import Journal
from tests.support.clocks import StepClock

T0 = dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def records(*items: tuple[str, dict[str, Any]]) -> list[Entry]:
    return [
        build_entry(type_, i + 1, T0 + i * dt.timedelta(seconds=1), fields)
        for i, (type_, fields) in enumerate(items)
    ]


def started(run: str, task: str, slot: dt.datetime, manual: bool = False) -> tuple[str, dict]:
    return "run-started", {"run": run, "task": task, "slot": slot, "manual": manual,
                           "bases": ["8814001", "8814002"]}  # fmt: skip


def succeeded(run: str, task: str, base: str, watermark: str | None, pupils=()) -> tuple:
    return "transfer-succeeded", {
        "run": run, "task": task, "base": base, "direction": "from-school",
        "data_type": "changed", "cohort_group": "ncy", "counts": {"pupil": 3},
        "watermark": watermark, "pupils": list(pupils),
    }  # fmt: skip


def failed(run: str, task: str, base: str, reason: str = "unreachable") -> tuple:
    return "transfer-failed", {"run": run, "task": task, "base": base, "reason": reason,
                               "message": "connection refused", "attempts": 4}  # fmt: skip


PROBLEM = {"file": "tasks/a.yaml", "line": 3, "column": 5, "rule": "R1", "message": "bad"}


def test_watermark_moves_only_with_success_and_null_keeps_it():
    state = replay(
        records(
            started("t/1", "t", T0),
            succeeded("t/1", "t", "8814001", "2025-09-01T05:00:00Z"),
            failed("t/1", "t", "8814002"),
            started("t/2", "t", T0 + H),
            succeeded("t/2", "t", "8814001", None),
            failed("t/2", "t", "8814001", "timeout"),
        )
    )
    assert state.watermark == {("t", "8814001"): "2025-09-01T05:00:00Z"}
    assert state.last_outcome[("t", "8814001")].outcome == "failed"
    assert state.last_outcome[("t", "8814001")].reason == "timeout"
    assert set(state.failing("t")) == {"8814001", "8814002"}
    assert state.failing("t")["8814002"].message == "connection refused"


def test_leavers_memory_is_a_union_per_base():
    state = replay(
        records(
            succeeded("t/1", "t", "8814001", None, ["a" * 64, "b" * 64]),
            succeeded("u/1", "u", "8814001", None, ["b" * 64, "c" * 64]),
            succeeded("u/1", "u", "8814002", None, ["d" * 64]),
            failed("u/2", "u", "8814002"),
        )
    )
    leavers = {base: memory.leavers() for base, memory in state.memory.items()}
    assert leavers == {
        "8814001": frozenset(key_of(d * 64) for d in "abc"),
        "8814002": frozenset({key_of("d" * 64)}),
    }


def test_a_changed_tasks_cohort_memory_follows_its_deltas():
    def delta(run, task, pupils, joined, left):
        kind, fields = succeeded(run, task, "8814001", None, pupils)
        return kind, {
            **fields,
            "joined": encode_bits(bits_of(joined)),
            "left": encode_bits(bits_of(left)),
        }

    digests = [f"{i:x}" * 64 for i in range(1, 6)]
    state = replay(
        records(
            delta("t/1", "t", digests[:3], joined=[0, 1, 2], left=[]),
            delta("u/1", "u", digests[3:], joined=[3], left=[]),  # another task, same base
            delta("t/2", "t", [], joined=[4], left=[0]),
        )
    )
    memory = state.memory["8814001"]
    assert memory.cohort("t") == {key_of(digests[i]) for i in (1, 2, 4)}
    assert memory.cohort("u") == {key_of(digests[3])}
    assert memory.leavers() == {key_of(d) for d in digests}
    assert restore(snapshot(state)) == state  # a checkpoint keeps both, positions and all


def test_an_old_checkpoint_with_hex_leavers_restores_into_the_memory():
    snap = StateSnapshot(leavers={"8814001": ("a" * 64, "b" * 64)})
    assert restore(snap).memory["8814001"].leavers() == {key_of("a" * 64), key_of("b" * 64)}


def test_runs_slots_and_outcomes():
    state = replay(
        records(
            started("t/1", "t", T0 + 2 * H),
            ("run-finished", {"run": "t/1", "task": "t", "outcome": "partial"}),
            started("t/manual-1", "t", T0 + 9 * H, manual=True),
            ("slot-missed", {"task": "t", "slot": T0 + 3 * H}),
            ("slot-skipped", {"task": "u", "slot": T0 + 4 * H, "reason": "overlap"}),
        )
    )
    assert state.last_slot_started == {"t": T0 + 2 * H}  # a manual run is not a slot
    assert state.last_slot_decided == {"t": T0 + 3 * H, "u": T0 + 4 * H}
    assert state.last_run["t"].run == "t/manual-1" and state.last_run["t"].outcome is None
    assert list(state.runs_in_progress) == ["t/manual-1"]
    finished = replay([], state)
    assert finished == state


def test_the_latest_manual_name_per_task_is_remembered():
    state = replay(
        records(
            started("t/manual-20261102T091507Z-2", "t", T0, manual=True),
            started("t/manual-20261102T091507Z-10", "t", T0, manual=True),
            started("t/manual-20261102T091507Z-3", "t", T0, manual=True),  # older: no effect
            started("t/20261102T063000Z", "t", T0),  # a scheduled run: not a manual name
            started("u/manual-20261101T000000Z", "u", T0, manual=True),
        )
    )
    assert state.last_manual == {
        "t": "manual-20261102T091507Z-10",
        "u": "manual-20261101T000000Z",
    }
    assert restore(snapshot(state)) == state  # kept by compaction


def test_config_problems_in_force():
    rejected = replay(records(("config-rejected", {"problems": [PROBLEM]})))
    assert rejected.rejected_config == (ConfigProblem(**PROBLEM),)
    partial = replay(
        records(
            ("config-rejected", {"problems": [PROBLEM]}),
            (
                "config-applied",
                {"files": {"b2bd.yaml": "ab"}, "tasks": ["t"], "problems": [PROBLEM]},
            ),
        )
    )
    assert partial.rejected_config == (ConfigProblem(**PROBLEM),)
    assert partial.applied_config is not None and partial.applied_config.tasks == ("t",)
    cleared = replay(
        records(
            ("config-rejected", {"problems": [PROBLEM]}),
            ("config-applied", {"files": {"b2bd.yaml": "ab"}, "tasks": ["t"]}),
        )
    )
    assert cleared.rejected_config == ()


def applied(tasks: list[str], idle: list[str] | None = None) -> tuple[str, dict]:
    fields: dict[str, Any] = {"files": {}, "tasks": tasks}
    if idle is not None:
        fields["idle"] = idle
    return "config-applied", fields


# Each row: config-applied records (tasks, idle) one second apart from T0 (T0 + n s for the
# n-th), the tasks' running_since after them.
S = dt.timedelta(seconds=1)
RUNNING_SINCE_ROWS = [
    ("a first config-applied: every task from then", [(["t", "u"], [])],
     {"t": T0, "u": T0}),
    ("kept across config-applied that keep running it", [(["t"], []), (["t", "u"], [])],
     {"t": T0, "u": T0 + S}),
    ("an idle task is not running", [(["t", "u"], ["u"])], {"t": T0}),
    ("resumed: from the config-applied that resumed it",
     [(["t"], []), (["t"], ["t"]), (["t"], [])], {"t": T0 + 2 * S}),
    ("removed and added again: from when it came back",
     [(["t"], []), ([], []), (["t"], [])], {"t": T0 + 2 * S}),
    ("an older record (no idle): every task listed runs",
     [(["t"], None), (["t", "u"], None)], {"t": T0, "u": T0 + S}),
    ("suspended while an older record said nothing: from when it resumed",
     [(["t"], None), (["t"], ["t"]), (["t"], [])], {"t": T0 + 2 * S}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("applies", "expected"),
    [row[1:] for row in RUNNING_SINCE_ROWS],
    ids=[row[0] for row in RUNNING_SINCE_ROWS],
)
def test_when_each_task_came_into_force(
    applies: list[tuple[list[str], list[str] | None]], expected: dict[str, dt.datetime]
) -> None:
    state = replay(records(*(applied(tasks, idle) for tasks, idle in applies)))
    assert state.running_since == expected
    assert restore(snapshot(state)) == state  # kept by compaction


def test_a_checkpoint_from_before_running_since_leaves_it_unknown() -> None:
    """A checkpoint written before running_since was kept: a task running before and after the
    next config-applied keeps no time (the daemon then counts from its decided slot); a task
    that comes back then counts from it."""
    old = replay(records(applied(["t"])))
    checkpoint = snapshot(replace(old, running_since={}))
    state = replay(
        [build_entry("config-applied", 2, T0 + H, {"files": {}, "tasks": ["t", "u"]})],
        restore(checkpoint),
    )
    assert state.running_since == {"u": T0 + H}


def test_last_success_survives_later_failures_and_repairs_until_acknowledged():
    repaired = {"segment": "0000000000000001.log", "offset": 10, "length": 5,
                "broken_file": "0000000000000001.log.10.broken"}  # fmt: skip
    state = replay(
        records(
            started("t/1", "t", T0),
            succeeded("t/1", "t", "8814001", None),
            ("journal-repaired", repaired),
            started("t/2", "t", T0 + H),
            failed("t/2", "t", "8814001"),
            ("journal-repaired", {**repaired, "offset": 20}),
        )
    )
    assert state.last_outcome[("t", "8814001")].outcome == "failed"
    assert state.last_success[("t", "8814001")].run == "t/1"
    assert [(r.seq, r.offset) for r in state.repairs] == [(3, 10), (6, 20)]
    acknowledged = replay(records(("repairs-acknowledged", {"up_to": 3})), state)
    assert [r.offset for r in acknowledged.repairs] == [20]


def test_a_checkpoint_without_last_successes_takes_them_from_the_latest_outcomes():
    state = replay(records(started("t/1", "t", T0), succeeded("t/1", "t", "8814001", None)))
    old = msgspec.structs.replace(snapshot(state), last_success=())
    assert restore(old).last_success == state.last_success


# -- property: replay equals replay of the compacted journal ---------------------------------------

TASKS = st.sampled_from(["t", "u", "v"])
BASES = st.sampled_from(["8814001", "8814002", "8814003"])
RUNS = st.sampled_from(
    ["t/1", "t/2", "u/1", "v/manual-1", "t/manual-20261102T091507Z", "t/manual-20261102T091507Z-2"]
)
SLOTS = st.integers(0, 48).map(lambda h: T0 + h * H)
DIGESTS = st.lists(st.sampled_from([f"{i:064x}" for i in range(8)]), max_size=3)
MARKS = st.none() | st.sampled_from(["2025-09-01T00:00:00Z", "2025-09-02T00:00:00Z"])

RECORD = st.one_of(
    st.builds(started, RUNS, TASKS, SLOTS, st.booleans()),
    st.builds(succeeded, RUNS, TASKS, BASES, MARKS, DIGESTS),
    st.builds(
        lambda record, joined, left: (
            record[0],
            {**record[1], "joined": encode_bits(joined), "left": encode_bits(left)},
        ),
        st.builds(succeeded, RUNS, TASKS, BASES, MARKS, DIGESTS),
        st.integers(0, 2**12 - 1),
        st.integers(0, 2**12 - 1),
    ),
    st.builds(failed, RUNS, TASKS, BASES, st.sampled_from(["auth", "timeout"])),
    st.builds(
        lambda run, task, base: (
            "transfer-skipped",
            {"run": run, "task": task, "base": base, "reason": "base disabled"},
        ),
        RUNS,
        TASKS,
        BASES,
    ),
    st.builds(
        lambda run, task, o: ("run-finished", {"run": run, "task": task, "outcome": o}),
        RUNS,
        TASKS,
        st.sampled_from(["succeeded", "partial", "failed"]),
    ),
    st.builds(lambda task, slot: ("slot-missed", {"task": task, "slot": slot}), TASKS, SLOTS),
    st.builds(
        lambda task, slot, base: (
            "slot-skipped",
            {"task": task, "slot": slot, "base": base, "reason": "overlap"},
        ),
        TASKS,
        SLOTS,
        st.none() | BASES,
    ),
    st.just(("config-rejected", {"problems": [PROBLEM]})),
    st.builds(
        lambda tasks, problems: (
            "config-applied",
            {"files": {"b2bd.yaml": "00"}, "commit": None, "tasks": tasks, "problems": problems},
        ),
        st.lists(TASKS, max_size=3),
        st.sampled_from([[], [PROBLEM]]),
    ),
    st.builds(  # as written since it says which tasks are idle
        lambda tasks, idle: (
            "config-applied",
            {"files": {"b2bd.yaml": "00"}, "commit": None, "tasks": tasks, "idle": idle},
        ),
        st.lists(TASKS, max_size=3, unique=True),
        st.lists(TASKS, max_size=2, unique=True),
    ),
    st.just(("daemon-started", {"pid": 1, "version": "0.1.0"})),
    st.builds(
        lambda offset: (
            "journal-repaired",
            {
                "segment": "0000000000000001.log",
                "offset": offset,
                "length": 7,
                "broken_file": f"0000000000000001.log.{offset}.broken",
            },
        ),
        st.integers(0, 999),
    ),
    st.builds(lambda up_to: ("repairs-acknowledged", {"up_to": up_to}), st.integers(0, 40)),
)


def _checkpoint(seq: int, prefix: list[Entry]) -> Entry:
    """The checkpoint compaction writes, framed and read back the way the journal does."""
    record = build_entry("checkpoint", seq, T0, {"state": snapshot(replay(prefix))})
    return Codec.decoder.decode(frame(record)[:-1])


@given(st.lists(RECORD, max_size=40), st.data())
def test_replay_equals_replay_after_compaction(items, data):
    stream = records(*items)
    cut = data.draw(st.integers(0, len(stream)), label="cut")
    compacted = [_checkpoint(cut + 1, stream[:cut]), *stream[cut:]]
    assert replay(compacted) == replay(stream)
    # and a checkpoint is exactly its state
    assert restore(snapshot(replay(stream))) == replay(stream)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORD, max_size=30), st.lists(RECORD, max_size=10))
def test_journal_state_equals_pure_replay_across_compaction(before, after):
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        with Journal.open(state_dir, StepClock(T0), segment_bytes=600) as journal:
            for type_, fields in before:
                journal.append(type_, **fields)
            expected_before = replay(journal.entries())
            journal.compact()
            assert journal.state() == expected_before
            for type_, fields in after:
                journal.append(type_, **fields)
            expected = replay([*records(*before), *records(*after)])
            assert journal.state() == replay(journal.entries())
        with Journal.open(state_dir, StepClock(T0)) as journal:
            got = journal.state()
    # the journal's records carry other timestamps than the pure stream's; compare what the
    # timestamps do not touch
    assert got.watermark == expected.watermark
    assert got.memory == expected.memory
    assert got.last_slot_started == expected.last_slot_started
    assert got.last_slot_decided == expected.last_slot_decided
    assert got.rejected_config == expected.rejected_config
    assert got.last_manual == expected.last_manual
    assert set(got.running_since) == set(expected.running_since)
    assert {k: v.run for k, v in got.last_success.items()} == {
        k: v.run for k, v in expected.last_success.items()
    }
    assert {k: v.outcome for k, v in got.last_outcome.items()} == {
        k: v.outcome for k, v in expected.last_outcome.items()
    }
