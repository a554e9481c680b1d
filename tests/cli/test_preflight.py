"""`b2bd preflight` against real export folders built in tmp_path, run as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from b2bd.preflight import writable_dir
from tests.support.cli import b2bd
from tests.support.config_dir import b2bd_yaml


def export_folder(
    path: Path,
    laestab: str,
    *,
    mis: str = "sims",
    sims_version: str = "7.214",
    services_manager: str = "running",
    manifest: bool = True,
) -> Path:
    """A tiny school export: manifest.json and empty data files (no sample generator)."""
    path.mkdir(parents=True)
    if manifest:
        doc = {
            "mis": mis,
            "exported_at": "2026-11-27T18:00:00Z",
            "laestab": laestab,
            "sims_version": sims_version,
            "services_manager": services_manager,
        }
        (path / "manifest.json").write_text(json.dumps(doc))
    for name in ("pupils.jsonl", "attendance.jsonl", "results.jsonl", "deletions.jsonl"):
        (path / name).write_text("")
    return path


def base_entry(laestab: str, name: str, endpoint: str, **fields: Any) -> str:
    values = {
        "mis": "sims",
        "sims_version": '"7.214"',
        "b2b_phase": "2",
        "services_manager": "true",
        **{k: str(v) for k, v in fields.items()},
    }
    lines = [f'  - id: "{laestab}"', f"    name: {name}"]
    lines += [f"    {k}: {v}" for k, v in values.items()]
    lines.append(f"    endpoint: {endpoint}")
    return "\n".join(lines) + "\n"


def write_config(
    root: Path, entries: list[str], *, one: str = "3.83", state: str = "../state"
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "b2bd.yaml").write_text(
        b2bd_yaml(state, "../la", la_name="Essex", one_version=one, timezone="Europe/London")
    )
    (root / "bases.yaml").write_text("bases:\n" + "".join(entries))
    return root


def folder(name: str) -> str:
    return f"{{type: directory, path: ../schools/{name}}}"


@pytest.fixture
def every_failure(tmp_path: Path) -> Path:
    """One base per failure kind, plus a good one and a failing disabled one."""
    schools = tmp_path / "schools"
    export_folder(schools / "good", "8814001")
    export_folder(schools / "nomanifest", "8814003", manifest=False)
    export_folder(schools / "stopped", "8814004", services_manager="stopped")
    export_folder(schools / "oldsims", "8814005", sims_version="7.150")
    export_folder(schools / "prereq", "8814006", sims_version="7.160")
    export_folder(schools / "primary", "8814007", mis="sims")
    export_folder(schools / "other", "8819999")
    entries = [
        base_entry("8814001", "Good School", folder("good")),
        base_entry("8814002", "Missing Folder School", folder("missing")),
        base_entry("8814003", "No Manifest School", folder("nomanifest")),
        base_entry("8814004", "Stopped School", folder("stopped")),
        base_entry("8814005", "Upgraded School", folder("oldsims")),
        base_entry("8814006", "Old SIMS School", folder("prereq"), sims_version='"7.160"'),
        base_entry("8814007", "Primary School", folder("primary"), mis="sims-primary"),
        base_entry("8814008", "Wrong Folder School", folder("other")),
        base_entry(
            "8814009",
            "Wonde School",
            "{type: wonde, school_id: A123, token: {credential: wonde}}",
        ),
        base_entry("8814010", "Disabled School", folder("missing"), enabled="false"),
    ]
    return write_config(tmp_path / "config", entries)


def failures(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["reason"]) for c in report["checks"] if c["status"] == "fail"]


def test_each_failure_kind_is_reported_with_its_check_and_reason(every_failure: Path) -> None:
    result = b2bd("--config", str(every_failure), "preflight", "--format", "json")
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    by_id = {b["id"]: b for b in out["bases"]}
    assert out["ready"] is False
    assert out["la"]["ok"] is True
    assert by_id["8814001"]["ok"] is True
    assert failures(by_id["8814001"]) == []
    assert failures(by_id["8814002"]) == [("reachable", "unreachable")]
    assert failures(by_id["8814003"]) == [("manifest", "bad-data")]
    assert failures(by_id["8814004"]) == [("services-manager", "prerequisite")]
    assert failures(by_id["8814005"]) == [("sims-version", "prerequisite")]
    # A static prerequisite from bases.yaml; the export agrees with bases.yaml (7.160).
    assert failures(by_id["8814006"]) == [("prerequisites", "prerequisite")]
    assert failures(by_id["8814007"]) == [("mis", "prerequisite")]
    assert failures(by_id["8814008"]) == [("manifest", "bad-data")]
    # A Wonde base whose token credential exists nowhere: the token check fails, not retried.
    assert failures(by_id["8814009"]) == [("reachable", "auth")]
    assert by_id["8814010"]["enabled"] is False
    assert failures(by_id["8814010"]) == [("reachable", "unreachable")]


def test_checks_after_a_failure_are_skipped_not_guessed(every_failure: Path) -> None:
    out = json.loads(b2bd("--config", str(every_failure), "preflight", "--format", "json").stdout)
    stopped = next(b for b in out["bases"] if b["id"] == "8814004")
    statuses = {c["name"]: c["status"] for c in stopped["checks"]}
    assert statuses["reachable"] == statuses["manifest"] == "pass"
    assert statuses["services-manager"] == "fail"
    assert statuses["mis"] == statuses["sims-version"] == "skip"


def test_text_output_has_one_line_per_base_with_the_reason(every_failure: Path) -> None:
    result = b2bd("--config", str(every_failure), "preflight")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("LA 881 Essex: ok:")
    base_lines = [line for line in lines if line[:7].isdigit()]
    assert len(base_lines) == 10
    good = next(line for line in base_lines if line.startswith("8814001"))
    assert good.startswith("8814001 Good School: ok:")
    stopped = next(line for line in base_lines if line.startswith("8814004"))
    assert "services-manager FAIL (" in stopped
    assert "SIMS Services Manager is stopped" in stopped
    assert "[prerequisite]" in stopped
    upgraded = next(line for line in base_lines if line.startswith("8814005"))
    assert "export reports a SIMS release below 7.166 (bases.yaml says 7.214)" in upgraded
    assert "7.150" not in upgraded  # a value from the export is never quoted
    prereq = next(line for line in base_lines if line.startswith("8814006"))
    assert (
        "prerequisites FAIL (base 8814006 fails a prerequisite: SIMS 7.160 < 7.166) [prerequisite]"
        in prereq
    )
    disabled = next(line for line in base_lines if line.startswith("8814010"))
    assert "(disabled: does not count)" in disabled
    assert lines[-1].endswith("NOT READY")


def test_exit_0_when_every_enabled_base_passes(tmp_path: Path) -> None:
    export_folder(tmp_path / "schools" / "good", "8814001")
    config = write_config(
        tmp_path / "config",
        [
            base_entry("8814001", "Good School", folder("good"), lockdown="true"),
            base_entry("8814002", "Closed School", folder("gone"), enabled="false"),
        ],
    )
    result = b2bd("--config", str(config), "preflight")
    assert result.returncode == 0, result.stdout
    good = next(line for line in result.stdout.splitlines() if line.startswith("8814001"))
    # Lockdown is information: the LA may not manage the school's tasks, but data can move.
    assert "lockdown: school has locked down its tasks" in good
    assert result.stdout.splitlines()[-1].endswith(": ready")


def test_attainment_readiness_is_information(tmp_path: Path) -> None:
    export_folder(tmp_path / "schools" / "s", "8814001", sims_version="7.167")
    config = write_config(
        tmp_path / "config", [base_entry("8814001", "S", folder("s"), sims_version='"7.167"')]
    )
    result = b2bd("--config", str(config), "preflight", "--format", "json")
    assert result.returncode == 0
    checks = json.loads(result.stdout)["bases"][0]["checks"]
    attainment = next(c for c in checks if c["name"] == "attainment")
    assert attainment["status"] == "info"
    assert "7.167 < 7.168" in attainment["detail"]


def test_la_too_old_for_scheduled_tasks_fails(tmp_path: Path) -> None:
    export_folder(tmp_path / "schools" / "good", "8814001")
    config = write_config(
        tmp_path / "config", [base_entry("8814001", "Good", folder("good"))], one="3.57"
    )
    result = b2bd("--config", str(config), "preflight", "--format", "json")
    assert result.returncode == 1
    la = json.loads(result.stdout)["la"]
    assert la["ok"] is False
    config_check = next(c for c in la["checks"] if c["name"] == "config")
    assert "la-prerequisites" in config_check["detail"]


def test_state_dir_that_cannot_be_created_fails_and_nothing_is_created(tmp_path: Path) -> None:
    export_folder(tmp_path / "schools" / "good", "8814001")
    (tmp_path / "afile").write_text("not a directory")
    config = write_config(
        tmp_path / "config",
        [base_entry("8814001", "Good", folder("good"))],
        state="../afile/state",
    )
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = b2bd("--config", str(config), "preflight", "--format", "json")
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["la"]["checks"]}
    assert checks["state-dir"]["status"] == "fail"
    assert checks["la-store"]["status"] == "pass"
    assert "will be created" in checks["la-store"]["detail"]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_writable_dir_cases(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    (tmp_path / "file").write_text("")
    assert writable_dir("d", tmp_path / "exists").status == "pass"
    assert writable_dir("d", tmp_path / "new" / "deeper").status == "pass"
    assert writable_dir("d", tmp_path / "file").status == "fail"
    assert writable_dir("d", tmp_path / "file" / "below").status == "fail"
    assert not (tmp_path / "new").exists()


def test_missing_config_dir_is_a_usage_error(tmp_path: Path) -> None:
    result = b2bd("--config", str(tmp_path / "nope"), "preflight")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def task_file(config: Path, body: str) -> None:
    (config / "tasks").mkdir(exist_ok=True)
    (config / "tasks" / "t.yaml").write_text(
        "id: t\ndirection: from-school\n" + body + "\ncohort: {group: ncy}\n"
        'schedule: {weekly: {days: [mon], times: ["06:30"]}}\n'
    )


def test_preflight_task_says_what_each_transfer_would_do(tmp_path: Path) -> None:
    schools = tmp_path / "schools"
    export_folder(schools / "good", "8814001", mis="sims-primary")
    export_folder(schools / "locked", "8814002", mis="sims-primary")
    export_folder(schools / "liar", "8814003", mis="sims")  # registered sims-primary
    export_folder(schools / "secondary", "8814004")
    config = write_config(
        tmp_path / "config",
        [
            base_entry("8814001", "Good", folder("good"), mis="sims-primary", tags="[p]"),
            base_entry(
                "8814002",
                "Locked",
                folder("locked"),
                mis="sims-primary",
                lockdown="true",
                tags="[p]",
            ),
            base_entry("8814003", "Liar", folder("liar"), mis="sims-primary", tags="[p]"),
            base_entry("8814004", "Secondary", folder("secondary"), tags="[p]"),
        ],
    )
    task_file(
        config, "bases: {tags: [p]}\ndata: {type: attendance, attendance: attendance-changed}"
    )
    result = b2bd("--config", str(config), "preflight", "--task", "t", "--format", "json")
    assert result.returncode == 1, result.stderr
    by_id = {b["id"]: b for b in json.loads(result.stdout)["bases"]}
    verdicts = {i: (b["verdict"], b["reason"]) for i, b in by_id.items()}
    assert verdicts == {
        "8814001": ("run", None),
        "8814002": ("skipped", "lockdown"),
        "8814003": ("failed", "prerequisite"),  # the export says SIMS, not SIMS Primary
        "8814004": (
            "failed",
            "prerequisite",
        ),  # registered SIMS: attendance-changed is SIMS Primary
    }
    assert failures(by_id["8814003"]) == [("mis", "prerequisite")]
    text = b2bd("--config", str(config), "preflight", "--task", "t").stdout
    assert "8814002 Locked: FAIL: " in text and text.count("=> skipped (lockdown)") == 1
    unknown = b2bd("--config", str(config), "preflight", "--task", "nope")
    assert unknown.returncode == 2 and "no valid task 'nope'" in unknown.stderr


def test_la_outbound_folder_must_be_readable_when_to_school_tasks_exist(tmp_path: Path) -> None:
    export_folder(tmp_path / "schools" / "good", "8814001")
    config = write_config(tmp_path / "config", [base_entry("8814001", "Good", folder("good"))])

    def outbound() -> dict[str, Any]:
        out = json.loads(b2bd("--config", str(config), "preflight", "--format", "json").stdout)
        return next(c for c in out["la"]["checks"] if c["name"] == "outbound")

    assert outbound()["status"] == "info"  # no to-school task: a missing folder is fine
    (config / "tasks").mkdir()
    (config / "tasks" / "out.yaml").write_text(
        "id: out\ndirection: to-school\nbases: {ids: ['8814001']}\ndata: {type: changed}\n"
        "cohort: {group: ncy}\nschedule: {weekly: {days: [mon], times: ['06:30']}}\n"
    )
    assert (outbound()["status"], outbound()["reason"]) == ("fail", "prerequisite")
    (tmp_path / "la" / "outbound").mkdir(parents=True)
    assert outbound()["status"] == "pass"
    (tmp_path / "la" / "outbound").rmdir()
    (tmp_path / "la" / "outbound").write_text("a file, not a folder")
    assert outbound()["status"] == "fail"
