"""Compaction keeps history (DESIGN section 7): runs and transfer outcomes of the last
``history_days`` stay readable by ``history``, last successes stay in ``status``, no pupil
digest is kept, and an interrupted compaction counts nothing twice."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_journal_state import RECORD, T0, records

from b2bd.cli import main
from b2bd.journal.entries import TransferSucceeded
from b2bd.journal.history import HistoryKeeper, run_history
from b2bd.journal.reader import HISTORY_FILE, JOURNAL_DIR, read_journal
from b2bd.journal.writer import Journal
from b2bd.report import history_report
from tests.support.clocks import StepClock
from tests.support.oserrors import fill, tmpfs

EXAMPLE = Path(__file__).resolve().parents[2] / "config"
TASK = "daily-changed-data"
DIGEST = "d1" * 32
COMMON = {"direction": "from-school", "data_type": "changed", "cohort_group": "ncy"}


def deployment(tmp_path: Path, history_days: int | None = None) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "config")
    if history_days is not None:
        with (tmp_path / "config" / "b2bd.yaml").open("a") as f:
            f.write(f"journal: {{history_days: {history_days}}}\n")
    return tmp_path


def state(root: Path) -> Path:
    return root / "var" / "state"


def journal_run(root: Path, days_ago: int, outcomes: dict[str, str]) -> str:
    """A run of TASK started ``days_ago`` days before now, with these per-base outcomes."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days_ago)
    run = f"{TASK}/{start:%Y%m%dT%H%M%SZ}"
    with Journal.open(state(root), StepClock(start)) as journal:
        journal.append("run-started", run=run, task=TASK, slot=start, bases=list(outcomes))
        for base, outcome in outcomes.items():
            if outcome == "succeeded":
                journal.append("transfer-succeeded", run=run, task=TASK, base=base,
                               counts={"pupil": 3}, pupils=[DIGEST], **COMMON)  # fmt: skip
            else:
                journal.append("transfer-failed", run=run, task=TASK, base=base,
                               reason="unreachable", message="no folder", attempts=2)  # fmt: skip
        result = "succeeded" if set(outcomes.values()) == {"succeeded"} else "partial"
        journal.append("run-finished", run=run, task=TASK, outcome=result)
    return run


