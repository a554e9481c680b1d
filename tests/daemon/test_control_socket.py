"""The control socket with a real daemon subprocess and the real CLI: manual runs beside the
live daemon, overlap, peer credentials, stopping, stale and stolen sockets, hostile clients."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bd.daemon.protocol import MAX_REQUEST, SOCKET_NAME
from tests.support.daemon import NotifySocket, start_daemon, stop_daemon
from tests.support.deployment import BASE, Deployment
from tests.support.slow_school import reader_waiting, release

NOBODY = 65534


def cli(
    d: Deployment, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(d.config), *args],
        capture_output=True, text=True, timeout=60, env=_env(env),
    )  # fmt: skip


def cli_bg(d: Deployment, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "b2bd", "--config", str(d.config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(None),
    )  # fmt: skip


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
    environ.update(extra or {})
    return environ


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[str]]]:
    """Daemons a test started; any still running at the end is stopped (and a wedged one
    killed by stop_daemon)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            stop_daemon(proc)


def running(d: Deployment, notify: NotifySocket, daemons: list, *args: str) -> subprocess.Popen:
    """A daemon subprocess, ready; schools added with ``slow=True`` answer slowly."""
    proc = start_daemon(d, notify, *args, slow=True)
    daemons.append(proc)
    notify.wait_for("READY=1")
    return proc


