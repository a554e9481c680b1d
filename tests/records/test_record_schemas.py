from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from b2bd.records.schemas import SCHEMA_DIR
from b2bd.records.shapes import record_schemas, render

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "schools" / "8814001"
FILES = {
    "pupil.schema.json": "pupils.jsonl",
    "mark.schema.json": "attendance.jsonl",
    "result.schema.json": "results.jsonl",
    "deletion.schema.json": "deletions.jsonl",
}


def test_committed_schemas_are_up_to_date():
    committed = REPO / "schemas" / "records"
    for name, schema in record_schemas().items():
        assert (committed / name).read_text(encoding="utf-8") == render(schema), (
            f"schemas/records/{name} is stale: run python -m b2bd.records.schemas"
        )
    assert sorted(p.name for p in committed.glob("*.json")) == sorted(record_schemas())
    assert SCHEMA_DIR.resolve() == committed.resolve()


def test_module_cli_writes_the_schemas(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "b2bd.records.schemas", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(out.stdout.splitlines()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(record_schemas())


@pytest.mark.parametrize("name", sorted(FILES))
def test_example_records_validate_against_the_schemas(name):
    schema = record_schemas()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    with (EXAMPLE / FILES[name]).open(encoding="utf-8") as handle:
        for number, text in enumerate(handle):
            if number > 2000:
                break
            assert validator.is_valid(json.loads(text)), text


def test_schema_rejects_shapes_the_decoder_rejects():
    validator = jsonschema.Draft202012Validator(record_schemas()["mark.schema.json"])
    good = {
        "upn": "B801200005001",
        "date": "2026-11-02",
        "session": "AM",
        "code": "C1",
        "updated_at": "2026-11-02T09:10:11Z",
    }
    assert validator.is_valid(good)
    for changes in (
        {"upn": "I801200005001"},
        {"session": "XM"},
        {"code": "ZZ"},
        {"updated_at": "2026-11-02T09:10:11+01:00"},
        {"extra": 1},
    ):
        assert not validator.is_valid({**good, **changes}), changes
