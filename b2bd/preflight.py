"""Is the LA, and is each base, ready for B2B:Student scheduled tasks? (DESIGN sections 2, 3).

Two kinds of check, each a :class:`Check` with a status and, for a failure, the reason class of
DESIGN section 5 (``prerequisite``, ``unreachable``, ``bad-data``, ``internal``...):

- **static**, from bases.yaml alone (pure): the prerequisites of
  :func:`b2bd.config.rules.prerequisite_failures` (SIMS >= 7.166, B2B:Student Phase 2, SIMS
  Services Manager installed), plus lockdown and attainment readiness shown as information;
- **live**, through the base's connector (:func:`b2bd.connectors.open_source`): the endpoint is
  reachable, its manifest is present and well formed, SIMS Services Manager is running, and the
  manifest's MIS and SIMS version agree with bases.yaml. They run in that order; once one fails,
  the ones that depend on it are reported as skipped rather than guessed.

:func:`check_base` is what both ``b2bd preflight`` and the transfer engine call: a transfer whose
base report has a failure does not start and is recorded with :attr:`BaseReport.failure`'s reason
class. An endpoint type with no connector registered (``wonde`` until its connector lands) fails
the ``connector`` check with reason ``internal``: a base nobody can check is not known to be ready,
and a transfer to it would fail the same way. When a connector is registered in
``b2bd.connectors.SOURCES`` its ``manifest()`` performs its own live checks (for Wonde: school
reachable, access approved) and preflight reports them with no change here.

:func:`check_la` checks b2bd.yaml's side: One's release and that the state dir and LA store can be
written. It never creates anything: a missing directory passes when its nearest existing parent is
writable (the daemon creates it on first start).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from b2bd.config.build import version_tuple
from b2bd.config.model import Base, Settings
from b2bd.config.rules import (
    ATTAINMENT_MIN_ONE,
    MIN_ONE_VERSION,
    prerequisite_failures,
)
from b2bd.connectors import ConnectorError, FailureReason, Manifest, Source, open_source

Status = Literal["pass", "fail", "skip", "info"]

LIVE_CHECKS = ("reachable", "manifest", "services-manager", "mis", "sims-version")
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
    reason: FailureReason | None = None

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
    def failure(self) -> tuple[FailureReason, str] | None:
        """The first failure as (reason class, message), for a transfer that must not start."""
        for check in self.checks:
            if check.failed:
                return check.reason or "internal", f"{check.name}: {check.detail}"
        return None


@dataclass(frozen=True)
class LaReport:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.checks)


# ---- static (pure) ---------------------------------------------------------------------------


def static_checks(
    base: Base, settings: Settings | None, data_type: str | None = None
) -> list[Check]:
    """The checks bases.yaml alone decides.

    ``data_type`` None (preflight) checks the prerequisites every task needs and shows
    attainment readiness as information; a data type (a transfer) checks that type's own
    prerequisites, attainment's stricter SIMS and One releases included.
    """
    reasons = prerequisite_failures(base, settings, data_type or "changed")
    if data_type == "attainment" and settings is not None:
        reasons.extend(_attainment_one(settings))
    checks = [
        Check("prerequisites", "fail", "; ".join(reasons), "prerequisite")
        if reasons
        else Check("prerequisites", "pass", f"SIMS {base.sims_version}, B2B Phase 2, SSM installed")
    ]
    if base.lockdown:
        # Lockdown stops the LA from managing the school's tasks, not data moving: information.
        checks.append(Check("lockdown", "info", "school has locked down its tasks"))
    if data_type is None and not reasons:
        blockers = prerequisite_failures(base, settings, "attainment")
        if settings is not None:
            blockers.extend(_attainment_one(settings))
        detail = "; ".join(blockers) if blockers else "ready"
        checks.append(Check("attainment", "info", detail))
    return checks


def _attainment_one(settings: Settings) -> list[str]:
    if version_tuple(settings.one_version) < version_tuple(ATTAINMENT_MIN_ONE):
        return [f"One {settings.one_version} < {ATTAINMENT_MIN_ONE} needed for attainment"]
    return []


def manifest_checks(base: Base, manifest: Manifest) -> list[Check]:
    """What an accepted manifest says, compared with bases.yaml (pure)."""
    checks = [Check("services-manager", "pass", manifest.services_manager or "not applicable")]
    # Values from the export are never quoted (DESIGN section 5, "nothing echoed"): a school's
    # manifest may hold anything. Only bases.yaml's values, which the LA wrote, are shown.
    if manifest.mis != base.mis:
        checks.append(
            Check(
                "mis",
                "fail",
                f"the export's MIS is not bases.yaml's {base.mis}: check the school's MIS and "
                "correct bases.yaml",
                "prerequisite",
            )
        )
    else:
        checks.append(Check("mis", "pass", base.mis))
    checks.append(_sims_version_check(base, manifest.sims_version))
    return checks


def _sims_version_check(base: Base, reported: str | None) -> Check:
    if reported is None:
        return Check("sims-version", "info", "the export does not report its SIMS version")
    try:
        agrees = version_tuple(reported) == version_tuple(base.sims_version)
    except ValueError:
        return Check(
            "sims-version", "fail", "the export's sims_version is not a version number", "bad-data"
        )
    if not agrees:
        return Check(
            "sims-version",
            "fail",
            f"the export's SIMS version is not bases.yaml's {base.sims_version}: check the "
            "school's SIMS release (manifest.json), correct bases.yaml, then run preflight again",
            "prerequisite",
        )
    return Check("sims-version", "pass", base.sims_version)


# ---- live (I/O through the connector) ---------------------------------------------------------

Opener = Callable[..., Source]


def live_checks(base: Base, opener: Opener = open_source) -> list[Check]:
    """Ask the base's connector for its manifest and check what it says.

    A ConnectorError fails the check its reason class belongs to (CHECK_FOR_REASON); the checks
    before it passed, the ones after it are skipped.
    """
    try:
        source = opener(base.endpoint, base.id)
        manifest = source.manifest()
    except ConnectorError as error:
        failed = CHECK_FOR_REASON.get(error.reason, "connector")
        if failed == "connector":
            return [Check("connector", "fail", error.message, error.reason)]
        position = LIVE_CHECKS.index(failed)
        checks = [Check(name, "pass") for name in LIVE_CHECKS[:position]]
        checks.append(Check(failed, "fail", error.message, error.reason))
        checks.extend(
            Check(name, "skip", f"needs {failed}") for name in LIVE_CHECKS[position + 1 :]
        )
        return checks
    return [Check("reachable", "pass"), Check("manifest", "pass"), *manifest_checks(base, manifest)]


def check_base(
    base: Base,
    settings: Settings | None,
    *,
    data_type: str | None = None,
    opener: Opener = open_source,
) -> BaseReport:
    """Every check of one base, static then live (see the module docstring).

    Reads the endpoint's manifest (I/O) but nothing else; never raises for what it finds.
    """
    checks = [*static_checks(base, settings, data_type), *live_checks(base, opener)]
    return BaseReport(base.id, base.name, base.enabled, tuple(checks))


def check_la(settings: Settings) -> LaReport:
    """One's release, and that the state dir and the LA store can be written (never creates)."""
    checks = []
    if version_tuple(settings.one_version) < version_tuple(MIN_ONE_VERSION):
        checks.append(
            Check(
                "one-version",
                "fail",
                f"One {settings.one_version} < {MIN_ONE_VERSION}: scheduled tasks need "
                f"One {MIN_ONE_VERSION} or later",
                "prerequisite",
            )
        )
    else:
        checks.append(Check("one-version", "pass", settings.one_version))
    checks.append(writable_dir("state-dir", settings.state_dir))
    if settings.la_store.path is not None:
        checks.append(writable_dir("la-store", settings.la_store.path))
    return LaReport(tuple(checks))


def writable_dir(name: str, path: Path) -> Check:
    """``path`` is a writable directory, or does not exist and its nearest existing parent is
    a writable directory (so the daemon can create it). Touches nothing."""
    if path.exists():
        if not path.is_dir():
            return Check(name, "fail", f"{path} is not a directory", "prerequisite")
        if not os.access(path, os.W_OK | os.X_OK):
            return Check(name, "fail", f"{path} is not writable by this user", "prerequisite")
        return Check(name, "pass", str(path))
    parent = next(p for p in path.parents if p.exists() or p == Path(p.anchor))
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check(name, "pass", f"{path} (missing: will be created under {parent})")
    return Check(
        name,
        "fail",
        f"{path} does not exist and {parent} does not let this user create it",
        "prerequisite",
    )


def overall(la: LaReport | None, bases: Iterable[BaseReport]) -> bool:
    """Ready when the LA passes and every enabled base passes (disabled bases are shown but
    do not count)."""
    return (la is None or la.passed) and all(r.passed for r in bases if r.enabled)
