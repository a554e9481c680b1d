"""Write the JSON Schemas of the record kinds into ``schemas/records/``.

``python -m b2bd.records.schemas [OUT_DIR]`` (default: the repository's ``schemas/records``)
writes one ``<kind>.schema.json`` per record kind, as :func:`b2bd.records.shapes.record_schemas`
makes them. A test checks the committed files equal them, so the Structs stay the one source of
truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

from b2bd.records.shapes import record_schemas, render

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "records"


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
