"""The published JSON Schemas (schemas/, `b2bd schema --out DIR`): up to date, valid JSON Schema,
and saying in editors what `validate` says: each rule's errorMessage is the message and rule id
`validate` prints, and the time zone enum is exactly the zones the loader accepts."""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from b2bd.config.packaged import known_timezone, timezones
from tests.support.cli import b2bd
from tests.support.config_dir import BASES, SETTINGS, TASK, ConfigDir

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
WEEKLY = 'schedule:\n  weekly: {days: [mon], times: ["06:30"]}\n'


def task(body: str, direction: str = "from-school") -> str:
    return f'id: t\ndirection: {direction}\nbases: {{ids: ["8814001"]}}\n{body}'


def nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from nodes(value)
    elif isinstance(node, list):
        for item in node:
            yield from nodes(item)


def published() -> dict[str, Any]:
    return {
        path.relative_to(SCHEMAS).as_posix(): json.loads(path.read_text())
        for path in sorted(SCHEMAS.rglob("*.json"))
    }


# A bad example for every rule the schemas carry (x-rule), and for some of the schema's own
# messages (rule "schema"): file, text.
EXAMPLES: list[tuple[str, str, str]] = [
    ("id-format", "tasks/t.yaml", TASK.replace("id: t", "id: Weekly_T")),
    ("to-school-changed-only", "tasks/t.yaml",
     task("data: {type: snapshot}\n" + WEEKLY, "to-school")),
    ("to-school-ncy-only", "tasks/t.yaml",
     task("data: {type: changed}\ncohort: {group: lac}\n" + WEEKLY, "to-school")),
    ("time-format", "tasks/t.yaml", TASK.replace('"06:30"', '"6:30pm"')),
    ("attendance-kind-required", "tasks/t.yaml", task("data: {type: attendance}\n" + WEEKLY)),
    ("attendance-kind-required", "tasks/t.yaml",
     task("data: {type: attendance, attendance: absences}\n" + WEEKLY)),
    ("attendance-kind-unexpected", "tasks/t.yaml",
     task("data: {type: snapshot, attendance: attendance-changed}\n" + WEEKLY)),
    ("months-attendance-only", "tasks/t.yaml", task("data: {type: changed, months: 3}\n" + WEEKLY)),
    ("ncy-code", "tasks/t.yaml", task("data: {type: snapshot}\ncohort: {ncy: [15]}\n" + WEEKLY)),
    ("ncy-unexpected", "tasks/t.yaml",
     task("data: {type: snapshot}\ncohort: {group: lac, ncy: [7]}\n" + WEEKLY)),
    ("timezone-unknown", "tasks/t.yaml", TASK + "  timezone: Europe/Londn\n"),
    ("timezone-unknown", "b2bd.yaml", SETTINGS + "timezone: localtime\n"),
    ("bases-file", "bases.yaml", BASES.replace('"8814001"', '"881400"')),
    ("bases-file", "bases.yaml", BASES.replace("type: directory", "type: ftp", 1)),
    ("la-prerequisites", "b2bd.yaml", SETTINGS.replace('code: "881"', 'code: "0881"')),
    ("la-prerequisites", "b2bd.yaml", SETTINGS.replace('one_version: "3.83"', 'one_version: "3"')),
    ("la-prerequisites", "b2bd.yaml", SETTINGS.replace("{type: directory", "{type: s3")),
    ("metrics-listen", "b2bd.yaml", SETTINGS + 'metrics: {listen: "example.org:9464"}\n'),
    ("shard-index", "b2bd.yaml", SETTINGS + "shard: {index: -1, of: 2}\n"),
    ("shard-index", "b2bd.yaml", SETTINGS + 'shard: {index: {env: "SHARD-INDEX"}, of: 2}\n'),
    ("shard-index", "b2bd.yaml", SETTINGS + "shard: {index: 0, of: 0}\n"),
    ("schema", "tasks/t.yaml", TASK + "policy: {timeout: 15 minutes}\n"),
    ("schema", "tasks/t.yaml",
     task('data: {type: snapshot}\nschedule: {once: "2026-12-01 06:30"}\n')),
    ("schema", "b2bd.yaml", SETTINGS + 'academic_year_start: "13-01"\n'),
    ("schema", "bases.yaml", BASES.replace('"7.160"', '"seven"')),
]  # fmt: skip


