"""Is the LA, and is each base, ready for B2B:Student scheduled tasks? The verdicts, pure
(DESIGN sections 2, 3, 5); :mod:`b2bd.preflight` asks the connectors and the file system and
hands what they said to these.

Every verdict about a base comes from :func:`b2bd.prerequisites.unmet`, the one check that
``validate`` and every transfer make too; this module turns its findings into :class:`Check`
lines with a status and, for a failure, a reason class (``prerequisite``, ``lockdown``,
``disabled``, or the connector's ``unreachable``, ``bad-data``, ``internal``...): the static
checks from bases.yaml alone (:func:`static_checks`), what a manifest says
(:func:`manifest_checks`), what a connector's refusal means for the live checks
(:func:`refused_checks`), One's release (:func:`one_version_check`) and the overall verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from b2bd.config.build import version_tuple
from b2bd.config.model import Base, Settings, Task
from b2bd.connectors.source import ConnectorError, FailureReason, Manifest
from b2bd.prerequisites import (
    Obstacle,
    Unmet,
    Verdict,
    live_unmet,
    one_release_shortfall,
    one_shortfall,
    registered_unmet,
    sims_shortfall,
    unmet,
)

Status = Literal["pass", "fail", "skip", "info"]
Reason = FailureReason | Obstacle

LIVE_CHECKS = ("reachable", "manifest", "laestab", "services-manager", "mis", "sims-version")
"""The live checks in the order they run; each needs the ones before it."""

CHECK_FOR_REASON: dict[FailureReason, str] = {
    "unreachable": "reachable",
    "timeout": "reachable",
    "auth": "reachable",
    "bad-data": "manifest",
    "prerequisite": "services-manager",
    "local": "connector",
    "internal": "connector",
}
"""Which live check a connector's refusal belongs to, by its reason class."""


@dataclass(frozen=True)
class Check:
    """One check's outcome. ``reason`` is set only for a failure; ``detail`` says what was seen
    (never pupil data)."""

    name: str
    status: Status
    detail: str = ""
    reason: Reason | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"


@dataclass(frozen=True)
class BaseReport:
    """Every check of one base. ``passed`` when none failed (info and skip do not count)."""

    base_id: str
    name: str
    enabled: bool
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.checks)

    @property
    def verdict(self) -> Verdict:
        """What a transfer would do: skipped for ``disabled``/``lockdown``, else failed with
        the first failure's reason class, else run (the rule of
        :func:`b2bd.prerequisites.verdict`, applied to these checks)."""
        failures = [c for c in self.checks if c.failed]
        if not failures:
            return Verdict("run")
        message = "; ".join(f"{c.name}: {c.detail}" for c in failures)
        skip = next((c for c in failures if c.reason in ("disabled", "lockdown")), None)
        if skip is not None:
            return Verdict("skipped", skip.reason, message)
        return Verdict("failed", failures[0].reason, message)


@dataclass(frozen=True)
class LaReport:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.checks)


def _fail(found: Unmet) -> Check:
    return Check(found.check, "fail", found.message, found.obstacle)


def static_checks(base: Base, settings: Settings | None, task: Task | None = None) -> list[Check]:
    """The checks bases.yaml alone decides, for ``task`` or (None) for any task."""
    if task is not None:
        found = unmet(task, base, settings)
        checks = [_fail(u) for u in found]
        if not any(u.check == "prerequisites" for u in found):
            checks.insert(0, _prerequisites_pass(base))
        return checks
    registered = [u for u in registered_unmet(base) if u.obstacle != "disabled"]
    # Without a task, lockdown is information: it stops the LA from targeting the school, which
    # validate already reports for every task that tries.
    checks = [
        Check(u.check, "info", "school has locked down its tasks") if u.skips else _fail(u)
        for u in registered
    ]
    if not any(u.check == "prerequisites" for u in registered):
        checks.insert(0, _prerequisites_pass(base))
        blockers = sims_shortfall(base.sims_version, "attainment")
        blockers += one_shortfall(settings, "attainment")
        checks.append(Check("attainment", "info", "; ".join(blockers) if blockers else "ready"))
    return checks


def _prerequisites_pass(base: Base) -> Check:
    return Check("prerequisites", "pass", f"SIMS {base.sims_version}, B2B Phase 2, SSM installed")


def manifest_checks(base: Base, manifest: Manifest, task: Task | None = None) -> list[Check]:
    """What an accepted manifest says, through :func:`b2bd.prerequisites.live_unmet` (pure).
    Without a task, the minimums of every task apply."""
    data_type = task.data.type if task is not None else "changed"
    failed = {u.check: u for u in live_unmet(base, manifest, data_type)}
    checks = []
    for name, shown in (
        ("laestab", manifest.laestab or "not reported"),
        ("services-manager", manifest.services_manager or "not applicable"),
        ("mis", base.mis if manifest.mis is not None else ""),
        ("sims-version", ""),
    ):
        if name in failed:
            checks.append(_fail(failed[name]))
        elif name == "laestab":
            continue  # shown only when it fails (the connector checks it first)
        elif name == "sims-version":
            checks.append(_sims_version_info(base, manifest.sims_version))
        elif name == "mis" and manifest.mis is None:
            checks.append(Check("mis", "info", f"the endpoint does not say which SIMS; {base.mis}"))
        else:
            checks.append(Check(name, "pass", shown))
    return checks


def _sims_version_info(base: Base, reported: str | None) -> Check:
    """A live release that meets the minimums passes; one that differs from bases.yaml is
    shown as information so that bases.yaml gets corrected (schools upgrade before the
    registry is edited). The export's own value is never quoted (DESIGN section 5)."""
    if reported is None:
        return Check("sims-version", "info", "the export does not report its SIMS version")
    try:
        agrees = version_tuple(reported) == version_tuple(base.sims_version)
    except ValueError:
        agrees = False  # not a version at all: live_unmet has failed it already
    if not agrees:
        return Check(
            "sims-version",
            "info",
            f"the export's SIMS version is not bases.yaml's {base.sims_version}: check the "
            "school's SIMS release (manifest.json) and correct bases.yaml",
        )
    return Check("sims-version", "pass", base.sims_version)


def refused_checks(error: ConnectorError) -> list[Check]:
    """The live checks when the connector refused: the check ``error``'s reason class belongs
    to (CHECK_FOR_REASON) fails, the ones before it passed, the ones after it are skipped."""
    failed = CHECK_FOR_REASON.get(error.reason, "connector")
    if failed == "connector":
        return [Check("connector", "fail", error.message, error.reason)]
    shown = tuple(c for c in LIVE_CHECKS if c != "laestab")
    position = shown.index(failed)
    checks = [Check(name, "pass") for name in shown[:position]]
    checks.append(Check(failed, "fail", error.message, error.reason))
    checks.extend(Check(name, "skip", f"needs {failed}") for name in shown[position + 1 :])
    return checks


def one_version_check(settings: Settings) -> Check:
    """One's release against the minimum for scheduled tasks."""
    if (shortfall := one_release_shortfall(settings)) is not None:
        return Check("one-version", "fail", shortfall, "prerequisite")
    return Check("one-version", "pass", settings.one_version)


def overall(la: LaReport | None, bases: Iterable[BaseReport]) -> bool:
    """Ready when the LA passes and every enabled base passes (disabled bases are shown but
    do not count)."""
    return (la is None or la.passed) and all(r.passed for r in bases if r.enabled)
