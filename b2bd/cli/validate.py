"""``b2bd validate``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from b2bd.cli import SHARD_HELP, UsageError, shard_option
from b2bd.cli.configdir import load
from b2bd.config.diff import problem_json
from b2bd.config.model import Config, Problem
from b2bd.config.rules import ERROR_RULES, WARNING_RULES, split_ignored
from b2bd.shard import Shard

EXIT_VALID = 0
EXIT_INVALID = 1


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check every config file; report every problem")
    p.add_argument("--format", choices=("text", "json", "github", "gitlab"), default="text")
    p.add_argument(
        "--strict", action="store_true", help="warnings (other than ignored ones) make it invalid"
    )
    p.add_argument(
        "--summary", action="store_true", help="counts by rule id instead of every problem"
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="RULE",
        help="accept this rule's warnings (repeatable; adds to b2bd.yaml's ignore: list)",
    )
    p.add_argument("--shard", type=shard_option, metavar="I/N", help=SHARD_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ignore = _ignored_rules(args.ignore)
    # A one-shot process without threads: a large config may be parsed on every core. The
    # config is checked for every instance (an index b2bd.yaml reads from the environment is
    # not needed), or as one shard's view.
    config = load(args.config, workers=_cores(), shard=args.shard or "all")
    problems, ignored = split_ignored(config.problems, ignore)
    ignored = tuple(sorted((*config.ignored, *ignored)))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    valid = errors == 0 and not (args.strict and warnings)
    shown = Path(args.config)
    if args.format == "json":
        report = summary(config, valid, problems, ignored)
        if args.summary:
            report["summary"] = [
                {"rule": rule, "severity": severity, "count": count}
                for rule, severity, count in counts(problems, ignored)
            ]
        print(json.dumps(report, indent=2))
    elif args.format == "github":
        for p in problems:
            print(github_line(p, shown))
    elif args.format == "gitlab":
        print(json.dumps(gitlab_report(problems, shown), indent=2))
    else:
        if args.summary:
            for rule, severity, count in counts(problems, ignored):
                print(f"{count:>8} {severity:<8} {rule}")
        else:
            for p in problems:
                print(text_line(p, shown))
        files = len(config.digests)
        verdict = "valid" if valid else "INVALID"
        tail = f", {len(ignored)} ignored" if ignored else ""
        print(
            f"{shown}: {files} files, {len(config.tasks)} tasks, {len(config.bases)} bases: "
            f"{verdict} ({errors} errors, {warnings} warnings{tail})"
        )
        if args.shard is not None:
            print(shard_line(config, args.shard))
    return EXIT_VALID if valid else EXIT_INVALID


def _ignored_rules(rules: list[str]) -> frozenset[str]:
    """``--ignore`` rule ids: a mistake there is a usage error (exit 2), before any loading."""
    for rule in rules:
        if rule in ERROR_RULES:
            raise UsageError(
                f"--ignore {rule}: {rule} is an error rule: only warnings can be ignored"
            )
        if rule not in WARNING_RULES:
            known = ", ".join(sorted(WARNING_RULES))
            raise UsageError(f"--ignore {rule}: not a warning rule id (they are: {known})")
    return frozenset(rules)


def counts(problems: Iterable[Problem], ignored: Iterable[Problem]) -> list[tuple[str, str, int]]:
    """(rule, severity, count) for each rule id and severity found, ``ignored`` counted as the
    severity "ignored": most frequent first, then by rule id and severity."""
    found: Counter[tuple[str, str]] = Counter((p.rule, p.severity) for p in problems)
    found.update((p.rule, "ignored") for p in ignored)
    return [
        (rule, severity, n)
        for (rule, severity), n in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


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


def owned_bases(config: Config, shard: Shard) -> list[str]:
    return sorted(b for b in config.bases if shard.owns(b))


def shard_line(config: Config, shard: Shard) -> str:
    """What ``--shard`` adds to the text output: how much of the config that instance owns."""
    reached = sum(bool(t.targets) for t in config.tasks.values())
    return (
        f"shard {shard}: {len(owned_bases(config, shard))} of {len(config.bases)} bases; "
        f"{reached} of {len(config.tasks)} tasks reach a base on it"
    )


def summary(
    config: Config,
    valid: bool,
    problems: Iterable[Problem] | None = None,
    ignored: Iterable[Problem] = (),
) -> dict[str, Any]:
    """``validate --format json``; loaded as one shard's view (``--shard``), also ``shard``:
    its index, count, the bases it owns and each task's targets on it (tasks without one left
    out)."""
    found: dict[str, Any] = {
        "valid": valid,
        "files": len(config.digests),
        "tasks": len(config.tasks),
        "bases": len(config.bases),
        "ignored": len(tuple(ignored)),
        "problems": [problem_json(p) for p in (config.problems if problems is None else problems)],
    }
    shard = config.settings.shard if config.settings else None
    if shard is not None:
        found["shard"] = {
            "index": shard.index,
            "of": shard.of,
            "bases": owned_bases(config, shard),
            "tasks": {t.id: list(t.targets) for t in config.tasks.values() if t.targets},
        }
    return found


GITLAB_SEVERITY = {"error": "critical", "warning": "minor"}


def gitlab_report(problems: Iterable[Problem], root: Path) -> list[dict[str, Any]]:
    """GitLab Code Quality report (a JSON list): one issue per problem. The fingerprint hashes
    the file, rule, JSON pointer and message but not the line, so a problem keeps its
    fingerprint when lines above it move (GitLab compares fingerprints between branches to show
    what a merge request introduces or fixes); the same problem twice in one file is told apart
    by its occurrence number. Paths are relative to the current directory when the config dir
    is inside it (GitLab wants them relative to the repository, and an absolute ``--config``
    would tie every fingerprint to where the runner checked the repository out)."""
    seen: Counter[tuple[str, str, str, str]] = Counter()
    issues = []
    here = Path.cwd()
    for p in problems:
        path = os.path.normpath(root / p.file)
        if os.path.isabs(path) and Path(path).is_relative_to(here):
            path = os.path.relpath(path, here)
        key = (path, p.rule, p.path, p.message)
        seen[key] += 1
        digest = hashlib.sha256("\0".join((*key, str(seen[key]))).encode()).hexdigest()
        issues.append(
            {
                "description": p.message,
                "check_name": p.rule,
                "fingerprint": digest[:32],
                "severity": GITLAB_SEVERITY[p.severity],
                "location": {"path": path, "lines": {"begin": max(p.line, 1)}},
            }
        )
    return issues


def _cores() -> int:
    """The cores this process may run on (an affinity mask or cpuset can allow fewer than the
    machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
