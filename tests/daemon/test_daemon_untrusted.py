"""A hostile or stuck school cannot hold the daemon (issue 10): a FIFO in place of a school's
file fails that base at once while the other schools deliver, and after SIGTERM the daemon
exits within its grace period (+5 s) even with a worker thread stuck in a read, journaling the
stuck transfer as interrupted. A real ``b2bd run`` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from deployment import Deployment, NotifySocket, reader_waiting, start_daemon

GRACE = 2.0


def test_a_fifo_school_and_a_stuck_school_hold_nobody_and_sigterm_ends_the_daemon(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    stuck = deployment.add_school("8814001", slow=True)  # never released: a dead share
    fifo = deployment.add_school("8814002")
    (fifo / "pupils.jsonl").unlink()
    os.mkfifo(fifo / "pupils.jsonl")
    deployment.add_school("8814003")
    for base in ("8814001", "8814002", "8814003"):
        deployment.add_task(f"t{base[-1]}", base)
    proc = start_daemon(deployment, notify_socket, "--now", "--grace", str(GRACE), slow=True)
    try:
        notify_socket.wait_for("READY=1")
        deployment.wait_for(
            lambda: len(deployment.records("run-finished")) == 2, what="the two other runs"
        )
        reader_waiting(stuck)  # and the stuck one still stuck
        outcomes = {r["base"]: r for r in deployment.records() if r["type"].startswith("transfer-")}
        assert outcomes["8814003"]["type"] == "transfer-succeeded"
        assert outcomes["8814002"]["type"] == "transfer-failed"
        assert outcomes["8814002"]["reason"] == "bad-data"
        assert "is a FIFO, not a regular file" in outcomes["8814002"]["message"]
        assert "8814001" not in outcomes
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            out, _ = proc.communicate(timeout=GRACE + 5)
        except subprocess.TimeoutExpired:
            raise AssertionError("the daemon did not exit within grace + 5 s") from None
        assert time.monotonic() - sent >= GRACE  # it did give the stuck transfer its grace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    records = deployment.records()
    interrupted = [r for r in records if r["type"] == "transfer-failed" and r["base"] == "8814001"]
    assert len(interrupted) == 1
    assert interrupted[0]["message"].startswith("interrupted: still running when the daemon")
    finished = [r["run"] for r in records if r["type"] == "run-finished"]
    assert len(finished) == 3 and len(set(finished)) == 3
    assert records[-1]["type"] == "daemon-stopped"
    assert "1 transfer(s) interrupted" in records[-1]["reason"]
