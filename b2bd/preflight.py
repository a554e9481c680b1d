"""Is the LA, and is each base, ready for B2B:Student scheduled tasks? (DESIGN sections 2, 3, 5).

Every verdict about a base comes from :func:`b2bd.prerequisites.unmet`, the one check that
``validate`` and every transfer make too; this module turns its findings into :class:`Check`
lines with a status and, for a failure, a reason class (``prerequisite``, ``lockdown``,
``disabled``, or the connector's ``unreachable``, ``bad-data``, ``internal``...):

- **static**, from bases.yaml alone (pure): the registry entry's own problems, the
  prerequisites (SIMS >= 7.166, B2B:Student Phase 2, SIMS Services Manager installed), and, for a
  task, its own (attainment minimums, SIMS Primary only kinds, lockdown: the transfer would be
  skipped). Without a task, lockdown and attainment readiness are information;
- **live**, through the base's connector (:func:`b2bd.connectors.table.open_source`): the endpoint
  is reachable, its manifest is present and well formed, and what it says (LAESTAB, SIMS Services
  Manager running, MIS, SIMS version) passes :func:`b2bd.prerequisites.live_unmet`. They run in that
  order; once one fails, the ones that depend on it are reported as skipped rather than guessed. A
  to-school transfer never reads the school's export, only needs its folder: for a
  to-school task the live part is that folder alone.

:func:`check_base` with a task answers "what would a transfer of this task to this base do now":
:attr:`BaseReport.verdict` is the transfer's outcome (``run``, ``skipped`` or ``failed``) and
reason. An endpoint type with no connector registered (``wonde`` until its connector lands) fails
the ``connector`` check with reason ``internal``, as a transfer to it would.

:func:`check_la` checks b2bd.yaml's side, the counterpart of One's "Provider Portal installed
and configured": One's release, that the state dir and the LA store can be written, and that the
LA's outbound folder (what to-school tasks send) can be read. It never creates anything: a
missing directory passes when its nearest existing parent is writable (the daemon creates it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from b2bd.config.build import version_tuple
from b2bd.config.model import Base, Settings, Task
from b2bd.connectors.source import ConnectorError, FailureReason, Manifest, Source, expiring
from b2bd.connectors.table import open_source
from b2bd.prerequisites import (
    MIN_ONE_VERSION,
    Obstacle,
    Unmet,
    Verdict,
    live_unmet,
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

LIVE_TIMEOUT = 60.0
"""Seconds one base's live check may take: a share that hangs or an API server that trickles
fails ``reachable`` (``timeout``) instead of holding preflight."""


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
            return Verdict("skipped", skip.reason, message)  # type: ignore[arg-type]
        return Verdict("failed", failures[0].reason, message)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LaReport:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.checks)


def _fail(found: Unmet) -> Check:
    return Check(found.check, "fail", found.message, found.obstacle)


# ---- static (pure) ---------------------------------------------------------------------------


def static_checks(base: Base, settings: Settings | None, task: Task | None = None) -> list[Check]:
    """The checks bases.yaml alone decides, for ``task`` or (None) for any task."""
    if task is not None:
        found = unmet(task, base, settings)
        checks = [_fail(u) for u in found]
        if not any(u.check == "prerequisites" for u in found):
            checks.insert(0, _prerequisites_pass(base))
        return checks
    found = [u for u in registered_unmet(base) if u.obstacle != "disabled"]
    # Without a task, lockdown is information: it stops the LA from targeting the school, which
    # validate already reports for every task that tries.
    checks = [
        Check(u.check, "info", "school has locked down its tasks") if u.skips else _fail(u)
        for u in found
    ]
    if not any(u.check == "prerequisites" for u in found):
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


# ---- live (I/O through the connector) ---------------------------------------------------------

Opener = Callable[..., Source]


def live_checks(
    base: Base,
    opener: Opener = open_source,
    task: Task | None = None,
    settings: Settings | None = None,
) -> list[Check]:
    """Ask the base's connector for its manifest and check what it says (for a to-school task:
    only that the school's folder is there, which is all such a transfer needs of it).
    ``settings`` give the connector what it needs beyond the endpoint (b2bd.yaml's credential
    fallbacks for a token).

    A ConnectorError fails the check its reason class belongs to (CHECK_FOR_REASON); the checks
    before it passed, the ones after it are skipped.
    """
    if task is not None and task.direction == "to-school":
        path = base.endpoint.path
        if base.endpoint.type == "directory" and path is not None and not path.is_dir():
            return [Check("reachable", "fail", f"{path}: no such folder", "unreachable")]
        return [Check("reachable", "pass")]
    try:
        source = opener(base.endpoint, base.id, settings)
        try:
            manifest = source.manifest(
                deadline=expiring(LIVE_TIMEOUT, f"no answer within {LIVE_TIMEOUT:.0f} s")
            )
        finally:
            source.close()
    except ConnectorError as error:
        failed = CHECK_FOR_REASON.get(error.reason, "connector")
        if failed == "connector":
            return [Check("connector", "fail", error.message, error.reason)]
        shown = tuple(c for c in LIVE_CHECKS if c != "laestab")
        position = shown.index(failed)
        checks = [Check(name, "pass") for name in shown[:position]]
        checks.append(Check(failed, "fail", error.message, error.reason))
        checks.extend(Check(name, "skip", f"needs {failed}") for name in shown[position + 1 :])
        return checks
    return [
        Check("reachable", "pass"),
        Check("manifest", "pass"),
        *manifest_checks(base, manifest, task),
    ]


def check_base(
    base: Base,
    settings: Settings | None,
    *,
    task: Task | None = None,
    opener: Opener = open_source,
) -> BaseReport:
    """Every check of one base, static then live (see the module docstring); with ``task``,
    its :attr:`~BaseReport.verdict` is what a transfer of that task would do now.

    Reads the endpoint's manifest (I/O) but nothing else; never raises for what it finds.
    """
    checks = [*static_checks(base, settings, task), *live_checks(base, opener, task, settings)]
    return BaseReport(base.id, base.name, base.enabled, tuple(checks))


def check_la(settings: Settings, *, to_school: bool = False) -> LaReport:
    """One's release, that the state dir and the LA store can be written, and that the LA's
    outbound folder can be read (needed when ``to_school`` tasks exist). Never creates."""
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
        outbound = settings.la_outbound or settings.la_store.path / "outbound"
        checks.append(readable_dir("outbound", outbound, needed=to_school))
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


def readable_dir(name: str, path: Path, *, needed: bool) -> Check:
    """``path`` is a directory this user can list and read. Missing is a failure only when it
    is ``needed`` (a to-school task would find nothing to send), else information."""
    if not path.exists():
        if needed:
            return Check(
                name, "fail", f"{path} does not exist: to-school tasks read it", "prerequisite"
            )
        return Check(name, "info", f"{path} does not exist (no to-school task reads it)")
    if not path.is_dir():
        return Check(name, "fail", f"{path} is not a directory", "prerequisite")
    if not os.access(path, os.R_OK | os.X_OK):
        return Check(name, "fail", f"{path} is not readable by this user", "prerequisite")
    return Check(name, "pass", str(path))


def overall(la: LaReport | None, bases: Iterable[BaseReport]) -> bool:
    """Ready when the LA passes and every enabled base passes (disabled bases are shown but
    do not count)."""
    return (la is None or la.passed) and all(r.passed for r in bases if r.enabled)
