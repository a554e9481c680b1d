"""``b2bd validate`` and ``b2bd schema``."""

from __future__ import annotations

import argparse
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from b2bd.cli import UsageError
from b2bd.config.load import ConfigDirError, load_config
from b2bd.config.model import Config, Problem
from b2bd.config.schema import SCHEMA_FILES

EXIT_VALID = 0
EXIT_INVALID = 1


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check every config file; report every problem")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")
    p.add_argument("--strict", action="store_true", help="warnings make the config invalid")
    p.set_defaults(func=run)
    s = sub.add_parser("schema", help="write the JSON Schemas (for editors and CI)")
    s.add_argument("--out", type=Path, help="directory to write them into (default: print)")
    s.set_defaults(func=run_schema)


def load(root: Path) -> Config:
    try:
        # A one-shot process without threads: a large config may be parsed on every core.
        return load_config(root, workers=_cores())
    except ConfigDirError as exc:
        raise UsageError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    errors = sum(p.severity == "error" for p in config.problems)
    warnings = len(config.problems) - errors
    valid = errors == 0 and not (args.strict and warnings)
    shown = Path(args.config)
    if args.format == "json":
        print(json.dumps(summary(config, valid), indent=2))
    elif args.format == "github":
        for p in config.problems:
            print(github_line(p, shown))
    else:
        for p in config.problems:
            print(text_line(p, shown))
        files = len(config.digests)
        verdict = "valid" if valid else "INVALID"
        print(
            f"{shown}: {files} files, {len(config.tasks)} tasks, {len(config.bases)} bases: "
            f"{verdict} ({errors} errors, {warnings} warnings)"
        )
    return EXIT_VALID if valid else EXIT_INVALID


def text_line(p: Problem, root: Path) -> str:
    return f"{root / p.file}:{p.line}:{p.column}: {p.severity}: {p.message} [{p.rule}]"


def github_line(p: Problem, root: Path) -> str:
    # Workflow commands: properties escape % \r \n , and :, the message % \r \n.
    def prop(value: str) -> str:
        return (
            value.replace("%", "%25")
            .replace("\r", "%0D")
            .replace("\n", "%0A")
            .replace(":", "%3A")
            .replace(",", "%2C")
        )

    message = p.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return (
        f"::{p.severity} file={prop(str(root / p.file))},line={p.line},col={p.column},"
        f"title={prop(p.rule)}::{message}"
    )


def summary(config: Config, valid: bool) -> dict[str, Any]:
    return {
        "valid": valid,
        "files": len(config.digests),
        "tasks": len(config.tasks),
        "bases": len(config.bases),
        "problems": [
            {
                "severity": p.severity,
                "file": p.file,
                "line": p.line,
                "column": p.column,
                "path": p.path,
                "rule": p.rule,
                "message": p.message,
            }
            for p in config.problems
        ],
    }


def run_schema(args: argparse.Namespace) -> int:
    root = resources.files("b2bd") / "schemas"
    if args.out is None:
        print((root / SCHEMA_FILES["task"]).read_text("utf-8"), end="")
        return 0
    out: Path = args.out
    try:
        for rel in [*SCHEMA_FILES.values(), *_record_schemas(root)]:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text((root / rel).read_text("utf-8"), "utf-8")
            print(target)
    except OSError as exc:
        raise UsageError(f"cannot write schemas to {out}: {exc.strerror}") from exc
    return 0


def _record_schemas(root: Any) -> list[str]:
    records = root / "records"
    if not records.is_dir():
        return []
    return sorted(f"records/{p.name}" for p in records.iterdir() if p.name.endswith(".json"))


def _cores() -> int:
    """The cores this process may run on (an affinity mask or cpuset can allow fewer than the
    machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
