"""The journal's entry types: one frozen struct per thing the daemon decided or did.

Named ``Entry`` (:class:`Entry`, :class:`BadEntry`, :func:`build_entry`, :data:`ENTRY_TYPES`) apart
from the pupil ``Record`` of :mod:`b2bd.records`; the text below and the on-disk format still say
"record" for one entry's line.

A record on disk is one JSON object per line. Its first keys are ``type`` (the record type, e.g.
``run-started``), ``seq`` (an integer, +1 per record across the whole journal) and ``ts`` (UTC,
ISO 8601 with ``Z``, from the journal's injected clock); the type's own fields follow. The framing
(the checksum after them) is :mod:`b2bd.journal.reader`'s business, not this module's.

Every instant in a record (``ts``, ``slot``) is a timezone-aware UTC ``datetime`` in memory and
``...Z`` on disk; an instant given with another offset is converted to UTC when the record is
built, a naive one is refused. ``watermark`` stays the string the source reported (it is compared
and handed back to the source, never computed with).

Records are built only through :func:`build_entry`, which validates the fields against the
record type (unknown or missing fields, wrong types and unknown record types raise
:class:`BadEntry`), so a record that was written can always be read back.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

import msgspec

UtcTime = Annotated[dt.datetime, msgspec.Meta(tz=True)]
ReasonClass = Literal[
    "unreachable", "timeout", "auth", "bad-data", "prerequisite", "local", "internal"
]
RunOutcome = Literal["succeeded", "partial", "failed"]
TransferOutcome = Literal["succeeded", "failed", "skipped"]
"""A run's and a transfer's outcomes, as journaled (and as :mod:`b2bd.transfer.results` uses
them)."""


class BadEntry(ValueError):
    """An entry that does not match its type (a programming error in the caller)."""


class Entry(msgspec.Struct, frozen=True, tag_field="type", gc=False):
    """Fields every record has. ``type`` is the record type name (the struct's tag)."""

    seq: int
    ts: UtcTime

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class _Typed(Entry, frozen=True, kw_only=True, gc=False):
    """Base of the concrete record types: their own fields are keyword-only and follow ``ts``."""


# -- values nested in records (also used by the replayed state) -----------------------------------


class ConfigProblem(msgspec.Struct, frozen=True, gc=False):
    """One validation finding, as journaled by ``config-rejected``."""

    file: str
    line: int
    column: int
    rule: str
    message: str


class LastRun(msgspec.Struct, frozen=True, gc=False):
    """The newest run of a task: ``outcome`` and ``finished`` are None while it is in progress
    (or was interrupted by a crash and never closed)."""

    run: str
    started: UtcTime | None
    outcome: RunOutcome | None = None
    finished: UtcTime | None = None


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """The latest transfer outcome for one (task, base); ``reason`` is the reason class of a
    failure (or the reason given for a skip), ``message`` the failure's message."""

    outcome: TransferOutcome
    when: UtcTime
    run: str
    reason: str | None = None
    message: str | None = None


class LastSuccess(msgspec.Struct, frozen=True, gc=False):
    """The newest ``transfer-succeeded`` of one (task, base): when, and in which run."""

    run: str
    when: UtcTime


class Repair(msgspec.Struct, frozen=True, gc=False):
    """A ``journal-repaired`` not yet acknowledged by ``b2bd journal verify``: where the tail
    was cut (``segment``, byte ``offset``), how many bytes, the file keeping them, and the
    repair record's own ``seq`` and time."""

    seq: int
    when: UtcTime
    segment: str
    offset: int
    length: int
    broken_file: str


class RunInProgress(msgspec.Struct, frozen=True, gc=False):
    """A run with a ``run-started`` and no ``run-finished`` yet; ``outcomes``: (base, outcome)
    of each of its transfers journaled so far, so that closing it after a crash keeps them
    (a checkpoint written before this field restores it empty)."""

    run: str
    task: str
    slot: UtcTime
    manual: bool
    bases: tuple[str, ...]
    started: UtcTime
    outcomes: tuple[tuple[str, TransferOutcome], ...] = ()


class AppliedConfig(msgspec.Struct, frozen=True, gc=False):
    """What the latest ``config-applied`` said was in force (``idle``: see
    :class:`ConfigApplied`)."""

    files: dict[str, str]
    commit: str | None
    tasks: tuple[str, ...]
    when: UtcTime
    idle: tuple[str, ...] | None = None


class OutcomeEntry(msgspec.Struct, frozen=True, gc=False):
    task: str
    base: str
    outcome: Outcome


class SuccessEntry(msgspec.Struct, frozen=True, gc=False):
    task: str
    base: str
    success: LastSuccess


class WatermarkEntry(msgspec.Struct, frozen=True, gc=False):
    task: str
    base: str
    watermark: str | None


class MemorySnapshot(msgspec.Struct, frozen=True, gc=False):
    """One base's pupil memories in a checkpoint (:mod:`b2bd.journal.memory`): ``keys``, the
    leavers memory as base64 of little-endian 64-bit keys in journal order; ``members``, each
    changed task's cohort memory as a base64 bitmap over those positions."""

    keys: str = ""
    members: dict[str, str] = {}


class StateSnapshot(msgspec.Struct, frozen=True, gc=False):
    """The replayed state in a JSON-friendly shape, carried by a ``checkpoint`` record.

    Maps keyed by (task, base) become lists of entries; sets become sorted lists.
    """

    last_slot_started: dict[str, UtcTime] = {}
    last_slot_decided: dict[str, UtcTime] = {}
    last_run: dict[str, LastRun] = {}
    last_outcome: tuple[OutcomeEntry, ...] = ()
    watermark: tuple[WatermarkEntry, ...] = ()
    leavers: dict[str, tuple[str, ...]] = {}
    rejected_config: tuple[ConfigProblem, ...] = ()
    applied_config: AppliedConfig | None = None
    runs_in_progress: dict[str, RunInProgress] = {}
    # Added later: a checkpoint written before them restores them as empty (last successes
    # are then taken from ``last_outcome`` where that is a success).
    last_success: tuple[SuccessEntry, ...] = ()
    repairs: tuple[Repair, ...] = ()
    last_manual: dict[str, str] = {}  # task -> its latest manual run name
    running_since: dict[str, UtcTime] = {}  # task -> when it last came into force here
    # The pupil memories per base; ``leavers`` (hex digests) is how older checkpoints held the
    # leavers memory, read back into ``memory``.
    memory: dict[str, MemorySnapshot] = {}


# -- the record types ------------------------------------------------------------------------------


class DaemonStarted(_Typed, frozen=True, tag="daemon-started", gc=False):
    pid: int
    version: str


class DaemonStopped(_Typed, frozen=True, tag="daemon-stopped", gc=False):
    reason: str


class ConfigApplied(_Typed, frozen=True, tag="config-applied", gc=False):
    """The config now in force. ``files`` maps each file (relative to the config dir) to its
    sha256; ``commit`` is the config dir's git commit when it is a checkout. ``problems``, when
    not empty, are findings still in force after a partial apply (see :mod:`.state`).
    ``idle``: the tasks of ``tasks`` this daemon does not run on schedule (suspended, or no
    base of its shard); None in records written before it was kept (not known: every task
    counts as running)."""

    files: dict[str, str]
    commit: str | None = None
    tasks: tuple[str, ...] = ()
    problems: tuple[ConfigProblem, ...] = ()
    idle: tuple[str, ...] | None = None


class ConfigRejected(_Typed, frozen=True, tag="config-rejected", gc=False):
    problems: tuple[ConfigProblem, ...]


class RunStarted(_Typed, frozen=True, tag="run-started", gc=False):
    """Run id: ``<task>/<YYYYMMDDTHHMMSSZ>`` or ``<task>/manual-<YYYYMMDDTHHMMSSZ>``.
    ``as_of``: the reference date ``YYYY-MM-DD`` a manual run was given (``trigger --as-of``);
    absent, D is the slot's local date."""

    run: str
    task: str
    slot: UtcTime
    manual: bool = False
    bases: tuple[str, ...] = ()
    as_of: str | None = None


class TransferSucceeded(_Typed, frozen=True, tag="transfer-succeeded", gc=False):
    """``pupils``: keyed digests (:class:`b2bd.journal.keys.PupilKeyer`) of the pupils this
    transfer delivered any record about that the base's leavers memory did not hold yet; only
    non-leavers from-school transfers carry them. ``joined``/``left``: a changed task's cohort
    memory delta at this base (:mod:`b2bd.journal.memory`: bitmaps over the base's remembered
    pupils).
    ``read`` lines were read; each was delivered (``counts`` per kind), rejected
    (``rejected_by_reason``, total ``rejected``) or dropped (``dropped``, by reason)."""

    run: str
    task: str
    base: str
    direction: str
    data_type: str
    cohort_group: str
    counts: dict[str, int] = {}
    rejected: int = 0
    missing: int = 0
    watermark: str | None = None
    pupils: tuple[str, ...] = ()
    read: int = 0
    rejected_by_reason: dict[str, int] = {}
    dropped: dict[str, int] = {}
    joined: str = ""
    left: str = ""


class TransferFailed(_Typed, frozen=True, tag="transfer-failed", gc=False):
    run: str
    task: str
    base: str
    reason: ReasonClass
    message: str
    attempts: int


class TransferSkipped(_Typed, frozen=True, tag="transfer-skipped", gc=False):
    """``reason``: ``lockdown`` or ``disabled`` (the run-time guard), or why the daemon did
    not run it (overlap, stopping); ``message`` says more (no pupil data)."""

    run: str
    task: str
    base: str
    reason: str
    message: str = ""


class SlotMissed(_Typed, frozen=True, tag="slot-missed", gc=False):
    task: str
    slot: UtcTime


class SlotSkipped(_Typed, frozen=True, tag="slot-skipped", gc=False):
    task: str
    slot: UtcTime
    reason: str
    base: str | None = None


class RunFinished(_Typed, frozen=True, tag="run-finished", gc=False):
    run: str
    task: str
    outcome: RunOutcome


class JournalRepaired(_Typed, frozen=True, tag="journal-repaired", gc=False):
    """A torn or bad tail was cut from ``segment`` at byte ``offset``; its ``length`` bytes are
    kept in ``broken_file`` (a name in the journal dir). ``records``: how many complete lines
    (ending in a newline) were among them, i.e. records that were fully written and so may have
    been acknowledged; 0 when only a write in flight was cut."""

    segment: str
    offset: int
    length: int
    broken_file: str
    records: int = 0


class RepairsAcknowledged(_Typed, frozen=True, tag="repairs-acknowledged", gc=False):
    """``b2bd journal verify`` found the journal intact and showed the repairs up to and
    including the ``journal-repaired`` record ``up_to``: ``status`` stops showing them."""

    up_to: int


class Checkpoint(_Typed, frozen=True, tag="checkpoint", gc=False):
    """The whole replayed state so far; always the first record of its segment."""

    state: StateSnapshot


AnyEntry = (
    DaemonStarted
    | DaemonStopped
    | ConfigApplied
    | ConfigRejected
    | RunStarted
    | TransferSucceeded
    | TransferFailed
    | TransferSkipped
    | SlotMissed
    | SlotSkipped
    | RunFinished
    | JournalRepaired
    | RepairsAcknowledged
    | Checkpoint
)


class TransferSucceededBrief(_Typed, frozen=True, tag="transfer-succeeded", gc=False):
    """The fields of ``transfer-succeeded`` that the replayed state uses: decoding only these
    (every other field is skipped) is what keeps start-up replay fast."""

    run: str
    task: str
    base: str
    watermark: str | None = None
    pupils: msgspec.Raw = msgspec.Raw(b"[]")  # read by b2bd.journal.memory.keys_of_json
    joined: str = ""
    left: str = ""


if TYPE_CHECKING:  # built at run time from AnyEntry, which a type checker cannot follow
    BriefEntry = Entry
else:
    BriefEntry = Union[  # noqa: UP007 (built from a tuple of types)
        tuple(TransferSucceededBrief if c is TransferSucceeded else c for c in AnyEntry.__args__)
    ]

ENTRY_TYPES: dict[str, type[Entry]] = {
    str(cls.__struct_config__.tag): cls for cls in AnyEntry.__args__
}

# ``ts`` is not among these: the journal sets it, already in UTC.
_UTC_FIELDS: dict[type[Entry], tuple[str, ...]] = {
    cls: tuple(f.name for f in msgspec.structs.fields(cls) if f.type is UtcTime and f.name != "ts")
    for cls in ENTRY_TYPES.values()
}
_OWN_FIELDS: dict[type[Entry], frozenset[str]] = {
    cls: frozenset(cls.__struct_fields__) - {"seq", "ts"} for cls in ENTRY_TYPES.values()
}


class Codec:
    """JSON encoding and decoding of records (one reusable encoder/decoder pair)."""

    encoder: ClassVar[msgspec.json.Encoder] = msgspec.json.Encoder()
    decoder: ClassVar[msgspec.json.Decoder[AnyEntry]] = msgspec.json.Decoder(AnyEntry)
    brief_decoder: ClassVar[msgspec.json.Decoder[Any]] = msgspec.json.Decoder(BriefEntry)


def build_entry(type_: str, seq: int, ts: dt.datetime, fields: dict[str, Any]) -> Entry:
    """The record of type ``type_`` with these fields, validated and with instants in UTC.

    Field values may be given loosely (tuples or sets for lists, dataclasses or dicts for nested
    values such as config problems, ISO strings for instants); they are converted.
    """
    cls = ENTRY_TYPES.get(type_)
    if cls is None:
        raise BadEntry(f"unknown journal record type {type_!r}")
    if not fields.keys() <= _OWN_FIELDS[cls]:
        if {"seq", "ts", "type"} & fields.keys():
            raise BadEntry("seq, ts and type are set by the journal")
        unknown = sorted(fields.keys() - _OWN_FIELDS[cls])
        raise BadEntry(f"{type_}: unknown field(s) {', '.join(unknown)}")
    try:
        record = msgspec.convert(
            {"seq": seq, "ts": ts, **fields}, cls, strict=False, from_attributes=True
        )
    except msgspec.ValidationError as exc:
        raise BadEntry(f"{type_}: {exc}") from None
    changes = {
        name: value.astimezone(dt.UTC)
        for name in _UTC_FIELDS[cls]
        if (value := getattr(record, name)).tzinfo is not dt.UTC
    }
    return msgspec.structs.replace(record, **changes) if changes else record


def to_json(record: Entry) -> bytes:
    """The record's JSON object (no newline), keys in the order ``type, seq, ts, fields...``."""
    return Codec.encoder.encode(record)


def to_plain(record: Entry) -> dict[str, Any]:
    """The record as plain JSON-compatible builtins (for ``journal cat`` and ``--format json``)."""
    out: dict[str, Any] = {"type": record.type}
    out.update(msgspec.to_builtins(record))
    return out
