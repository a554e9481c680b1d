"""`b2bd diff` as a reviewer runs it: a real subprocess on two config dirs (or a git revision
and the working tree) written here, with exact expected output.

The bases (tests/support/config_dir.py): 8814001 secondary (tag sec), 8812002 SIMS Primary
(pri), 8814004 secondary on SIMS 7.160 (fails a prerequisite: excluded when selected by tag),
8815005 SIMS Primary locked down (excluded when selected by tag).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import b2bd as run_b2bd
from tests.support.config_dir import BASES, ConfigDir

REPO = Path(__file__).resolve().parents[2]
FROM = "2026-11-28T12:00:00Z"  # a Saturday; next Monday 06:30 GMT is 2026-11-30 06:30 UTC


def task(task_id: str, bases: str, schedule: str = '{days: [mon], times: ["06:30"]}') -> str:
    return (
        f"id: {task_id}\n"
        "direction: from-school\n"
        f"bases: {bases}\n"
        "data: {type: snapshot}\n"
        "cohort: {group: ncy}\n"
        "schedule:\n"
        f"  weekly: {schedule}\n"
    )


def b2bd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_b2bd(*args, cwd=cwd or REPO, timeout=120)


def diff(old: Path, new: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return b2bd("diff", str(old), str(new), "--from", FROM, *args)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[ConfigDir, ConfigDir]:
    """Two identical config dirs, each with the support's one task ``t`` (by id: 8814001)."""
    return ConfigDir(tmp_path / "old"), ConfigDir(tmp_path / "new")


def write_both(pair: tuple[ConfigDir, ConfigDir], name: str, text: str) -> None:
    for side in pair:
        side.write(name, text)


def md(path: Path) -> str:
    """A temporary path as the markdown heading escapes it (pytest's names hold underscores)."""
    return str(path).replace("_", "\\_")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- no change --------------------------------------------------------------------------------


def test_identical_dirs_exit_0_in_every_format(pair: tuple[ConfigDir, ConfigDir]) -> None:
    old, new = pair
    text = diff(old.root, new.root)
    assert (text.returncode, text.stderr) == (0, "")
    assert text.stdout == f"b2bd diff {old.root} -> {new.root}\nNo changes.\n"
    as_json = diff(old.root, new.root, "--format", "json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == {
        "tasks": {"added": [], "removed": [], "changed": []},
        "bases": {"added": [], "removed": [], "changed": []},
        "problems": {"introduced": [], "fixed": []},
        "settings": {"changed": []},
    }
    markdown = diff(old.root, new.root, "--format", "markdown")
    assert markdown.returncode == 0
    assert markdown.stdout == f"### b2bd diff: {md(old.root)} → {md(new.root)}\n\nNo changes.\n"


def test_comments_and_layout_only_is_no_change(pair: tuple[ConfigDir, ConfigDir]) -> None:
    old, new = pair
    new.write("tasks/t.yaml", "# reviewed 2026-11\n" + (new.root / "tasks/t.yaml").read_text())
    result = diff(old.root, new.root)
    assert result.returncode == 0
    assert result.stdout.splitlines()[1] == (
        "No changes in effect (1 file differs in comments or layout only)."
    )


# --- tasks ------------------------------------------------------------------------------------


