"""``b2bd history`` on a real config dir and a real journal."""

from __future__ import annotations

import json

from b2bd.journal.writer import Journal
from tests.support.journaled import (
    T0,
    TASK,
    b2bd,
    journal_a_run,
    state_dir,
)


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
