"""The pure comparison behind `b2bd diff`: field names, settings, renames, reload semantics.
(The command itself, its formats and exit codes: tests/cli/test_diff.py.)"""

from __future__ import annotations

from pathlib import Path

from b2bd.config.diff import ConfigDiff, as_json, compare
from b2bd.config.load import load_config
from tests.support.config_dir import NOW, SETTINGS, TASK, ConfigDir, b2bd_yaml


def pair(tmp_path: Path) -> tuple[ConfigDir, ConfigDir]:
    return ConfigDir(tmp_path / "old"), ConfigDir(tmp_path / "new")


def diff_of(old: ConfigDir, new: ConfigDir) -> ConfigDiff:
    before = load_config(old.root, now=NOW)
    after = load_config(new.root, now=NOW, last_good=before)
    return compare(before, after, NOW)


def test_a_schedule_changing_kind_names_both_kinds(tmp_path: Path) -> None:
    old, new = pair(tmp_path)
    new.write(
        "tasks/t.yaml",
        TASK.replace(
            '  weekly: {days: [mon], times: ["06:30"]}',
            '  monthly: {days: [1], months: [all], times: ["06:30"]}',
        ),
    )
    (change,) = diff_of(old, new).tasks_changed
    assert change.fields == ("schedule.weekly", "schedule.monthly")


def test_a_changed_default_shows_in_settings_and_on_each_task_inheriting_it(
    tmp_path: Path,
) -> None:
    old, new = pair(tmp_path)
    new.write("b2bd.yaml", b2bd_yaml(defaults="{retries: 5}"))
    diff = diff_of(old, new)
    assert diff.settings_changed == ("defaults.retries",)
    assert [(c.id, c.fields) for c in diff.tasks_changed] == [("t", ("policy.retries",))]
    assert as_json(diff)["settings"] == {"changed": ["defaults.retries"]}


def test_settings_names_are_the_yaml_keys(tmp_path: Path) -> None:
    old, new = pair(tmp_path)
    new.write(
        "b2bd.yaml",
        b2bd_yaml("elsewhere", la_name="Othershire")
        + "credentials:\n  wonde: {env: WONDE_TOKEN}\n",
    )
    assert diff_of(old, new).settings_changed == ("la.name", "state_dir", "credentials.wonde")
    new.write(
        "b2bd.yaml",
        SETTINGS + 'metrics: {listen: "127.0.0.1:9999"}\njournal: {history_days: 500}\n'
        "ignore: [months-heavy]\n",
    )
    assert diff_of(old, new).settings_changed == (  # in the model's field order
        "journal.history_days",
        "metrics.listen",
        "ignore",
    )


def test_a_task_moved_to_another_file_is_a_change_of_file(tmp_path: Path) -> None:
    old, new = pair(tmp_path)
    (new.root / "tasks/t.yaml").rename(new.root / "tasks/renamed.yaml")
    (change,) = diff_of(old, new).tasks_changed
    assert (change.id, change.fields) == ("t", ("file",))


def test_an_invalid_b2bd_yaml_keeps_the_old_settings_as_a_reload_does(tmp_path: Path) -> None:
    old, new = pair(tmp_path)
    new.write("b2bd.yaml", SETTINGS.replace('one_version: "3.83"', 'one_version: "2.0"'))
    diff = diff_of(old, new)
    assert diff.settings_changed == ()
    assert [p.rule for p in diff.problems_introduced] == ["la-prerequisites"]
    assert diff.new_errors == 1
    assert diff.changed


def test_a_warning_newly_accepted_by_ignore_is_not_fixed(tmp_path: Path) -> None:
    old, new = pair(tmp_path)
    for side in (old, new):
        side.write("tasks/t.yaml", TASK.replace('{ids: ["8814001"]}', "{tags: [sec]}"))
    new.write("b2bd.yaml", SETTINGS + "ignore: [base-prerequisites]\n")
    diff = diff_of(old, new)
    assert (diff.settings_changed, diff.problems_fixed) == (("ignore",), ())
    back = diff_of(new, old)  # accepted no more: shown again, but nothing new was broken
    assert (back.settings_changed, back.problems_introduced) == (("ignore",), ())
