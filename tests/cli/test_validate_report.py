"""`b2bd validate` for CI and large repos: `--summary`, accepted warnings (`--ignore`, b2bd.yaml
`ignore:`), and the GitLab Code Quality report. A real subprocess, as a pipeline runs it."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import b2bd
from tests.support.config_dir import SETTINGS, ConfigDir, cfg

__all__ = ["cfg"]  # the fixture

# Tag "sec" reaches 8814004 (SIMS 7.160): excluded with a base-prerequisites warning; the
# schedule expired: a schedule-expired warning.
WARNED = """\
id: {id}
direction: from-school
bases: {{tags: [sec]}}
data: {{type: snapshot}}
schedule:
  weekly: {{days: [mon], times: ["06:30"]}}
  expires: 2020-01-01
"""
BROKEN = """\
id: broken
direction: from-school
bases: {ids: ["8814001"]}
data: {type: snapshot, months: 3}
schedule:
  weekly: {days: [mon], times: ["06:30"]}
"""


@pytest.fixture
def warned(cfg: ConfigDir) -> ConfigDir:
    for name in ("a", "b", "c"):
        cfg.write(f"tasks/{name}.yaml", WARNED.format(id=name))
    return cfg


def test_summary_counts_by_rule_most_frequent_first(warned: ConfigDir) -> None:
    warned.write("tasks/broken.yaml", BROKEN)
    result = b2bd("--config", str(warned.root), "validate", "--summary")
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "       3 warning  base-prerequisites",
        "       3 warning  schedule-expired",
        "       1 error    months-attendance-only",
        f"{warned.root}: 7 files, 4 tasks, 4 bases: INVALID (1 errors, 6 warnings)",
    ]


def test_ignore_option_counts_the_warnings_as_ignored(warned: ConfigDir) -> None:
    result = b2bd(
        "--config", str(warned.root), "validate", "--summary", "--ignore", "schedule-expired"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "       3 warning  base-prerequisites",
        "       3 ignored  schedule-expired",
        f"{warned.root}: 6 files, 4 tasks, 4 bases: valid (0 errors, 3 warnings, 3 ignored)",
    ]
    full = b2bd("--config", str(warned.root), "validate", "--ignore", "schedule-expired")
    assert "[schedule-expired]" not in full.stdout
    assert full.stdout.count("[base-prerequisites]") == 3


def test_strict_counts_only_warnings_not_ignored(warned: ConfigDir) -> None:
    root = str(warned.root)
    assert b2bd("--config", root, "validate", "--strict").returncode == 1
    ignore = ["--ignore", "schedule-expired", "--ignore", "base-prerequisites"]
    assert b2bd("--config", root, "validate", "--strict", *ignore[:2]).returncode == 1
    result = b2bd("--config", root, "validate", "--strict", *ignore)
    assert result.returncode == 0
    assert result.stdout.endswith("valid (0 errors, 0 warnings, 6 ignored)\n")


def test_ignore_list_in_b2bd_yaml_and_option_add_up(warned: ConfigDir) -> None:
    warned.write("b2bd.yaml", SETTINGS + "ignore: [schedule-expired]\n")
    result = b2bd("--config", str(warned.root), "validate", "--format", "json", "--summary")
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["ignored"] == 3
    assert {p["rule"] for p in report["problems"]} == {"base-prerequisites"}
    assert report["summary"] == [
        {"rule": "base-prerequisites", "severity": "warning", "count": 3},
        {"rule": "schedule-expired", "severity": "ignored", "count": 3},
    ]
    both = b2bd(
        "--config", str(warned.root), "validate", "--format", "json",
        "--ignore", "base-prerequisites",
    )  # fmt: skip
    report = json.loads(both.stdout)
    assert report["ignored"] == 6 and report["problems"] == [] and "summary" not in report


def test_ignoring_an_error_rule_or_an_unknown_id_is_a_usage_error(warned: ConfigDir) -> None:
    result = b2bd("--config", str(warned.root), "validate", "--ignore", "schema")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "b2bd: --ignore schema: schema is an error rule: only warnings can be ignored\n"
    )
    result = b2bd("--config", str(warned.root), "validate", "--ignore", "months-hevy")
    assert result.returncode == 2 and "--ignore months-hevy: not a warning rule id" in result.stderr
    assert "months-heavy" in result.stderr and "Traceback" not in result.stderr


def test_errors_of_an_ignored_rule_still_fail(cfg: ConfigDir) -> None:
    cfg.write("tasks/t.yaml", WARNED.format(id="t").replace("{tags: [sec]}", '{ids: ["8814004"]}'))
    result = b2bd("--config", str(cfg.root), "validate", "--ignore", "base-prerequisites")
    assert result.returncode == 1
    assert ": error: " in result.stdout and "[base-prerequisites]" in result.stdout


def test_gitlab_code_quality_report(cfg: ConfigDir) -> None:
    cfg.write("tasks/t.yaml", WARNED.format(id="t"))
    cfg.write("tasks/broken.yaml", BROKEN)
    result = b2bd("--config", "config", "validate", "--format", "gitlab", cwd=cfg.root.parent)
    assert result.returncode == 1 and result.stderr == ""
    report = json.loads(result.stdout)
    assert [
        (i["check_name"], i["severity"], i["location"]["path"], i["location"]["lines"]["begin"])
        for i in report
    ] == [
        ("months-attendance-only", "critical", "config/tasks/broken.yaml", 4),
        ("base-prerequisites", "minor", "config/tasks/t.yaml", 3),
        ("schedule-expired", "minor", "config/tasks/t.yaml", 7),
    ]
    assert {json.dumps(i["location"], sort_keys=True) for i in report[:1]} == {
        '{"lines": {"begin": 4}, "path": "config/tasks/broken.yaml"}'
    }
    assert report[0]["description"] == "data.months is only allowed with data.type: attendance"
    for issue in report:
        assert set(issue) == {"description", "check_name", "fingerprint", "severity", "location"}
        assert isinstance(issue["fingerprint"], str) and len(issue["fingerprint"]) == 32
    assert len({i["fingerprint"] for i in report}) == len(report)

    # Lines moved by an edit above: the same problems keep their fingerprints (GitLab matches
    # them between the merge request and its target), so nothing shows as new or fixed.
    cfg.write("tasks/t.yaml", "# a comment\n# and another\n" + WARNED.format(id="t"))
    again = json.loads(
        b2bd("--config", "config", "validate", "--format", "gitlab", cwd=cfg.root.parent).stdout
    )
    assert [i["location"]["lines"]["begin"] for i in again] == [4, 5, 9]
    assert [i["fingerprint"] for i in again] == [i["fingerprint"] for i in report]

    # A valid config is an empty report (GitLab needs a JSON list even then).
    cfg.write("tasks/broken.yaml", BROKEN.replace(", months: 3", ""))
    cfg.write("tasks/t.yaml", WARNED.format(id="t").replace("  expires: 2020-01-01\n", ""))
    clean = b2bd("--config", str(cfg.root), "validate", "--format", "gitlab", "--ignore",
                 "base-prerequisites")  # fmt: skip
    assert clean.returncode == 0 and json.loads(clean.stdout) == []


def test_gitlab_fingerprints_tell_apart_the_same_problem_in_two_files(warned: ConfigDir) -> None:
    report = json.loads(b2bd("--config", str(warned.root), "validate", "--format", "gitlab").stdout)
    expired = [i for i in report if i["check_name"] == "schedule-expired"]
    assert [i["location"]["path"] for i in expired] == [
        f"{warned.root}/tasks/{name}.yaml" for name in ("a", "b", "c")
    ]
    assert len({i["description"] for i in expired}) == 1
    assert len({i["fingerprint"] for i in expired}) == 3


def test_gitlab_paths_are_relative_to_where_it_runs(cfg: ConfigDir) -> None:
    cfg.write("tasks/t.yaml", BROKEN)
    given = [
        b2bd("--config", config, "validate", "--format", "gitlab", cwd=cfg.root.parent).stdout
        for config in (str(cfg.root), "config", "./config/../config")
    ]
    paths = [[i["location"]["path"] for i in json.loads(report)] for report in given]
    assert paths == [["config/tasks/t.yaml"]] * 3
    assert len({json.loads(report)[0]["fingerprint"] for report in given}) == 1
