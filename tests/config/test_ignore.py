"""b2bd.yaml ``ignore:``: warnings of accepted rules are set aside (counted, not reported);
errors never are; an error rule or an unknown rule id in the list is itself reported."""

from __future__ import annotations

import re
from pathlib import Path

import b2bd
from b2bd.config.rules import ERROR_RULES, RULES, WARNING_RULES
from tests.config.test_rules import CASES
from tests.support.config_dir import SETTINGS, ConfigDir

# Tag "sec" reaches 8814004 (SIMS 7.160): excluded with a base-prerequisites warning; the
# schedule expired long ago: a schedule-expired warning.
WARNED = """\
id: t
direction: from-school
bases: {tags: [sec]}
data: {type: snapshot}
schedule:
  weekly: {days: [mon], times: ["06:30"]}
  expires: 2020-01-01
"""


def rules(problems: tuple) -> list[tuple[str, str]]:
    return sorted((p.rule, p.severity) for p in problems)


def test_ignored_warnings_are_set_aside_not_reported(cfg: ConfigDir) -> None:
    cfg.write("tasks/t.yaml", WARNED)
    assert rules(cfg.load().problems) == [
        ("base-prerequisites", "warning"),
        ("schedule-expired", "warning"),
    ]
    cfg.write("b2bd.yaml", SETTINGS + "ignore: [schedule-expired]\n")
    config = cfg.load()
    assert rules(config.problems) == [("base-prerequisites", "warning")]
    assert rules(config.ignored) == [("schedule-expired", "warning")]
    assert config.ignored[0].file == "tasks/t.yaml" and config.ignored[0].line == 7
    assert config.valid and "t" in config.tasks


def test_ignoring_a_rule_never_hides_its_errors(cfg: ConfigDir) -> None:
    # Named by id, the old SIMS base is an error of the same rule id.
    cfg.write("tasks/t.yaml", WARNED.replace("{tags: [sec]}", '{ids: ["8814004"]}'))
    cfg.write("b2bd.yaml", SETTINGS + "ignore: [base-prerequisites, schedule-expired]\n")
    config = cfg.load()
    assert rules(config.problems) == [("base-prerequisites", "error")]
    assert not config.valid and "t" not in config.tasks


def test_an_error_rule_in_the_list_is_an_error_at_its_place(cfg: ConfigDir) -> None:
    cfg.write("b2bd.yaml", SETTINGS + "ignore: [months-heavy, schema]\n")
    config = cfg.load()
    [problem] = config.problems
    assert (problem.file, problem.line, problem.column) == ("b2bd.yaml", 5, 24)
    assert (problem.rule, problem.severity) == ("ignore-not-warning", "error")
    assert problem.message == "schema is an error rule: only warnings can be ignored"
    assert config.settings is None  # b2bd.yaml is invalid as a whole, like any other error


def test_an_unknown_rule_id_is_a_warning(cfg: ConfigDir) -> None:
    cfg.write("b2bd.yaml", SETTINGS + "ignore:\n  - months-hevy\n")
    config = cfg.load()
    [problem] = config.problems
    assert (problem.rule, problem.severity, problem.line, problem.column) == (
        "ignore-unknown",
        "warning",
        6,
        5,
    )
    assert "months-hevy is not a rule id" in problem.message
    assert config.valid and config.settings is not None


def test_the_list_is_checked_by_the_schema(cfg: ConfigDir) -> None:
    cfg.write("b2bd.yaml", SETTINGS + "ignore: months-heavy\n")
    assert rules(cfg.load().problems) == [("schema", "error")]
    cfg.write("b2bd.yaml", SETTINGS + "ignore: [months-heavy, months-heavy]\n")
    assert rules(cfg.load().problems) == [("schema", "error")]
    cfg.write("b2bd.yaml", SETTINGS + "ignore: [Months Heavy]\n")
    assert [p.message for p in cfg.load().problems] == ["a rule id, e.g. months-heavy"]


def test_the_rule_registry_knows_every_rule_validation_reports() -> None:
    """ERROR_RULES and WARNING_RULES decide what may be ignored: every rule id the config
    package and the schemas can report is in one of them, and every example of a warning in the
    rule cases is a warning rule (errors may be either: some rules are both)."""
    package = Path(b2bd.__file__).parent
    sources = [*sorted((package / "config").glob("*.py")), package / "prerequisites.py"]
    found: set[str] = set()
    for source in sources:
        text = source.read_text()
        found.update(re.findall(r'Finding\(\s*(?:\w+|f?"[^"]*"),\s*"([a-z0-9-]+)"', text))
        found.update(re.findall(r'(?:FileProblem|Unmet)\(\s*"([a-z0-9-]+)"', text))
        found.update(
            re.findall(r'\bProblem\(\s*(?:\w+|f?"[^"]*"), *\w+, *\w+, *"([a-z0-9-]+)"', text)
        )
    for schema in (package / "schemas").glob("*.json"):
        found.update(re.findall(r'"x-rule": "([a-z0-9-]+)"', schema.read_text()))
    run_time_only = {r for r in found if r.startswith("live-")} | {"base-disabled"}
    assert "schedule-expired" in found and "yaml-syntax" in found and "time-format" in found
    assert found - run_time_only - RULES == set()
    assert not ERROR_RULES & WARNING_RULES
    for case in CASES:
        assert case.rule in RULES
        if case.severity == "warning":
            assert case.rule in WARNING_RULES, case