def b2bd(root: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = main(["--config", str(root / "config"), *args])
    out, err = capsys.readouterr()
    return code, out, err


def history_runs(root: Path, capsys) -> list[str]:
    code, out, _ = b2bd(root, "history", "--format", "json", capsys=capsys)
    assert code == 0
    return [r["run"] for r in json.loads(out)]


def last_successes(root: Path, capsys) -> dict[str, str | None]:
    _, out, _ = b2bd(root, "status", "--format", "json", capsys=capsys)
    task = next(t for t in json.loads(out)["tasks"] if t["task"] == TASK)
    return {b["base"]: b["last_success_run"] for b in task["bases"]}


def test_compaction_keeps_the_history_window_and_every_last_success(tmp_path, capsys):
    root = deployment(tmp_path)
    old = journal_run(root, 500, {"8814001": "succeeded", "8812002": "succeeded"})
    recent = journal_run(root, 10, {"8814001": "failed", "8812002": "succeeded"})
    assert history_runs(root, capsys) == [recent, old]
    before = last_successes(root, capsys)
    assert before == {"8814001": old, "8812002": recent, "8813003": None}

    code, out, _ = b2bd(root, "journal", "compact", capsys=capsys)
    assert code == 0 and "history keeps 4 record(s) of the last 400 day(s)" in out
    # the run from 500 days ago falls out of history; its success is still the last one
    assert history_runs(root, capsys) == [recent]
    assert last_successes(root, capsys) == before
    code, out, _ = b2bd(root, "history", TASK, capsys=capsys)
    assert code == 0 and "8814001  failed  unreachable: no folder (after 2 attempt(s))" in out
    assert "8812002  succeeded  pupil=3" in out
    # the history file has ids, times, counts and reasons, never a pupil digest
    kept = (state(root) / JOURNAL_DIR / HISTORY_FILE).read_bytes()
    assert recent.encode() in kept and b'"counts":{"pupil":3}' in kept
    assert DIGEST.encode() not in kept
    # a second compaction carries the history forward with the new runs
    newer = journal_run(root, 1, {"8814001": "succeeded"})
    assert b2bd(root, "journal", "compact", capsys=capsys)[0] == 0
    assert history_runs(root, capsys) == [newer, recent]
    assert last_successes(root, capsys)["8814001"] == newer
    code, out, _ = b2bd(root, "journal", "verify", capsys=capsys)
    assert code == 0 and "journal intact" in out


def test_history_days_is_set_in_b2bd_yaml(tmp_path, capsys):
    root = deployment(tmp_path, history_days=1000)
    old = journal_run(root, 500, {"8814001": "succeeded"})
    assert b2bd(root, "journal", "compact", capsys=capsys)[0] == 0
    assert history_runs(root, capsys) == [old]


def test_journal_cat_shows_the_kept_history_before_the_checkpoint(tmp_path, capsys):
    root = deployment(tmp_path)
    run = journal_run(root, 3, {"8814001": "succeeded"})
    b2bd(root, "journal", "compact", capsys=capsys)
    _, out, _ = b2bd(root, "journal", "cat", capsys=capsys)
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert types == [
        "run-started",
        "transfer-succeeded",
        "run-finished",
        "checkpoint",
    ]
    assert json.loads(out.splitlines()[0])["run"] == run


def test_a_compaction_cut_short_before_its_checkpoint_counts_no_run_twice(tmp_path, capsys):
    root = deployment(tmp_path)
    first = journal_run(root, 20, {"8814001": "succeeded"})
    b2bd(root, "journal", "compact", capsys=capsys)  # history holds `first`
    second = journal_run(root, 10, {"8814001": "succeeded"})
    directory = state(root) / JOURNAL_DIR
    saved = {p.name: p.read_bytes() for p in directory.glob("*.log")}
    b2bd(root, "journal", "compact", capsys=capsys)  # history holds both
    # as if the crash came after the new history file and before the checkpoint segment
    for p in directory.glob("*.log"):
        p.unlink()
    for name, data in saved.items():
        (directory / name).write_bytes(data)
    assert history_runs(root, capsys) == [second, first]
    # and compacting again from there is still exact
    b2bd(root, "journal", "compact", capsys=capsys)
    assert history_runs(root, capsys) == [second, first]


def test_damage_in_the_history_file_is_reported_and_history_exits_1(tmp_path, capsys):
    root = deployment(tmp_path)
    journal_run(root, 3, {"8814001": "succeeded"})
    b2bd(root, "journal", "compact", capsys=capsys)
    path = state(root) / JOURNAL_DIR / HISTORY_FILE
    data = bytearray(path.read_bytes())
    second = data.index(b"\n") + 1
    data[second + 20] ^= 0x01
    path.write_bytes(bytes(data))
    code, out, _ = b2bd(root, "journal", "verify", capsys=capsys)
    assert code == 1 and f"segment {HISTORY_FILE}, byte {second}: checksum mismatch" in out
    code, _, err = b2bd(root, "history", capsys=capsys)
    assert code == 1 and HISTORY_FILE in err
    # compaction refuses rather than lose the damaged history; status (state) still works
    code, _, err = b2bd(root, "journal", "compact", capsys=capsys)
    assert code == 1 and HISTORY_FILE in err
    assert path.read_bytes() == bytes(data)
    assert b2bd(root, "status", capsys=capsys)[1]


BITS = {"joined": "AQ==", "left": "1:Ag=="}  # a cohort memory's change: meaningless alone


def test_history_keeper_keeps_whole_runs_from_the_cutoff_without_digests():
    stream = records(
        ("run-started", {"run": "t/1", "task": "t", "slot": T0, "bases": ["8814001"]}),
        (
            "transfer-succeeded",
            {"run": "t/1", "task": "t", "base": "8814001", "pupils": [DIGEST], **COMMON},
        ),
        ("run-started", {"run": "t/2", "task": "t", "slot": T0, "bases": ["8814001"]}),
        ("run-finished", {"run": "t/1", "task": "t", "outcome": "succeeded"}),  # after cutoff
        (
            "transfer-succeeded",
            {"run": "t/2", "task": "t", "base": "8814001", "pupils": [DIGEST], **BITS, **COMMON},
        ),
        ("slot-missed", {"task": "t", "slot": T0}),
        ("config-applied", {"files": {}}),
    )
    keeper = HistoryKeeper(stream[2].ts)
    kept = [k for r in stream if (k := keeper.keep(r)) is not None]
    assert [(r.type, r.seq) for r in kept] == [
        ("run-started", 3),
        ("transfer-succeeded", 5),
        ("slot-missed", 6),
    ]
    succeeded = kept[1]
    assert isinstance(succeeded, TransferSucceeded)
    assert (succeeded.pupils, succeeded.joined, succeeded.left) == ((), "", "")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORD, max_size=30), st.lists(RECORD, max_size=10))
