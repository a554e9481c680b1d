"""The exchange rules that a JSON Schema cannot express (pure).

Cross-field and cross-file checks: the base registry, prerequisites, lockdown, SIMS Primary
only kinds, duplicate ids, expiry and heavy month filters. Each check yields a
:class:`~b2bd.config.schema.Finding` with a JSON pointer into the file it concerns; the loader
turns pointers into line and column.

Bases a task names by id must be usable (an error otherwise); bases it reaches through tags or
``all`` that cannot take part are excluded with a warning of the same rule id, and the rest form
the task's targets.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from b2bd.config.model import Base, Endpoint, Problem, Settings, Task
from b2bd.config.schema import Finding
from b2bd.prerequisites import base_unmet, one_release_shortfall, task_unmet
from b2bd.schedule import Monthly, Once, Schedule, Weekly, next_slot
from b2bd.shard import Shard, index_from_env

HEAVY_MONTHS = 6

ERROR_RULES = frozenset(
    {
        "yaml-syntax",
        "yaml-duplicate-key",
        "yaml-ambiguous",
        "file-unreadable",
        "yaml-too-complex",
        "schema",
        "id-format",
        "id-duplicate",
        "base-unknown",
        "base-selector-empty",
        "to-school-changed-only",
        "to-school-ncy-only",
        "attendance-kind-required",
        "attendance-kind-unexpected",
        "months-attendance-only",
        "ncy-code",
        "ncy-unexpected",
        "time-format",
        "timezone-unknown",
        "la-prerequisites",
        "metrics-listen",
        "shard-index",
        "ignore-not-warning",
    }
)
"""Rule ids validation only ever reports as errors: they cannot be ignored."""

WARNING_RULES = frozenset(
    {
        # Errors for a base named by id, warnings for one reached by tag or all (excluded).
        "base-prerequisites",
        "base-lockdown",
        "sims-primary-only",
        "bases-file",
        "wonde-to-school",
        # Only ever warnings.
        "wonde-tls-unverified",
        "schedule-expired",
        "months-heavy",
        "ignore-unknown",
    }
)
"""Rule ids validation reports as warnings (some also as errors): the ones an ``ignore:`` list
in b2bd.yaml or ``validate --ignore`` may name. Ignoring one hides its warnings only; its
errors are always reported."""

RULES = ERROR_RULES | WARNING_RULES


def la_findings(settings: Settings) -> Iterator[Finding]:
    if (shortfall := one_release_shortfall(settings)) is not None:
        yield Finding("/one_version", "la-prerequisites", shortfall)


def ignore_findings(ignore: Iterable[str]) -> Iterator[Finding]:
    """b2bd.yaml ``ignore:``: a rule id that is only ever an error cannot be ignored (an
    error, ``ignore-not-warning``); one b2bd does not know is reported (a warning,
    ``ignore-unknown``: a typo, or a rule of another b2bd version)."""
    for i, rule in enumerate(ignore):
        if rule in ERROR_RULES:
            yield Finding(
                f"/ignore/{i}",
                "ignore-not-warning",
                f"{rule} is an error rule: only warnings can be ignored",
            )
        elif rule not in WARNING_RULES:
            yield Finding(
                f"/ignore/{i}",
                "ignore-unknown",
                f"{rule} is not a rule id b2bd reports: nothing to ignore",
                "warning",
            )


ShardChoice = Shard | Literal["config", "all"]
"""Whose view a load takes: ``"config"`` the shard b2bd.yaml names (its index read from the
environment when it says ``{env: NAME}``), ``"all"`` every base (``validate`` without
``--shard``: the config is checked for every instance, so an unset variable is no problem), or a
given :class:`~b2bd.shard.Shard` (``--shard I/N``)."""


def split_ignored(
    problems: Iterable[Problem], ignore: frozenset[str]
) -> tuple[tuple[Problem, ...], tuple[Problem, ...]]:
    """(reported, ignored): warnings of the ``ignore``d rules are set aside; errors never are."""
    if not ignore:
        return tuple(problems), ()
    reported: list[Problem] = []
    ignored: list[Problem] = []
    for p in problems:
        (ignored if p.severity == "warning" and p.rule in ignore else reported).append(p)
    return tuple(reported), tuple(ignored)


def resolve_shard(
    doc: Mapping[str, Any] | None, choice: ShardChoice, environ: Mapping[str, str]
) -> tuple[Shard | None, tuple[Finding, ...]]:
    """The shard a load works as (None: it owns every base) and the ``shard-index`` findings on
    b2bd.yaml's schema-valid ``shard`` mapping (``doc``; None when absent).

    An index outside ``0 .. of-1`` is an error whatever the choice; an index taken from the
    environment is only read (and its absence or a bad value only reported) for ``"config"``:
    a daemon that cannot tell which bases are its own must not start, or take all of them.
    """
    findings: list[Finding] = []
    configured: Shard | None = None
    if doc is not None:
        of, index = int(doc["of"]), doc["index"]
        if isinstance(index, int):
            if index >= of:
                findings.append(
                    Finding(
                        "/shard/index",
                        "shard-index",
                        f"shard index {index} is out of range for of: {of} (0 to {of - 1})",
                    )
                )
            else:
                configured = Shard(index, of)
        elif choice == "config":
            found = index_from_env(str(index["env"]), of, environ)
            if isinstance(found, str):
                findings.append(Finding("/shard/index/env", "shard-index", found))
            else:
                configured = Shard(found, of)
    if isinstance(choice, Shard):
        return choice, tuple(findings)
    return (configured if choice == "config" else None), tuple(findings)


def registry_problems(
    entries: Iterable[tuple[int, Base]], settings: Settings | None
) -> Iterator[tuple[int, str, str, str]]:
    """``bases-file`` problems of the registry: (entry index, base id, message for bases.yaml,
    what is wrong with the base, for the tasks that name it). A LAESTAB listed twice (the
    second entry is reported; the first is the one kept, and is marked too: nobody can say
    which is right) and a base of another LA not marked ``cross_border``."""
    first: dict[str, int] = {}
    for index, base in entries:
        if base.id in first:
            yield (
                index,
                base.id,
                f"base {base.id} is listed twice (first as entry {first[base.id] + 1})",
                "is listed twice in bases.yaml",
            )
            continue
        first[base.id] = index
        if settings and not base.cross_border and base.id[:3] != settings.la_code:
            yield (
                index,
                base.id,
                f"base {base.id} does not belong to LA {settings.la_code}; "
                "set cross_border: true if that is intended",
                f"is not in LA {settings.la_code} and not marked cross_border in bases.yaml",
            )


@dataclass(frozen=True)
class Resolution:
    """A task's bases after the rules: who takes part and what was said about the rest."""

    targets: tuple[str, ...]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class _Eligibility:
    """The registry seen by tasks of one data type (and attendance kind, for SIMS Primary)."""

    blocked: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # enabled, excluded: id, why
    usable: frozenset[str]  # enabled and nothing against them


