"""One bad and one good example for every rule id: rule, file, line and column."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from tests.support.config_dir import BASES, SETTINGS, TASK, ConfigDir


@dataclass(frozen=True)
class Case:
    rule: str
    file: str
    bad: str | bytes
    line: int
    column: int
    good: str
    severity: str = "error"


def task(*lines: str, head: str = "id: t\ndirection: from-school\n") -> str:
    return head + "\n".join(lines) + "\n"


WEEKLY = 'schedule:\n  weekly: {days: [mon], times: ["06:30"]}'
SNAPSHOT = "data: {type: snapshot}"
ONE_BASE = 'bases: {ids: ["8814001"]}'

CASES = [
    Case("yaml-syntax", "tasks/t.yaml", "id: t\nbases: [1, 2\ndata: x\n", 3, 5, TASK),
    Case("yaml-syntax", "tasks/t.yaml", "- just\n- a list\n", 1, 1, TASK),
    Case(
        "yaml-duplicate-key",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, "data: {type: changed}", WEEKLY),
        5,
        1,
        TASK,
    ),
    Case(
        "yaml-ambiguous",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, WEEKLY, "enabled: on"),
        7,
        10,
        task(ONE_BASE, SNAPSHOT, WEEKLY, "enabled: true"),
    ),
    Case(
        "yaml-ambiguous",
        "bases.yaml",
        BASES.replace(
            "b2b_phase: 2\n    services_manager: true\n    tags: [sec]",
            "b2b_phase: 2\n    services_manager: yes\n    tags: [sec]",
            1,
        ),
        7,
        23,
        BASES,
    ),
    Case("file-unreadable", "tasks/t.yaml", b"id: t\ndescription: caf\xe9\n", 2, 17, TASK),
    Case(
        "yaml-too-complex",
        "tasks/t.yaml",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
        1,
        1,
        TASK,
    ),
    Case("schema", "tasks/t.yaml", task(ONE_BASE, SNAPSHOT, WEEKLY, "colour: blue"), 7, 1, TASK),
    Case(
        "schema",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, WEEKLY, "policy: {retries: many}"),
        7,
        19,
        task(ONE_BASE, SNAPSHOT, WEEKLY, "policy: {retries: 5}"),
    ),
    Case("schema", "tasks/t.yaml", task(ONE_BASE, WEEKLY), 1, 1, TASK),
    Case(
        "id-format",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, WEEKLY, head="id: Weekly_Task\ndirection: from-school\n"),
        1,
        5,
        task(ONE_BASE, SNAPSHOT, WEEKLY, head="id: weekly-task\ndirection: from-school\n"),
    ),
    Case(
        "base-unknown",
        "tasks/t.yaml",
        task('bases: {ids: ["8814001", "8819999"]}', SNAPSHOT, WEEKLY),
        3,
        26,
        task('bases: {ids: ["8814001", "8812002"]}', SNAPSHOT, WEEKLY),
    ),
    Case(
        "base-selector-empty",
        "tasks/t.yaml",
        task("bases: {tags: [nowhere]}", SNAPSHOT, WEEKLY),
        3,
        8,
        task("bases: {tags: [sec]}", SNAPSHOT, WEEKLY),
    ),
    Case(
        "base-prerequisites",
        "tasks/t.yaml",
        task('bases: {ids: ["8814004"]}', SNAPSHOT, WEEKLY),
        3,
        15,
        task('bases: {ids: ["8814001"]}', SNAPSHOT, WEEKLY),
    ),
    Case(
        "base-prerequisites",
        "tasks/t.yaml",
        task("bases: {tags: [sec]}", SNAPSHOT, WEEKLY),
        3,
        16,
        task("bases: {tags: [pri]}", "data: {type: changed}", WEEKLY),
        severity="warning",
    ),
    Case(
        "base-lockdown",
        "tasks/t.yaml",
        task('bases: {ids: ["8812002", "8815005"]}', SNAPSHOT, WEEKLY),
        3,
        26,
        task('bases: {ids: ["8812002"]}', SNAPSHOT, WEEKLY),
    ),
    Case(
        "to-school-changed-only",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, WEEKLY, head="id: t\ndirection: to-school\n"),
        4,
        14,
        task(ONE_BASE, "data: {type: changed}", WEEKLY, head="id: t\ndirection: to-school\n"),
    ),
    Case(
        "to-school-ncy-only",
        "tasks/t.yaml",
        task(
            ONE_BASE,
            "data: {type: changed}",
            "cohort: {group: lac}",
            WEEKLY,
            head="id: t\ndirection: to-school\n",
        ),
        5,
        17,
        task(
            ONE_BASE,
            "data: {type: changed}",
            "cohort: {group: ncy, ncy: [6]}",
            WEEKLY,
            head="id: t\ndirection: to-school\n",
        ),
    ),
    Case(
        "attendance-kind-required",
        "tasks/t.yaml",
        task(ONE_BASE, "data:\n  type: attendance\n  months: 2", WEEKLY),
        5,
        3,
        task(
            ONE_BASE,
            "data:\n  type: attendance\n  attendance: all-attendances-current-year\n  months: 2",
            WEEKLY,
        ),
    ),
    Case(
        "attendance-kind-unexpected",
        "tasks/t.yaml",
        task(ONE_BASE, "data: {type: snapshot, attendance: all-absences-current-year}", WEEKLY),
        4,
        36,
        task(ONE_BASE, "data: {type: attendance, attendance: all-absences-current-year}", WEEKLY),
    ),
    Case(
        "months-attendance-only",
        "tasks/t.yaml",
        task(ONE_BASE, "data: {type: changed, months: 3}", WEEKLY),
        4,
        31,
        task(ONE_BASE, "data: {type: changed}", WEEKLY),
    ),
    Case(
        "sims-primary-only",
        "tasks/t.yaml",
        task(ONE_BASE, "data: {type: attendance, attendance: attendance-changed}", WEEKLY),
        3,
        15,
        task(
            'bases: {ids: ["8812002"]}',
            "data: {type: attendance, attendance: attendance-changed}",
            WEEKLY,
        ),
    ),
    Case(
        "sims-primary-only",
        "tasks/t.yaml",
        task(
            "bases: {all: true}", "data: {type: attendance, attendance: attendance-changed}", WEEKLY
        ),
        3,
        14,
        task(
            "bases: {tags: [pri]}",
            "data: {type: attendance, attendance: attendance-changed}",
            WEEKLY,
        ),
        severity="warning",
    ),
    Case(
        "ncy-code",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, "cohort: {group: ncy, ncy: [7, 8, 15]}", WEEKLY),
        5,
        34,
        task(ONE_BASE, SNAPSHOT, 'cohort: {group: ncy, ncy: [7, "8", R, X, N1]}', WEEKLY),
    ),
    Case(
        "ncy-unexpected",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, "cohort: {group: lac, ncy: [7]}", WEEKLY),
        5,
        27,
        task(ONE_BASE, SNAPSHOT, "cohort: {group: lac}", WEEKLY),
    ),
    Case(
        "time-format",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, 'schedule:\n  weekly: {days: [mon], times: ["06:30", "7:30"]}'),
        6,
        42,
        task(ONE_BASE, SNAPSHOT, "schedule:\n  weekly: {days: [mon], times: [06:30, 17:30]}"),
    ),
    Case(
        "timezone-unknown",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, WEEKLY, "  timezone: Europe/Londres"),
        7,
        13,
        task(ONE_BASE, SNAPSHOT, WEEKLY, "  timezone: America/New_York"),
    ),
    Case(
        "schedule-expired",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, WEEKLY, "  expires: 2026-07-31"),
        7,
        12,
        task(ONE_BASE, SNAPSHOT, WEEKLY, "  expires: 2027-07-31"),
        severity="warning",
    ),
    Case(
        "schedule-expired",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, 'schedule:\n  once: "2026-11-01T06:30"'),
        6,
        9,
        task(ONE_BASE, SNAPSHOT, 'schedule:\n  once: "2026-12-01T06:30"'),
        severity="warning",
    ),
    Case(
        "schedule-expired",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, WEEKLY, "  starts: 2027-08-01", "  expires: 2027-07-31"),
        7,
        11,
        task(ONE_BASE, SNAPSHOT, WEEKLY, "  starts: 2027-07-01", "  expires: 2027-07-31"),
        severity="warning",
    ),
    Case(
        "schema",
        "tasks/t.yaml",
        task(ONE_BASE, SNAPSHOT, WEEKLY, "  starts: 2027-02-30"),
        7,
        11,
        task(ONE_BASE, SNAPSHOT, WEEKLY, "  starts: 2027-02-28"),
    ),
    Case(
        "months-heavy",
        "tasks/t.yaml",
        task(
            ONE_BASE,
            "data: {type: attendance, attendance: all-attendances-current-year, months: 9}",
            'schedule:\n  weekly: {days: [mon, thu], times: ["06:30"]}',
        ),
        4,
        76,
        task(
            ONE_BASE,
            "data: {type: attendance, attendance: all-attendances-current-year, months: 9}",
            WEEKLY,
        ),
        severity="warning",
    ),
    Case(
        "la-prerequisites",
        "b2bd.yaml",
        SETTINGS.replace('one_version: "3.83"', 'one_version: "3.57"'),
        2,
        14,
        SETTINGS.replace('one_version: "3.83"', 'one_version: "3.58"'),
    ),
    Case(
        "la-prerequisites",
        "b2bd.yaml",
        SETTINGS.replace('code: "881"', 'code: "88"'),
        1,
        12,
        SETTINGS,
    ),
    Case(
        "la-prerequisites",
        "b2bd.yaml",
        SETTINGS.replace("la_store: {type: directory", "la_store: {type: s3"),
        4,
        18,
        SETTINGS,
    ),
    Case(
        "bases-file",
        "bases.yaml",
        BASES.replace('"8812002"', '"8814001"'),
        10,
        9,
        BASES,
    ),
    Case("bases-file", "bases.yaml", BASES.replace('"8812002"', '"881200"'), 10, 9, BASES),
    Case(
        "bases-file",
        "bases.yaml",
        BASES.replace("{type: directory, path: schools/8812002}", "{type: ftp, path: x}"),
        17,
        22,
        BASES,
    ),
    Case(
        "bases-file",
        "bases.yaml",
        BASES.replace('"8812002"', '"8832002"'),
        10,
        9,
        BASES.replace('"8812002"', '"8832002"').replace(
            "name: Primary B", "name: Primary B\n    cross_border: true"
        ),
    ),
]


def _ids() -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for case in CASES:
        seen[case.rule] = seen.get(case.rule, 0) + 1
        out.append(f"{case.rule}-{seen[case.rule]}")
    return out


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_bad_example_reports_rule_at_position(cfg: ConfigDir, case: Case) -> None:
    cfg.write(case.file, case.bad)
    config = cfg.load()
    found = [(p.rule, p.file, p.line, p.column, p.severity) for p in config.problems]
    assert (case.rule, case.file, case.line, case.column, case.severity) in found, found


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_good_example_has_no_such_problem(cfg: ConfigDir, case: Case) -> None:
    cfg.write(case.file, case.good)
    config = cfg.load()
    assert [p for p in config.problems if p.rule == case.rule] == []
    assert config.valid


def test_every_rule_id_of_the_design_table_has_a_case() -> None:
    table = {
        "yaml-syntax", "yaml-duplicate-key", "yaml-ambiguous", "file-unreadable",
        "yaml-too-complex", "schema", "id-format", "id-duplicate", "base-unknown",
        "base-selector-empty", "base-prerequisites", "base-lockdown", "to-school-changed-only",
        "to-school-ncy-only", "attendance-kind-required", "attendance-kind-unexpected",
        "months-attendance-only", "sims-primary-only", "ncy-code", "ncy-unexpected",
        "time-format", "timezone-unknown", "schedule-expired", "months-heavy",
        "la-prerequisites", "bases-file",
    }  # fmt: skip
    covered = {c.rule for c in CASES} | {"id-duplicate"}  # id-duplicate: its own tests below
    assert table == covered


def test_duplicate_ids_are_reported_in_both_files_and_neither_loads(cfg: ConfigDir) -> None:
    cfg.write("tasks/u.yaml", TASK)
    config = cfg.load()
    dupes = sorted((p.file, p.line, p.column) for p in config.problems if p.rule == "id-duplicate")
    assert dupes == [("tasks/t.yaml", 1, 5), ("tasks/u.yaml", 1, 5)]
    assert "t" not in config.tasks


def test_distinct_ids_load_both(cfg: ConfigDir) -> None:
    cfg.write("tasks/u.yaml", TASK.replace("id: t", "id: u"))
    config = cfg.load()
    assert sorted(config.tasks) == ["t", "u"] and config.valid


def test_duplicate_key_message_names_both_lines(cfg: ConfigDir) -> None:
    cfg.write("tasks/t.yaml", TASK + "direction: to-school\n")
    (problem,) = cfg.load().problems
    assert problem.rule == "yaml-duplicate-key"
    assert (problem.line, problem.column) == (8, 1)
    assert "line 2" in problem.message


def test_yaml12_typing_keeps_times_strings_and_decimal_ints(cfg: ConfigDir) -> None:
    cfg.write(
        "tasks/t.yaml",
        task(
            ONE_BASE,
            SNAPSHOT,
            "schedule:\n  weekly: {days: [mon], times: [12:30, 07:45]}",
            "policy: {retries: 010}",
        ),
    )
    config = cfg.load()
    assert config.valid, config.problems
    t = config.tasks["t"]
    assert [x.isoformat("minutes") for x in t.schedule.rule.times] == ["07:45", "12:30"]
    assert t.policy.retries == 10


def test_every_problem_in_every_file_in_one_pass_sorted(cfg: ConfigDir) -> None:
    cfg.write("tasks/a.yaml", task(ONE_BASE, "data: {type: changed, months: 3}", WEEKLY))
    cfg.write(
        "tasks/b.yaml",
        task('bases: {ids: ["8819999"]}', SNAPSHOT, WEEKLY, head="id: b\ndirection: from-school\n"),
    )
    cfg.write("b2bd.yaml", SETTINGS + "colour: blue\n")
    problems = cfg.load().problems
    files = [p.file for p in problems]
    assert files == sorted(files)
    assert {"b2bd.yaml", "tasks/a.yaml", "tasks/b.yaml"} <= set(files)


def test_unreadable_files(cfg: ConfigDir, tmp_path) -> None:
    cfg.write("tasks/big.yaml", "# " + "x" * (1024 * 1024) + "\n")
    outside = tmp_path / "outside.yaml"
    outside.write_text(TASK)
    (cfg.root / "tasks" / "link.yaml").symlink_to(outside)
    (cfg.root / "tasks" / "dir.yaml").mkdir()
    rules = {p.file: p.rule for p in cfg.load().problems}
    assert rules == {
        "tasks/big.yaml": "file-unreadable",
        "tasks/link.yaml": "file-unreadable",
        "tasks/dir.yaml": "file-unreadable",
    }


def test_symlink_inside_config_dir_is_followed(cfg: ConfigDir) -> None:
    data = cfg.root / "..2026_11_28" / "t.yaml"
    cfg.write("..2026_11_28/t.yaml", TASK)
    (cfg.root / "tasks" / "t.yaml").unlink()
    (cfg.root / "tasks" / "t.yaml").symlink_to(data)
    assert cfg.load().tasks["t"].file == "tasks/t.yaml"


def test_hidden_and_editor_temp_files_are_ignored(cfg: ConfigDir) -> None:
    for name in (".t.yaml.swp", ".#t.yaml", "t.yaml~", ".goutputstream-XYZ", "notes.txt"):
        cfg.write(f"tasks/{name}", "not: [valid\n")
    (cfg.root / "tasks" / "..data").mkdir()
    config = cfg.load()
    assert config.valid and sorted(config.digests) == ["b2bd.yaml", "bases.yaml", "tasks/t.yaml"]


def test_targets_exclude_tag_selected_bases_that_cannot_take_part(cfg: ConfigDir) -> None:
    cfg.write("tasks/t.yaml", task("bases: {all: true}", SNAPSHOT, WEEKLY))
    assert cfg.load().tasks["t"].targets == ("8812002", "8814001")


def test_attainment_needs_newer_one_and_sims(cfg: ConfigDir) -> None:
    cfg.write("b2bd.yaml", SETTINGS.replace('"3.83"', '"3.58"'))
    cfg.write("tasks/t.yaml", task(ONE_BASE, "data: {type: attainment}", WEEKLY))
    (problem,) = cfg.load().problems
    assert (problem.rule, problem.file, problem.line, problem.column) == (
        "base-prerequisites", "tasks/t.yaml", 4, 14,
    )  # fmt: skip


def test_last_good_task_stays_in_force_after_a_bad_edit(cfg: ConfigDir) -> None:
    good = cfg.load()
    cfg.write("tasks/t.yaml", TASK.replace("snapshot", "snapshots"))
    from b2bd.config.load import load_config

    reloaded = load_config(cfg.root, now=dt.datetime(2026, 11, 28, tzinfo=dt.UTC), last_good=good)
    assert not reloaded.valid
    assert reloaded.tasks["t"] == good.tasks["t"]


def test_a_base_with_a_registry_problem_is_never_targeted(cfg: ConfigDir) -> None:
    # 8832002 belongs to another LA and is not marked cross_border: a bases-file error.
    cfg.write("bases.yaml", BASES.replace('"8812002"', '"8832002"'))
    cfg.write("tasks/t.yaml", task("bases: {all: true}", SNAPSHOT, WEEKLY))
    cfg.write(
        "tasks/u.yaml",
        task('bases: {ids: ["8832002"]}', SNAPSHOT, WEEKLY, head="id: u\ndirection: from-school\n"),
    )
    config = cfg.load()
    assert config.tasks["t"].targets == ("8814001",)
    found = {(p.file, p.rule, p.severity) for p in config.problems}
    assert ("tasks/t.yaml", "bases-file", "warning") in found
    assert ("tasks/u.yaml", "bases-file", "error") in found
    assert ("bases.yaml", "bases-file", "error") in found
    assert "u" not in config.tasks
