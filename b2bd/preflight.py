"""Is the LA, and is each base, ready for B2B:Student scheduled tasks? (DESIGN sections 2, 3, 5).

The I/O half of preflight: it asks each base's connector and the file system, and hands what
they said to the pure verdicts of :mod:`b2bd.readiness` (:class:`~b2bd.readiness.Check` lines
with a status and, for a failure, a reason class):

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
from collections.abc import Callable
from pathlib import Path

from b2bd.config.model import Base, Settings, Task
from b2bd.connectors.deadline import expiring
from b2bd.connectors.source import ConnectorError, Source
from b2bd.connectors.table import open_source
from b2bd.readiness import (
    BaseReport,
    Check,
    LaReport,
    manifest_checks,
    one_version_check,
    refused_checks,
    static_checks,
)

LIVE_TIMEOUT = 60.0
"""Seconds one base's live check may take: a share that hangs or an API server that trickles
fails ``reachable`` (``timeout``) instead of holding preflight."""


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

    A ConnectorError fails the check its reason class belongs to (:func:`refused_checks`); the
    checks before it passed, the ones after it are skipped.
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
        return refused_checks(error)
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
    checks = [one_version_check(settings)]
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
