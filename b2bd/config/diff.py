"""What a config change does: two loaded configs compared, for review before merge.

Pure: both configs are loaded by the caller (the new one with the old as its last good, as a
running daemon's reload would apply it), and ``now`` is given, so the same pair always gives the
same answer. Compared are the tasks as they will run (fields after defaults, the bases they reach
after tags, exclusions and prerequisites, their next slot), the registry of bases, b2bd.yaml's
settings, and the problems validation reports.

Field names are the YAML keys (``bases.tags``, ``schedule.weekly.times``, ``policy.retries``),
so a reviewer can find them in the files. Paths are compared relative to each config dir, so the
same relative path in two dirs (or a revision extracted to a temporary dir) is no change.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from b2bd.config.model import Config, Problem, Task
from b2bd.schedule import Monthly, Once, Weekly, next_slot

# Model attribute names that differ from their YAML keys.
_YAML_NAMES = {
    "la_code": "la.code",
    "la_name": "la.name",
    "la_outbound": "la_store.outbound",
    "metrics_listen": "metrics.listen",
    "history_days": "journal.history_days",
    "token_credential": "token",
}
_RULE_KEYS: dict[type, str] = {Weekly: "weekly", Monthly: "monthly", Once: "once"}
# Not compared as fields: the identity, what the rules derived (targets are compared as bases
# gained and lost; a base's problems are in the problems), and the model's own bookkeeping.
_SKIP = frozenset({"id", "targets", "problems"})
_TICK = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class TaskSide:
    """A task added or removed: its id, file, the bases it reaches and its next slot."""

    id: str
    file: str
    targets: tuple[str, ...]
    next: dt.datetime | None
    zone: ZoneInfo


@dataclass(frozen=True)
class TaskChange:
    """A task in both configs that differs: which fields, which bases it gains and loses, and
    its next slot before and after (None: disabled, or no slot left)."""

    id: str
    fields: tuple[str, ...]
    bases_added: tuple[str, ...]
    bases_removed: tuple[str, ...]
    next_before: dt.datetime | None
    next_after: dt.datetime | None
    zone_before: ZoneInfo
    zone_after: ZoneInfo


@dataclass(frozen=True)
class BaseChange:
    id: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class ConfigDiff:
    """Everything that differs, each list sorted (tasks and bases by id, problems by place).

    ``kept`` names the tasks whose file is invalid in the new config while a valid version was
    in the old: a reload keeps that old version in force, so they are not counted as changed.
    ``new_errors`` counts the new config's errors (a daemon started on it refuses it);
    ``files_differing`` counts files whose bytes differ, whether or not that changes anything.
    """

    tasks_added: tuple[TaskSide, ...] = ()
    tasks_removed: tuple[TaskSide, ...] = ()
    tasks_changed: tuple[TaskChange, ...] = ()
    bases_added: tuple[str, ...] = ()
    bases_removed: tuple[str, ...] = ()
    bases_changed: tuple[BaseChange, ...] = ()
    settings_changed: tuple[str, ...] = ()
    problems_introduced: tuple[Problem, ...] = ()
    problems_fixed: tuple[Problem, ...] = ()
    kept: tuple[str, ...] = ()
    new_errors: int = 0
    files_differing: int = 0

    @property
    def changed(self) -> bool:
        return any(
            (
                self.tasks_added,
                self.tasks_removed,
                self.tasks_changed,
                self.bases_added,
                self.bases_removed,
                self.bases_changed,
                self.settings_changed,
                self.problems_introduced,
                self.problems_fixed,
            )
        )


def compare(old: Config, new: Config, now: dt.datetime) -> ConfigDiff:
    """What changes when ``new`` replaces ``old``, with next slots taken at or after ``now``."""
    same = _same_value(old.root, new.root)
    added = sorted(new.tasks.keys() - old.tasks.keys())
    removed = sorted(old.tasks.keys() - new.tasks.keys())
    changed: list[TaskChange] = []
    for task_id in sorted(old.tasks.keys() & new.tasks.keys()):
        before, after = old.tasks[task_id], new.tasks[task_id]
        if before is after:
            continue  # the old task itself: kept in force over an invalid new file
        names = tuple(_differences(before, after, "", same))
        gained = tuple(sorted(set(after.targets) - set(before.targets)))
        lost = tuple(sorted(set(before.targets) - set(after.targets)))
        if names or gained or lost:
            changed.append(
                TaskChange(
                    task_id,
                    names,
                    gained,
                    lost,
                    next_run(before, now),
                    next_run(after, now),
                    before.schedule.timezone,
                    after.schedule.timezone,
                )
            )
    bases_changed = [
        BaseChange(base_id, names)
        for base_id in sorted(old.bases.keys() & new.bases.keys())
        if (names := tuple(_differences(old.bases[base_id], new.bases[base_id], "", same)))
    ]
    settings: tuple[str, ...] = ()
    if old.settings is not None and new.settings is not None:
        settings = tuple(_differences(old.settings, new.settings, "", same))
    elif old.settings is not new.settings:
        settings = ("b2bd.yaml",)
    # Tasks the reload keeps (their new file, or tasks/, is unusable): the old task object is
    # in force, so its warnings still apply though the new load did not report them again.
    in_force = {t.file for i, t in new.tasks.items() if t is old.tasks.get(i)}
    introduced, fixed = _problem_changes(old, new)
    fixed = tuple(p for p in fixed if not (p.severity == "warning" and p.file in in_force))
    bad_files = {p.file for p in new.problems if p.severity == "error"}
    kept = sorted(
        task_id
        for task_id, task in new.tasks.items()
        if task is old.tasks.get(task_id) and task.file in bad_files
    )
    differing = {
        name
        for name in old.digests.keys() | new.digests.keys()
        if old.digests.get(name) != new.digests.get(name)
    }
    return ConfigDiff(
        tasks_added=tuple(_side(new.tasks[i], now) for i in added),
        tasks_removed=tuple(_side(old.tasks[i], now) for i in removed),
        tasks_changed=tuple(changed),
        bases_added=tuple(sorted(new.bases.keys() - old.bases.keys())),
        bases_removed=tuple(sorted(old.bases.keys() - new.bases.keys())),
        bases_changed=tuple(bases_changed),
        settings_changed=settings,
        problems_introduced=introduced,
        problems_fixed=fixed,
        kept=tuple(kept),
        new_errors=sum(p.severity == "error" for p in new.problems),
        files_differing=len(differing),
    )


def next_run(task: Task, now: dt.datetime) -> dt.datetime | None:
    """The task's first slot at or after ``now`` (None when disabled or none is left)."""
    if not task.enabled:
        return None
    return next_slot(task.schedule, now - _TICK)


