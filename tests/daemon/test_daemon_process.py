"""`b2bd run` as systemd runs it: a real subprocess, a real NOTIFY_SOCKET, real files."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys

import pytest

from b2bd.journal.writer import Journal
from tests.support.daemon import NotifySocket, start_daemon, stop_daemon
from tests.support.deployment import Deployment
from tests.support.slow_school import reader_waiting, release


def applied_tasks(d: Deployment) -> list[list[str]]:
    return [r["tasks"] for r in d.records("config-applied")]


def test_ready_then_new_task_by_rename_is_scheduled(deployment, notify_socket) -> None:
    deployment.add_school("8814001")
    deployment.add_task("first", "8814001")
    proc = start_daemon(deployment, notify_socket)
    try:
        ready = notify_socket.wait_for("READY=1")
        assert "STATUS=1 tasks loaded, 0 config problems" in ready
        # An editor's save: write a temp file, rename it into place.
        tmp = deployment.config / "tasks" / ".second.yaml.tmp"
        tmp.write_text(deployment.task_text("second", "8814001"))
        os.rename(tmp, deployment.config / "tasks" / "second.yaml")
        deployment.wait_for(
            lambda: ["first", "second"] in applied_tasks(deployment), 5, "config-applied"
        )
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert deployment.records("daemon-stopped")


def test_broken_edit_is_rejected_and_last_good_version_keeps_running(
    deployment, notify_socket
) -> None:
    deployment.add_school("8814001")
    path = deployment.add_task("t", "8814001", time="06:00")
    proc = start_daemon(deployment, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
        path.write_text(path.read_text().replace("snapshot", "snapshots"))
        deployment.wait_for(lambda: deployment.records("config-rejected"), 5, "config-rejected")
        (rejected,) = deployment.records("config-rejected")
        assert rejected["problems"][0]["file"] == "tasks/t.yaml"
        assert rejected["problems"][0]["line"] == 4
        # The old version stays in force: status lists the task and the problem.
        status = notify_socket.wait_for("READY=1")
        assert "1 tasks loaded, 1 config problems" in status
        assert applied_tasks(deployment)[-1] == ["t"]
        # A good edit applies again.
        path.write_text(deployment.task_text("t", "8814001", time="07:00"))
        deployment.wait_for(lambda: len(deployment.records("config-applied")) >= 2, 5, "reapply")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert '"event": "config-rejected"' in out


def test_configmap_style_data_symlink_swap_is_picked_up(deployment, notify_socket) -> None:
    deployment.add_school("8814001")
    config = deployment.config
    tasks = config / "tasks"
    tasks.rmdir()
    # Kubernetes layout: tasks -> ..data/tasks, ..data -> ..2026_11_28_v1
    v1 = config / "..2026_11_28_v1" / "tasks"
    v1.mkdir(parents=True)
    (v1 / "a.yaml").write_text(deployment.task_text("a", "8814001"))
    (config / "..data").symlink_to("..2026_11_28_v1")
    tasks.symlink_to("..data/tasks")
    proc = start_daemon(deployment, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
        assert applied_tasks(deployment) == [["a"]]
        v2 = config / "..2026_11_28_v2" / "tasks"
        v2.mkdir(parents=True)
        (v2 / "a.yaml").write_text(deployment.task_text("a", "8814001"))
        (v2 / "b.yaml").write_text(deployment.task_text("b", "8814001"))
        (config / "..data_tmp").symlink_to("..2026_11_28_v2")
        os.rename(config / "..data_tmp", config / "..data")  # the atomic swap
        deployment.wait_for(lambda: ["a", "b"] in applied_tasks(deployment), 5, "swap")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out


def test_sighup_reloads_with_reloading_and_ready(deployment, notify_socket) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = start_daemon(deployment, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
        proc.send_signal(signal.SIGHUP)
        reloading = notify_socket.wait_for("RELOADING=1")
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading.splitlines())
        notify_socket.wait_for("READY=1")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out


def test_sigterm_lets_the_running_transfer_finish_then_exits_0(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    folder = deployment.add_school("8814001", slow=True)
    deployment.add_task("slow", "8814001")
    proc = start_daemon(deployment, notify_socket, "--now", slow=True)
    try:
        notify_socket.wait_for("READY=1")
        reader_waiting(folder)  # the transfer is running, blocked on its source
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert proc.poll() is None  # still waiting for its transfer
        release(folder)
        code, out = stop_daemon(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    types = [r["type"] for r in deployment.records()]
    assert types.index("transfer-succeeded") < types.index("daemon-stopped")
    delivered = list((deployment.la / "8814001" / "slow").glob("manual-*.jsonl"))
    assert len(delivered) == 1


def test_invalid_config_at_start_exits_78(deployment: Deployment) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001", time="6:00")
    proc = start_daemon(deployment, None)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 78
    problem = json.loads(next(line for line in out.splitlines() if "config-invalid" in line))
    assert problem["rule"] == "time-format" and problem["file"] == "tasks/t.yaml"
    assert "Traceback" not in out


def test_logs_are_json_lines_with_utc_timestamps(deployment: Deployment) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = start_daemon(deployment, None, "--now")
    deployment.wait_for(lambda: deployment.records("run-finished"), 15, "run-finished")
    code, out = stop_daemon(proc)
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert all(e["timestamp"].endswith("Z") for e in events)
    assert {"daemon-ready", "run-started", "daemon-stopped"} <= {e["event"] for e in events}
    # No pupil data in the logs: none of the export's UPNs appear.
    pupils = (deployment.schools / "8814001" / "pupils.jsonl").read_text().splitlines()
    for line in pupils:
        assert json.loads(line)["upn"] not in out


def test_watchdog_pings_at_half_the_interval(deployment, notify_socket) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = start_daemon(deployment, notify_socket, env={"WATCHDOG_USEC": "400000"})
    try:
        notify_socket.wait_for("READY=1")
        notify_socket.wait_for("WATCHDOG=1", timeout=5)
        notify_socket.wait_for("WATCHDOG=1", timeout=5)
    finally:
        code, _ = stop_daemon(proc)
    assert code == 0


def test_a_storm_of_signals_never_wedges_the_loop(deployment, notify_socket) -> None:
    # Handlers only set flags and write to a pipe: a signal landing while the loop is inside
    # its wait must not deadlock (a threading.Event set from a handler can).
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = start_daemon(deployment, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
        for _ in range(300):
            proc.send_signal(signal.SIGHUP)
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert deployment.records("daemon-stopped")


def test_a_slot_inside_the_spring_forward_gap_runs_once_when_the_gap_ends(deployment) -> None:
    # The daemon's clock starts two seconds before London's clocks go forward in 2027 (01:00
    # UTC on 28 March); 01:30 local does not exist that day, so its slot is 01:00 UTC.
    deployment.add_school("8814001")
    path = deployment.add_task("t", "8814001", time="01:30")
    path.write_text(path.read_text().replace("[mon, tue, wed, thu, fri, sat, sun]", "[sun]"))
    proc = start_daemon(deployment, None, env={"B2BD_CLOCK_START": "2027-03-28T00:59:58Z"})
    try:
        deployment.wait_for(lambda: deployment.records("run-finished"), 20, "the gap's slot")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert [r["slot"] for r in deployment.records("run-started")] == ["2027-03-28T01:00:00Z"]


def test_run_now_on_the_example_logs_its_warnings_and_each_tasks_next_slot(tmp_path) -> None:
    """README's first command on a copy of the shipped example: the deliberate warnings of the
    example config are logged at start, and --now logs when each task runs next."""
    d = Deployment.example(tmp_path)
    expected = json.loads(
        subprocess.run(
            [sys.executable, "-m", "b2bd", "validate", "--config", str(tmp_path / "config"),
             "--format", "json"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    warnings = {(p["file"], p["line"], p["rule"]) for p in expected["problems"]}
    assert len(warnings) == 4  # the example's deliberate ones (README, "Validation")
    proc = start_daemon(d, None, "--now")
    try:
        d.wait_for(lambda: len(d.records("run-finished")) == expected["tasks"], 60, "--now runs")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    events = [json.loads(line) for line in out.splitlines()]
    logged = {(e["file"], e["line"], e["rule"]) for e in events if e["event"] == "config-warning"}
    assert logged == warnings
    assert all(e["level"] == "warning" for e in events if e["event"] == "config-warning")
    nxt = {e["task"]: e["slot"] for e in events if e["event"] == "next-slot"}
    assert len(nxt) == expected["tasks"]
    plan = json.loads(
        subprocess.run(
            [sys.executable, "-m", "b2bd", "--config", str(tmp_path / "config"), "plan",
             "--format", "json", "--count", "500"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    first = {}
    for slot in plan:
        first.setdefault(slot["task"], slot["slot"])
    assert {t: dt.datetime.fromisoformat(s) for t, s in nxt.items()} == {
        t: dt.datetime.fromisoformat(s) for t, s in first.items()
    }


def test_a_school_that_locks_down_after_start_is_not_reached(deployment, notify_socket) -> None:
    """The registry edit makes the task file invalid, so its last good version stays in force;
    at its slot the daemon's transfer meets the registry as it is now and skips the school
    (DESIGN section 5, run-time guards). Real subprocess, clock started 8 s before the slot."""
    folder = deployment.add_school("8814001")
    deployment.add_task("t", "8814001", time="06:00")
    proc = start_daemon(deployment, notify_socket, env={"B2BD_CLOCK_START": "2026-12-02T05:59:52Z"})
    try:
        notify_socket.wait_for("READY=1")
        bases = deployment.config / "bases.yaml"
        locked = bases.read_text().replace(
            "services_manager: true", "services_manager: true\n    lockdown: true"
        )
        tmp = deployment.config / ".bases.yaml.tmp"
        tmp.write_text(locked)
        os.rename(tmp, bases)
        deployment.wait_for(lambda: deployment.records("run-finished"), 20, "the 06:00 run")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    rejected = deployment.records("config-rejected")
    started = deployment.records("run-started")
    # The edit was seen before the slot (else this test proves nothing on a slow machine).
    assert rejected and rejected[0]["seq"] < started[0]["seq"], (rejected, started)
    assert {p["rule"] for p in rejected[0]["problems"]} == {"base-lockdown"}
    assert started[0]["slot"] == "2026-12-02T06:00:00Z"
    (skipped,) = deployment.records("transfer-skipped")
    assert (skipped["base"], skipped["reason"]) == ("8814001", "lockdown")
    assert not deployment.records("transfer-succeeded")
    assert deployment.records("run-finished")[0]["outcome"] == "succeeded"  # nothing failed
    assert not deployment.la.exists() or not list(deployment.la.rglob("*.jsonl"))
    assert folder.is_dir()


def test_a_lost_key_file_stops_the_daemon_instead_of_making_a_new_one(deployment) -> None:
    deployment.add_school("8814001")
    deployment.add_task("t", "8814001")
    proc = start_daemon(deployment, None, "--now")
    try:
        deployment.wait_for(lambda: deployment.records("transfer-succeeded"), 20, "a transfer")
    finally:
        code, _ = stop_daemon(proc)
    assert code == 0
    key = deployment.state / "pupil.key"
    key.unlink()
    proc = start_daemon(deployment, None)
    out, _ = proc.communicate(timeout=60)  # it stops by itself
    assert proc.returncode == 1, out
    assert "pupil-key-unusable" in out and "restore it" in out and "Traceback" not in out
    assert not key.exists()
    assert len(deployment.records("daemon-started")) == 1  # the refused start did nothing


def interrupted_then_triggered(deployment: Deployment, *, again: str) -> tuple[str, str]:
    """A journal as a cut-short run leaves it: task t on 8814001 and 8812002, 8814001 delivered,
    then Ctrl-C (8812002 never ended, no run-finished); then another trigger of t for the base
    ``again`` that succeeded. The two run ids: (the cut run, the later one)."""
    from b2bd.journal.writer import Journal

    deployment.add_school("8814001")
    deployment.add_school("8812002")
    (deployment.config / "tasks" / "t.yaml").write_text(
        deployment.task_text("t", "8814001").replace('["8814001"]', '["8814001", "8812002"]')
    )
    slot = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
    common = {"task": "t", "direction": "from-school", "data_type": "snapshot",
              "cohort_group": "ncy"}  # fmt: skip
    cut, later = "t/manual-20261201T060000Z", "t/manual-20261201T061000Z"
    with Journal.open(deployment.state) as journal:
        journal.append("run-started", run=cut, task="t", slot=slot, manual=True,
                       bases=["8814001", "8812002"])  # fmt: skip
        journal.append("transfer-succeeded", run=cut, base="8814001", **common)
        journal.append("run-started", run=later, task="t", slot=slot, manual=True,
                       bases=[again])  # fmt: skip
        journal.append("transfer-succeeded", run=later, base=again, **common)
        journal.append("run-finished", run=later, task="t", outcome="succeeded")
    return cut, later


def test_closing_an_interrupted_run_keeps_its_journaled_outcomes(
    deployment, notify_socket, capsys
) -> None:
    """A run cut short after some of its transfers were journaled (a `trigger` stopped by
    Ctrl-C or a lost SSH session, a killed daemon), then a later run of the same task on the
    same base: at the next start the interrupted run is closed without calling the transfer it
    did deliver failed, and the later run's success stays the base's latest outcome."""
    from b2bd.cli import main

    cut, later = interrupted_then_triggered(deployment, again="8814001")
    proc = start_daemon(deployment, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    failed = [(r["run"], r["base"]) for r in deployment.records("transfer-failed")]
    assert failed == [(cut, "8812002")]  # the one transfer without an outcome
    finished = [(r["run"], r["outcome"]) for r in deployment.records("run-finished")]
    assert finished == [(later, "succeeded"), (cut, "partial")]
    capsys.readouterr()
    main(["--config", str(deployment.config), "status", "--format", "json"])
    status = json.loads(capsys.readouterr().out)
    (task,) = [t for t in status["tasks"] if t["task"] == "t"]
    outcomes = {b["base"]: b["outcome"] for b in task["bases"]}
    assert outcomes == {"8814001": "succeeded", "8812002": "failed"}


@pytest.mark.parametrize("away", ["suspended", "removed"])
def test_a_restart_after_a_task_came_back_catches_up_nothing_from_while_it_was_away(
    deployment: Deployment, notify_socket: NotifySocket, away: str
) -> None:
    """DESIGN section 4: a task suspended (or removed) and back has missed nothing while it was
    away, and a restart decides what the running daemon did. The task ran its 2 Dec slot, was
    away over 3 Dec's, came back in a running daemon on 4 Dec at 04:00; the daemon restarts
    before 4 Dec 06:00: 3 Dec's slot is neither caught up (latest, 3 days' deadline) nor
    missed, and 06:00 runs on time. Real subprocesses, clocks started where each part is."""
    deployment.add_school("8814001")
    text = deployment.task_text(
        "t", "8814001", policy="policy: {catch_up: latest, starting_deadline: 3d}\n"
    )
    path = deployment.config / "tasks" / "t.yaml"
    slot_2 = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)
    with Journal.open(deployment.state, clock=lambda: slot_2 - dt.timedelta(days=1)) as journal:
        journal.append("config-applied", files={}, commit=None, tasks=["t"])
    with Journal.open(deployment.state, clock=lambda: slot_2) as journal:
        journal.append("run-started", run="t/20261202T060000Z", task="t", slot=slot_2,
                       manual=False, bases=["8814001"])  # fmt: skip
        journal.append("run-finished", run="t/20261202T060000Z", task="t", outcome="succeeded")
    if away == "suspended":
        path.write_text(text + "enabled: false\n")
    proc = start_daemon(deployment, notify_socket, env={"B2BD_CLOCK_START": "2026-12-04T04:00:00Z"})
    try:
        notify_socket.wait_for("READY=1")
        tmp = path.with_name(".t.yaml.tmp")
        tmp.write_text(text)
        os.rename(tmp, path)  # back
        proc.send_signal(signal.SIGHUP)
        deployment.wait_for(lambda: len(applied_tasks(deployment)) == 3, 10, "it came back")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    notify_socket.drain()
    proc = start_daemon(deployment, notify_socket, env={"B2BD_CLOCK_START": "2026-12-04T05:59:56Z"})
    try:
        deployment.wait_for(lambda: len(deployment.records("run-finished")) == 2, 30, "06:00")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    slots = [r["slot"] for r in deployment.records("run-started")]
    assert slots == ["2026-12-02T06:00:00Z", "2026-12-04T06:00:00Z"]
    assert deployment.records("slot-missed") == []


def test_closing_an_interrupted_run_does_not_hide_a_later_runs_outcome(
    deployment, notify_socket, capsys
) -> None:
    """The cut run never got to a base that a later run of the task then did: the base keeps
    that later outcome (journaling 'interrupted' for it now would make it the latest, and
    `status` would show a base failing whose last transfer succeeded); the closed run shows
    the base without an outcome."""
    from b2bd.cli import main

    cut, later = interrupted_then_triggered(deployment, again="8812002")
    proc = start_daemon(deployment, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert deployment.records("transfer-failed") == []
    finished = [(r["run"], r["outcome"]) for r in deployment.records("run-finished")]
    assert finished == [(later, "succeeded"), (cut, "partial")]
    capsys.readouterr()
    assert main(["--config", str(deployment.config), "status", "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    (task,) = [t for t in status["tasks"] if t["task"] == "t"]
    assert {b["base"]: b["outcome"] for b in task["bases"]} == {
        "8814001": "succeeded", "8812002": "succeeded"
    }  # fmt: skip
    main(["--config", str(deployment.config), "history", "t"])
    assert "  8812002  no outcome" in capsys.readouterr().out
