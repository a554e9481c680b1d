"""`b2bd migrate`: One's scheduled-task export -> task files that `b2bd validate` accepts."""

from __future__ import annotations

import datetime as dt
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from b2bd.config.load import load_config
from b2bd.config.packaged import validator
from b2bd.config.yamlfile import parse
from b2bd.migrate import (
    COLUMNS,
    LegacyFileError,
    Row,
    TargetConfig,
    allocate_ids,
    decode,
    migrate,
    placement,
    read_rows,
    slug,
)
from b2bd.schedule import next_slot

REPO = Path(__file__).resolve().parents[2]
EXPORT = Path(__file__).parent / "data" / "one-scheduled-tasks.csv"
HEADER = ",".join(COLUMNS)
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)

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


def b2bd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2bd", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The example config with no tasks: b2bd.yaml and bases.yaml as shipped."""
    root = tmp_path / "config"
    (root / "tasks").mkdir(parents=True)
    for name in ("b2bd.yaml", "bases.yaml"):
        shutil.copy(REPO / "config" / name, root / name)
    return root


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


def target(config: Path) -> TargetConfig:
    loaded = load_config(config, now=NOW)
    return TargetConfig(loaded.bases, loaded.settings, task_schema=validator("task"))


def one_row(**values: str) -> str:
    row = {
        "Task Name": "Weekly changed data",
        "Owner": "LA",
        "Locked": "No",
        "Base": "8814001",
        "Direction": "Export from School",
        "Data Type": "Changed Data",
        "Group": "NCY",
        "NCY": "All",
        "Frequency": "Weekly",
        "Days": "Mon",
        "Times": "06:30",
        "Start": "01/09/2025 06:30",
        **values,
    }
    line = ",".join(f'"{row.get(c, "")}"' for c in COLUMNS)
    return f"{HEADER}\n{line}\n"


def migrate_text(config: Path, text: str) -> Any:
    return migrate(read_rows(text), "x.csv", target(config), NOW)


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


def test_decode_reports_the_first_bad_byte() -> None:
    with pytest.raises(LegacyFileError, match=r"line 2, column 3 \(byte offset 6, byte 0xe9\)"):
        decode(b"a,b\nxy\xe9z\n")
    assert decode(b"\xef\xbb\xbfTask") == "Task"


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


@pytest.mark.parametrize(
    ("existing", "force", "outcome"),
    [
        (None, False, "written"),
        (None, True, "written"),
        (b"id: t\n", False, "unchanged"),
        (b"id: t\n", True, "unchanged"),
        (b"id: edited\n", False, "left-alone"),
        (b"id: edited\n", True, "overwritten"),
    ],
)
def test_placement_decides_what_a_write_comes_to(
    existing: bytes | None, force: bool, outcome: str
) -> None:
    assert placement(existing, b"id: t\n", force=force) == outcome


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


def test_fixing_a_bad_row_renames_no_other_task(config: Path) -> None:
    bad_first = one_row(Frequency="Fortnightly") + one_row(Times="07:00").split("\n", 1)[1]
    fixed = one_row() + one_row(Times="07:00").split("\n", 1)[1]
    before = migrate_text(config, bad_first)
    after = migrate_text(config, fixed)
    assert [d.id for d in before.documents] == ["weekly-changed-data-2"]
    assert [d.id for d in after.documents] == ["weekly-changed-data", "weekly-changed-data-2"]


def test_slug_and_allocation() -> None:
    assert (
        slug("Weekly Unauthorised Absence - Secondary") == "weekly-unauthorised-absence-secondary"
    )
    assert slug("Année scolaire \u2013 Y7") == "annee-scolaire-y7"
    assert slug("!!!") == "task"
    assert len(slug("x" * 200)) == 63
    assert allocate_ids(["A", "a", "A!", "b"], taken=["b"]) == ["a", "a-2", "a-3", "b-2"]
    long = allocate_ids(["y" * 80, "y" * 80])
    assert long[1].endswith("-2") and len(long[1]) == 63


