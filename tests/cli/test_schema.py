"""`b2bd schema` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import b2bd


def test_schema_out_writes_schemas_editors_can_use(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    assert b2bd("schema", "--out", str(out)).returncode == 0
    for name in ("task.schema.json", "bases.schema.json", "b2bd.schema.json"):
        schema = json.loads((out / name).read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(b2bd("schema").stdout)["title"] == "b2bd task"