def exited(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    proc.communicate(timeout=timeout)
    return proc.returncode


def status_json(d: Deployment) -> dict:
    result = cli(d, "status", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def wait_until(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def runs_of(d: Deployment) -> list[str]:
    return [r["run"] for r in d.records("run-started")]


# -- a manual run beside the live daemon -----------------------------------------------------------


def test_trigger_while_the_daemon_runs(deployment, notify_socket, daemons) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    result = cli(deployment, "trigger", "t", "--format", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "succeeded" and summary["manual"] is True
    (transfer,) = summary["transfers"]
    assert Path(transfer["delivery"]).is_file()
    assert transfer["counts"]["pupil"] == 6
    # exactly one run, journaled by the daemon (the CLI never opened the journal)
    assert runs_of(deployment) == [summary["run"]]
    (finished,) = deployment.records("run-finished")
    assert finished["run"] == summary["run"] and finished["outcome"] == "succeeded"
    assert proc.poll() is None
    code, out = stop_daemon(proc)
    assert code == 0, out
    assert '"via": "control-socket"' in out


def test_the_summary_is_the_same_through_the_daemon_or_without_one(
    deployment, notify_socket, daemons
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    alone = cli(deployment, "trigger", "t", "--format", "json")
    assert alone.returncode == 0, alone.stderr
    running(deployment, notify_socket, daemons)
    through = cli(deployment, "trigger", "t", "--format", "json")
    assert through.returncode == 0, through.stderr
    a, b = json.loads(alone.stdout), json.loads(through.stdout)
    assert a.keys() == b.keys() and a["run"] != b["run"]
    strip = lambda t: {k: v for k, v in t.items() if k not in ("delivery", "watermark")}  # noqa: E731
    assert [strip(t) for t in a["transfers"]] == [strip(t) for t in b["transfers"]]
    text = cli(deployment, "trigger", "t")
    assert text.returncode == 0
    assert text.stdout.startswith("run t/manual-") and "(1 of 1 transfers succeeded)" in text.stdout


def test_status_and_history_come_from_the_daemon_with_what_runs_now(
    deployment, notify_socket, daemons
) -> None:
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    trigger = cli_bg(deployment, "trigger", "t")
    reader_waiting(folder)
    report = status_json(deployment)
    assert report["daemon"]["pid"] == proc.pid
    (task,) = report["tasks"]
    (now,) = task["running"]
    assert now["bases"] == {"8814001": "running"} and now["run"].startswith("t/manual-")
    text = cli(deployment, "status").stdout
    assert f"daemon: running, pid {proc.pid}" in text
    assert f"running now: {now['run']} (8814001 running)" in text
    release(folder)
    code, _, err = finish(trigger)
    assert code == 0, err
    history = cli(deployment, "history", "t", "--format", "json")
    assert history.returncode == 0
    assert [r["run"] for r in json.loads(history.stdout)] == [now["run"]]
    unknown = cli(deployment, "history", "tt")
    assert unknown.returncode == 2 and "did you mean 't'?" in unknown.stderr
    assert status_json(deployment)["ok"] is True


# -- overlap ---------------------------------------------------------------------------------------


def test_two_triggers_at_once_under_skip(deployment, notify_socket, daemons) -> None:
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001", policy="policy: {overlap: skip}\n")
    running(deployment, notify_socket, daemons)
    first = cli_bg(deployment, "trigger", "t")
    reader_waiting(folder)  # the first run's transfer is reading
    (run,) = runs_of(deployment)
    second = cli(deployment, "trigger", "t")
    assert second.returncode == 75
    assert f"task t is still running on 8814001 (run {run})" in second.stderr
    assert "overlap policy is skip: nothing was started" in second.stderr
    assert second.stdout == ""
    release(folder)
    code, _, err = finish(first)
    assert code == 0, err
    assert runs_of(deployment) == [run]  # the refused trigger left no trace in the journal
    assert len(deployment.records("transfer-succeeded")) == 1


def test_two_triggers_at_once_under_queue(deployment, notify_socket, daemons) -> None:
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001", policy="policy: {overlap: queue}\n")
    running(deployment, notify_socket, daemons)
    first = cli_bg(deployment, "trigger", "t", "--format", "json")
    reader_waiting(folder)
    second = cli_bg(deployment, "trigger", "t", "--format", "json")
    deployment.wait_for(lambda: len(runs_of(deployment)) == 2, what="the second run")
    one, two = runs_of(deployment)
    assert one != two  # two runs in one second get distinct ids
    (task,) = status_json(deployment)["tasks"]
    assert {r["run"]: r["bases"] for r in task["running"]} == {
        one: {"8814001": "running"},
        two: {"8814001": "queued"},
    }
    assert deployment.records("transfer-succeeded") == []
    release(folder)  # the first transfer ends...
    deployment.wait_for(lambda: deployment.records("transfer-succeeded"), what="the first")
    release(folder)  # ...then the queued one reads its school
    results = [finish(first), finish(second)]
    assert [code for code, _, _ in results] == [0, 0], results
    assert [json.loads(out)["run"] for _, out, _ in results] == [one, two]
    assert "8814001 waits for run " + one in results[1][2]  # said so on stderr (no tty)
    assert [r["run"] for r in deployment.records("transfer-succeeded")] == [one, two]


# -- who may talk to it ----------------------------------------------------------------------------


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may traverse (pytest's tmp dirs are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="b2bd-ctl-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def connect_as_nobody(path: Path, groups: tuple[int, ...] = (), request: bytes = b"") -> str:
    """Fork; the child drops to nobody:nogroup (with these supplementary ``groups``), connects,
    sends ``request`` after the greeting if given, and reports all it got."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        try:
            os.setgroups(list(groups))
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            try:
                sock.connect(str(path))
                got = sock.recv(4096).decode()  # the daemon speaks first
                if request:
                    sock.sendall(request)
                    while chunk := sock.recv(65536):
                        got += chunk.decode()
            except OSError as exc:
                got = f"OSError {exc.errno}"
            os.write(write_end, got.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        got = f.read()
    os.waitpid(pid, 0)
    return got


def test_a_peer_with_another_uid_is_refused(deployment, notify_socket, daemons, open_dir) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    path = open_dir / SOCKET_NAME
    with deployment.config.joinpath("b2bd.yaml").open("a") as f:
        f.write(f"control_socket: {path}\n")
    proc = running(deployment, notify_socket, daemons)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    # the file mode alone keeps nobody out...
    assert connect_as_nobody(path) == "OSError 13"
    # ...and with the mode opened up, the peer check still does
    path.chmod(0o666)
    answer = json.loads(connect_as_nobody(path).splitlines()[0])
    assert answer["type"] == "error" and answer["code"] == "refused"
    assert f"uid {NOBODY}" in answer["message"]
    # root still gets answers
    assert status_json(deployment)["daemon"]["pid"] == proc.pid
    code, out = stop_daemon(proc)
    assert code == 0
    refused = [json.loads(x) for x in out.splitlines() if "control-refused" in x]
    assert [(e["uid"], e["level"]) for e in refused] == [(NOBODY, "warning")]
    assert not path.exists()  # removed at stop


def test_a_member_of_the_daemons_group_is_served(
    deployment, notify_socket, daemons, open_dir
) -> None:
    """README: operators join the service's group (`usermod -aG b2bd alice`) to use the
    control socket. Here the daemon runs as root, so its group is 0: a peer of another uid with
    group 0 among its supplementary groups (SO_PEERGROUPS) gets its answers; without it, none."""
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    path = open_dir / SOCKET_NAME
    with deployment.config.joinpath("b2bd.yaml").open("a") as f:
        f.write(f"control_socket: {path}\n")
    proc = running(deployment, notify_socket, daemons)
    os.chown(path, 0, 0)
    got = connect_as_nobody(path, groups=(os.getegid(),), request=b'{"op":"status"}\n')
    hello, answer = (json.loads(line) for line in got.splitlines())
    assert hello["type"] == "hello" and hello["pid"] == proc.pid
    assert answer["type"] == "result" and answer["result"]["daemon"]["pid"] == proc.pid
    assert connect_as_nobody(path) == "OSError 13"  # not a member: the socket's mode says no
    code, out = stop_daemon(proc)
    assert code == 0, out
    assert "control-refused" not in out


# -- stopping --------------------------------------------------------------------------------------


def test_the_daemon_stopping_lets_a_socket_trigger_finish(
    deployment, notify_socket, daemons
) -> None:
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    trigger = cli_bg(deployment, "trigger", "t")
    reader_waiting(folder)
    proc.send_signal(signal.SIGTERM)
    notify_socket.wait_for("STOPPING=1")
    refused = cli(deployment, "trigger", "t")  # no new work while stopping
    assert refused.returncode == 1 and "the daemon is stopping" in refused.stderr
    release(folder)
    code, out, err = finish(trigger)
    assert code == 0, err
    assert "the daemon is stopping (SIGTERM): transfers running now finish" in err
    assert "1 of 1 transfers succeeded" in out
    assert exited(proc) == 0  # already stopping: no second signal
    assert not (deployment.state / SOCKET_NAME).exists()


def test_a_socket_trigger_cut_short_by_the_grace_period_gets_a_final_message(
    deployment, notify_socket, daemons
) -> None:
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001", policy="policy: {overlap: queue}\n")
    proc = running(deployment, notify_socket, daemons, "--grace", "0.5")
    first = cli_bg(deployment, "trigger", "t")
    reader_waiting(folder)
    queued = cli_bg(deployment, "trigger", "t", "--format", "json")
    deployment.wait_for(lambda: len(runs_of(deployment)) == 2, what="the queued run")
    run, _ = runs_of(deployment)
    proc.send_signal(signal.SIGTERM)
    # the queued one is skipped at once: its summary says so
    code, out, err = finish(queued)
    assert code == 1, err
    (skipped,) = json.loads(out)["transfers"]
    assert skipped["outcome"] == "skipped" and skipped["reason"] == "daemon stopping"
    # the running one outlives the grace period: the daemon journals it as interrupted and
    # finishes its run, and its client gets that result
    code, out, err = finish(first)
    assert code == 1, err
    assert f"run {run}: failed" in out
    assert "failed  internal: interrupted: still running when the daemon stopped" in out
    assert exited(proc) == 0  # without waiting for the transfer, still stuck on its school


# -- stale and stolen sockets ----------------------------------------------------------------------


def stale_socket(path: Path) -> None:
    """A socket file nobody accepts on, as a daemon killed with SIGKILL leaves behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_a_stale_socket_confuses_neither_the_cli_nor_the_next_daemon(
    deployment, notify_socket, daemons
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    stale_socket(deployment.state / SOCKET_NAME)
    status = cli(deployment, "status")
    assert status.returncode == 0, status.stderr
    assert "daemon: not answering on its control socket" in status.stdout
    alone = cli(deployment, "trigger", "t")
    assert alone.returncode == 0, alone.stderr  # ran here, on the journal
    proc = running(deployment, notify_socket, daemons)
    assert status_json(deployment)["daemon"]["pid"] == proc.pid


def test_a_second_daemon_never_takes_the_socket_of_a_live_one(
    deployment, notify_socket, daemons, tmp_path
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    # the same deployment: the journal lock refuses it before it touches the socket
    second = start_daemon(deployment, None)
    daemons.append(second)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 1 and "journal-unusable" in out
    assert status_json(deployment)["daemon"]["pid"] == proc.pid
    # another deployment (own journal) configured with the same socket path
    other = Deployment(tmp_path / "other")
    other.add_school("8814001")
    other.add_task("t", "8814001")
    with other.config.joinpath("b2bd.yaml").open("a") as f:
        f.write(f"control_socket: {deployment.state / SOCKET_NAME}\n")
    third = start_daemon(other, None)
    daemons.append(third)
    out, _ = third.communicate(timeout=30)
    assert third.returncode == 1
    assert "is in use by another running daemon" in out and "Traceback" not in out
    assert status_json(deployment)["daemon"]["pid"] == proc.pid


def test_the_cli_skips_a_daemon_serving_another_journal(
    deployment, notify_socket, daemons, tmp_path
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    other = Deployment(tmp_path / "other")
    other.add_school("8814001")
    other.add_task("t", "8814001")
    ours = running(deployment, notify_socket, daemons)
    theirs = start_daemon(other, None)
    daemons.append(theirs)
    wait_until(lambda: (other.state / SOCKET_NAME).exists(), what="the other socket")
    # as if systemd's runtime dir held the other deployment's socket
    result = cli(deployment, "status", "--format", "json",
                 env={"RUNTIME_DIRECTORY": str(other.state)})  # fmt: skip
    assert json.loads(result.stdout)["daemon"]["pid"] == ours.pid


# -- hostile or broken clients ---------------------------------------------------------------------


def raw(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(15)
    sock.connect(str(path))
    return sock


def read_lines(sock: socket.socket) -> list[dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_silent_long_and_garbage_clients_block_nobody(deployment, notify_socket, daemons) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    path = deployment.state / SOCKET_NAME
    silent = [raw(path) for _ in range(10)]  # connect and never send a request
    assert status_json(deployment)["daemon"]["pid"] == proc.pid
    assert cli(deployment, "trigger", "t").returncode == 0
    garbage = raw(path)
    garbage.sendall(b"this is not json\n")
    hello, *rest = read_lines(garbage)
    assert hello["type"] == "hello" and rest == []  # closed without an answer
    unknown = raw(path)
    unknown.sendall(b'{"op": "rm -rf"}\n')
    assert read_lines(unknown)[-1]["code"] == "bad-request"
    bad = raw(path)
    bad.sendall(b'{"op": "trigger", "task": "t", "bases": "8814001"}\n')
    assert read_lines(bad)[-1] == {"type": "error", "code": "bad-request",
                                   "message": "bases must be a list of base ids"}  # fmt: skip
    long = raw(path)
    with pytest.raises(OSError):  # the daemon hangs up once the line is over the limit
        long.sendall(b"x" * (MAX_REQUEST * 64))
        long.recv(1)
        long.sendall(b"x" * 65536)
    for sock in [*silent, garbage, unknown, bad, long]:
        sock.close()
    assert status_json(deployment)["daemon"]["pid"] == proc.pid
    code, out = stop_daemon(proc)
    assert code == 0, out


# -- progress on a terminal ------------------------------------------------------------------------


@pytest.mark.parametrize("through_daemon", [True, False])
def test_progress_on_a_terminal_shows_bases_records_and_retries(
    deployment, notify_socket, daemons, through_daemon
) -> None:
    deployment.add_school("8814001")
    deployment.bases.append(BASE.format(id="8814002", path=deployment.root / "unmounted"))
    deployment.config.joinpath("bases.yaml").write_text("bases:\n" + "".join(deployment.bases))
    deployment.add_task(
        "t", '8814001", "8814002', policy="policy: {retries: 1, retry_backoff: 1s}\n"
    )
    if through_daemon:
        running(deployment, notify_socket, daemons)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "b2bd", "--config", str(deployment.config), "trigger", "t"],
            stdout=subprocess.PIPE, stderr=follower, text=True, env=_env(None),
        )  # fmt: skip
        os.close(follower)
        follower = -1
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the child side is closed
            while chunk := os.read(leader, 4096):
                shown += chunk
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 1  # one base cannot be reached
    text = shown.decode()
    assert "bases done" in text and "records read" in text
    assert "8814002: attempt 1 failed (unreachable: " in text and "retry in 1s" in text
    assert "partial (1 of 2 transfers succeeded)" in out
    assert "8814002  failed  unreachable: " in out and "after 2 attempts" in out
    assert len(deployment.records("run-started")) == 1


# -- history across compaction, through the daemon -------------------------------------------------


def test_journal_compact_beside_the_running_daemon_keeps_history_and_scheduling(
    deployment, notify_socket, daemons
) -> None:
    """README's day-to-day `b2bd journal compact` while the service runs: the daemon compacts
    in its loop; every run stays in `history`, `status` keeps last successes, and the daemon
    goes on scheduling and running triggers on the compacted journal."""
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001", time="06:00")
    first = json.loads(cli(deployment, "trigger", "t", "--format", "json").stdout)["run"]
    # The daemon's clock starts 15 s before the task's 06:00 slot.
    proc = start_daemon(deployment, notify_socket, env={"B2BD_CLOCK_START": "2026-12-02T05:59:45Z"})
    daemons.append(proc)
    notify_socket.wait_for("READY=1")
    second = json.loads(cli(deployment, "trigger", "t", "--format", "json").stdout)["run"]
    before = deployment.records()
    compact = cli(deployment, "journal", "compact")
    assert compact.returncode == 0, compact.stderr
    assert compact.stderr == ""
    (line,) = compact.stdout.splitlines()
    assert line.startswith(f"compacted by the running daemon (pid {proc.pid}): checkpoint is ")
    assert "history keeps" in line and "of the last 400 day(s)" in line
    checkpoint = deployment.records()[0]
    assert checkpoint["type"] == "checkpoint" and checkpoint["seq"] > before[-1]["seq"]
    # The slot after the compaction (else this test proves nothing: the machine was too slow).
    deployment.wait_for(
        lambda: any(r["slot"] == "2026-12-02T06:00:00Z" for r in deployment.records("run-started")),
        40,
        "the 06:00 slot's run",
    )
    (slot_run,) = [r for r in deployment.records("run-started") if not r["manual"]]
    assert slot_run["seq"] > checkpoint["seq"], "compaction came after the slot: too slow"
    deployment.wait_for(lambda: len(deployment.records("run-finished")) == 1, 20, "its end")
    third = json.loads(cli(deployment, "trigger", "t", "--format", "json").stdout)["run"]
    history = json.loads(cli(deployment, "history", "t", "--format", "json").stdout)
    assert [r["run"] for r in history] == [third, slot_run["run"], second, first]
    assert all(r["outcome"] == "succeeded" for r in history)
    report = status_json(deployment)
    assert report["daemon"]["pid"] == proc.pid and report["ok"] is True
    (task,) = report["tasks"]
    assert task["bases"][0]["last_success_run"] == third
    code, out = stop_daemon(proc)
    assert code == 0, out
    events = [json.loads(x) for x in out.splitlines()]
    (compacted,) = [e for e in events if e["event"] == "journal-compacted"]
    assert compacted["checkpoint"] == checkpoint["seq"] and compacted["level"] == "info"
    # The same history without the daemon, from the compacted journal and its history file.
    alone = json.loads(cli(deployment, "history", "t", "--format", "json").stdout)
    assert [r["run"] for r in alone] == [r["run"] for r in history]


def test_a_repair_made_at_start_is_shown_until_verify_acknowledges_it_through_the_daemon(
    deployment, notify_socket, daemons
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    assert cli(deployment, "trigger", "t").returncode == 0  # a journal, without a daemon
    (segment,) = (deployment.state / "journal").glob("*.log")
    with segment.open("ab") as f:
        f.write(b'{"type":"run-fini')  # as if the machine died mid-write
    running(deployment, notify_socket, daemons)  # its open cuts the tail and journals it
    status = cli(deployment, "status")
    assert status.returncode == 1
    assert f"segment {segment.name} cut at byte" in status.stdout
    verify = cli(deployment, "journal", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "acknowledged 1 repair(s)" in verify.stdout
    (ack,) = deployment.records("repairs-acknowledged")  # written by the daemon
    assert ack["up_to"] == deployment.records("journal-repaired")[0]["seq"]
    status = cli(deployment, "status")
    assert status.returncode == 0, status.stdout
    assert "journal repairs" not in status.stdout


def test_trigger_as_of_and_force_through_the_daemon(deployment, notify_socket, daemons) -> None:
    deployment.add_school("8814001")
    path = deployment.add_task("t", "8814001")
    path.write_text(path.read_text() + "enabled: false\n")
    running(deployment, notify_socket, daemons)
    refused = cli(deployment, "trigger", "t")
    assert refused.returncode == 2 and "task t is disabled" in refused.stderr
    result = cli(deployment, "trigger", "t", "--force", "--as-of", "2026-11-20", "--format", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["reference_date"], summary["as_of"]) == ("2026-11-20", True)
    (started,) = deployment.records("run-started")
    assert started["as_of"] == "2026-11-20" and started["run"] == summary["run"]
    future = cli(deployment, "trigger", "t", "--force", "--as-of", "2999-01-01")
    assert future.returncode == 2 and "is after today" in future.stderr


# -- a daemon out of file descriptors --------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_accept_thread_waits_instead_of_spinning(
    deployment, notify_socket, daemons
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    in_use = len(os.listdir(f"/proc/{proc.pid}/fd"))
    limit = in_use + 3  # room for three connections, then accept() fails with EMFILE
    soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (limit, hard))
    path = deployment.state / SOCKET_NAME
    waiting = [raw(path) for _ in range(8)]  # five of them stay in the listen backlog
    time.sleep(0.5)
    before = cpu_seconds(proc.pid)
    time.sleep(3)
    used = cpu_seconds(proc.pid) - before
    for sock in waiting:
        sock.close()
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
    # a spinning accept loop burns a whole core here; waiting costs next to nothing
    assert used < 0.3, f"{used:.2f} s of CPU in 3 s while out of descriptors"
    assert status_json(deployment)["daemon"]["pid"] == proc.pid  # serving again
    code, out = stop_daemon(proc)
    assert code == 0
    (warned,) = [json.loads(x) for x in out.splitlines() if "control-accept-failed" in x]
    assert warned["level"] == "error" and "Too many open files" in warned["error"]


# -- a socket folder others may write in ----------------------------------------------------------


@contextlib.contextmanager
def impostor(path: Path, state_dir: Path) -> Iterator[Path]:
    """Another user (nobody) listening at ``path``, posing as the daemon of ``state_dir``: it
    greets with that state dir, writes every request it gets to ``<path>.heard`` and answers
    each with a successful run that never happened."""
    heard = path.with_name(path.name + ".heard")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(ready_r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(8)
            os.write(ready_w, b"ready")
            os.close(ready_w)
            fake = {"run": "t/manual-19700101T000000Z", "task": "t", "outcome": "succeeded",
                    "slot": "1970-01-01T00:00:00Z", "manual": True, "transfers": []}  # fmt: skip
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(5)
                    hello = {"type": "hello", "protocol": 1, "state_dir": str(state_dir)}
                    conn.sendall(json.dumps(hello).encode() + b"\n")
                    with contextlib.suppress(OSError):
                        if request := conn.recv(65536):
                            with heard.open("ab") as f:
                                f.write(request)
                    answer = {"type": "result", "result": fake}
                    with contextlib.suppress(OSError):
                        conn.sendall(json.dumps(answer).encode() + b"\n")
        finally:
            os._exit(0)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        assert ready.read() == b"ready"
    try:
        yield heard
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_socket_another_user_answers_is_neither_asked_nor_used(deployment, open_dir) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    squat = open_dir / "squat"
    squat.mkdir()
    os.chown(squat, NOBODY, NOBODY)  # a folder another user may write in
    path = squat / SOCKET_NAME
    with deployment.config.joinpath("b2bd.yaml").open("a") as f:
        f.write(f"control_socket: {path}\n")
    with impostor(path, deployment.state) as heard:
        result = cli(deployment, "trigger", "t", "--format", "json")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        # not the impostor's tale: the run happened here, on the journal, and it heard nothing
        assert summary["run"] != "t/manual-19700101T000000Z"
        assert Path(summary["transfers"][0]["delivery"]).is_file()
        assert runs_of(deployment) == [summary["run"]]
        assert not heard.exists()
        status = cli(deployment, "status")
        assert "daemon: not answering on its control socket" in status.stdout
        assert not heard.exists()
    # and the daemon refuses to put its socket in such a folder: one line, exit 1
    daemon = start_daemon(deployment, None)
    out, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 1 and "Traceback" not in out
    (error,) = [json.loads(x) for x in out.splitlines() if "control-socket-unusable" in x]
    assert f"its folder {squat} belongs to uid {NOBODY}" in error["error"]


# -- status and history through the daemon, as without one ----------------------------------------


def test_history_limits_and_journal_damage_read_the_same_through_the_daemon(
    deployment, notify_socket, daemons
) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    run = json.loads(cli(deployment, "trigger", "t", "--format", "json").stdout)["run"]
    # any positive --limit, as without a daemon
    history = cli(deployment, "history", "--limit", "1000000", "--format", "json")
    assert history.returncode == 0, history.stderr
    assert [r["run"] for r in json.loads(history.stdout)] == [run]
    # a FIFO where the history file goes is damage, never a connection thread stuck forever
    fifo = deployment.state / "journal" / "history.jsonl"
    os.mkfifo(fifo)
    history = cli(deployment, "history")
    assert history.returncode == 1
    assert "segment history.jsonl, byte 0: is a FIFO, not a regular file" in history.stderr
    fifo.unlink()
    # a segment cut short behind the daemon's back: status names it, as history does
    (segment,) = (deployment.state / "journal").glob("*.log")
    segment.write_bytes(segment.read_bytes()[:100])
    for command in ("status", "history"):
        result = cli(deployment, command)
        assert result.returncode == 1
        assert f"segment {segment.name}, byte " in result.stderr, (command, result.stderr)
    assert stop_daemon(proc)[0] == 0


def test_compact_while_a_transfer_runs_keeps_that_run_whole(
    deployment, notify_socket, daemons
) -> None:
    """`journal compact` while a trigger's transfer is stuck mid-read: the compaction does not
    wait for it, the run's start goes to the history file and the checkpoint, and when the
    transfer ends its run finishes as usual: `history` shows it whole, `status` shows its
    success, `journal verify` is clean, and a daemon restarted on the compacted journal has
    nothing to close as interrupted."""
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    trigger = cli_bg(deployment, "trigger", "t")
    reader_waiting(folder)
    compact = cli(deployment, "journal", "compact")
    assert compact.returncode == 0, compact.stderr
    release(folder)
    code, out, err = finish(trigger)
    assert code == 0, err
    assert runs_of(deployment) == []  # its start is in the history file and checkpoint now
    history = json.loads(cli(deployment, "history", "t", "--format", "json").stdout)
    (entry,) = history
    assert entry["outcome"] == "succeeded"
    assert [b["outcome"] for b in entry["bases"]] == ["succeeded"]
    assert status_json(deployment)["ok"] is True
    verify = cli(deployment, "journal", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    code, out = stop_daemon(proc)
    assert code == 0, out
    again = running(deployment, notify_socket, daemons)
    code, out = stop_daemon(again)
    assert code == 0 and "run-interrupted" not in out, out


def test_status_and_history_exit_2_when_the_daemon_cannot_read_its_journal(
    deployment, notify_socket, daemons
) -> None:
    """README's exit codes: 1 is a task needing attention or a damaged journal; a daemon that
    answers with an I/O or internal error is exit 2, as the same fault without a daemon."""
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = running(deployment, notify_socket, daemons)
    assert cli(deployment, "trigger", "t").returncode == 0
    (segment,) = (deployment.state / "journal").glob("*.log")
    aside = segment.with_name(segment.name + ".aside")
    segment.rename(aside)
    segment.mkdir()  # the daemon's read of its segment fails: EISDIR, not damage
    for command in ("status", "history"):
        result = cli(deployment, command)
        assert result.returncode == 2, (command, result.returncode, result.stderr)
        (line,) = result.stderr.splitlines()
        assert line.startswith("b2bd: cannot read the journal: ") and "Traceback" not in line
        assert f"{segment}: Is a directory (it is a folder where a file was expected)" in line
    segment.rmdir()
    aside.rename(segment)
    assert cli(deployment, "status").returncode == 0
    assert stop_daemon(proc)[0] == 0


# -- the daemon's own failure, as the CLI reports it -----------------------------------------------


@contextlib.contextmanager
def failing_daemon(path: Path, state_dir: Path, code: str, message: str) -> Iterator[None]:
    """A peer of our own uid at ``path`` that greets as the daemon of ``state_dir`` and answers
    every request with a final error ``code``: what the real daemon sends when its journal
    fails as a run starts (``internal``) or a file cannot be read (``io-error``)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    hello = {"type": "hello", "protocol": 1, "state_dir": str(state_dir)}
                    conn.sendall(json.dumps(hello).encode() + b"\n")
                    conn.recv(65536)
                    answer = {"type": "error", "code": code, "message": message}
                    conn.sendall(json.dumps(answer).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


@pytest.mark.parametrize(
    ("code", "exit_code"), [("internal", 2), ("io-error", 2), ("busy", 75), ("stopping", 1)]
)
def test_trigger_exits_as_readme_says_for_each_daemon_refusal(
    deployment: Deployment, code: str, exit_code: int
) -> None:
    """README's table: a daemon failing on I/O (its journal, a file) is exit 2 as the same
    fault without a daemon; an overlap refusal 75; a stopping daemon 1 (the run did not
    happen). The message is the daemon's, on one line."""
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    deployment.state.mkdir(parents=True, exist_ok=True)
    path = deployment.state / SOCKET_NAME
    message = f"the run could not be started ({code})"
    with failing_daemon(path, deployment.state, code, message):
        result = cli(deployment, "trigger", "t")
    assert result.returncode == exit_code, result.stderr
    assert result.stderr.strip().splitlines() == [f"b2bd: {message}"]