# ---- One's values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("All Attendances for Current Academic Year", "all-attendances-current-year"),
        (
            "All Unauthorised Absences for Current Academic Year",
            "unauthorised-absences-current-year",
        ),
        ("All Absences for Current Academic Year", "all-absences-current-year"),
        ("All Attendances for Previous Academic Year", "all-attendances-previous-year"),
        ("Attendance Changed Data (SIMS Primary)", "attendance-changed"),
    ],
)
def test_the_five_attendance_options(config: Path, label: str, kind: str) -> None:
    base = "8812002"  # SIMS Primary, so attendance-changed may target it
    result = migrate_text(
        config,
        one_row(**{"Data Type": "Attendance Data", "Attendance Option": label, "Base": base}),
    )
    assert result.problems == ()
    assert f"  attendance: {kind}\n" in result.documents[0].text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"Days": "Mon;Wed", "Times": "06:30;13:00"},
         '  weekly: {days: [mon, wed], times: ["06:30", "13:00"]}\n'),
        ({"Days": "monday; FRIDAY", "Times": "6:30"},
         '  weekly: {days: [mon, fri], times: ["06:30"]}\n'),
        ({"Times": "", "Start": "01/09/2025 07:45"},
         '  weekly: {days: [mon], times: ["07:45"]}\n'),
        ({"Frequency": "Monthly", "Days": "", "Dates": "1;15;Last", "Months": "All"},
         '  monthly: {days: [1, 15, last], months: [all], times: ["06:30"]}\n'),
        ({"Frequency": "Monthly", "Days": "", "Dates": "28", "Months": "Jan;Feb"},
         '  monthly: {days: [28], months: [jan, feb], times: ["06:30"]}\n'),
        ({"Frequency": "Monthly", "Days": "", "Dates": "1"},
         '  monthly: {days: [1], times: ["06:30"]}\n'),
        ({"Frequency": "Once", "Days": "", "Times": "", "Start": "04/01/2030 05:00"},
         '  once: "2030-01-04T05:00"\n'),
        ({"Frequency": "Once", "Days": "", "Times": "05:00", "Start": "04/01/2030"},
         '  once: "2030-01-04T05:00"\n'),
        ({"Expiry": "31/07/2030"}, '  expires: "2030-07-31"\n'),
        # Start in the future: the calendar begins there (One would not run before it).
        ({"Start": "07/09/2027 06:30"}, '  starts: "2027-09-07"\n'),
        ({"Start": "06/09/2027 07:00"}, '  starts: "2027-09-07"\n'),  # a Monday, after 06:30
        ({"Start": "06/09/2027 06:00"}, '  starts: "2027-09-06"\n'),
        ({"Start": "06/09/2027"}, '  starts: "2027-09-06"\n'),
        # Expiry with a time: the last slot One would still run.
        ({"Expiry": "26/07/2027 06:30"}, '  expires: "2027-07-26"\n'),  # a Monday, at 06:30
        ({"Expiry": "26/07/2027 06:29"}, '  expires: "2027-07-25"\n'),
        ({"Expiry": "27/07/2027 00:00"}, '  expires: "2027-07-27"\n'),  # a Tuesday: no run
        ({"NCY": "7;8;9"}, "  ncy: [7, 8, 9]\n"),
        ({"NCY": "r;N1;x;14"}, '  ncy: ["R", "N1", "X", 14]\n'),
        ({"NCY": "07;08"}, "  ncy: [7, 8]\n"),
        ({"Group": "LAC", "NCY": ""}, "  group: lac\nschedule:"),
        ({"Group": "Leavers", "NCY": "All"}, "  group: leavers\nschedule:"),
        ({"Direction": "Export to School", "NCY": "10;11"}, "direction: to-school\n"),
        ({"Data Type": "Snapshot Data"}, "  type: snapshot\n"),
        ({"Data Type": "Attainment Data"}, "  type: attainment\n"),
        ({"Owner": "school", "Locked": ""}, "# Owned by the school in One"),
        ({"Owner": "LA", "Locked": "Yes"}, "direction: from-school\n"),
    ],
)  # fmt: skip
def test_one_values_map_to_task_fields(config: Path, values: dict[str, str], expected: str) -> None:
    result = migrate_text(config, one_row(**values))
    assert result.problems == ()
    assert expected in result.documents[0].text