def _side(task: Task, now: dt.datetime) -> TaskSide:
    return TaskSide(task.id, task.file, task.targets, next_run(task, now), task.schedule.timezone)


def _same_value(old_root: Path, new_root: Path) -> Callable[[Any, Any], bool]:
    """Equality of two leaf values; paths are equal when they are the same path, or the same
    path relative to their own config dir (``../var/state`` in both)."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, Path) and isinstance(b, Path):
            return a == b or os.path.relpath(a, old_root) == os.path.relpath(b, new_root)
        if isinstance(a, ZoneInfo) and isinstance(b, ZoneInfo):
            return a.key == b.key
        return bool(a == b)

    return same


def _differences(a: Any, b: Any, prefix: str, same: Callable[[Any, Any], bool]) -> Iterator[str]:
    """The dotted YAML names of the fields in which ``a`` and ``b`` differ, in field order."""
    if type(a) is type(b) and is_dataclass(a) and not isinstance(a, type):
        for f in fields(a):
            if f.name in _SKIP:
                continue
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if f.name == "rule" and type(va) is not type(vb):  # weekly -> monthly, say
                kinds = (_RULE_KEYS.get(type(va), ""), _RULE_KEYS.get(type(vb), ""))
                yield from (_join(prefix, k) for k in kinds if k)
                continue
            # A schedule's rule is written as its kind: schedule.weekly.times.
            name = _RULE_KEYS.get(type(va), "") if f.name == "rule" else f.name
            yield from _differences(va, vb, _join(prefix, _YAML_NAMES.get(name, name)), same)
    elif isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(a.keys() | b.keys()):
            if key not in a or key not in b:
                yield _join(prefix, str(key))
            else:
                yield from _differences(a[key], b[key], _join(prefix, str(key)), same)
    elif isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        if not all(same(x, y) for x, y in zip(a, b, strict=True)):
            yield prefix
    elif not same(a, b):
        yield prefix


def _join(prefix: str, name: str) -> str:
    if not name:
        return prefix
    return f"{prefix}.{name}" if prefix else name


def _problem_key(problem: Problem, root: Path) -> tuple[str, str, str, str]:
    """A problem's identity across the two configs: not where in its file it is (an edit above
    it moves it; ``tags: [x]`` -> ``all: true`` moves an exclusion's pointer), and its message
    with the config dir's own path taken out."""
    message = problem.message.replace(f"{root}{os.sep}", "").replace(str(root), ".")
    return (problem.file, problem.rule, problem.severity, message)