def test_selector_widened_from_tag_to_all_lists_the_bases_gained(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    old, new = pair
    old.write("tasks/w.yaml", task("weekly-absence", "{tags: [sec]}"))
    new.write("tasks/w.yaml", task("weekly-absence", "{all: true}"))
    result = diff(old.root, new.root)
    assert result.returncode == 1, result.stderr
    assert result.stdout == (
        f"b2bd diff {old.root} -> {new.root}\n"
        "tasks: 0 added, 0 removed, 1 changed; bases: 0 added, 0 removed, 0 changed; "
        "problems: 1 introduced, 0 fixed\n"
        "task changed: weekly-absence\n"
        "  fields: bases.tags, bases.all\n"
        "  bases gained (1): 8812002\n"
        "problem introduced: tasks/w.yaml:3:14: warning: base 8815005 has locked down its "
        "tasks: the LA may not target it: excluded from this task [base-lockdown]\n"
    )
    changed = json.loads(diff(old.root, new.root, "--format", "json").stdout)["tasks"]["changed"]
    assert changed == [
        {
            "id": "weekly-absence",
            "fields": ["bases.tags", "bases.all"],
            "bases_added": ["8812002"],
            "bases_removed": [],
            "next_before": "2026-11-30T06:30:00Z",
            "next_after": "2026-11-30T06:30:00Z",
        }
    ]


def test_tasks_added_and_removed_with_their_bases_and_next_slot(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    old, new = pair
    old.write("tasks/gone.yaml", task("gone", '{ids: ["8814001"]}'))
    new.write("tasks/fresh.yaml", task("fresh", "{tags: [pri]}", '{days: [tue], times: ["07:00"]}'))
    result = diff(old.root, new.root)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:] == [
        "tasks: 1 added, 1 removed, 0 changed; bases: 0 added, 0 removed, 0 changed; "
        "problems: 1 introduced, 0 fixed",
        "task added: fresh (tasks/fresh.yaml)",
        "  bases (1): 8812002",
        "  next slot: Tue 2026-12-01 07:00 GMT (2026-12-01 07:00 UTC)",
        "task removed: gone (tasks/gone.yaml)",
        "  bases (1): 8814001",
        "  next slot: Mon 2026-11-30 06:30 GMT (2026-11-30 06:30 UTC)",
        "problem introduced: tasks/fresh.yaml:3:16: warning: base 8815005 has locked down its "
        "tasks: the LA may not target it: excluded from this task [base-lockdown]",
    ]
    tasks = json.loads(diff(old.root, new.root, "--format", "json").stdout)["tasks"]
    assert tasks["added"] == [{"id": "fresh"}]
    assert tasks["removed"] == [{"id": "gone"}]


def test_suspending_a_task_moves_its_next_slot_to_none(pair: tuple[ConfigDir, ConfigDir]) -> None:
    old, new = pair
    new.write("tasks/t.yaml", (new.root / "tasks/t.yaml").read_text() + "enabled: false\n")
    result = diff(old.root, new.root, "--format", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["tasks"]["changed"] == [
        {
            "id": "t",
            "fields": ["enabled"],
            "bases_added": [],
            "bases_removed": [],
            "next_before": "2026-11-30T06:30:00Z",
            "next_after": None,
        }
    ]


# --- bases ------------------------------------------------------------------------------------


def test_a_base_locked_down_is_lost_by_the_tasks_reaching_it_by_tag(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    old, new = pair
    write_both(pair, "tasks/w.yaml", task("weekly-absence", "{tags: [sec, pri]}"))
    for side in pair:
        (side.root / "tasks/t.yaml").unlink()  # by id, a lockdown is an error: see below
    locked = BASES.replace("    tags: [sec]\n", "    tags: [sec]\n    lockdown: true\n", 1)
    new.write("bases.yaml", locked)
    result = diff(old.root, new.root)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:] == [
        "tasks: 0 added, 0 removed, 1 changed; bases: 0 added, 0 removed, 1 changed; "
        "problems: 1 introduced, 0 fixed",
        "task changed: weekly-absence",
        "  bases lost (1): 8814001",
        "base changed: 8814001: lockdown",
        "problem introduced: tasks/w.yaml:3:16: warning: base 8814001 has locked down its "
        "tasks: the LA may not target it: excluded from this task [base-lockdown]",
    ]
    shown = json.loads(diff(old.root, new.root, "--format", "json").stdout)
    assert shown["tasks"]["changed"][0]["bases_removed"] == ["8814001"]
    assert shown["tasks"]["changed"][0]["fields"] == []
    assert shown["bases"] == {
        "added": [],
        "removed": [],
        "changed": [{"id": "8814001", "fields": ["lockdown"]}],
    }


def test_bases_added_removed_and_an_endpoint_moved(pair: tuple[ConfigDir, ConfigDir]) -> None:
    old, new = pair
    extra = (
        '  - id: "8816006"\n    name: New\n    mis: sims\n    sims_version: "7.214"\n'
        "    b2b_phase: 2\n    services_manager: true\n"
        "    endpoint: {type: directory, path: schools/8816006}\n"
    )
    without_locked = BASES[: BASES.index('  - id: "8815005"')]
    new.write(
        "bases.yaml",
        without_locked.replace("schools/8812002", "schools/moved") + extra,
    )
    shown = json.loads(diff(old.root, new.root, "--format", "json").stdout)
    assert shown["bases"] == {
        "added": [{"id": "8816006"}],
        "removed": [{"id": "8815005"}],
        "changed": [{"id": "8812002", "fields": ["endpoint.path"]}],
    }


def test_the_same_relative_paths_in_two_dirs_are_no_change(tmp_path: Path) -> None:
    # state_dir, la_store and every endpoint are relative: resolved against two different dirs
    # they are different absolute paths, and still the same config.
    old, new = ConfigDir(tmp_path / "a" / "config"), ConfigDir(tmp_path / "b" / "deeper" / "c")
    result = diff(old.root, new.root)
    assert (result.returncode, result.stdout.splitlines()[1:]) == (0, ["No changes."])


# --- schedules across a clock change --------------------------------------------------------------


def test_a_time_moved_across_the_autumn_clock_change(pair: tuple[ConfigDir, ConfigDir]) -> None:
    old, new = pair
    old.write("tasks/t.yaml", task("t", '{ids: ["8814001"]}', '{days: [sat], times: ["06:30"]}'))
    new.write("tasks/t.yaml", task("t", '{ids: ["8814001"]}', '{days: [mon], times: ["06:30"]}'))
    # From Tuesday 20 October 2026 (BST); clocks go back on Sunday 25 October.
    result = b2bd("diff", str(old.root), str(new.root), "--from", "2026-10-20T12:00")
    assert result.returncode == 1
    assert result.stdout.splitlines()[2:] == [
        "task changed: t",
        "  fields: schedule.weekly.days",
        "  next slot: Sat 2026-10-24 06:30 BST (2026-10-24 05:30 UTC) -> "
        "Mon 2026-10-26 06:30 GMT (2026-10-26 06:30 UTC)",
    ]
    shown = json.loads(
        b2bd(
            "diff", str(old.root), str(new.root), "--from", "2026-10-20T12:00", "--format", "json"
        ).stdout
    )
    changed = shown["tasks"]["changed"][0]
    assert (changed["next_before"], changed["next_after"]) == (
        "2026-10-24T05:30:00Z",
        "2026-10-26T06:30:00Z",
    )


def test_a_time_moved_into_the_spring_gap_runs_at_the_end_of_the_gap(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    old, new = pair
    old.write("tasks/t.yaml", task("t", '{ids: ["8814001"]}', '{days: [sun], times: ["06:30"]}'))
    new.write("tasks/t.yaml", task("t", '{ids: ["8814001"]}', '{days: [sun], times: ["01:30"]}'))
    # 01:30 on Sunday 29 March 2026 does not exist in London: it runs at 02:00 BST (01:00 UTC).
    result = b2bd("diff", str(old.root), str(new.root), "--from", "2026-03-28T12:00Z")
    assert result.returncode == 1
    assert result.stdout.splitlines()[2:] == [
        "task changed: t",
        "  fields: schedule.weekly.times",
        "  next slot: Sun 2026-03-29 06:30 BST (2026-03-29 05:30 UTC) -> "
        "Sun 2026-03-29 02:00 BST (2026-03-29 01:00 UTC)",
    ]


def test_a_task_moved_to_another_zone_shows_it(pair: tuple[ConfigDir, ConfigDir]) -> None:
    old, new = pair
    new.write("tasks/t.yaml", (new.root / "tasks/t.yaml").read_text() + "  timezone: UTC\n")
    result = diff(old.root, new.root)
    assert result.stdout.splitlines()[2:] == [
        "task changed: t",
        "  fields: schedule.timezone",
    ]  # in November London is on UTC: the slot does not move
    new.write(
        "tasks/t.yaml",
        (new.root / "tasks/t.yaml").read_text().replace("UTC", "America/New_York"),
    )
    result = diff(old.root, new.root)
    assert result.stdout.splitlines()[4] == (
        "  next slot: Mon 2026-11-30 06:30 GMT (2026-11-30 06:30 UTC) -> "
        "Mon 2026-11-30 06:30 EST (2026-11-30 11:30 UTC) [America/New_York]"
    )


# --- problems and the last good version ---------------------------------------------------------


def test_an_invalid_new_file_is_a_problem_introduced_and_its_old_task_stays(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    old, new = pair
    new.write("tasks/t.yaml", (new.root / "tasks/t.yaml").read_text() + "data: {type: nope}\n")
    new.write("tasks/new.yaml", "id: Not An Id\n")
    result = diff(old.root, new.root)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:] == [
        "tasks: 0 added, 0 removed, 0 changed; bases: 0 added, 0 removed, 0 changed; "
        "problems: 6 introduced, 0 fixed",
        "problem introduced: tasks/new.yaml:1:1: error: 'bases' is required [schema]",
        "problem introduced: tasks/new.yaml:1:1: error: 'data' is required [schema]",
        "problem introduced: tasks/new.yaml:1:1: error: 'direction' is required [schema]",
        "problem introduced: tasks/new.yaml:1:1: error: 'schedule' is required [schema]",
        "problem introduced: tasks/new.yaml:1:5: error: a task id is 1-63 lower-case letters, "
        "digits and hyphens, starting with a letter or digit [id-format]",
        "problem introduced: tasks/t.yaml:8:1: error: duplicate key 'data' (first given at "
        "line 4) [yaml-duplicate-key]",
        "kept: task t: its file is invalid in the new config, so a reload keeps the old "
        "version in force (shown unchanged)",
        "The new config has 6 errors: a running daemon reloading it keeps each bad file's last "
        "good version in force; a daemon started on it refuses to start (exit 78).",
    ]
    shown = json.loads(diff(old.root, new.root, "--format", "json").stdout)
    assert shown["tasks"] == {"added": [], "removed": [], "changed": []}
    assert [(p["file"], p["rule"]) for p in shown["problems"]["introduced"]][-1] == (
        "tasks/t.yaml",
        "yaml-duplicate-key",
    )
    # Fixing it again is a problem fixed.
    back = diff(new.root, old.root, "--format", "json")
    assert back.returncode == 1
    assert len(json.loads(back.stdout)["problems"]["fixed"]) == 6


def test_a_problem_that_only_moved_lines_is_neither_introduced_nor_fixed(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    old, new = pair
    write_both(pair, "tasks/w.yaml", task("w", "{tags: [sec]}"))  # warns: 8814004 excluded
    new.write("tasks/w.yaml", "# moved down a line\n" + (new.root / "tasks/w.yaml").read_text())
    result = diff(old.root, new.root)
    assert (result.returncode, result.stdout.splitlines()[1:]) == (
        0,
        ["No changes in effect (1 file differs in comments or layout only)."],
    )


# --- markdown ---------------------------------------------------------------------------------


def test_markdown_for_a_pull_request_comment(pair: tuple[ConfigDir, ConfigDir]) -> None:
    old, new = pair
    old.write("tasks/w.yaml", task("weekly-absence", "{tags: [sec]}"))
    new.write("tasks/w.yaml", task("weekly-absence", "{all: true}"))
    result = b2bd("diff", str(old.root), str(new.root), "--from", FROM, "--format", "markdown")
    assert result.returncode == 1
    assert result.stdout == (
        f"### b2bd diff: {md(old.root)} → {md(new.root)}\n"
        "\n"
        "tasks: 0 added, 0 removed, 1 changed; bases: 0 added, 0 removed, 0 changed; "
        "problems: 1 introduced, 0 fixed.\n"
        "\n"
        "**Tasks**\n"
        "\n"
        "| | Task | Fields | Bases gained | Bases lost | Next slot |\n"
        "|---|---|---|---|---|---|\n"
        "| changed | weekly-absence | bases.tags, bases.all | 8812002 |  |  |\n"
        "\n"
        "**Problems**\n"
        "\n"
        "| | Severity | Where | Rule | Message |\n"
        "|---|---|---|---|---|\n"
        "| introduced | warning | tasks/w.yaml:3:14 | base-lockdown | base 8815005 has locked "
        "down its tasks: the LA may not target it: excluded from this task |\n"
    )


def _cells(row: str) -> list[str]:
    """A markdown table row's cells, split only on pipes that are not backslash-escaped."""
    return re.split(r"(?<!\\)\|", row)[1:-1]


def test_markdown_escapes_untrusted_names_so_the_table_holds(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    old, new = pair
    hostile = "a|b`c`@team <b>[x](e)\\"
    new.write(f"tasks/{hostile}.yaml", f"id: '{hostile}'\n")
    result = diff(old.root, new.root, "--format", "markdown")
    assert result.returncode == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("| introduced")]
    assert rows
    for row in rows:
        assert len(_cells(row)) == 5, row
        assert re.search(r"(?<!\\)[`<\[@]", row) is None, row  # no code, HTML, link, mention
    assert r"tasks/a\|b\`c\`\@team \<b\>\[x\]\(e\)\\.yaml:1:1" in rows[0]


def test_text_output_shows_control_characters_in_names_as_escapes(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    old, new = pair
    new.write("tasks/x\x1b[31mred.yaml", "id: x\n")
    result = diff(old.root, new.root)
    assert "\x1b" not in result.stdout
    assert "tasks/x\\x1b[31mred.yaml" in result.stdout


def test_markdown_keeps_a_large_diff_under_githubs_comment_limit(tmp_path: Path) -> None:
    old, new = ConfigDir(tmp_path / "old"), ConfigDir(tmp_path / "new")
    for n in range(600):
        new.write(f"tasks/n{n:03d}.yaml", task(f"task-{n:03d}-with-a-long-name", "{all: true}"))
    result = diff(old.root, new.root, "--format", "markdown")
    assert result.returncode == 1
    assert len(result.stdout) < 65_536
    assert "more not shown: run `b2bd diff --format json` for everything" in result.stdout


# --- --git ------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, ConfigDir]:
    """A git repository with the config dir under ``deploy/config``, committed."""
    if shutil.which("git") is None:
        pytest.fail("git is needed by these tests")
    root = tmp_path / "repo"
    config = ConfigDir(root / "deploy" / "config")
    config.write("tasks/w.yaml", task("weekly-absence", "{tags: [sec]}"))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root, config


def test_git_compares_a_revision_with_the_working_tree(repo: tuple[Path, ConfigDir]) -> None:
    root, config = repo
    config.write("tasks/w.yaml", task("weekly-absence", "{all: true}"))
    result = b2bd("--config", str(config.root), "diff", "--git", "HEAD", "--from", FROM)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[:5] == [
        "b2bd diff HEAD -> working tree",
        "tasks: 0 added, 0 removed, 1 changed; bases: 0 added, 0 removed, 0 changed; "
        "problems: 1 introduced, 0 fixed",
        "task changed: weekly-absence",
        "  fields: bases.tags, bases.all",
        "  bases gained (1): 8812002",
    ]
    # Run from inside the config dir, relative: the same; and nothing is left in /tmp.
    same = b2bd("diff", "--git", "HEAD", "--config", ".", "--from", FROM, cwd=config.root)
    assert same.stdout.splitlines()[1:] == result.stdout.splitlines()[1:]
    git(root, "commit", "-qam", "widen")
    assert b2bd("--config", str(config.root), "diff", "--git", "HEAD").returncode == 0
    back = b2bd("--config", str(config.root), "diff", "--git", "HEAD~1", "--format", "json")
    assert json.loads(back.stdout)["tasks"]["changed"][0]["bases_added"] == ["8812002"]


def test_git_errors_are_one_line_and_exit_2(repo: tuple[Path, ConfigDir], tmp_path: Path) -> None:
    root, config = repo
    missing = one_line_error(b2bd("--config", str(config.root), "diff", "--git", "no-such-rev"))
    assert missing == f"b2bd: no commit 'no-such-rev' in the git repository at {root}"
    option = one_line_error(b2bd("--config", str(config.root), "diff", "--git=--output=x"))
    assert option == "b2bd: '--output=x' is not a git revision"
    assert not (config.root / "x").exists()
    elsewhere = ConfigDir(tmp_path / "not-a-repo")
    line = one_line_error(b2bd("--config", str(elsewhere.root), "diff", "--git", "HEAD"))
    assert line == f"b2bd: {elsewhere.root} is not in a git work tree"
    new_dir = root / "other"
    (new_dir / "tasks").mkdir(parents=True)
    git(root, "add", "-A")  # an empty folder: nothing to add, still not at HEAD
    line = one_line_error(b2bd("--config", str(new_dir), "diff", "--git", "HEAD"))
    assert line == "b2bd: other/ does not exist at HEAD"
    both = one_line_error(b2bd("diff", str(config.root), str(config.root), "--git", "HEAD"))
    assert both == "b2bd: diff takes either OLD_DIR NEW_DIR or --git REV, not both"


def test_git_refuses_a_symlink_in_the_revision_and_reads_nothing_through_it(
    repo: tuple[Path, ConfigDir], tmp_path: Path
) -> None:
    root, config = repo
    secret = tmp_path / "secret.yaml"
    secret.write_text("id: secret-task-from-outside\n")
    link = config.root / "tasks" / "evil\x1b[2J.yaml"  # and a terminal escape in its name
    os.symlink(secret, link)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "hostile")
    line = one_line_error(b2bd("--config", str(config.root), "diff", "--git", "HEAD"))
    assert line == (
        "b2bd: HEAD:deploy/config/tasks/evil\\x1b[2J.yaml is a symbolic link: --git compares "
        "regular files only (check out both sides and compare the two dirs instead)"
    )


def test_git_refuses_a_crafted_tree_entry_escaping_the_dir(
    repo: tuple[Path, ConfigDir], tmp_path: Path
) -> None:
    """A tree object naming an entry ``..`` (git itself never writes one; a crafted commit can)
    is refused before anything is written."""
    root, config = repo
    blob = subprocess.run(
        ["git", "-C", str(root), "hash-object", "-w", "--stdin"],
        input="id: escaped\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    raw = b"100644 ..\0" + bytes.fromhex(blob)
    tasks = (
        subprocess.run(
            ["git", "-C", str(root), "hash-object", "-w", "-t", "tree", "--literally", "--stdin"],
            input=raw,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    listing = git(root, "ls-tree", "HEAD:deploy/config")
    top = "".join(
        line.replace(line.split()[2], tasks) + "\n" if line.endswith("\ttasks") else line + "\n"
        for line in listing.splitlines()
    )
    config_tree = subprocess.run(
        ["git", "-C", str(root), "mktree"], input=top, capture_output=True, text=True, check=True
    ).stdout.strip()
    deploy = subprocess.run(
        ["git", "-C", str(root), "mktree"],
        input=f"040000 tree {config_tree}\tconfig\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root_tree = subprocess.run(
        ["git", "-C", str(root), "mktree"],
        input=f"040000 tree {deploy}\tdeploy\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    commit = git(root, "commit-tree", root_tree, "-p", "HEAD", "-m", "crafted").strip()
    line = one_line_error(b2bd("--config", str(config.root), "diff", "--git", commit))
    assert line == (
        f"b2bd: {commit}:deploy/config/tasks/: refused an entry named '..' (not a plain file name)"
    )


def test_git_a_blob_over_the_size_limit_is_refused_by_the_loader_without_being_written(
    repo: tuple[Path, ConfigDir],
) -> None:
    root, config = repo
    big = config.root / "tasks" / "big.yaml"
    big.write_bytes(b"# " + b"x" * (3 * 1024 * 1024) + b"\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "big")
    big.unlink()
    result = b2bd("--config", str(config.root), "diff", "--git", "HEAD", "--format", "json")
    assert result.returncode == 1, result.stderr
    fixed = json.loads(result.stdout)["problems"]["fixed"]
    assert [(p["file"], p["rule"], p["message"]) for p in fixed] == [
        ("tasks/big.yaml", "file-unreadable", f"larger than 1 MiB ({3 * 1024 * 1024 + 3} bytes)")
    ]


# --- usage ------------------------------------------------------------------------------------


def test_usage_and_io_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    lone = one_line_error(b2bd("diff", str(tmp_path)))
    assert lone == "b2bd: diff needs OLD_DIR NEW_DIR, or --git REV (see b2bd diff --help)"
    config = ConfigDir(tmp_path / "config")
    missing = one_line_error(b2bd("diff", str(config.root), str(tmp_path / "nowhere")))
    nowhere = tmp_path / "nowhere"
    assert missing == f"b2bd: config dir {nowhere} does not exist or is not a directory"
    bad_from = one_line_error(b2bd("diff", str(config.root), str(config.root), "--from", "soon"))
    assert bad_from.startswith("b2bd: --from 'soon' is not an ISO 8601 date-time")


def test_git_in_a_checkout_owned_by_another_user_says_how_to_allow_it(
    repo: tuple[Path, ConfigDir], tmp_path: Path
) -> None:
    """CI containers often run as root on a checkout another uid owns: git refuses it."""
    if os.geteuid() != 0:
        pytest.fail("this test hands the repository to another user, so it must run as root")
    root, config = repo
    for path in [root, *root.rglob("*")]:
        os.lchown(path, 65534, 65534)
    home = tmp_path / "home"  # no ~/.gitconfig that might already allow it
    home.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(config.root), "diff", "--git", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"},
    )
    assert one_line_error(result) == (
        f"b2bd: git refuses the repository at {config.root}: it belongs to another user (run "
        "`git config --global --add safe.directory DIR` for it as this user)"
    )


def test_markdown_stays_under_the_limit_when_every_file_breaks(tmp_path: Path) -> None:
    """A careless mass edit (or a hostile PR) breaking every task file: the 'kept' lines count
    against the comment's budget too, so the comment can still be posted."""
    old, new = ConfigDir(tmp_path / "old"), ConfigDir(tmp_path / "new")
    for n in range(600):
        text = task(f"task-{n:03d}-with-a-long-name", "{all: true}")
        old.write(f"tasks/n{n:03d}.yaml", text)
        new.write(f"tasks/n{n:03d}.yaml", text + "bogus: 1\n")
    result = diff(old.root, new.root, "--format", "markdown")
    assert result.returncode == 1, result.stderr
    assert len(result.stdout) < 65_536
    assert "- task task-000-with-a-long-name: its file is invalid" in result.stdout
    assert "more not shown: run `b2bd diff --format json` for everything" in result.stdout


def test_git_a_file_name_that_is_not_utf8_is_compared_like_the_working_tree(
    repo: tuple[Path, ConfigDir],
) -> None:
    """git keeps file names as bytes: one that is not UTF-8 is read (and shown escaped) as the
    loader reads it from a working tree, not a traceback."""
    root, config = repo
    odd = os.fsencode(config.root / "tasks") + b"/\xff\xfe.yaml"
    with open(odd, "w") as f:
        f.write(task("odd-name", "{tags: [sec]}"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "odd name")
    result = b2bd("--config", str(config.root), "diff", "--git", "HEAD", "--from", FROM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    os.unlink(odd)
    result = b2bd("--config", str(config.root), "diff", "--git", "HEAD", "--from", FROM)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "task removed: odd-name (tasks/\\udcff\\udcfe.yaml)" in result.stdout


@pytest.mark.parametrize("breakage", ["one file", "tasks is a file"])
def test_warnings_of_a_task_kept_in_force_are_not_fixed(tmp_path: Path, breakage: str) -> None:
    """The example's monthly-snapshot-lac task warns (a locked-down base excluded). Breaking
    its file, or tasks/ itself, keeps the old task in force on reload: its warning still
    applies, so the diff must not tell the reviewer it was fixed."""
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(REPO / "config", old)
    shutil.copytree(REPO / "config", new)
    if breakage == "one file":
        with (new / "tasks" / "monthly-snapshot-lac.yaml").open("a") as f:
            f.write("bogus: 1\n")
    else:
        shutil.rmtree(new / "tasks")
        (new / "tasks").write_text("")
    result = diff(old, new, "--format", "json")
    assert result.returncode == 1, result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert problems["introduced"], problems
    assert problems["fixed"] == [], problems["fixed"]


def test_markdown_from_a_hostile_config_renders_with_no_link_image_or_html(
    pair: tuple[ConfigDir, ConfigDir],
) -> None:
    """Rendered by cmark-gfm (GitHub's markdown, with its autolink and table extensions): a PR
    author's URLs, www. names, image or HTML in keys and file names must not become links,
    images or markup in the comment the CI bot posts."""
    import cmarkgfm  # the test extra

    old, new = pair
    hostile = (
        "see https://evil.example/login",
        "ftp://evil.example/x",
        "www.evil.example",
        "go to www.evil.example",
        "![i](https://evil.example/i.png)",
        "<img src=x onerror=alert(1)>",
    )
    body = "".join(f'"{key}": 1\n' for key in hostile)
    new.write("tasks/www.evil.example.yaml", task("hostile", "{all: true}") + body)
    result = diff(old.root, new.root, "--format", "markdown")
    assert result.returncode == 1, result.stderr
    assert "www" in result.stdout and "evil" in result.stdout
    html = cmarkgfm.github_flavored_markdown_to_html(result.stdout)
    tags = set(re.findall(r"<([a-z0-9]+)", html))
    assert tags <= {"h3", "p", "strong", "code", "blockquote", "table", "thead", "tbody", "tr",
                    "th", "td"}, html  # fmt: skip


def test_git_with_a_full_temporary_dir_names_it_and_exits_2(
    repo: tuple[Path, ConfigDir], tmp_path: Path
) -> None:
    """The revision's files are written to a temporary dir ($TMPDIR): when that file system is
    full the one line says where, not just 'No space left on device'."""
    from tests.support.oserrors import fill, tmpfs

    _, config = repo
    with tmpfs(tmp_path / "tmp", "64k") as small:
        filler = fill(small)
        # Room for Python's own check that $TMPDIR is usable (else it silently uses /tmp),
        # not for the revision's files.
        os.truncate(filler, filler.stat().st_size - 8192)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "b2bd", "--config", str(config.root), "diff", "--git",
                 "HEAD"],
                capture_output=True, text=True, cwd=REPO, timeout=120,
                env={**os.environ, "TMPDIR": str(small)},
            )  # fmt: skip
        finally:
            filler.unlink()
    line = one_line_error(result)
    assert line.startswith(f"b2bd: cannot write the revision's config files in {small}"), line
    assert "No space left on device" in line
