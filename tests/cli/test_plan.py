"""`b2bd plan` as a user runs it (a real subprocess against a config dir written here), plus its
formatting of clock-change slots."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from b2bd.cli.plan import clock_change_note, format_text
from b2bd.plan import Plan, Planned

REPO = Path(__file__).resolve().parents[2]
LONDON = ZoneInfo("Europe/London")


def task(task_id: str, schedule: str, extra: str = "") -> str:
    return (
        f"id: {task_id}\n"
        "direction: from-school\n"
        'bases: {ids: ["8814001"]}\n'
        "data: {type: changed}\n"
        f"schedule:\n{schedule}{extra}"
    )


TASKS = {
    # Sundays 01:30 London: skipped on 29 March 2026, doubled on 25 October 2026.
    "sunday-night": task("sunday-night", '  weekly: {days: [sun], times: ["01:30"]}\n'),
    "monday-morning": task("monday-morning", '  weekly: {days: [mon], times: ["06:30"]}\n'),
    "new-york": task(
        "new-york",
        '  weekly: {days: [sun], times: ["02:30"]}\n  timezone: America/New_York\n',
    ),
    "suspended": task(
        "suspended", '  weekly: {days: [mon], times: ["06:30"]}\n', "enabled: false\n"
    ),
    "finished": task("finished", '  once: "2020-01-06T06:30"\n'),
}


def row(task_id: str, slot: str, local: str) -> dict[str, str]:
    return {"task": task_id, "slot": slot, "local": local}


def columns(line: str) -> list[str]:
    return re.split(r"  +", line.strip())


def b2bd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(config), "plan", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def plan_json(config: Path, *args: str) -> list[dict[str, str]]:
    result = b2bd(config, "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    (root / "tasks").mkdir(parents=True)
    for name in ("b2bd.yaml", "bases.yaml"):
        (root / name).write_text((REPO / "config" / name).read_text())
    for name, text in TASKS.items():
        (root / "tasks" / f"{name}.yaml").write_text(text)
    return root


def test_json_lists_slots_in_order_with_utc_and_local_time(config: Path) -> None:
    got = plan_json(config, "--from", "2026-03-28T00:00Z", "--count", "4")
    assert got == [
        # London springs forward: 01:30 does not exist and runs as the gap ends (issue 3's example).
        row("sunday-night", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00+01:00"),
        row("new-york", "2026-03-29T06:30:00Z", "2026-03-29T02:30:00-04:00"),
        row("monday-morning", "2026-03-30T05:30:00Z", "2026-03-30T06:30:00+01:00"),
        row("sunday-night", "2026-04-05T00:30:00Z", "2026-04-05T01:30:00+01:00"),
    ]


def test_fall_back_runs_once_and_other_zones_keep_their_offset(config: Path) -> None:
    # --until without --count: every slot up to it. Naive dates are London midnights.
    got = plan_json(config, "--from", "2026-10-24", "--until", "2026-11-02")
    assert got == [
        row("sunday-night", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00+01:00"),
        row("new-york", "2026-10-25T06:30:00Z", "2026-10-25T02:30:00-04:00"),
        row("monday-morning", "2026-10-26T06:30:00Z", "2026-10-26T06:30:00+00:00"),
        row("sunday-night", "2026-11-01T01:30:00Z", "2026-11-01T01:30:00+00:00"),
        row("new-york", "2026-11-01T07:30:00Z", "2026-11-01T02:30:00-05:00"),
    ]


def test_naive_from_is_read_in_the_configured_timezone_and_is_inclusive(config: Path) -> None:
    args = ("--task", "monday-morning", "--count", "1")
    at = plan_json(config, "--from", "2026-06-01T06:30", *args)
    assert at == [row("monday-morning", "2026-06-01T05:30:00Z", "2026-06-01T06:30:00+01:00")]
    later = plan_json(config, "--from", "2026-06-01T06:31", *args)
    assert later[0]["slot"] == "2026-06-08T05:30:00Z"
    offset = plan_json(config, "--from", "2026-06-01T05:30:00+00:00", *args)
    assert offset == at


def test_default_count_is_ten_and_default_from_is_now(config: Path) -> None:
    before = dt.datetime.now(dt.UTC)
    got = plan_json(config)
    assert len(got) == 10
    slots = [dt.datetime.fromisoformat(r["slot"]) for r in got]
    assert slots == sorted(slots)
    assert slots[0] >= before - dt.timedelta(seconds=1)
    assert {r["task"] for r in got} <= {"sunday-night", "monday-morning", "new-york"}


def test_text_shows_local_and_utc_side_by_side_and_what_was_left_out(config: Path) -> None:
    result = b2bd(config, "--from", "2026-03-28T00:00Z", "--count", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "3 slots from Sat 2026-03-28 00:00 GMT (Europe/London):"
    assert columns(lines[1]) == ["LOCAL", "UTC", "TASK"]
    assert columns(lines[2]) == [
        "Sun 2026-03-29 02:00 BST",
        "2026-03-29 01:00 UTC",
        "sunday-night",
        "(clocks go forward here: a time in the skipped hour runs at this instant)",
    ]
    assert columns(lines[3]) == [
        "Sun 2026-03-29 02:30 EDT (America/New_York)",
        "2026-03-29 06:30 UTC",
        "new-york",
    ]
    assert columns(lines[4]) == [
        "Mon 2026-03-30 06:30 BST",
        "2026-03-30 05:30 UTC",
        "monday-morning",
    ]
    assert len({line.index(columns(line)[1]) for line in lines[1:5]}) == 1  # columns line up
    assert lines[-1] == "Left out 2 tasks: 1 disabled, 1 expired (no slot left)."
    assert result.stderr == ""


def test_text_marks_the_first_of_two_repeated_times(config: Path) -> None:
    result = b2bd(config, "--from", "2026-10-24", "--count", "1")
    assert columns(result.stdout.splitlines()[2]) == [
        "Sun 2026-10-25 01:30 BST",
        "2026-10-25 00:30 UTC",
        "sunday-night",
        "(clocks go back later: first of two 01:30s)",
    ]


def test_task_filter_and_no_slots(config: Path) -> None:
    got = plan_json(config, "--task", "new-york", "--from", "2026-03-01", "--count", "2")
    assert [r["task"] for r in got] == ["new-york", "new-york"]
    # New York springs forward on 8 March 2026: 02:30 does not exist, it runs at 03:00 EDT.
    assert got[1] == row("new-york", "2026-03-08T07:00:00Z", "2026-03-08T03:00:00-04:00")
    result = b2bd(config, "--task", "finished")
    assert result.returncode == 0
    assert result.stdout.splitlines()[1:] == [
        "No slots.",
        "Left out 1 task: 1 expired (no slot left).",
    ]


def test_an_invalid_task_file_is_reported_and_the_valid_tasks_still_planned(config: Path) -> None:
    (config / "tasks" / "broken.yaml").write_text(task("broken", "  weekly: {days: [funday]}\n"))
    result = b2bd(config, "--format", "json", "--from", "2026-03-28T00:00Z", "--count", "1")
    # Printed all the same, but exit 1 (README: invalid config), so a script or CI sees it.
    assert result.returncode == 1
    assert json.loads(result.stdout)[0]["task"] == "sunday-night"
    (line,) = result.stderr.splitlines()
    assert re.fullmatch(
        rf"b2bd: {re.escape(str(config))} has [0-9]+ error\(s\) \(see `b2bd validate`\); "
        r"planned the 5 valid task\(s\) only \(exit 1\)",
        line,
    ), line
    # Warnings alone are no reason to fail: without the broken file, exit 0 again.
    (config / "tasks" / "broken.yaml").unlink()
    assert b2bd(config, "--count", "1").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "next tuesday"), "--from 'next tuesday' is not an ISO 8601 date-time"),
        (("--until", "2026-13-01"), "--until '2026-13-01' is not an ISO 8601 date-time"),
        (("--from", "2026-06-02", "--until", "2026-06-01"), "--until is before --from"),
        (("--task", "nope"), "no valid task 'nope'"),
    ],
)
def test_usage_errors_are_messages_with_exit_2(config: Path, args, message) -> None:
    result = b2bd(config, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_count_must_be_positive_and_config_dir_must_exist(config: Path, tmp_path: Path) -> None:
    assert b2bd(config, "--count", "0").returncode == 2
    missing = b2bd(tmp_path / "nowhere")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr and "nowhere" in missing.stderr


def test_the_example_config_plans() -> None:
    got = plan_json(REPO / "config", "--from", "2026-09-01", "--count", "25")
    assert len(got) == 25
    assert [r["slot"] for r in got] == sorted(r["slot"] for r in got)


# --- formatting, without a subprocess --------------------------------------------------------


def test_clock_change_notes() -> None:
    z = dt.UTC
    assert "forward" in clock_change_note(dt.datetime(2026, 3, 29, 1, 0, tzinfo=z), LONDON)
    assert clock_change_note(dt.datetime(2026, 3, 29, 1, 1, tzinfo=z), LONDON) == ""
    assert "first of two 01:59s" in clock_change_note(
        dt.datetime(2026, 10, 25, 0, 59, tzinfo=z), LONDON
    )
    assert (
        clock_change_note(dt.datetime(2026, 10, 25, 1, 0, tzinfo=z), LONDON) == ""
    )  # 01:00 GMT: the second
    assert clock_change_note(dt.datetime(2026, 7, 1, 5, 30, tzinfo=z), LONDON) == ""


def test_format_text_aligns_columns() -> None:
    start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    slots = (
        Planned("a", dt.datetime(2026, 6, 1, 5, 30, tzinfo=dt.UTC), LONDON),
        Planned(
            "longer-task-id",
            dt.datetime(2026, 6, 1, 13, 0, tzinfo=dt.UTC),
            ZoneInfo("Asia/Kolkata"),
        ),
    )
    text = format_text(Plan(start, None, slots, disabled=3, expired=0), LONDON)
    lines = text.splitlines()
    assert lines[0] == "2 slots from Mon 2026-06-01 01:00 BST (Europe/London):"
    assert lines[1].index("UTC") == lines[2].index("2026-06-01 05:30 UTC")
    assert lines[1].index("UTC") == lines[3].index("2026-06-01 13:00 UTC")
    assert "Mon 2026-06-01 18:30 IST (Asia/Kolkata)" in lines[3]
    assert lines[-1] == "Left out 3 tasks: 3 disabled."


def test_a_task_with_starts_is_planned_from_that_local_date(config: Path) -> None:
    (config / "tasks" / "later.yaml").write_text(
        task("later", '  weekly: {days: [mon], times: ["06:30"]}\n  starts: 2026-09-02\n')
    )
    got = plan_json(config, "--from", "2026-06-01", "--task", "later", "--count", "2")
    assert [r["slot"] for r in got] == ["2026-09-07T05:30:00Z", "2026-09-14T05:30:00Z"]