def test_history_reads_the_same_before_and_after_compaction(before, after):
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        with Journal.open(state_dir, StepClock(T0), segment_bytes=600) as journal:
            for type_, fields in before:
                journal.append(type_, **fields)
            expected = history_report(journal.entries())
            journal.compact(history_days=36500)
            assert history_report(read_journal(state_dir, with_history=True)) == expected
            for type_, fields in after:
                journal.append(type_, **fields)
            expected = history_report(read_journal(state_dir, with_history=True))
            journal.compact(history_days=36500)
        got = history_report(read_journal(state_dir, with_history=True))
        assert got == expected
        assert len(run_history(read_journal(state_dir, with_history=True))) == len(expected)


# -- a history file that is not what it seems ------------------------------------------------------


def b2bd_process(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """b2bd as a subprocess, so that a command that would block fails the test instead."""
    return subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(root / "config"), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("plant", "what"),
    [
        (lambda path: os.mkfifo(path), "is a FIFO, not a regular file"),
        (lambda path: path.symlink_to("/dev/zero"), "is a symlink (not followed)"),
    ],
    ids=["fifo", "symlink-to-dev-zero"],
)
def test_a_history_file_that_is_not_a_regular_file_is_damage_not_a_hang(
    tmp_path, plant, what
) -> None:
    root = deployment(tmp_path)
    journal_run(root, 3, {"8814001": "succeeded"})
    assert b2bd_process(root, "journal", "compact").returncode == 0
    path = state(root) / JOURNAL_DIR / HISTORY_FILE
    path.unlink()
    plant(path)
    for command in (["history"], ["journal", "cat"], ["journal", "compact"]):
        result = b2bd_process(root, *command)
        assert result.returncode == 1, (command, result.stderr)
        assert f"segment {HISTORY_FILE}, byte 0: {what}" in result.stderr
        assert "Traceback" not in result.stderr
    verify = b2bd_process(root, "journal", "verify")
    assert verify.returncode == 1 and f"segment {HISTORY_FILE}, byte 0: {what}" in verify.stdout
    assert path.is_symlink() or stat.S_ISFIFO(path.lstat().st_mode)  # left for the operator
    assert b2bd_process(root, "status").returncode == 0  # the state never needed it


def test_compaction_on_a_full_disk_changes_nothing_and_loses_no_history(tmp_path) -> None:
    root = deployment(tmp_path)
    with tmpfs(state(root), "1m"):
        older = [journal_run(root, days, {"8814001": "succeeded"}) for days in (30, 20)]
        assert b2bd_process(root, "journal", "compact").returncode == 0  # history holds them
        newer = journal_run(root, 2, {"8814001": "failed"})
        journal = state(root) / JOURNAL_DIR
        kept = lambda: {p.name: p.read_bytes() for p in journal.glob("[0-9h]*")}  # noqa: E731
        before = kept()
        filler = fill(state(root))
        result = b2bd_process(root, "journal", "compact")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"{journal / HISTORY_FILE}" in result.stderr
        assert "No space left on device" in result.stderr
        assert kept() == before  # the history file above all: never a half-written one
        shown = b2bd_process(root, "history", "--format", "json")
        assert [r["run"] for r in json.loads(shown.stdout)] == [newer, *older[::-1]]
        filler.unlink()  # space freed: the same command now works, and nothing was lost
        assert b2bd_process(root, "journal", "compact").returncode == 0
        shown = b2bd_process(root, "history", "--format", "json")
        assert [r["run"] for r in json.loads(shown.stdout)] == [newer, *older[::-1]]
