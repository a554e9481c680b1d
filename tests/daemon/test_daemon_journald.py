"""Under systemd, every log line reaches the journal at its level's priority: stdout is the
journal stream ($JOURNAL_STREAM names its device and inode), and each line carries the
sd-daemon ``<N>`` prefix journald turns into PRIORITY. Here a real daemon writes to a pipe that
stands in for that stream."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from b2bd.journal.writer import Journal
from tests.support.daemon import NotifySocket, start_daemon, stop_daemon
from tests.support.deployment import Deployment

LINE = re.compile(r"<([0-7])>(\{.*\})")
SYSLOG = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}


class FakeJournalStream:
    """A pipe as the daemon's stdout, with JOURNAL_STREAM naming it; collects every line."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        info = os.fstat(self.write_fd)
        self.env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with os.fdopen(self.read_fd, encoding="utf-8") as stream:
            self.lines.extend(line.rstrip("\n") for line in stream)

    def close(self) -> list[str]:
        """Our write end closed; every line once the daemon has exited."""
        os.close(self.write_fd)
        self._reader.join(timeout=10)
        return self.lines


def entries(lines: list[str]) -> list[tuple[int, dict[str, object]]]:
    out = []
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"not a <N>-prefixed JSON line: {line!r}"
        out.append((int(match.group(1)), json.loads(match.group(2))))
    return out


