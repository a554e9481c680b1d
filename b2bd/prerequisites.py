"""Can this task reach this base? One pure answer for ``validate``, ``preflight`` and every
transfer (DESIGN sections 3 and 5, "Run-time guards").

:func:`unmet` takes a task, a base *as registered now*, the LA's settings and, optionally, the
live manifest the base's connector returned, and lists what stands in the way, each an
:class:`Unmet` with the rule id ``validate`` reports, the name of the check ``preflight`` shows,
a message (never a value read from a school's data beyond its MIS name and SIMS version) and
what the transfer does about it:

======================  ===================  =========================================  ==========
rule                    preflight check      what                                       transfer
======================  ===================  =========================================  ==========
``base-disabled``       ``enabled``          ``enabled: false`` in bases.yaml           skipped
``base-lockdown``       ``lockdown``         the school has locked down its tasks       skipped
``bases-file``          ``registry``         the base's entry in bases.yaml is in error failed
``base-prerequisites``  ``prerequisites``    SIMS >= 7.166, B2B:Student Phase 2, SIMS   failed
                                             Services Manager installed; attainment:
                                             SIMS >= 7.168 and One >= 3.59
``sims-primary-only``   ``mis``              ``attendance-changed`` on a base not       failed
                                             registered ``sims-primary``
``to-school-…-only``    ``task``             a to-school task that is not changed/ncy   failed
``wonde-to-school``     ``endpoint``         a to-school task to a base reached through failed
                                             an API without write-back (``wonde``)
``live-laestab``        ``laestab``          the export is another school's             failed
``live-services-…``     ``services-manager`` SIMS Services Manager not running          failed
``live-mis``            ``mis``              the export's MIS is not the registered one failed
``live-sims-version``   ``sims-version``     the export's SIMS is below the minimum     failed
======================  ===================  =========================================  ==========

A failed transfer's reason class is ``prerequisite`` and it is not retried; a skipped one's
reason is ``disabled`` or ``lockdown`` (a base the LA may not, or chose not to, reach: skipping
wins over failing). A live SIMS version that differs from the registered one but meets the
minimums is no obstacle: schools upgrade before the registry is edited (``preflight`` says so as
information). Live checks concern the school's own export, so they apply to from-school tasks.

``validate`` places the task-wide findings (:func:`task_unmet`: One's release for attainment,
the to-school shape) on the task and the per-base ones (:func:`base_unmet`) on the selector;
a transfer and ``preflight --task`` take them all. The to-school shape rules are schema rules
too, so ``validate`` reports them from the schema before a task is ever built.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from b2bd.config.build import version_tuple
from b2bd.config.model import Base, Settings, Task

if TYPE_CHECKING:
    from b2bd.connectors.source import FailureReason, Manifest

MIN_ONE_VERSION = "3.58"
MIN_SIMS_VERSION = "7.166"
ATTAINMENT_MIN_SIMS = "7.168"
ATTAINMENT_MIN_ONE = "3.59"
REQUIRED_B2B_PHASE = 2

Obstacle = Literal["disabled", "lockdown", "prerequisite"]
"""What a transfer does: ``disabled``/``lockdown`` skip it, ``prerequisite`` fails it."""

SKIPS: frozenset[Obstacle] = frozenset({"disabled", "lockdown"})


@dataclass(frozen=True, order=True)
class Unmet:
    """One thing standing between a task and a base (see the module docstring's table)."""

    rule: str
    check: str
    message: str
    obstacle: Obstacle = "prerequisite"

    @property
    def skips(self) -> bool:
        return self.obstacle in SKIPS

    def __str__(self) -> str:
        return f"{self.message} [{self.rule}]"


@dataclass(frozen=True)
class Verdict:
    """What a transfer does given its :class:`Unmet` list: ``run``, ``skipped`` (reason
    ``disabled`` or ``lockdown``) or ``failed`` (reason ``prerequisite``; in preflight's
    verdict also a connector's reason class, ``auth``, ``unreachable``...), with a one-line
    message listing every finding as ``message [rule]``."""

    outcome: Literal["run", "skipped", "failed"]
    reason: Obstacle | FailureReason | None = None  # preflight's live checks: a connector's
    message: str = ""


def verdict(found: Sequence[Unmet]) -> Verdict:
    """Skipping wins over failing: a base the LA may not reach is not the LA's to fix."""
    if not found:
        return Verdict("run")
    message = "; ".join(map(str, found))
    skip = next((u for u in found if u.skips), None)
    if skip is not None:
        return Verdict("skipped", skip.obstacle, message)
    return Verdict("failed", "prerequisite", message)


# ---- the task alone -------------------------------------------------------------------------


def task_unmet(task: Task, settings: Settings | None) -> tuple[Unmet, ...]:
    """Findings about the task whatever the base: One's release for attainment, and the
    to-school shape (changed data for NCY groups only)."""
    found: list[Unmet] = [
        Unmet("base-prerequisites", "prerequisites", reason)
        for reason in one_shortfall(settings, task.data.type)
    ]
    if task.direction == "to-school":
        if task.data.type != "changed":
            found.append(
                Unmet(
                    "to-school-changed-only",
                    "task",
                    "a to-school task can only send changed data (data.type: changed)",
                )
            )
        if task.cohort.group != "ncy":
            found.append(
                Unmet(
                    "to-school-ncy-only",
                    "task",
                    "a to-school task can only target NCY groups (cohort.group: ncy)",
                )
            )
    return tuple(found)


def one_release_shortfall(settings: Settings) -> str | None:
    """Why the LA's One release cannot run scheduled tasks at all (None when it can): the one
    check and message behind validate's ``la-prerequisites`` and preflight's ``one-version``."""
    if version_tuple(settings.one_version) < version_tuple(MIN_ONE_VERSION):
        return (
            f"One {settings.one_version} < {MIN_ONE_VERSION}: B2B:Student scheduled tasks need "
            f"One {MIN_ONE_VERSION} or later"
        )
    return None


def one_shortfall(settings: Settings | None, data_type: str) -> list[str]:
    """Why the LA's One release cannot run a task of ``data_type`` (B2B attainment needs
    One 3.59; every task needs 3.58, which b2bd.yaml's own rule ``la-prerequisites`` checks)."""
    if (
        data_type == "attainment"
        and settings is not None
        and version_tuple(settings.one_version) < version_tuple(ATTAINMENT_MIN_ONE)
    ):
        return [
            f"B2B attainment needs One {ATTAINMENT_MIN_ONE} or later (b2bd.yaml one_version "
            f"is {settings.one_version})"
        ]
    return []


# ---- the task and the base as registered ----------------------------------------------------


def base_unmet(task: Task, base: Base) -> tuple[Unmet, ...]:
    """Findings about ``base`` as bases.yaml registers it, for a task like ``task`` (only its
    data type, direction and whether its attendance kind is ``attendance-changed`` matter)."""
    found = registered_unmet(base, task.data.type, task.data.attendance == "attendance-changed")
    if task.direction == "to-school" and base.endpoint.type not in TO_SCHOOL_ENDPOINTS:
        found = (
            *found,
            Unmet(
                "wonde-to-school",
                "endpoint",
                f"base {base.id} is reached through {base.endpoint.type}, which has no "
                "write-back for pupil records: to-school data cannot be delivered to it",
            ),
        )
    return found


TO_SCHOOL_ENDPOINTS = frozenset({"directory"})
"""Endpoint types that can take a to-school delivery. Wonde's write-back covers attendance
marks (and behaviour, achievements), not the pupil records and deletions that to-school
``changed`` data is made of (notes/wonde.md sections 1 and 5)."""


@functools.lru_cache(maxsize=8192)
def registered_unmet(
    base: Base, data_type: str = "changed", sims_primary_kind: bool = False
) -> tuple[Unmet, ...]:
    """:func:`base_unmet` for any task of ``data_type`` (``sims_primary_kind``: its attendance
    kind is ``attendance-changed``); the defaults ask what every task needs."""
    # Cached: resolving 2,000 tasks against 500 bases asks the same few questions many times.
    found: list[Unmet] = []
    if not base.enabled:
        found.append(
            Unmet(
                "base-disabled", "enabled", f"base {base.id} is disabled in bases.yaml", "disabled"
            )
        )
    if base.lockdown:
        found.append(
            Unmet(
                "base-lockdown",
                "lockdown",
                f"base {base.id} has locked down its tasks: the LA may not target it",
                "lockdown",
            )
        )
    for problem in base.problems:
        found.append(Unmet("bases-file", "registry", f"base {base.id} {problem}"))
    reasons = registry_shortfalls(
        base.sims_version, base.b2b_phase, base.services_manager, data_type
    )
    if reasons:
        found.append(
            Unmet(
                "base-prerequisites",
                "prerequisites",
                f"base {base.id} fails a prerequisite: " + "; ".join(reasons),
            )
        )
    if sims_primary_kind and base.mis != "sims-primary":
        found.append(
            Unmet(
                "sims-primary-only",
                "mis",
                f"attendance-changed is a SIMS Primary kind and base {base.id} runs {base.mis}",
            )
        )
    return tuple(found)


@functools.lru_cache(maxsize=4096)
def registry_shortfalls(
    sims_version: str, b2b_phase: int, services_manager: bool, data_type: str
) -> tuple[str, ...]:
    """Why a base with these registered values cannot take part in a task of ``data_type``
    (empty when it can): SIMS release, B2B:Student phase, SIMS Services Manager installed."""
    reasons: list[str] = []
    reasons.extend(sims_shortfall(sims_version, data_type))
    if b2b_phase != REQUIRED_B2B_PHASE:
        reasons.append(f"not migrated to B2B:Student Phase 2 (b2b_phase {b2b_phase})")
    if not services_manager:
        reasons.append("SIMS Services Manager not installed")
    return tuple(reasons)


def sims_shortfall(sims_version: str, data_type: str) -> list[str]:
    """``SIMS x < minimum`` for a SIMS release too old for ``data_type`` (ValueError if the
    version is not dotted integers)."""
    missed = sims_minimum_missed(sims_version, data_type)
    if missed is None:
        return []
    needed = " needed for attainment" if missed == ATTAINMENT_MIN_SIMS else ""
    return [f"SIMS {sims_version} < {missed}{needed}"]


def sims_minimum_missed(sims_version: str, data_type: str) -> str | None:
    """The SIMS minimum a release misses for ``data_type``, or None (ValueError if the
    version is not dotted integers)."""
    version = version_tuple(sims_version)
    if version < version_tuple(MIN_SIMS_VERSION):
        return MIN_SIMS_VERSION
    if data_type == "attainment" and version < version_tuple(ATTAINMENT_MIN_SIMS):
        return ATTAINMENT_MIN_SIMS
    return None


# ---- the live manifest ----------------------------------------------------------------------


def live_unmet(base: Base, manifest: Manifest, data_type: str = "changed") -> tuple[Unmet, ...]:
    """Findings from what the base's export says about itself, for a task of ``data_type``
    (the default asks what every task needs)."""
    found: list[Unmet] = []
    if manifest.laestab is not None and manifest.laestab != base.id:
        found.append(
            Unmet(
                "live-laestab",
                "laestab",
                f"the export at base {base.id}'s endpoint is for another LAESTAB",
            )
        )
    if manifest.services_manager is not None and manifest.services_manager != "running":
        found.append(
            Unmet(
                "live-services-manager",
                "services-manager",
                f"SIMS Services Manager is {manifest.services_manager} at base {base.id}",
            )
        )
    if manifest.mis is not None and manifest.mis != base.mis:  # None: SIMS, edition unsaid
        found.append(
            Unmet(
                "live-mis",
                "mis",
                f"base {base.id}'s export's MIS is not bases.yaml's {base.mis}: check the "
                "school's MIS and correct bases.yaml",
            )
        )
    if manifest.sims_version is not None:
        message = _live_sims(base, manifest.sims_version, data_type)
        if message is not None:
            found.append(Unmet("live-sims-version", "sims-version", message))
    return tuple(found)


def _live_sims(base: Base, reported: str, data_type: str) -> str | None:
    """Why the export's own SIMS release stands in the way, or None. Its value is never
    quoted (a school's manifest may hold anything): only the minimum and bases.yaml's."""
    try:
        if version_tuple(reported) == version_tuple(base.sims_version):
            return None  # the registered release, already checked as registered
        missed = sims_minimum_missed(reported, data_type)
    except ValueError:
        return f"base {base.id}'s export reports a SIMS version that is not a version number"
    if missed is None:
        return None  # an upgrade the registry has not caught up with: no obstacle
    return (
        f"base {base.id}'s export reports a SIMS release below {missed} (bases.yaml says "
        f"{base.sims_version}): the school must upgrade, or bases.yaml is wrong"
    )


def not_registered(base_id: str) -> Unmet:
    """A base a task still names (a version kept in force after a rejected edit) that
    bases.yaml no longer lists."""
    return Unmet("base-unknown", "registry", f"base {base_id} is not in bases.yaml")


# ---- everything -----------------------------------------------------------------------------


def unmet(
    task: Task, base: Base, settings: Settings | None, manifest: Manifest | None = None
) -> tuple[Unmet, ...]:
    """Everything standing between ``task`` and ``base``: task-wide, as registered, and (when
    ``manifest`` is given, for a from-school task: a to-school transfer never reads the
    school's export) live. Pure; the order is the table's."""
    found: Iterable[Unmet] = (*task_unmet(task, settings), *base_unmet(task, base))
    if manifest is not None and task.direction == "from-school":
        found = (*found, *live_unmet(base, manifest, task.data.type))
    return tuple(found)