def _problem_changes(old: Config, new: Config) -> tuple[tuple[Problem, ...], tuple[Problem, ...]]:
    """(introduced, fixed): the new config's problems the old did not have, and the reverse,
    counted (two identical warnings where there was one: one introduced). A warning that one
    side accepts (b2bd.yaml ``ignore:``, in ``Config.ignored``) still counts as had there: a rule
    newly accepted fixes nothing (the ``ignore`` setting shows as changed)."""
    old_all = (*old.problems, *old.ignored)
    new_all = (*new.problems, *new.ignored)
    return (
        _unmatched(new.problems, new.root, Counter(_problem_key(p, old.root) for p in old_all)),
        _unmatched(old.problems, old.root, Counter(_problem_key(p, new.root) for p in new_all)),
    )


def _unmatched(
    problems: Iterable[Problem], root: Path, others: Counter[tuple[str, str, str, str]]
) -> tuple[Problem, ...]:
    left: list[Problem] = []
    for problem in problems:
        key = _problem_key(problem, root)
        if others[key] > 0:
            others[key] -= 1
        else:
            left.append(problem)
    return tuple(left)


def instant(value: dt.datetime | None) -> str | None:
    """A slot as JSON shows it: UTC, ``Z``, whole seconds (as ``plan --format json``)."""
    return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def problem_json(p: Problem) -> dict[str, Any]:
    """One problem as ``validate --format json`` shows it."""
    return {
        "severity": p.severity,
        "file": p.file,
        "line": p.line,
        "column": p.column,
        "path": p.path,
        "rule": p.rule,
        "message": p.message,
    }


def as_json(diff: ConfigDiff) -> dict[str, Any]:
    """The diff in DESIGN section 8's JSON shape (plus ``settings``: b2bd.yaml's changed keys)."""
    return {
        "tasks": {
            "added": [{"id": t.id} for t in diff.tasks_added],
            "removed": [{"id": t.id} for t in diff.tasks_removed],
            "changed": [
                {
                    "id": c.id,
                    "fields": list(c.fields),
                    "bases_added": list(c.bases_added),
                    "bases_removed": list(c.bases_removed),
                    "next_before": instant(c.next_before),
                    "next_after": instant(c.next_after),
                }
                for c in diff.tasks_changed
            ],
        },
        "bases": {
            "added": [{"id": b} for b in diff.bases_added],
            "removed": [{"id": b} for b in diff.bases_removed],
            "changed": [{"id": b.id, "fields": list(b.fields)} for b in diff.bases_changed],
        },
        "problems": {
            "introduced": [problem_json(p) for p in diff.problems_introduced],
            "fixed": [problem_json(p) for p in diff.problems_fixed],
        },
        "settings": {"changed": list(diff.settings_changed)},
    }
