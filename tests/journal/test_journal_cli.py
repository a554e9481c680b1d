"""``b2bd journal verify|compact|cat``, ``b2bd history`` and ``b2bd status`` on a real config dir
and a real journal."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from b2bd.cli import main
from b2bd.journal import Journal
from b2bd.journal.log import JOURNAL_DIR

EXAMPLE = Path(__file__).resolve().parents[2] / "config"
TASK = "daily-changed-data"
T0 = dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    """A copy of the example config dir; its state dir is ``<tmp>/var/state``."""
    shutil.copytree(EXAMPLE, tmp_path / "config")
    return tmp_path


def state_dir(deployment: Path) -> Path:
    return deployment / "var" / "state"


def journal_a_run(deployment: Path) -> None:
    run = f"{TASK}/20250901T060000Z"
    common = {"direction": "from-school", "data_type": "changed", "cohort_group": "ncy"}
    with Journal.open(state_dir(deployment)) as journal:
        journal.append(
            "config-rejected",
            problems=[
                {
                    "file": "tasks/x.yaml",
                    "line": 4,
                    "column": 3,
                    "rule": "schema",
                    "message": "unknown key",
                }
            ],
        )
        journal.append("run-started", run=run, task=TASK, slot=T0, bases=["8814001", "8812002"])
        journal.append(
            "transfer-succeeded", run=run, task=TASK, base="8814001", counts={"pupil": 12},
            watermark="2025-09-01T05:59:00Z", **common,
        )  # fmt: skip
        journal.append(
            "transfer-failed", run=run, task=TASK, base="8812002", reason="unreachable",
            message="export folder missing", attempts=4,
        )  # fmt: skip
        journal.append("run-finished", run=run, task=TASK, outcome="partial")


def b2bd(deployment: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = main(["--config", str(deployment / "config"), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_without_a_journal_is_fine(deployment, capsys):
    code, out, _ = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 0 and "no journal yet" in out


def test_status_shows_last_run_failing_bases_and_config_problems(deployment, capsys):
    journal_a_run(deployment)
    code, out, _ = b2bd(deployment, "status", capsys=capsys)
    assert code == 1  # a partial run, a failing base and a config problem in force
    line = next(x for x in out.splitlines() if x.startswith(TASK))
    assert "enabled" in line and f"{TASK}/20250901T060000Z partial" in line
    assert "failing 8812002: unreachable: export folder missing" in out
    assert "tasks/x.yaml:4:3: schema: unknown key" in out
    code, out, _ = b2bd(deployment, "status", "--format", "json", capsys=capsys)
    report = json.loads(out)
    task = next(t for t in report["tasks"] if t["task"] == TASK)
    assert task["last_run"]["outcome"] == "partial"
    assert task["failing"] == [
        {
            "base": "8812002",
            "reason": "unreachable",
            "message": "export folder missing",
            "since": task["failing"][0]["since"],
            "last_success": None,
        }
    ]
    bases = {b["base"]: b for b in task["bases"]}
    assert bases["8814001"]["outcome"] == "succeeded"
    assert bases["8814001"]["last_success_run"] == f"{TASK}/20250901T060000Z"
    assert bases["8813003"]["outcome"] is None and bases["8813003"]["last_success"] is None
    assert report["ok"] is False
    assert task["next_slot"] is None or task["next_slot"].endswith("Z")
    assert report["config_problems"][0]["rule"] == "schema"


def test_history_lists_runs_newest_first_with_per_base_outcomes(deployment, capsys):
    journal_a_run(deployment)
    with Journal.open(state_dir(deployment)) as journal:
        journal.append(
            "run-started",
            run="monthly-snapshot-lac/manual-20250902T080000Z",
            task="monthly-snapshot-lac",
            slot=T0,
            manual=True,
            bases=["8814001"],
        )
    code, out, _ = b2bd(deployment, "history", "--format", "json", capsys=capsys)
    runs = json.loads(out)
    assert [r["run"] for r in runs] == [
        "monthly-snapshot-lac/manual-20250902T080000Z",
        f"{TASK}/20250901T060000Z",
    ]
    assert runs[0]["outcome"] is None
    bases = {b["base"]: b for b in runs[1]["bases"]}
    assert bases["8814001"]["outcome"] == "succeeded" and bases["8814001"]["counts"] == {
        "pupil": 12
    }
    assert bases["8812002"]["reason"] == "unreachable" and bases["8812002"]["attempts"] == 4
    code, out, _ = b2bd(deployment, "history", TASK, "--limit", "1", capsys=capsys)
    assert code == 0
    assert out.splitlines()[0].startswith(f"{TASK}/20250901T060000Z  partial")
    assert "8812002  failed  unreachable: export folder missing (after 4 attempt(s))" in out


def test_cat_prints_json_lines_filtered_by_type(deployment, capsys):
    journal_a_run(deployment)
    code, out, _ = b2bd(deployment, "journal", "cat", "--type", "transfer-failed", capsys=capsys)
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(lines) == 1
    assert lines[0]["type"] == "transfer-failed" and lines[0]["seq"] == 4
    assert "crc" not in lines[0]
    code, out, _ = b2bd(deployment, "journal", "cat", capsys=capsys)
    assert [json.loads(x)["seq"] for x in out.splitlines()] == [1, 2, 3, 4, 5]


def test_verify_reports_damage_with_segment_and_offset_and_exit_1(deployment, capsys):
    journal_a_run(deployment)
    code, out, _ = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 0 and "journal intact: records 1..5" in out
    segment = next((state_dir(deployment) / JOURNAL_DIR).glob("*.log"))
    data = bytearray(segment.read_bytes())
    second = data.index(b"\n") + 1
    data[second + 30] ^= 0x04
    segment.write_bytes(bytes(data))
    # a real process, for the real exit code and the message on its streams
    env = dict(os.environ, PYTHONPATH=str(EXAMPLE.parent))
    proc = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(deployment / "config"), "journal", "verify"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"segment {segment.name}, byte {second}: checksum mismatch" in proc.stdout
    assert "Traceback" not in proc.stderr
    code, _, err = b2bd(deployment, "status", capsys=capsys)
    assert code == 1 and f"segment {segment.name}, byte {second}" in err
    code, _, err = b2bd(deployment, "journal", "compact", capsys=capsys)
    assert code == 1 and "damaged" in err


def test_compact_keeps_status_and_refuses_while_the_journal_is_in_use(deployment, capsys):
    journal_a_run(deployment)
    _, before, _ = b2bd(deployment, "status", "--format", "json", capsys=capsys)
    code, out, _ = b2bd(deployment, "journal", "compact", capsys=capsys)
    assert code == 0 and "checkpoint is record 6" in out
    _, after, _ = b2bd(deployment, "status", "--format", "json", capsys=capsys)
    strip = lambda s: {k: v for k, v in json.loads(s).items() if k != "now"}  # noqa: E731
    assert strip(after) == strip(before)
    with Journal.open(state_dir(deployment)):
        code, _, err = b2bd(deployment, "journal", "compact", capsys=capsys)
    assert code == 1 and "in use" in err


def test_unusable_settings_are_a_usage_error(deployment, capsys):
    (deployment / "config" / "b2bd.yaml").write_text("la: [\n")
    code, _, err = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 2 and "state dir is unknown" in err


def test_a_torn_last_record_is_reported_by_verify_and_skipped_by_readers(deployment, capsys):
    journal_a_run(deployment)
    segment = next((state_dir(deployment) / JOURNAL_DIR).glob("*.log"))
    data = segment.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    segment.write_bytes(data[: last + 20])  # as if the write of record 5 were in flight
    code, out, _ = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 1
    assert f"segment {segment.name}, byte {last}: incomplete record" in out
    assert "cuts it off and keeps its bytes in a .broken file" in out
    code, out, _ = b2bd(deployment, "journal", "cat", capsys=capsys)
    assert code == 0 and [json.loads(x)["seq"] for x in out.splitlines()] == [1, 2, 3, 4]
    code, out, _ = b2bd(deployment, "status", capsys=capsys)
    assert code == 1  # the config problem journal_a_run journaled
    assert "in progress or interrupted" in out  # run-finished was the torn one
    assert segment.read_bytes() == data[: last + 20]  # readers change nothing


def journal_outcomes(deployment: Path, outcomes: dict[str, str], **extra: object) -> None:
    """One run of TASK with these per-base outcomes (every target base of the example task)."""
    run = f"{TASK}/20250902T060000Z"
    common = {"direction": "from-school", "data_type": "changed", "cohort_group": "ncy"}
    with Journal.open(state_dir(deployment)) as journal:
        journal.append("run-started", run=run, task=TASK, slot=T0, bases=list(outcomes))
        for base, outcome in outcomes.items():
            if outcome == "succeeded":
                journal.append("transfer-succeeded", run=run, task=TASK, base=base, **common)
            else:
                journal.append("transfer-failed", run=run, task=TASK, base=base,
                               reason="timeout", message="slow", attempts=1)  # fmt: skip
        result = {"succeeded"} == set(outcomes.values())
        journal.append("run-finished", run=run, task=TASK,
                       outcome="succeeded" if result else "partial")  # fmt: skip


ALL_BASES = ("8814001", "8812002", "8813003")


def test_status_exits_0_when_all_is_well(deployment, capsys):
    journal_outcomes(deployment, dict.fromkeys(ALL_BASES, "succeeded"))
    code, out, _ = b2bd(deployment, "status", capsys=capsys)
    assert code == 0, out
    assert "8812002  succeeded  last success 20" in out
    code, out, _ = b2bd(deployment, "status", "--format", "json", capsys=capsys)
    assert code == 0 and json.loads(out)["ok"] is True


@pytest.mark.parametrize("cause", ["failed base", "config rejected", "config broken on disk"])
def test_status_exits_1_when_something_needs_attention(deployment, capsys, cause):
    outcomes = dict.fromkeys(ALL_BASES, "succeeded")
    if cause == "failed base":
        outcomes["8813003"] = "failed"
    journal_outcomes(deployment, outcomes)
    if cause == "config rejected":
        with Journal.open(state_dir(deployment)) as journal:
            journal.append("config-rejected", problems=[{"file": "tasks/x.yaml", "line": 1,
                           "column": 1, "rule": "schema", "message": "bad"}])  # fmt: skip
    if cause == "config broken on disk":
        (deployment / "config" / "tasks" / "broken.yaml").write_text("id: [\n")
    code, out, _ = b2bd(deployment, "status", capsys=capsys)
    assert code == 1, out
    if cause == "failed base":
        assert "failing 8813003: timeout: slow (since " in out and "last success never)" in out


def test_a_repair_is_shown_by_status_until_journal_verify_acknowledges_it(deployment, capsys):
    journal_outcomes(deployment, dict.fromkeys(ALL_BASES, "succeeded"))
    segment = next((state_dir(deployment) / JOURNAL_DIR).glob("*.log"))
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(b'{"type":"run-sta')  # a torn write
    with Journal.open(state_dir(deployment)):
        pass  # the daemon's open: cuts the tail, keeps it, journals the repair
    code, out, _ = b2bd(deployment, "status", capsys=capsys)
    assert code == 1
    assert f"segment {segment.name} cut at byte {size}, 16 damaged byte(s) kept in" in out
    # compaction keeps it in the checkpoint
    assert b2bd(deployment, "journal", "compact", capsys=capsys)[0] == 0
    code, out, _ = b2bd(deployment, "status", "--format", "json", capsys=capsys)
    assert code == 1 and json.loads(out)["repairs"][0]["offset"] == size
    code, out, _ = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 0
    assert f"segment {segment.name} cut at byte {size}" in out and "acknowledged 1 repair" in out
    code, out, _ = b2bd(deployment, "status", capsys=capsys)
    assert code == 0 and "repair" not in out
    code, out, _ = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 0 and "acknowledged" not in out


def test_history_of_an_unknown_task_is_a_usage_error(deployment, capsys):
    journal_a_run(deployment)
    code, _, err = b2bd(deployment, "history", "daily-changed-dat", capsys=capsys)
    assert code == 2 and "did you mean 'daily-changed-data'?" in err
    # a task with runs in the journal but no longer in the config still has its history
    (deployment / "config" / "tasks" / f"{TASK}.yaml").unlink()
    code, out, _ = b2bd(deployment, "history", TASK, capsys=capsys)
    assert code == 0 and f"{TASK}/20250901T060000Z" in out
    # a known task that never ran
    code, out, _ = b2bd(deployment, "history", "termly-attainment", capsys=capsys)
    assert code == 0 and "no runs in the journal for task termly-attainment" in out
