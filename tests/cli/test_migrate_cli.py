"""`b2bd migrate`: One's scheduled-task export -> task files that `b2bd validate` accepts (the
command; the pure translation's tests are in tests/test_migrate.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from b2bd.config.load import load_config
from tests.support.cli import b2bd
from tests.support.one_export import config_without_tasks, one_row

EXPORT = Path(__file__).parent / "data" / "one-scheduled-tasks.csv"

# Bad rows of the realistic export: CSV line -> the rule that refuses it.
BAD_ROWS = {
    4: "base-prerequisites",
    8: "base-lockdown",
    11: "sims-primary-only",
    15: "base-unknown",
    24: "migrate-school-locked",
    29: "to-school-changed-only",
    30: "to-school-ncy-only",
    31: "migrate-value",
    32: "time-format",
    33: "ncy-code",
    34: "attendance-kind-required",
    35: "months-attendance-only",
    36: "ncy-unexpected",
    37: "migrate-value",
    38: "migrate-value",
    39: "base-prerequisites",
    40: "base-lockdown",
    43: "migrate-value",
}
# The tasks it becomes: id -> the bases of the rows that passed.
EXPECTED_TASKS = {
    "weekly-unauthorised-absence-secondary": ["8813003", "8814001"],
    "daily-changed-data": ["8812002", "8813003", "8814001"],
    "daily-changed-data-2": ["8812002"],
    "primary-attendance-changes": ["8812002"],
    "monthly-lac-snapshot": ["8812002", "8813003", "8814001"],
    "termly-attainment-ks4": ["8813003", "8814001"],
    "leavers-previous-year-attendance": ["8812002", "8813003", "8814001"],
    "changes-back-to-schools": ["8813003", "8814001"],
    "riverside-own-absence-report": ["8813003"],
    "attendance-all-years": ["8813003", "8814001"],
    "annee-scolaire-early-years-census": ["8812002"],
    "one-off-census-pull-2024": ["8814001"],
    "weekly-unauthorised-absence-primary": ["8812002"],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The example config with no tasks: b2bd.yaml and bases.yaml as shipped."""
    return config_without_tasks(tmp_path / "config")


