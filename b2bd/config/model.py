"""The validated configuration as frozen value objects.

Everything past the loader works with these classes, never with the raw YAML dicts. They are
built once per (re)load by :mod:`b2bd.config.build` from documents that already passed the JSON
Schema and the rule checks, so they hold no invariant checks of their own beyond their types.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

# The schedule types belong to the calendar that reads them (b2bd.schedule); re-exported here as
# part of the model.
from b2bd.schedule import Monthly as Monthly
from b2bd.schedule import Once as Once
from b2bd.schedule import Rule as Rule
from b2bd.schedule import Schedule as Schedule
from b2bd.schedule import Weekly as Weekly
from b2bd.shard import Shard

Severity = Literal["error", "warning"]
Direction = Literal["from-school", "to-school"]
DataType = Literal["attainment", "attendance", "changed", "snapshot"]
AttendanceKind = Literal[
    "all-attendances-current-year",
    "unauthorised-absences-current-year",
    "all-absences-current-year",
    "all-attendances-previous-year",
    "attendance-changed",
]
CohortGroup = Literal["ncy", "lac", "leavers"]
CatchUp = Literal["none", "latest", "all"]
Overlap = Literal["skip", "queue"]
Mis = Literal["sims", "sims-primary"]
EndpointType = Literal["directory", "wonde"]

# b2bd.yaml's timezone when it names none, and the tasks' when b2bd.yaml is unusable.
DEFAULT_TIMEZONE = ZoneInfo("Europe/London")
DEFAULT_HISTORY_DAYS = 400  # DESIGN section 7: run history kept across compaction, at least


@dataclass(frozen=True, order=True)
class Problem:
    """One finding of validation, pointing at a place in a file.

    ``file`` is relative to the config dir; ``line`` and ``column`` are 1-based (0 when the
    problem concerns the whole file, e.g. an unreadable one); ``path`` is a JSON pointer into the
    document. Ordering sorts by file, then line, column.
    """

    file: str
    line: int
    column: int
    rule: str
    severity: Severity
    message: str
    path: str = ""


@dataclass(frozen=True)
class Policy:
    """How runs of a task behave; task values override b2bd.yaml ``defaults``."""

    retries: int = 3
    retry_backoff: dt.timedelta = dt.timedelta(seconds=30)
    timeout: dt.timedelta = dt.timedelta(minutes=15)
    catch_up: CatchUp = "latest"
    starting_deadline: dt.timedelta | None = dt.timedelta(hours=12)
    overlap: Overlap = "skip"
    jitter: dt.timedelta = dt.timedelta(0)


@dataclass(frozen=True)
class Endpoint:
    """Where a base's data lives (or where the LA store is).

    ``directory``: ``path`` is absolute (resolved against the config dir).
    ``wonde``: ``school_id`` plus the name of a credential holding the token (the token itself
    is never part of the model), the API base ``url`` (None: the public API), ``ca_bundle`` (a
    PEM file of private CAs, resolved against the config dir) and ``tls_verify``.
    """

    type: EndpointType
    path: Path | None = None
    school_id: str | None = None
    token_credential: str | None = None
    url: str | None = None
    ca_bundle: Path | None = None
    tls_verify: bool = True


@dataclass(frozen=True)
class CredentialSource:
    """b2bd.yaml ``credentials: {NAME: {path: FILE} | {env: VARIABLE}}``: where a token is read
    when ``$CREDENTIALS_DIRECTORY/NAME`` does not exist. Exactly one of the two is set."""

    path: Path | None = None
    env: str | None = None


@dataclass(frozen=True)
class Base:
    """One school's MIS database, keyed by its 7-digit LAESTAB. ``problems`` are what
    bases.yaml's own rules (``bases-file``) found wrong with this entry: such a base is never
    targeted (see :mod:`b2bd.prerequisites`)."""

    id: str
    name: str
    phase: str
    mis: Mis
    sims_version: str
    b2b_phase: int
    services_manager: bool
    lockdown: bool
    endpoint: Endpoint
    tags: frozenset[str] = frozenset()
    cross_border: bool = False
    enabled: bool = True
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaseSelector:
    """``bases:`` of a task: explicit ids, tags and/or all (a union)."""

    ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    all: bool = False


@dataclass(frozen=True)
class DataSpec:
    type: DataType
    attendance: AttendanceKind | None = None
    months: int | None = None


@dataclass(frozen=True)
class Cohort:
    """Which pupils: ``ncy`` None means every NCY including X (exempt)."""

    group: CohortGroup
    ncy: frozenset[str] | None = None


@dataclass(frozen=True)
class Task:
    """One task file. ``targets`` are the bases the selector resolved to after the rule checks
    excluded (with warnings) the tag/all-selected bases that cannot take part, and that this
    instance's shard owns (``Settings.shard``: all of them without one)."""

    id: str
    file: str
    description: str
    enabled: bool
    direction: Direction
    bases: BaseSelector
    data: DataSpec
    cohort: Cohort
    schedule: Schedule
    policy: Policy
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """b2bd.yaml."""

    la_code: str
    la_name: str
    one_version: str
    timezone: ZoneInfo
    academic_year_start: tuple[int, int]
    state_dir: Path
    la_store: Endpoint
    concurrency: int
    defaults: Policy
    la_outbound: Path | None = None  # the LA's changes for to-school tasks, one folder per base
    control_socket: Path | None = None  # as set in b2bd.yaml; None: the default places
    history_days: int = DEFAULT_HISTORY_DAYS  # days of run history compaction keeps
    metrics_listen: tuple[str, int] | None = None  # (host, port) for /metrics; None: off
    credentials: dict[str, CredentialSource] = field(default_factory=dict, hash=False)
    ignore: frozenset[str] = frozenset()  # warning rule ids accepted: reported as ignored
    # The bases this instance owns (DESIGN section 10); None: all of them. Set by the loader
    # from b2bd.yaml's ``shard`` (its index perhaps from the environment) or a --shard option.
    shard: Shard | None = None


@dataclass(frozen=True)
class Config:
    """A whole config dir after validation.

    ``tasks`` holds only tasks whose file is valid; ``problems`` holds every finding, sorted,
    except the warnings of rules b2bd.yaml's ``ignore:`` accepts, which are in ``ignored``.
    ``digests`` maps each file (relative path) to the sha256 of its bytes, so a reload can tell
    what changed.
    """

    root: Path
    settings: Settings | None
    bases: dict[str, Base] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    digests: dict[str, str] = field(default_factory=dict)
    ignored: tuple[Problem, ...] = ()

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)