class BaseIndex:
    """One registry arranged for resolving many tasks against it: built once per load.

    Holds the bases by tag and, per data type, which bases are usable and what excludes the
    others: that depends only on the base, the task's data type and whether its attendance kind
    is ``attendance-changed``, and 2,000 tasks against 500 bases ask it 200,000 times.
    """

    def __init__(self, bases: Mapping[str, Base], settings: Settings | None) -> None:
        self.bases = bases
        self.settings = settings
        by_tag: dict[str, list[str]] = {}
        for base_id, base in bases.items():
            for tag in base.tags:
                by_tag.setdefault(tag, []).append(base_id)
        self.by_tag = by_tag
        self._eligibility: dict[tuple[str, bool, str], _Eligibility] = {}

    def exclusions(self, base: Base, task: Task) -> tuple[tuple[str, str], ...]:
        """(rule, message) for each reason ``base`` cannot take part in ``task``, from the one
        prerequisites check (:func:`b2bd.prerequisites.base_unmet`). A disabled base is left
        out silently, so it is not among them."""
        return tuple(
            (u.rule, u.message) for u in base_unmet(task, base) if u.obstacle != "disabled"
        )

    def eligibility(self, task: Task) -> _Eligibility:
        key = (task.data.type, task.data.attendance == "attendance-changed", task.direction)
        known = self._eligibility.get(key)
        if known is None:
            blocked = []
            usable = []
            for base_id, base in self.bases.items():
                if not base.enabled:
                    continue
                problems = self.exclusions(base, task)
                if problems:
                    blocked.append((base_id, problems))
                else:
                    usable.append(base_id)
            known = _Eligibility(tuple(blocked), frozenset(usable))
            self._eligibility[key] = known
        return known


def endpoint_findings(entries: Iterable[tuple[int, Base]]) -> Iterator[Finding]:
    """Warnings about how b2bd talks to a base's endpoint: a ``wonde`` endpoint with TLS
    verification turned off, or reached over plain http other than on this host (the token
    would cross the network readable)."""
    for index, base in entries:
        endpoint = base.endpoint
        if endpoint.type != "wonde":
            continue
        if not endpoint.tls_verify:
            yield Finding(
                f"/bases/{index}/endpoint/tls_verify",
                "wonde-tls-unverified",
                f"base {base.id}: TLS verification is off, so anyone on the path can pose as "
                "the API and receive its token and pupil data; use ca_bundle for a private CA",
                "warning",
            )
        elif _plain_http_off_host(endpoint):
            yield Finding(
                f"/bases/{index}/endpoint/url",
                "wonde-tls-unverified",
                f"base {base.id}: plain http sends the token and pupil data unencrypted; use https",
                "warning",
            )