def run_migrate(config: Path, export: Path, out: Path, *extra: str) -> Any:
    result = b2bd(
        "--config", str(config), "migrate", str(export), "--out", str(out), "--format", "json",
        *extra,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    out_json = json.loads(result.stdout)
    out_json["returncode"] = result.returncode
    return out_json


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ---- the realistic export, end to end ---------------------------------------------------------


def test_realistic_export_migrates_to_files_that_validate_accepts(config: Path) -> None:
    out = run_migrate(config, EXPORT, config / "tasks")
    assert out["returncode"] == 1  # it has bad rows
    assert {t["id"]: t["bases"] for t in out["tasks"]} == EXPECTED_TASKS
    assert all(t["outcome"] == "written" for t in out["tasks"])

    result = b2bd("--config", str(config), "validate", "--format", "json")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["tasks"] == len(EXPECTED_TASKS)
    # The only finding: the one-off task whose date One has already passed.
    assert [(p["file"], p["rule"]) for p in report["problems"]] == [
        ("tasks/one-off-census-pull-2024.yaml", "schedule-expired")
    ]
    loaded = load_config(config)
    assert {t.id: list(t.targets) for t in loaded.tasks.values()} == EXPECTED_TASKS


def test_every_bad_row_is_reported_with_its_row_number_and_rule(config: Path) -> None:
    out = run_migrate(config, EXPORT, config / "tasks")
    errors = {(p["line"], p["rule"]) for p in out["problems"] if p["severity"] == "error"}
    assert errors == set(BAD_ROWS.items())
    assert out["failed_rows"] == sorted(BAD_ROWS)
    warnings = {(p["line"], p["rule"]) for p in out["problems"] if p["severity"] == "warning"}
    assert warnings == {(28, "schedule-expired"), (42, "migrate-duplicate")}


def test_text_report_names_file_row_column_and_rule(config: Path) -> None:
    result = b2bd("--config", str(config), "migrate", str(EXPORT), "--out", str(config / "tasks"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{EXPORT}:15: error: Base: base 8819999 is not in bases.yaml [base-unknown]" in lines
    assert any(
        line.startswith(f"{EXPORT}:24: error: Locked: the school owns this task")
        and line.endswith("[migrate-school-locked]")
        for line in lines
    )
    assert f"{config / 'tasks' / 'daily-changed-data.yaml'}: written (rows 5, 6, 7)" in lines
    assert lines[-1] == f"{EXPORT}: 42 rows, 18 not migrated, 13 tasks; 24 rows in place"


def test_written_file_says_where_it_came_from(config: Path) -> None:
    run_migrate(config, EXPORT, config / "tasks")
    text = (config / "tasks" / "weekly-unauthorised-absence-primary.yaml").read_text()
    assert text == (
        "# Migrated from One by b2bd migrate: one-scheduled-tasks.csv, rows 41, 42\n"
        '# (One task "Weekly unauthorised absence primary"; one row per base).\n'
        "# One began running it on 01/09/2025 07:15 (Start).\n"
        "# Expiry in One: 31/07/2030 06:00, a day it does not run: expires is that date.\n"
        'id: "weekly-unauthorised-absence-primary"\n'
        'description: "Weekly unauthorised absence primary"\n'
        "direction: from-school\n"
        'bases: {ids: ["8812002"]}\n'
        "data:\n"
        "  type: attendance\n"
        "  attendance: unauthorised-absences-current-year\n"
        "  months: 2\n"
        "cohort:\n"
        "  group: ncy\n"
        "  ncy: [1, 2, 3, 4, 5, 6]\n"
        "schedule:\n"
        '  weekly: {days: [mon, thu], times: ["07:15"]}\n'
        '  starts: "2025-09-01"\n'
        '  expires: "2030-07-31"\n'
    )
    school = (config / "tasks" / "riverside-own-absence-report.yaml").read_text()
    assert "# Owned by the school in One (not locked)" in school


# ---- encodings and line ends ------------------------------------------------------------------


def test_bom_and_crlf_give_the_same_files(config: Path, tmp_path: Path) -> None:
    excel = tmp_path / "excel" / EXPORT.name
    excel.parent.mkdir()
    excel.write_bytes(b"\xef\xbb\xbf" + EXPORT.read_bytes().replace(b"\n", b"\r\n"))
    plain = run_migrate(config, EXPORT, tmp_path / "plain")
    from_excel = run_migrate(config, excel, tmp_path / "excel-out")
    assert plain["problems"] == from_excel["problems"]
    assert file_bytes(tmp_path / "plain") == file_bytes(tmp_path / "excel-out")


def test_non_utf8_export_is_refused_with_where_and_how(config: Path, tmp_path: Path) -> None:
    cp1252 = tmp_path / "cp1252.csv"
    cp1252.write_bytes(EXPORT.read_text("utf-8").encode("cp1252"))
    out = tmp_path / "out"
    result = b2bd("--config", str(config), "migrate", str(cp1252), "--out", str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    offset = cp1252.read_bytes().index("é".encode("cp1252"))
    assert "not valid utf-8 at line 27, column 4" in result.stderr
    assert f"byte offset {offset}" in result.stderr
    assert "--encoding cp1252" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()

    # Named explicitly, the same file gives the same tasks as the UTF-8 one.
    named = run_migrate(config, cp1252, out, "--encoding", "cp1252")
    reference = run_migrate(config, EXPORT, tmp_path / "reference")
    assert [t["id"] for t in named["tasks"]] == [t["id"] for t in reference["tasks"]]
    census = (out / "annee-scolaire-early-years-census.yaml").read_text("utf-8")
    assert 'description: "Année scolaire \u2013 early years census"' in census


# ---- idempotence ------------------------------------------------------------------------------


def test_rerun_is_byte_identical_and_changes_nothing(config: Path) -> None:
    tasks = config / "tasks"
    run_migrate(config, EXPORT, tasks)
    first = file_bytes(tasks)
    again = run_migrate(config, EXPORT, tasks)
    assert {t["outcome"] for t in again["tasks"]} == {"unchanged"}
    assert [t["id"] for t in again["tasks"]] == list(EXPECTED_TASKS)
    assert file_bytes(tasks) == first


def test_a_file_that_differs_is_left_alone_unless_force(config: Path) -> None:
    tasks = config / "tasks"
    run_migrate(config, EXPORT, tasks)
    edited = tasks / "monthly-lac-snapshot.yaml"
    original = edited.read_bytes()
    edited.write_bytes(original.replace(b'"02:00"', b'"03:00"'))
    mine = edited.read_bytes()

    kept = run_migrate(config, EXPORT, tasks)
    outcomes = {t["id"]: t["outcome"] for t in kept["tasks"]}
    assert outcomes["monthly-lac-snapshot"] == "left-alone"
    assert kept["returncode"] == 1
    assert edited.read_bytes() == mine

    dry = run_migrate(config, EXPORT, tasks, "--force", "--dry-run")
    assert {t["id"]: t["outcome"] for t in dry["tasks"]}["monthly-lac-snapshot"] == "overwritten"
    assert edited.read_bytes() == mine

    forced = run_migrate(config, EXPORT, tasks, "--force")
    assert {t["id"]: t["outcome"] for t in forced["tasks"]}["monthly-lac-snapshot"] == "overwritten"
    assert edited.read_bytes() == original
    assert not [p for p in tasks.iterdir() if p.name.startswith(".")]


def test_dry_run_writes_nothing(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "tasks"
    result = b2bd("--config", str(config), "migrate", str(EXPORT), "--out", str(out), "--dry-run")
    assert result.returncode == 1
    assert f"{out / 'daily-changed-data.yaml'}: would write (rows 5, 6, 7)" in result.stdout
    assert "(dry run: nothing written)" in result.stdout
    assert not (tmp_path / "new").exists()


def test_every_row_migrated_exits_0(config: Path, tmp_path: Path) -> None:
    export = tmp_path / "good.csv"
    export.write_text(one_row() + one_row(Base="8813003").split("\n", 1)[1])
    out = run_migrate(config, export, config / "tasks")
    assert out["returncode"] == 0
    assert out["problems"] == []
    assert [(t["id"], t["bases"]) for t in out["tasks"]] == [
        ("weekly-changed-data", ["8813003", "8814001"])
    ]


# ---- ids --------------------------------------------------------------------------------------


def test_ids_already_used_by_other_config_files_get_a_suffix(config: Path) -> None:
    (config / "tasks" / "hand-written.yaml").write_text(
        'id: "daily-changed-data"\ndirection: from-school\nbases: {ids: ["8814001"]}\n'
        'data: {type: changed}\nschedule:\n  weekly: {days: [mon], times: ["06:30"]}\n'
    )
    out = run_migrate(config, EXPORT, config / "tasks")
    ids = [t["id"] for t in out["tasks"]]
    assert "daily-changed-data-2" in ids and "daily-changed-data-3" in ids
    assert "daily-changed-data" not in ids
    assert b2bd("--config", str(config), "validate").returncode == 0
    # And they stay put on a re-run, now that migrate's own files are in the config too.
    again = run_migrate(config, EXPORT, config / "tasks")
    assert [t["id"] for t in again["tasks"]] == ids


def test_bad_header_exits_2(config: Path, tmp_path: Path) -> None:
    export = tmp_path / "other.csv"
    export.write_text("Name,When\nx,y\n")
    result = b2bd("--config", str(config), "migrate", str(export), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "line 1 is not the expected header" in result.stderr
    missing = b2bd("--config", str(config), "migrate", str(tmp_path / "nope.csv"), "--out", "o")
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