def test_schemas_in_the_repo_are_what_b2bd_schema_writes(tmp_path: Path) -> None:
    result = b2bd("schema", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")}
    in_repo = {p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.rglob("*.json")}
    assert written == in_repo
    for rel in sorted(written):
        assert (tmp_path / rel).read_text() == (SCHEMAS / rel).read_text(), (
            f"schemas/{rel} is out of date: run `b2bd schema --out schemas`"
        )
    assert b2bd("schema").stdout == (SCHEMAS / "task.schema.json").read_text()


def test_published_schemas_are_valid_json_schema() -> None:
    for rel, schema in published().items():
        cls = jsonschema.validators.validator_for(schema)
        assert cls is jsonschema.Draft202012Validator, rel
        cls.check_schema(schema)


def test_every_schema_rule_has_an_example() -> None:
    carried = {n["x-rule"] for s in published().values() for n in nodes(s) if "x-rule" in n}
    assert carried == {rule for rule, _, _ in EXAMPLES} - {"schema"}


def _ids() -> list[str]:
    return [f"{rule}-{i}" for i, (rule, _, _) in enumerate(EXAMPLES)]


@pytest.mark.parametrize(("rule", "file", "text"), EXAMPLES, ids=_ids())
def test_editors_show_the_message_validate_prints(
    tmp_path: Path, rule: str, file: str, text: str
) -> None:
    config = ConfigDir(tmp_path / "config")
    config.write(file, text)
    result = b2bd("--config", str(config.root), "validate")
    lines = [line for line in result.stdout.splitlines() if line.endswith(f"[{rule}]")]
    assert lines, result.stdout
    said = lines[0].split(": error: ", 1)[1]
    kind = {"tasks/t.yaml": "task", "bases.yaml": "bases", "b2bd.yaml": "b2bd"}[file]
    schema = published()[f"{kind}.schema.json"]
    messages = {n.get("errorMessage") for n in nodes(schema) if n.get("x-rule", "schema") == rule}
    assert said in messages
    # Hover text names the rule too, with the same words.
    hovers = [n["markdownDescription"] for n in nodes(schema) if n.get("errorMessage") == said]
    assert hovers and all(f"[`{rule}`]" in h and said.rsplit(" [", 1)[0] in h for h in hovers)


def test_every_rule_of_the_schemas_has_its_message_and_hover_text() -> None:
    for rel, schema in published().items():
        for node in nodes(schema):
            if "x-rule" in node:
                assert node["errorMessage"].endswith(f" [{node['x-rule']}]"), (rel, node)
                assert f"[`{node['x-rule']}`]" in node["markdownDescription"], (rel, node)


def test_timezone_enum_is_exactly_the_zones_the_loader_accepts() -> None:
    schemas = published()
    enums = [
        n["enum"]
        for rel in ("task.schema.json", "b2bd.schema.json")
        for n in nodes(schemas[rel])
        if n.get("format") == "iana-timezone"
    ]
    assert len(enums) == 2 and enums[0] == enums[1] == list(timezones())
    zones = set(enums[0])
    assert {"Europe/London", "UTC", "Europe/Dublin", "America/New_York"} <= zones
    candidates = zoneinfo.available_timezones() | zones | {"UTC", "localtime", "Europe/london"}
    assert {z for z in candidates if known_timezone(z)} == zones


def test_an_unlisted_zone_is_refused_where_the_editor_refuses_it(cfg: ConfigDir) -> None:
    for zone in ("localtime", "Europe/london", "../../etc/localtime", "posixrules"):
        cfg.write("tasks/t.yaml", TASK + f'  timezone: "{zone}"\n')
        assert zone not in timezones()
        assert [p.rule for p in cfg.load().problems] == ["timezone-unknown"], zone
    cfg.write("tasks/t.yaml", TASK + "  timezone: America/Argentina/Buenos_Aires\n")
    assert cfg.load().problems == ()


@pytest.fixture
def cfg(tmp_path: Path) -> ConfigDir:
    return ConfigDir(tmp_path / "config")
