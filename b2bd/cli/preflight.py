"""``b2bd preflight``: the LA and every base (or a task's bases) against B2B:Student's
prerequisites, live through each base's connector (the checks live in :mod:`b2bd.preflight`,
their verdicts in :mod:`b2bd.readiness`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from b2bd.cli import UsageError
from b2bd.cli.configdir import load
from b2bd.config.load import BASES_FILE, SETTINGS_FILE
from b2bd.config.model import Base, Config, Task
from b2bd.faults import shown
from b2bd.preflight import check_base, check_la
from b2bd.readiness import BaseReport, Check, LaReport, overall

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


# ---- preflight -------------------------------------------------------------------------------


def run_preflight(args: argparse.Namespace) -> int:
    config = load(args.config)
    la = _la_report(config)
    task = _task(config, args.task) if args.task else None
    bases = selected_bases(task, config) if task else list(config.bases.values())
    shard = config.settings.shard if config.settings else None
    if shard is not None:  # another instance reaches the others (b2bd.yaml shard:)
        bases = [b for b in bases if shard.owns(b.id)]
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
            f"no valid task {shown(task_id)!r} in {config.root} (valid tasks: {known}; an invalid "
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
