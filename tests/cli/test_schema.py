"""`b2bd schema` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def b2bd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2bd", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_schema_out_writes_schemas_editors_can_use(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    assert b2bd("schema", "--out", str(out)).returncode == 0
    for name in ("task.schema.json", "bases.schema.json", "b2bd.schema.json"):
        schema = json.loads((out / name).read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(b2bd("schema").stdout)["title"] == "b2bd task"