def test_failures_reach_the_journal_as_errors_and_warnings(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("good", "8814001")
    # A base whose folder is missing: its transfer fails (retries are 0 here).
    deployment.bases.append(deployment.bases[0].replace("8814001", "8814002"))
    deployment.config.joinpath("bases.yaml").write_text("bases:\n" + "".join(deployment.bases))
    deployment.add_task("gone", "8814002")
    with Journal.open(deployment.state) as journal:
        journal.append("daemon-stopped", reason="before the test")
    (segment,) = (deployment.state / "journal").glob("*.log")
    with segment.open("ab") as f:
        f.write(b'{"type":"run-st')  # a write cut short: repaired at start, logged as a warning
    stream = FakeJournalStream()
    proc = start_daemon(deployment, notify_socket, "--now", env=stream.env, stdout=stream.write_fd)
    try:
        notify_socket.wait_for("READY=1")
        deployment.wait_for(lambda: len(deployment.records("run-finished")) == 2, 15, "runs")
        bad = deployment.config / "tasks" / "good.yaml"
        bad.write_text(bad.read_text().replace("snapshot", "snapshots"))
        deployment.wait_for(lambda: deployment.records("config-rejected"), 5, "config-rejected")
    finally:
        code, _ = stop_daemon(proc)
    assert code == 0
    logged = entries(stream.close())
    for priority, event in logged:
        assert priority == SYSLOG[str(event["level"])], event
    by_event = {(str(e["event"]), str(e.get("outcome", ""))): p for p, e in logged}
    assert by_event[("journal-repaired", "")] == 4
    assert by_event[("transfer-failed", "")] == 3
    assert by_event[("run-finished", "failed")] == 3
    assert by_event[("run-finished", "succeeded")] == 6
    assert by_event[("config-rejected", "")] == 3
    assert by_event[("daemon-ready", "")] == 6
    # What `journalctl -p warning` would show: exactly the repair and the failures.
    shown = sorted({str(e["event"]) for p, e in logged if p <= 4})
    assert shown == ["config-rejected", "journal-repaired", "run-finished", "transfer-failed"]


def test_a_redirected_stdout_gets_plain_json_even_with_journal_stream_set(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001", time="6:00")  # invalid: the daemon logs and exits 78
    stream = FakeJournalStream()
    log_file = (tmp_path / "out.log").open("w")
    # JOURNAL_STREAM inherited from a unit, stdout redirected elsewhere: no prefixes.
    proc = start_daemon(deployment, None, env=stream.env, stdout=log_file.fileno())
    assert proc.wait(timeout=30) == 78
    log_file.close()
    stream.close()
    lines = (tmp_path / "out.log").read_text().splitlines()
    assert lines and all(json.loads(line)["event"] == "config-invalid" for line in lines)


def test_each_retry_is_a_warning_with_attempt_wait_and_reason_only(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """A school that cannot be reached is retried: each retry is one ``transfer-retry`` line at
    warning priority (attempt, wait, reason class), so `journalctl -p warning` shows a transfer
    struggling before it fails; no school data (its path, names) in it."""
    deployment.add_school("8814001")
    gone = deployment.root / "school-not-mounted-8814002"
    deployment.bases.append(deployment.bases[0].replace("8814001", "8814002").replace(
        str(deployment.schools / "8814001"), str(gone)))  # fmt: skip
    deployment.config.joinpath("bases.yaml").write_text("bases:\n" + "".join(deployment.bases))
    deployment.add_task("gone", "8814002", policy="policy: {retries: 2, retry_backoff: 1s}\n")
    stream = FakeJournalStream()
    proc = start_daemon(deployment, notify_socket, "--now", env=stream.env, stdout=stream.write_fd)
    try:
        notify_socket.wait_for("READY=1")
        deployment.wait_for(lambda: deployment.records("run-finished"), 20, "the run's end")
    finally:
        code, _ = stop_daemon(proc)
    assert code == 0
    logged = entries(stream.close())
    retries = [(p, e) for p, e in logged if e["event"] == "transfer-retry"]
    assert [p for p, _ in retries] == [4, 4]
    assert [(e["attempt"], e["wait"], e["reason"]) for _, e in retries] == [
        (1, 1.0, "unreachable"),
        (2, 2.0, "unreachable"),
    ]
    for _, e in retries:
        assert e["base"] == "8814002" and str(e["run"]).startswith("gone/")
        assert set(e) <= {"event", "level", "timestamp", "logger", "run", "task", "base",
                          "attempt", "wait", "reason", "next_attempt"}  # fmt: skip
        assert str(gone) not in json.dumps(e)
    (failed,) = deployment.records("transfer-failed")
    assert failed["attempts"] == 3


def test_a_run_cut_short_by_the_grace_period_is_an_error(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """SIGTERM while a transfer is stuck on its school: after the grace period the transfer is
    journaled failed and its run finishes failed, both at error priority (the run-finished
    line used to be a warning whatever its outcome)."""
    from tests.support.slow_school import reader_waiting

    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001")
    stream = FakeJournalStream()
    proc = start_daemon(deployment, notify_socket, "--now", "--grace", "0.5", env=stream.env,
                        stdout=stream.write_fd, slow=True)  # fmt: skip
    try:
        notify_socket.wait_for("READY=1")
        reader_waiting(folder)
    finally:
        code, _ = stop_daemon(proc)
    assert code == 0
    logged = entries(stream.close())
    finished = [(p, e["outcome"]) for p, e in logged if e["event"] == "run-finished"]
    assert finished == [(3, "failed")]
    failed = [p for p, e in logged if e["event"] == "transfer-failed"]
    assert failed == [3]


def test_a_run_closed_as_failed_at_start_is_an_error(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """A run the previous daemon never finished (it was killed) and none of whose transfers
    ended: closed at start as failed, logged at error (a failed run is an error, DESIGN 8)."""
    import datetime as dt

    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    with Journal.open(deployment.state) as journal:
        journal.append("run-started", run="t/20261201T060000Z", task="t",
                       slot=dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC),
                       bases=["8814001"])  # fmt: skip
    stream = FakeJournalStream()
    proc = start_daemon(deployment, notify_socket, env=stream.env, stdout=stream.write_fd)
    try:
        notify_socket.wait_for("READY=1")
    finally:
        code, _ = stop_daemon(proc)
    assert code == 0
    logged = entries(stream.close())
    closed = [(p, e["outcome"]) for p, e in logged if e["event"] == "run-interrupted"]
    assert closed == [(3, "failed")]


def test_a_stdout_nobody_reads_any_more_costs_the_logs_but_not_the_daemon(
    deployment: Deployment, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """journald restarted or gone: the daemon's stdout is a pipe whose reader has closed, so
    every log line fails (EPIPE). The daemon says so once on stderr, drops its log lines and
    goes on delivering and answering; never a traceback per line."""
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    read_fd, write_fd = os.pipe()
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = start_daemon(deployment, notify_socket, stdout=write_fd, stderr=err.fileno())
    os.close(write_fd)
    try:
        notify_socket.wait_for("READY=1")
        os.close(read_fd)
        command = [sys.executable, "-m", "b2bd", "--config", str(deployment.config)]
        env = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
        trigger = subprocess.run([*command, "trigger", "t", "--format", "json"],
                                 capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
        assert trigger.returncode == 0, trigger.stderr
        summary = json.loads(trigger.stdout)
        assert Path(summary["transfers"][0]["delivery"]).is_file()
        status = subprocess.run([*command, "status"], capture_output=True, text=True,
                                timeout=60, env=env)  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert f"daemon: running, pid {proc.pid}" in status.stdout
    finally:
        code, _ = stop_daemon(proc)
    assert code == 0
    said = stderr.read_text()
    assert "Traceback" not in said and "Logging error" not in said, said
    (line,) = said.splitlines()
    assert "log lines are lost" in line and "stdout" in line, line
