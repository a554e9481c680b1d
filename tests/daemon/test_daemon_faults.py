"""Faults on our own side while the daemon starts or runs: each ends as one error line naming the
path and what to do, with the documented exit code (78: config, 1: state), never a traceback;
and the daemon recovers once the cause is gone (space freed, folder restored)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from b2bd.cli import main
from b2bd.journal.reader import scan_journal
from b2bd.journal.writer import Journal
from tests.support.daemon import NotifySocket, start_daemon, stop_daemon
from tests.support.deployment import Deployment
from tests.support.oserrors import (
    chown_tree,
    fill,
    open_tmp,
    root_owned_segment,
    run_as_nobody,
    tmpfs,
)

__all__ = ["open_tmp"]


@pytest.fixture
def d(tmp_path: Path) -> Deployment:
    """One school, one task at 06:00 (not due in these tests)."""
    d = Deployment(tmp_path)
    d.add_school("8814001")
    d.add_task("t", "8814001")
    return d


def events(out: str) -> list[dict[str, object]]:
    """The daemon's log lines (every line must be one JSON object: no traceback text)."""
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def errors(out: str) -> list[dict[str, object]]:
    return [e for e in events(out) if e["level"] in ("error", "critical")]


def start_until_ready_then_stop(d: Deployment, notify: NotifySocket) -> str:
    """Start the daemon, wait for READY, stop it; it must exit 0. Its output."""
    notify.drain()
    proc = start_daemon(d, notify)
    try:
        notify.wait_for("READY=1")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    return out


def run_daemon_as_nobody(d: Deployment) -> tuple[int, list[dict[str, object]], str]:
    code, out, err = run_as_nobody(lambda: main(["--config", str(d.config), "run"]))
    return code, events(out), err


def nobody_deployment(root: Path) -> Deployment:
    """A deployment whose state dir and LA store belong to uid 65534 (the service user)."""
    d = Deployment(root)
    d.add_school("8814001")
    d.add_task("t", "8814001")
    for path in (d.state, d.la):
        path.mkdir()
        chown_tree(path)
    return d


def test_unreadable_config_dir_is_one_line_and_exit_78(open_tmp: Path) -> None:
    d = nobody_deployment(open_tmp)
    d.config.chmod(0o700)  # root's, as a ConfigurationDirectory= left unchowned was
    code, logged, err = run_daemon_as_nobody(d)
    assert code == 78, (logged, err)
    assert err == ""
    (error,) = logged
    assert error["level"] == "error" and error["event"] == "config-unusable"
    assert f"cannot read the config dir: {d.config}: Permission denied" in str(error["error"])
    assert "uid 65534" in str(error["error"])


def test_missing_tasks_folder_at_start_is_a_validation_error_and_exit_78(d: Deployment) -> None:
    shutil.rmtree(d.config / "tasks")
    proc = start_daemon(d, None)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 78, out
    (problem,) = errors(out)
    assert problem["event"] == "config-invalid" and problem["rule"] == "file-unreadable"
    assert problem["file"] == "tasks/" and "tasks/ folder is missing" in str(problem["message"])


def test_tasks_folder_deleted_or_replaced_while_running_keeps_every_schedule(
    d: Deployment, notify_socket: NotifySocket
) -> None:
    proc = start_daemon(d, notify_socket)
    try:
        assert "STATUS=1 tasks loaded, 0 config problems" in notify_socket.wait_for("READY=1")
        moved = d.root / "tasks.moved"
        os.rename(d.config / "tasks", moved)
        d.wait_for(lambda: d.records("config-rejected"), 5, "config-rejected")
        assert "1 tasks loaded, 1 config problems" in notify_socket.wait_for("READY=1")
        (d.config / "tasks").write_text("a file where the folder was\n")
        os.kill(proc.pid, 1)  # SIGHUP: rescan now
        notify_socket.wait_for("READY=1")
        (d.config / "tasks").unlink()
        os.rename(moved, d.config / "tasks")
        assert "1 tasks loaded, 0 config problems" in notify_socket.wait_for("READY=1")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    (rejected, *more) = d.records("config-rejected")
    assert rejected["problems"][0]["file"] == "tasks/"
    assert [p["message"] for r in more for p in r["problems"]] == [
        "tasks is not a folder: task files live in a tasks/ folder"
    ]
    # The task never stopped being in force: every config-applied lists it.
    assert all(r["tasks"] == ["t"] for r in d.records("config-applied"))
    assert {e["event"] for e in errors(out)} == {"config-rejected"}