def _plain_http_off_host(endpoint: Endpoint) -> bool:
    url = endpoint.url or ""
    if not url.startswith("http://"):
        return False
    host = url[7:].split("/", 1)[0].rsplit("@", 1)[-1]
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def resolve_bases(
    task: Task,
    bases: Mapping[str, Base],
    settings: Settings | None,
    index: BaseIndex | None = None,
) -> Resolution:
    """The task's targets and the findings about its selector.

    ``index``, built from these same ``bases`` and ``settings``, saves rebuilding it per task;
    one built from others is ignored.
    """
    if index is None or index.bases is not bases or index.settings is not settings:
        index = BaseIndex(bases, settings)
    findings: list[Finding] = []
    by_id: dict[str, str] = {}  # base id -> pointer that names it
    for i, base_id in enumerate(task.bases.ids):
        if base_id not in bases:
            findings.append(
                Finding(f"/bases/ids/{i}", "base-unknown", f"base {base_id} is not in bases.yaml")
            )
        else:
            by_id.setdefault(base_id, f"/bases/ids/{i}")
    targets: set[str] = set()
    for base_id, pointer in by_id.items():
        base = bases[base_id]
        problems = index.exclusions(base, task)
        for rule, message in problems:
            findings.append(Finding(pointer, rule, message, "error"))
        if not problems and base.enabled:
            targets.add(base_id)

    # Bases reached by tag or all: disabled ones are skipped, excluded ones only warned about.
    eligible = index.eligibility(task)
    first_tag: dict[str, int] = {}  # base id -> the first of the task's tags it has
    if task.bases.all:
        targets.update(eligible.usable)
    else:
        for i, tag in enumerate(task.bases.tags):
            for base_id in index.by_tag.get(tag, ()):
                first_tag.setdefault(base_id, i)
        targets.update(first_tag.keys() & eligible.usable)
    for base_id, problems in eligible.blocked:
        if base_id in by_id:
            continue
        if task.bases.all:
            pointer = "/bases/all"
        elif base_id in first_tag:
            pointer = f"/bases/tags/{first_tag[base_id]}"
        else:
            continue
        for rule, message in problems:
            findings.append(
                Finding(pointer, rule, f"{message}: excluded from this task", "warning")
            )

    selected = bool(by_id or first_tag or (task.bases.all and bases))
    if not selected and not any(f.rule == "base-unknown" for f in findings):
        findings.append(Finding("/bases", "base-selector-empty", "the selector matches no base"))
    elif selected and not targets and not any(f.severity == "error" for f in findings):
        findings.append(
            Finding(
                "/bases",
                "base-selector-empty",
                "every base the selector matches is excluded (see the warnings)",
            )
        )
    return Resolution(tuple(sorted(targets)), tuple(findings))


def task_findings(task: Task, settings: Settings | None, now: dt.datetime) -> Iterator[Finding]:
    """Checks on one task alone: LA prerequisites for its data, expiry, heavy month filters."""
    for found in task_unmet(task, settings):
        yield Finding(_TASK_POINTERS.get(found.rule, "/data/type"), found.rule, found.message)
    schedule = task.schedule
    if next_slot(schedule, now) is None:
        pointer, what = _never_runs(schedule)
        yield Finding(pointer, "schedule-expired", f"{what}: this task will never run", "warning")
    if (task.data.months or 0) > HEAVY_MONTHS and _more_than_weekly(task):
        yield Finding(
            "/data/months",
            "months-heavy",
            f"months: {task.data.months} on a schedule more frequent than weekly; higher month "
            "values should only be run occasionally as they can import large amounts of data",
            "warning",
        )


def _never_runs(schedule: Schedule) -> tuple[str, str]:
    """Where and why a schedule with no slot left says so."""
    starts, expires = schedule.starts, schedule.expires
    if starts is not None and expires is not None and starts > expires:
        return "/schedule/starts", "starts is after expires"
    match schedule.rule:
        case Once(at=at) if starts is not None and at.date() < starts:
            return "/schedule/once", "the once slot is before starts"
        case Once(at=at) if expires is not None and at.date() > expires:
            return "/schedule/once", "the once slot is after expires"
        case Once():
            return "/schedule/once", "the once slot is in the past"
        case _ if expires is None:
            return "/schedule/monthly/days", "no listed day exists in a listed month"
        case _:
            return "/schedule/expires", "expires is past"


_TASK_POINTERS = {"to-school-ncy-only": "/cohort/group"}
"""Where a task-wide prerequisite finding points (default: the data type)."""


def _more_than_weekly(task: Task) -> bool:
    match task.schedule.rule:
        case Weekly(days=days, times=times):
            return len(days) * len(times) > 1
        case Monthly(days=days, times=times):
            return len(days) * len(times) > 4
        case Once():
            return False


def duplicate_ids(tasks: Iterable[Task]) -> dict[str, list[Task]]:
    """Task ids claimed by more than one file."""
    by_id: dict[str, list[Task]] = {}
    for task in tasks:
        by_id.setdefault(task.id, []).append(task)
    return {k: v for k, v in by_id.items() if len(v) > 1}
