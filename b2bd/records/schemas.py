"""Write the JSON Schemas of the record kinds into ``schemas/records/``.

``python -m b2bd.records.schemas [OUT_DIR]`` (default: the repository's ``schemas/records``)
writes one ``<kind>.schema.json`` per record kind, generated from the msgspec Structs of
:mod:`b2bd.records.model` plus the string formats of ``FIELD_FORMATS``. A test checks the
committed files equal :func:`record_schemas`, so the Structs stay the one source of truth.

The schemas describe shape only; the check letter of a UPN, the calendar validity of a date
and an attendance code's date range are checked in code (:mod:`b2bd.records.check`).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from b2bd.records.model import FIELD_FORMATS, PATTERNS, RECORD_KINDS, STRUCTS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "records"
_ID_BASE = "https://b2bd.invalid/schemas/records/"


def record_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema (draft 2020-12) for every record kind."""
    out: dict[str, dict[str, Any]] = {}
    for kind in RECORD_KINDS:
        struct = STRUCTS[kind]
        schema = msgspec.json.schema(struct)
        body = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
        body["description"] = inspect.cleandoc(body.get("description", ""))
        for field, fmt in FIELD_FORMATS[struct].items():
            prop = body["properties"][field]
            target = next((s for s in prop.get("anyOf", ()) if s.get("type") == "string"), prop)
            target["pattern"] = PATTERNS[fmt]
        name = f"{kind}.schema.json"
        out[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": _ID_BASE + name,
            **body,
        }
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Write every record schema into ``out_dir`` (created if needed); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in record_schemas().items():
        path = out_dir / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in write_schemas(Path(args[0]) if args else SCHEMA_DIR):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