def test_a_state_dir_that_is_a_symlink_loop_is_one_line_saying_so(d: Deployment) -> None:
    """mkdir's "File exists" would say nothing an operator can act on: the line names the
    path, the loop, and what to do; the CLI says the same."""
    shutil.rmtree(d.state, ignore_errors=True)
    d.state.symlink_to(d.state)
    proc = start_daemon(d, None)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    (error,) = errors(out)
    said = str(error["error"])
    assert error["event"] == "journal-unusable"
    assert f"{d.state}: Too many levels of symbolic links" in said and "File exists" not in said
    assert "a symlink loop" in said and "point the symlink at a real folder" in said
    trigger = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(d.config), "trigger", "t"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert trigger.returncode == 2
    (line,) = trigger.stderr.splitlines()
    assert f"{d.state}/" in line and "Too many levels of symbolic links" in line
    assert "point the symlink at a real folder" in line


def test_read_only_journal_segment_is_one_line_and_exit_1(open_tmp: Path) -> None:
    d = nobody_deployment(open_tmp)
    segment = root_owned_segment(d.state)
    code, logged, err = run_daemon_as_nobody(d)
    assert code == 1, (logged, err)
    assert err == ""
    (error,) = logged
    assert error["event"] == "journal-unusable"
    assert f"cannot open the journal: {segment}: Permission denied" in str(error["error"])


def test_unreadable_pupil_key_is_one_line_and_exit_1(open_tmp: Path) -> None:
    d = nobody_deployment(open_tmp)
    key = d.state / "pupil.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)  # root's: the service user cannot read it
    code, logged, err = run_daemon_as_nobody(d)
    assert code == 1, (logged, err)
    assert err == ""
    (error,) = errors("\n".join(json.dumps(e) for e in logged))
    assert error["event"] == "pupil-key-unusable"
    assert str(error["error"]).startswith(f"{key} cannot be read (Permission denied)")
    assert "make it readable by the service" in str(error["error"])
    assert os.stat(key).st_uid == 0 and key.read_bytes()  # left as it was


