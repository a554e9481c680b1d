"""``b2bd schema``: the JSON Schemas of the config files, for editors and CI."""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

from b2bd.cli import UsageError
from b2bd.config.packaged import timezones
from b2bd.config.publish import published, render
from b2bd.config.schema import SCHEMA_FILES


def register(sub: Any) -> None:
    p = sub.add_parser("schema", help="write the JSON Schemas (for editors and CI)")
    p.add_argument("--out", type=Path, help="directory to write them into (default: print)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = resources.files("b2bd") / "schemas"
    if args.out is None:
        print(_published(root, SCHEMA_FILES["task"]), end="")
        return 0
    out: Path = args.out
    try:
        texts = {
            rel: _published(root, rel) for rel in [*SCHEMA_FILES.values(), *_record_schemas(root)]
        }
        for rel, text in texts.items():
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, "utf-8")
            print(target)
    except OSError as exc:
        raise UsageError(f"cannot write schemas to {out}: {exc.strerror}") from exc
    return 0


def _published(root: Any, rel: str) -> str:
    """One schema as editors get it: with our messages, hover text and the zone list (all read
    before anything is written, so ``--out`` may name the schemas' own folder)."""
    return render(published(json.loads((root / rel).read_text("utf-8")), timezones()))


def _record_schemas(root: Any) -> list[str]:
    records = root / "records"
    if not records.is_dir():
        return []
    return sorted(f"records/{p.name}" for p in records.iterdir() if p.name.endswith(".json"))
