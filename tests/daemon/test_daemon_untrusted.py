"""A hostile or stuck school cannot hold the daemon (issue 10): a FIFO in place of a school's
file fails that base at once while the other schools deliver, and after SIGTERM the daemon
exits within its grace period (+5 s) even with a worker thread stuck in a read, journaling the
stuck transfer as interrupted. A real ``b2bd run`` subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.support.daemon import NotifySocket, start_daemon
from tests.support.deployment import Deployment
from tests.support.slow_school import reader_waiting

GRACE = 2.0
SECRET = "B881400120002 Janet Example 2014-03-04"


def test_a_fifo_school_and_a_stuck_school_hold_nobody_and_sigterm_ends_the_daemon(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    stuck = deployment.add_school("8814001", slow=True)  # never released: a dead share
    fifo = deployment.add_school("8814002")
    (fifo / "pupils.jsonl").unlink()
    os.mkfifo(fifo / "pupils.jsonl")
    deployment.add_school("8814003")
    echo = deployment.add_school("8814004")  # its manifest holds a child's UPN, name and DOB
    manifest = json.loads((echo / "manifest.json").read_text())
    (echo / "manifest.json").write_text(json.dumps({**manifest, "sims_version": SECRET}))
    for base in ("8814001", "8814002", "8814003", "8814004"):
        deployment.add_task(f"t{base[-1]}", base)
    proc = start_daemon(deployment, notify_socket, "--now", "--grace", str(GRACE), slow=True)
    try:
        notify_socket.wait_for("READY=1")
        deployment.wait_for(
            lambda: len(deployment.records("run-finished")) == 3, what="the three other runs"
        )
        reader_waiting(stuck)  # and the stuck one still stuck
        outcomes = {r["base"]: r for r in deployment.records() if r["type"].startswith("transfer-")}
        assert outcomes["8814003"]["type"] == "transfer-succeeded"
        assert outcomes["8814002"]["type"] == "transfer-failed"
        assert outcomes["8814002"]["reason"] == "bad-data"
        assert "is a FIFO, not a regular file" in outcomes["8814002"]["message"]
        assert (outcomes["8814004"]["type"], outcomes["8814004"]["reason"]) == (
            "transfer-failed", "bad-data",
        )  # fmt: skip
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
    assert len(finished) == 4 and len(set(finished)) == 4
    assert records[-1]["type"] == "daemon-stopped"
    assert "1 transfer(s) interrupted" in records[-1]["reason"]
    journal = b"".join(p.read_bytes() for p in deployment.state.rglob("*") if p.is_file())
    for secret in SECRET.split():  # never in the logs or the journal
        assert secret not in out and secret.encode() not in journal
