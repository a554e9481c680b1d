"""A real config dir and a real journal for the commands that read the journal (``journal``,
``status``, ``history``): a copy of the example config whose state dir is ``<tmp>/var/state``,
and runs journaled as the daemon would."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from b2bd.cli import main
from b2bd.journal.writer import Journal

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
