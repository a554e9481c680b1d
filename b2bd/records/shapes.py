"""The JSON Schema (draft 2020-12) of each record kind, generated from the msgspec Structs of
:mod:`b2bd.records.model` plus the string formats of ``FIELD_FORMATS``, so the Structs stay the
one source of truth. Pure: :mod:`b2bd.records.schemas` writes them into ``schemas/records/``.

The schemas describe shape only; the check letter of a UPN, the calendar validity of a date
and an attendance code's date range are checked in code (:mod:`b2bd.records.check`).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import msgspec

from b2bd.records.model import FIELD_FORMATS, PATTERNS, RECORD_KINDS, STRUCTS

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