@pytest.mark.parametrize(
    ("values", "column"),
    [
        ({"Owner": "Council"}, "Owner"),
        ({"Locked": "Maybe"}, "Locked"),
        ({"Data Type": "Census"}, "Data Type"),
        ({"Data Type": "Attendance Data", "Attendance Option": "Some Absences"},
         "Attendance Option"),
        ({"Group": "SEN"}, "Group"),
        ({"Month Filter": "three"}, "Month Filter"),
        ({"Month Filter": "\u00b2"}, "Month Filter"),
        ({"Days": "Mon;Funday"}, "Days"),
        ({"Days": ""}, "Days"),
        ({"Frequency": "Monthly", "Days": "", "Dates": "First"}, "Dates"),
        ({"Frequency": "Monthly", "Days": "", "Dates": "1", "Months": "Janvier"}, "Months"),
        ({"Frequency": "Monthly", "Dates": "1"}, "Days"),
        ({"Dates": "1"}, "Dates"),
        ({"Times": "", "Start": "01/09/2025"}, "Times"),
        ({"Start": "31/02/2025 06:30"}, "Start"),
        ({"Expiry": "next year"}, "Expiry"),
        ({"Frequency": "Once", "Days": "", "Start": ""}, "Start"),
        ({"Frequency": "Once", "Days": "", "Times": "05:00;06:00", "Start": "04/01/2030"},
         "Times"),
        ({"Frequency": "Once", "Days": "", "Times": "05:00", "Start": "04/01/2030 06:00"},
         "Times"),
        ({"Task Name": ""}, "Task Name"),
    ],
)  # fmt: skip
def test_bad_values_are_migrate_value(config: Path, values: dict[str, str], column: str) -> None:
    result = migrate_text(config, one_row(**values))
    assert result.documents == ()
    first = result.problems[0]
    assert (first.line, first.rule, first.column) == (2, "migrate-value", column)


def test_a_row_with_the_wrong_number_of_fields(config: Path) -> None:
    result = migrate_text(config, f"{HEADER}\nWeekly,LA,No,8814001\n")
    assert [(p.line, p.rule) for p in result.problems] == [(2, "migrate-value")]
    assert "4 fields" in result.problems[0].message


def test_row_numbers_are_file_lines_across_blank_and_quoted_lines(config: Path) -> None:
    good = one_row().split("\n")[1]
    bad = one_row(Owner="Nobody").split("\n")[1]
    quoted = good.replace('"Weekly changed data"', '"Weekly\nchanged data"', 1)
    text = f"{HEADER}\r\n{good}\r\n\r\n{quoted}\r\n{bad}\r\n"
    result = migrate_text(config, text)
    assert [(p.line, p.rule) for p in result.problems] == [(6, "migrate-value")]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "the file is empty"),
        (HEADER.replace(",Expiry", ""), "missing Expiry"),
        (HEADER + ",Notes", "unexpected 'Notes'"),
        (HEADER + ",Base", "repeated Base"),
    ],
)
def test_a_header_that_is_not_ones_stops_the_file(header: str, message: str) -> None:
    with pytest.raises(LegacyFileError, match=message):
        read_rows(header + "\n" if header else "")


