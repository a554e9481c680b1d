"""``b2bd migrate LEGACY.csv --out DIR``: One's scheduled tasks export into task files (the
conversion lives in :mod:`b2bd.migrate`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from b2bd.cli import UsageError
from b2bd.cli.configdir import load
from b2bd.clock import utc_now
from b2bd.config.model import Config
from b2bd.config.packaged import validator
from b2bd.confined import Folder
from b2bd.migrate import (
    LegacyFileError,
    Migration,
    Outcome,
    Row,
    RowProblem,
    TargetConfig,
    TaskDocument,
    decode,
    migrate,
    placement,
    read_rows,
)

EXIT_OK = 0
EXIT_FAILED = 1


def register(sub: Any) -> None:
    m = sub.add_parser(
        "migrate", help="convert an export of One's scheduled tasks (CSV) into task files"
    )
    m.add_argument("legacy", type=Path, metavar="LEGACY.csv", help="the export, one row per base")
    m.add_argument("--out", type=Path, required=True, help="directory to write task files into")
    m.add_argument("--dry-run", action="store_true", help="write nothing; say what would happen")
    m.add_argument("--force", action="store_true", help="overwrite task files that differ")
    m.add_argument(
        "--encoding", default="utf-8", help="the export's encoding (default utf-8, BOM or not)"
    )
    m.add_argument("--format", choices=("text", "json"), default="text")
    m.set_defaults(func=run_migrate)


_SAYS: dict[Outcome, tuple[str, str]] = {
    # outcome -> (after doing it, in a dry run)
    "written": ("written", "would write"),
    "overwritten": ("overwritten (--force)", "would overwrite (--force)"),
    "unchanged": ("unchanged", "unchanged"),
    "left-alone": (
        "differs from the existing file: left alone (--force overwrites it)",
        "differs from the existing file: would be left alone (--force overwrites it)",
    ),
}


def run_migrate(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config.settings is None or not config.bases:
        raise UsageError(
            f"{args.config}: migrate checks tasks against the config's b2bd.yaml and bases.yaml, "
            "and they are unusable here: run b2bd validate, or give --config DIR"
        )
    out: Path = args.out
    registry = TargetConfig(
        config.bases, config.settings, _taken_ids(config, out), task_schema=validator("task")
    )
    try:
        rows = read_export(args.legacy, args.encoding)
        migration = migrate(rows, args.legacy.name, registry, utc_now())
        outcomes = [
            (d, place(d, out, force=args.force, dry_run=args.dry_run)) for d in migration.documents
        ]
    except LegacyFileError as exc:
        raise UsageError(f"{args.legacy}: {exc}") from exc

    left_alone = [d for d, o in outcomes if o == "left-alone"]
    rows_in_place = len(rows) - len(migration.failed_rows) - sum(len(d.rows) for d in left_alone)
    complete = not migration.failed_rows and not left_alone
    if args.format == "json":
        print(json.dumps(_migrate_json(args, migration, outcomes, complete), indent=2))
    else:
        for p in migration.problems:
            print(_problem_line(args.legacy, p))
        for document, outcome in outcomes:
            said = _SAYS[outcome][1 if args.dry_run else 0]
            which = "row" if len(document.rows) == 1 else "rows"
            rows_text = ", ".join(map(str, document.rows))
            print(f"{out / document.file_name}: {said} ({which} {rows_text})")
        print(
            f"{args.legacy}: {len(rows)} rows, {len(migration.failed_rows)} not migrated, "
            f"{len(migration.documents)} tasks; {rows_in_place} rows in place"
            + (" (dry run: nothing written)" if args.dry_run else "")
        )
    return EXIT_OK if complete else EXIT_FAILED


def _taken_ids(config: Config, out: Path) -> frozenset[str]:
    """Ids other files of the config already use. A task in exactly the file migrate would
    write for it (``OUT/<id>.yaml``) is migrate's own earlier output and does not count."""
    taken = set()
    for task in config.tasks.values():
        own = (out / f"{task.id}.yaml").absolute()
        if (config.root / task.file).absolute() != own:
            taken.add(task.id)
    return frozenset(taken)


def _problem_line(source: Path, p: RowProblem) -> str:
    column = f"{p.column}: " if p.column else ""
    return f"{source}:{p.line}: {p.severity}: {column}{p.message} [{p.rule}]"


def _migrate_json(
    args: argparse.Namespace,
    migration: Migration,
    outcomes: list[tuple[Any, Outcome]],
    complete: bool,
) -> dict[str, Any]:
    return {
        "complete": complete,
        "dry_run": args.dry_run,
        "rows": migration.rows,
        "failed_rows": sorted(migration.failed_rows),
        "tasks": [
            {
                "id": d.id,
                "file": str(args.out / d.file_name),
                "rows": list(d.rows),
                "bases": list(d.bases),
                "outcome": outcome,
            }
            for d, outcome in outcomes
        ],
        "problems": [
            {
                "line": p.line,
                "severity": p.severity,
                "column": p.column,
                "rule": p.rule,
                "message": p.message,
            }
            for p in migration.problems
        ],
    }


def read_export(path: Path, encoding: str = "utf-8") -> list[Row]:
    """The rows of an export file; LegacyFileError for anything that stops the whole file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LegacyFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return read_rows(decode(raw, encoding))


def place(document: TaskDocument, out: Path, *, force: bool, dry_run: bool) -> Outcome:
    """Write one task file into ``out`` unless an identical one is there; an existing file
    that differs is left alone unless ``force`` (:func:`~b2bd.migrate.placement`). Writes go
    through a hidden temporary file and a rename, so a daemon watching ``out`` never sees half
    a file. ``dry_run`` writes nothing and says what would happen."""
    target = out / document.file_name
    data = document.text.encode("utf-8")
    try:
        existing = target.read_bytes() if target.exists() else None
    except OSError as exc:
        raise LegacyFileError(f"cannot read {target}: {exc.strerror or exc}") from exc
    outcome = placement(existing, data, force=force)
    if dry_run or outcome in ("unchanged", "left-alone"):
        return outcome
    try:
        # Task files are read by the daemon's own user: world-readable, like a git checkout's.
        with Folder.open(out, create=True, mode=0o755) as folder:
            folder.write_file(document.file_name, data, mode=0o644)
    except OSError as exc:
        raise LegacyFileError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return outcome
