"""`b2bd validate` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import b2bd

REPO = Path(__file__).resolve().parents[2]
TASK = """\
id: t
direction: from-school
bases: {ids: ["8814001"]}
data: {type: changed, months: 3}
schedule:
  weekly: {days: [mon], times: ["06:30"]}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    (root / "tasks").mkdir(parents=True)
    for name in ("b2bd.yaml", "bases.yaml"):
        (root / name).write_text((REPO / "config" / name).read_text())
    return root


def test_example_config_is_valid_with_only_its_commented_warnings() -> None:
    result = b2bd("--config", str(REPO / "config"), "validate", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["bases"] == 5 and report["tasks"] >= 6
    for problem in report["problems"]:
        assert problem["severity"] == "warning"
        # Every warning the example shows is explained by a comment in the file it concerns.
        text = (REPO / "config" / problem["file"]).read_text()
        assert "warn" in text.lower(), problem


def test_text_output_is_file_line_col_severity_message_rule(config: Path) -> None:
    (config / "tasks" / "t.yaml").write_text(TASK)
    result = b2bd("--config", str(config), "validate")
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{config}/tasks/t.yaml:4:31: error: ")
    assert first.endswith("[months-attendance-only]")
    assert result.stderr == ""


def test_json_output(config: Path) -> None:
    (config / "tasks" / "t.yaml").write_text(TASK)
    result = b2bd("--config", str(config), "validate", "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["files"] == 3 and report["tasks"] == 0
    assert report["problems"] == [
        {
            "severity": "error",
            "file": "tasks/t.yaml",
            "line": 4,
            "column": 31,
            "path": "/data/months",
            "rule": "months-attendance-only",
            "message": "data.months is only allowed with data.type: attendance",
        }
    ]


def test_github_annotations(config: Path) -> None:
    (config / "tasks" / "t.yaml").write_text(TASK)
    result = b2bd("--config", "config", "validate", "--format", "github", cwd=config.parent)
    assert result.stdout.splitlines() == [
        "::error file=config/tasks/t.yaml,line=4,col=31,title=months-attendance-only::"
        "data.months is only allowed with data.type: attendance"
    ]


def test_strict_makes_warnings_fail(config: Path) -> None:
    (config / "tasks" / "t.yaml").write_text(
        TASK.replace("type: changed, months: 3", "type: changed").replace(
            '["06:30"]}', '["06:30"]}\n  expires: 2020-01-01'
        )
    )
    assert b2bd("--config", str(config), "validate").returncode == 0
    assert b2bd("--config", str(config), "validate", "--strict").returncode == 1


def test_usage_and_io_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    result = b2bd("--config", str(tmp_path / "missing"), "validate")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert b2bd("validate", "--format", "xml").returncode == 2


def test_bad_yaml_is_a_message_and_exit_1(config: Path) -> None:
    (config / "tasks" / "t.yaml").write_bytes(b"\xff\xfe\x00garbage: [\n")
    result = b2bd("--config", str(config), "validate")
    assert result.returncode == 1
    assert "[file-unreadable]" in result.stdout and "Traceback" not in result.stderr