def test_full_state_disk_stops_the_daemon_with_one_line_and_it_recovers(
    d: Deployment, notify_socket: NotifySocket
) -> None:
    with tmpfs(d.state, "1m"):
        proc = start_daemon(d, notify_socket)
        try:
            notify_socket.wait_for("READY=1")
            filler = fill(d.state)
            # Each new task file makes the daemon journal config-applied; the segment's last
            # page has room for a few at most, then a write needs space the disk does not have.
            for i in range(40):
                if proc.poll() is not None:
                    break
                d.add_task(f"more{i}", "8814001")
                d.wait_for(
                    lambda i=i: (
                        proc.poll() is not None
                        or any(f"more{i}" in r["tasks"] for r in d.records("config-applied"))
                    ),
                    10,
                    "config-applied or exit",
                )
            code, out = stop_daemon(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 1, out
        (error,) = errors(out)
        assert error["event"] == "journal-write-failed"
        (segment,) = (d.state / "journal").glob("*.log")
        assert f"cannot write the journal: {segment}: No space left on device" in error["error"]
        assert "free space" in str(error["error"])
        torn = not segment.read_bytes().endswith(b"\n")

        filler.unlink()  # space freed: the same daemon starts and carries on
        out = start_until_ready_then_stop(d, notify_socket)
        assert errors(out) == []
        repaired = [e for e in events(out) if e["event"] == "journal-repaired"]
        assert [e["level"] for e in repaired] == (["warning"] if torn else [])
        assert scan_journal(d.state / "journal").intact
        last = d.records("config-applied")[-1]["tasks"]
        assert len(last) == 1 + len(list((d.config / "tasks").glob("more*.yaml")))


def test_torn_tail_on_a_full_disk_exits_1_unchanged_then_repairs_once_space_is_freed(
    d: Deployment, notify_socket: NotifySocket
) -> None:
    with tmpfs(d.state, "256k"):
        with Journal.open(d.state) as journal:
            journal.append("daemon-stopped", reason="test")
        (segment,) = (d.state / "journal").glob("*.log")
        with segment.open("ab") as f:
            f.write(b'{"type":"run-started","seq":2,"ts":"2026-1')  # a write cut short
        before = segment.read_bytes()
        filler = fill(d.state)
        proc = start_daemon(d, None)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 1, out
        (error,) = errors(out)
        assert error["event"] == "journal-unusable"
        assert "cannot repair the torn last record of journal segment" in str(error["error"])
        assert "No space left on device" in str(error["error"])
        assert segment.read_bytes() == before  # nothing was changed

        filler.unlink()
        out = start_until_ready_then_stop(d, notify_socket)
        (repaired,) = [e for e in events(out) if e["event"] == "journal-repaired"]
        assert repaired["level"] == "warning" and repaired["records_cut"] == 0
        assert "never acknowledged" in str(repaired["message"])
        assert scan_journal(d.state / "journal").intact


def test_complete_records_cut_by_a_repair_are_reported_at_error(
    d: Deployment, notify_socket: NotifySocket
) -> None:
    with Journal.open(d.state) as journal:
        journal.append("daemon-stopped", reason="test")
        journal.append("daemon-stopped", reason="this one rots on disk")
    (segment,) = (d.state / "journal").glob("*.log")
    data = bytearray(segment.read_bytes())
    data[-30] ^= 0x01  # bit rot in the last, complete (so once acknowledged) record
    segment.write_bytes(bytes(data))
    out = start_until_ready_then_stop(d, notify_socket)
    (repaired,) = errors(out)
    assert repaired["event"] == "journal-repaired" and repaired["records_cut"] == 1
    assert "1 complete record(s)" in str(repaired["message"])
    (record,) = d.records("journal-repaired")
    assert record["records"] == 1


def test_compact_through_the_daemon_on_a_full_disk_is_exit_2_and_the_daemon_carries_on(
    d: Deployment, notify_socket: NotifySocket
) -> None:
    """`b2bd journal compact` beside the service when the state disk is full: the daemon's
    history file cannot be written, so nothing changes; the CLI says so in one line naming the
    path (exit 2); the daemon keeps running and compacts once space is freed."""
    with tmpfs(d.state, "1m"):
        proc = start_daemon(d, notify_socket)
        try:
            notify_socket.wait_for("READY=1")
            cli = [sys.executable, "-m", "b2bd", "--config", str(d.config)]
            assert subprocess.run([*cli, "trigger", "t"], capture_output=True).returncode == 0
            journal = d.state / "journal"
            before = {p.name: p.read_bytes() for p in journal.glob("*.log")}
            filler = fill(d.state)
            full = subprocess.run([*cli, "journal", "compact"], capture_output=True, text=True)
            assert full.returncode == 2, full.stderr
            (line,) = full.stderr.splitlines()
            assert line.startswith(f"b2bd: cannot write the history file: {journal}/")
            assert "No space left on device" in line and "nothing was changed" in line
            assert {p.name: p.read_bytes() for p in journal.glob("*.log")} == before
            assert proc.poll() is None  # the daemon carries on
            filler.unlink()
            done = subprocess.run([*cli, "journal", "compact"], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert "compacted by the running daemon" in done.stdout
        finally:
            code, out = stop_daemon(proc)
    assert code == 0, out
    failed = [e for e in errors(out) if e["event"] == "journal-compact-failed"]
    assert len(failed) == 1 and "No space left on device" in str(failed[0]["error"])
    assert [e["event"] for e in errors(out)] == ["journal-compact-failed"]
