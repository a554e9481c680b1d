"""``b2bd preflight`` and ``b2bd migrate``: onboarding schools (the checks live in
:mod:`b2bd.preflight`, the conversion in :mod:`b2bd.migrate`)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from b2bd.cli import UsageError
from b2bd.config.load import BASES_FILE, SETTINGS_FILE, ConfigDirError, load_config
from b2bd.config.model import Base, Config, Task
from b2bd.migrate import (
    LegacyFileError,
    Migration,
    Outcome,
    RowProblem,
    TargetConfig,
    migrate,
    place,
    read_export,
)
from b2bd.preflight import BaseReport, Check, LaReport, check_base, check_la, overall

EXIT_OK = 0
EXIT_FAILED = 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "preflight", help="check the LA and every base against B2B:Student's prerequisites"
    )
    p.add_argument(
        "--task",
        metavar="ID",
        help="check the bases this task selects as its transfers would, and say what each "
        "transfer would do now (run, skipped, failed)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run_preflight)

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


def _load(root: Path) -> Config:
    try:
        return load_config(root)
    except ConfigDirError as exc:
        raise UsageError(str(exc)) from exc


# ---- preflight -------------------------------------------------------------------------------


def run_preflight(args: argparse.Namespace) -> int:
    config = _load(args.config)
    la = _la_report(config)
    task = _task(config, args.task) if args.task else None
    bases = selected_bases(task, config) if task else list(config.bases.values())
    reports = [check_base(base, config.settings, task=task) for base in bases]
    ready = overall(la, reports)
    if args.format == "json":
        print(json.dumps(_preflight_json(config, la, reports, ready), indent=2))
    else:
        print(_line(f"LA {_la_name(config)}", la.checks, la.passed))
        for report in reports:
            label = f"{report.base_id} {report.name}"
            if not report.enabled:
                label += " (disabled: does not count)"
            line = _line(label, report.checks, report.passed)
            if task is not None:
                said = report.verdict
                line += f" => {said.outcome}" + (f" ({said.reason})" if said.reason else "")
            print(line)
        enabled = [r for r in reports if r.enabled]
        failing = sum(not r.passed for r in enabled)
        verdict = "ready" if ready else "NOT READY"
        print(
            f"preflight: {len(enabled)} enabled bases, {failing} failing; LA "
            f"{'ok' if la.passed else 'FAILING'}: {verdict}"
        )
    return EXIT_OK if ready else EXIT_FAILED


def _task(config: Config, task_id: str) -> Task:
    task = config.tasks.get(task_id)
    if task is None:
        known = ", ".join(sorted(config.tasks)) or "none"
        raise UsageError(
            f"no valid task {task_id!r} in {config.root} (valid tasks: {known}; an invalid "
            "task file is reported by `b2bd validate`)"
        )
    return task


def selected_bases(task: Task, config: Config) -> list[Base]:
    """Every base the task's selector names (ids, tags, all), whatever validate made of it:
    preflight says what would happen to each."""
    chosen = [config.bases[b] for b in task.bases.ids if b in config.bases]
    tags = set(task.bases.tags)
    chosen += [b for b in config.bases.values() if task.bases.all or tags & b.tags]
    return list({b.id: b for b in chosen}.values())


def _la_name(config: Config) -> str:
    s = config.settings
    return f"{s.la_code} {s.la_name}" if s else "(b2bd.yaml unusable)"


def _la_report(config: Config) -> LaReport:
    own = [
        p
        for p in config.problems
        if p.file in (SETTINGS_FILE, BASES_FILE) and p.severity == "error"
    ]
    checks: list[Check] = []
    if own:
        first = own[0]
        checks.append(
            Check(
                "config",
                "fail",
                f"{len(own)} error(s) in {SETTINGS_FILE}/{BASES_FILE}, first "
                f"{first.file}:{first.line}: {first.message} [{first.rule}]; run b2bd validate",
                "internal",
            )
        )
    if config.settings is None:
        return LaReport((*checks, Check("settings", "fail", "b2bd.yaml is unusable", "internal")))
    to_school = any(t.enabled and t.direction == "to-school" for t in config.tasks.values())
    return LaReport((*checks, *check_la(config.settings, to_school=to_school).checks))


_CHECK_TEXT = {
    # status -> how a check reads in the one-line summary
    "pass": "{name} ok",
    "fail": "{name} FAIL ({detail})",
    "skip": "{name} skipped ({detail})",
    "info": "{name}: {detail}",
}


def _line(label: str, checks: tuple[Check, ...], passed: bool) -> str:
    parts = []
    for c in checks:
        text = _CHECK_TEXT[c.status].format(name=c.name, detail=c.detail).replace(" ()", "")
        parts.append(f"{text} [{c.reason}]" if c.reason else text)
    return f"{label}: {'ok' if passed else 'FAIL'}: " + "; ".join(parts)


def _check_json(c: Check) -> dict[str, Any]:
    return {"name": c.name, "status": c.status, "detail": c.detail, "reason": c.reason}


def _preflight_json(
    config: Config, la: LaReport, reports: list[BaseReport], ready: bool
) -> dict[str, Any]:
    return {
        "ready": ready,
        "la": {
            "code": config.settings.la_code if config.settings else None,
            "ok": la.passed,
            "checks": [_check_json(c) for c in la.checks],
        },
        "bases": [
            {
                "id": r.base_id,
                "name": r.name,
                "enabled": r.enabled,
                "ok": r.passed,
                "verdict": r.verdict.outcome,
                "reason": r.verdict.reason,
                "checks": [_check_json(c) for c in r.checks],
            }
            for r in reports
        ],
    }


# ---- migrate ---------------------------------------------------------------------------------

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
    config = _load(args.config)
    if config.settings is None or not config.bases:
        raise UsageError(
            f"{args.config}: migrate checks tasks against the config's b2bd.yaml and bases.yaml, "
            "and they are unusable here: run b2bd validate, or give --config DIR"
        )
    out: Path = args.out
    registry = TargetConfig(config.bases, config.settings, _taken_ids(config, out))
    try:
        rows = read_export(args.legacy, args.encoding)
        migration = migrate(rows, args.legacy.name, registry, dt.datetime.now(dt.UTC))
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
