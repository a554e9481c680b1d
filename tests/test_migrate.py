"""b2bd.migrate, pure: One's scheduled-task rows -> task documents that `b2bd validate`
accepts (the `b2bd migrate` command's own tests are in tests/cli/test_migrate_cli.py)."""

from __future__ import annotations

import datetime as dt
import functools
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
from tests.support.one_export import HEADER, config_without_tasks, one_row

REPO = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The example config with no tasks: b2bd.yaml and bases.yaml as shipped."""
    return config_without_tasks(tmp_path / "config")


def target(config: Path) -> TargetConfig:
    loaded = load_config(config, now=NOW)
    return TargetConfig(loaded.bases, loaded.settings, task_schema=validator("task"))


def migrate_text(config: Path, text: str) -> Any:
    return migrate(read_rows(text), "x.csv", target(config), NOW)


def test_decode_reports_the_first_bad_byte() -> None:
    with pytest.raises(LegacyFileError, match=r"line 2, column 3 \(byte offset 6, byte 0xe9\)"):
        decode(b"a,b\nxy\xe9z\n")
    assert decode(b"\xef\xbb\xbfTask") == "Task"


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