def test_bad_header_exits_2(config: Path, tmp_path: Path) -> None:
    export = tmp_path / "other.csv"
    export.write_text("Name,When\nx,y\n")
    result = b2bd("--config", str(config), "migrate", str(export), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "line 1 is not the expected header" in result.stderr
    missing = b2bd("--config", str(config), "migrate", str(tmp_path / "nope.csv"), "--out", "o")
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_header_columns_may_come_in_any_order(config: Path) -> None:
    text = one_row()
    header, row = text.splitlines()
    columns = header.split(",")
    cells = row.split(",")
    order = list(reversed(range(len(columns))))
    swapped = ",".join(columns[i] for i in order) + "\n" + ",".join(cells[i] for i in order)
    assert migrate_text(config, swapped).documents == migrate_text(config, text).documents


# ---- the YAML written reads back exactly ------------------------------------------------------


@functools.cache
def example_target() -> TargetConfig:
    loaded = load_config(REPO / "config", now=NOW)
    return TargetConfig(loaded.bases, loaded.settings, task_schema=validator("task"))


@settings(deadline=None)  # the first example pays for loading the example config
@given(st.text(min_size=1, max_size=60), st.text(max_size=20))
@example(name="a\n", source="")  # a plain scalar's regex once let a trailing newline through
@example(name="&", source="\u2028")  # a YAML 1.1 line break was once written unescaped
def test_any_task_name_migrates_to_a_file_that_reads_back(name: str, source: str) -> None:
    values = dict.fromkeys(COLUMNS, "")
    values.update(
        {
            "Task Name": name,
            "Owner": "LA",
            "Base": "8814001",
            "Direction": "Export from School",
            "Data Type": "Changed Data",
            "Group": "NCY",
            "NCY": "R;1;X",
            "Frequency": "Weekly",
            "Days": "Mon",
            "Times": "06:30",
            "Expiry": "01/01/2030",
        }
    )
    result = migrate([Row(2, values)], source or "x.csv", example_target(), NOW)
    assert result.problems == ()
    (document,) = result.documents
    parsed = parse(document.text, "t.yaml").data
    assert parsed == {
        "id": document.id,
        "description": name,
        "direction": "from-school",
        "bases": {"ids": ["8814001"]},
        "data": {"type": "changed"},
        "cohort": {"group": "ncy", "ncy": ["R", 1, "X"]},
        "schedule": {"weekly": {"days": ["mon"], "times": ["06:30"]}, "expires": "2030-01-01"},
    }
    # The comment header is comment lines only, whatever the name and file name hold.
    header = document.text.split('id: "', 1)[0]
    assert all(line.startswith("# ") for line in header.splitlines())


@pytest.mark.parametrize(
    ("values", "schedule", "lost"),
    [
        ({"Start": "06/09/2027 10:00"}, '  starts: "2027-09-07"\n', "13:00"),
        ({"Expiry": "26/07/2027 10:00"}, '  expires: "2027-07-25"\n', "06:30"),
    ],
)
def test_a_start_or_expiry_between_two_run_times_leaves_that_day_out_and_warns(
    config: Path, values: dict[str, str], schedule: str, lost: str
) -> None:
    """06:30 and 13:00 on Mondays; Start or Expiry at 10:00 on a Monday. One would run one of
    that day's two runs; whole dates cannot say so, and b2bd never runs what One would not."""
    result = migrate_text(config, one_row(Times="06:30;13:00", **values))
    (document,) = result.documents
    assert schedule in document.text
    (warning,) = result.problems
    assert (warning.rule, warning.severity) == ("migrate-partial-day", "warning")
    assert f"One would still have run at {lost} that day" in warning.message
    assert f"would still have run at {lost} that day" in document.text  # in its comment too


def test_a_future_start_is_honoured_by_the_calendar(config: Path) -> None:
    """The task does not run months early: its first slot is on Start's date."""
    result = migrate_text(config, one_row(Start="07/09/2027 06:30", Days="Tue"))
    (tasks := config / "tasks").mkdir(exist_ok=True)
    (tasks / "t.yaml").write_text(result.documents[0].text)
    task = load_config(config).tasks["weekly-changed-data"]
    first = next_slot(task.schedule, dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    assert first == dt.datetime(2027, 9, 7, 5, 30, tzinfo=dt.UTC)
