"""``b2bd validate``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from b2bd.cli.configdir import load
from b2bd.config.model import Config, Problem

EXIT_VALID = 0
EXIT_INVALID = 1


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check every config file; report every problem")
    p.add_argument("--format", choices=("text", "json", "github"), default="text")
    p.add_argument("--strict", action="store_true", help="warnings make the config invalid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # A one-shot process without threads: a large config may be parsed on every core.
    config = load(args.config, workers=_cores())
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


def _cores() -> int:
    """The cores this process may run on (an affinity mask or cpuset can allow fewer than the
    machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
