"""``b2bd status`` on a real config dir and a real journal."""

from __future__ import annotations

import json

import pytest

from b2bd.journal.reader import JOURNAL_DIR
from b2bd.journal.writer import Journal
from tests.support.journaled import (
    ALL_BASES,
    TASK,
    b2bd,
    journal_a_run,
    journal_outcomes,
    state_dir,
)


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
