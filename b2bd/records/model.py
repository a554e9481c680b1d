"""The four record kinds a transfer moves (DESIGN section 5), as msgspec Structs.

These classes are the single source of truth for ``schemas/records/*.json`` (written by
``python -m b2bd.records.schemas``). Conventions every consumer may rely on once a record has
passed :mod:`b2bd.records.check`:

- dates are ``YYYY-MM-DD`` strings of real calendar dates;
- times are ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds, always 20 characters), so comparing
  two of them as *strings* orders them in time, and a date string compares correctly against a
  time's first 10 characters;
- ``upn`` is a valid UPN (permanent or temporary), ``ncy`` a code of :mod:`b2bd.records.ncy`,
  ``code`` an attendance code valid on the mark's date (:mod:`b2bd.records.codes`).

Formatted string fields stay ``str`` rather than ``msgspec.Meta(pattern=...)``: a pattern costs
about five times the whole decode (notes/libraries.md, last section), while the checks in
:mod:`b2bd.records.check` cache per distinct value. ``FIELD_FORMATS`` records each such field's
pattern once, for the checks' documentation and for the generated JSON Schemas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from b2bd.records.codes import CODES
from b2bd.records.ncy import NCY_CODES

RecordKind = Literal["pupil", "mark", "result", "deletion"]
RECORD_KINDS: tuple[RecordKind, ...] = ("pupil", "mark", "result", "deletion")

# Literal[...] over runtime tuples: msgspec checks membership in C and writes an enum into the
# JSON Schema, so the code table stays the only list of codes. A type checker cannot read a
# Literal built at run time: to it they are plain strings.
if TYPE_CHECKING:
    AttendanceCodeStr = str
    NcyCode = str
else:
    AttendanceCodeStr = Literal[tuple(c.code for c in CODES)]
    NcyCode = Literal[NCY_CODES]
Session = Literal["AM", "PM"]
Sex = Literal["M", "F"]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]

PATTERNS: dict[str, str] = {
    "upn": r"^[A-HJ-NP-RT-Z][0-9]{11}[0-9A-HJ-NP-RT-Z]$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "time": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$",
    "la": r"^[0-9]{3}$",
    "key": r"^[A-HJ-NP-RT-Z][0-9]{11}[0-9A-HJ-NP-RT-Z](/[^/]+)*$",
}
"""Shape of each string format (the checks also verify check letters and calendar dates)."""


class Pupil(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A pupil on (or once on) a school's roll. ``leaving_date`` is None while on roll;
    ``care_authority`` is the 3-digit LA code responsible for a looked-after child, else None."""

    upn: str
    surname: Name
    forename: Name
    dob: str
    sex: Sex
    ncy: NcyCode
    in_care: bool
    care_authority: str | None
    admission_date: str
    leaving_date: str | None
    updated_at: str


class SessionMark(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One register mark: a pupil's AM or PM session on a date."""

    upn: str
    date: str
    session: Session
    code: AttendanceCodeStr
    updated_at: str


class Result(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One assessment result (attainment), e.g. stage KS2, subject MAT, method TT, result 104.
    ``component`` is None when the subject has no components."""

    upn: str
    stage: Text
    subject: Text
    method: Text
    component: Text | None
    result: Text
    result_date: str
    updated_at: str


class Deletion(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A record removed at the source. ``key`` is the removed record's key (:func:`record_key`)."""

    record: Literal["pupil", "mark", "result"]
    key: str
    deleted_at: str


Record = Pupil | SessionMark | Result | Deletion

STRUCTS: dict[RecordKind, type[Record]] = {
    "pupil": Pupil,
    "mark": SessionMark,
    "result": Result,
    "deletion": Deletion,
}

FIELD_FORMATS: dict[type[Record], dict[str, str]] = {
    Pupil: {
        "upn": "upn",
        "dob": "date",
        "care_authority": "la",
        "admission_date": "date",
        "leaving_date": "date",
        "updated_at": "time",
    },
    SessionMark: {"upn": "upn", "date": "date", "updated_at": "time"},
    Result: {"upn": "upn", "result_date": "date", "updated_at": "time"},
    Deletion: {"key": "key", "deleted_at": "time"},
}
"""Which string fields carry which format of ``PATTERNS``."""


def record_key(record: Pupil | SessionMark | Result) -> str:
    """The key a deletion names: ``UPN`` for a pupil, ``UPN/date/session`` for a mark,
    ``UPN/stage/subject/method/component`` for a result (component ``-`` when None).
    The UPN is always the first 13 characters (:func:`key_upn`)."""
    if isinstance(record, Pupil):
        return record.upn
    if isinstance(record, SessionMark):
        return f"{record.upn}/{record.date}/{record.session}"
    component = record.component if record.component is not None else "-"
    return f"{record.upn}/{record.stage}/{record.subject}/{record.method}/{component}"


def key_upn(key: str) -> str:
    """The UPN a record key (or a deletion's ``key``) is about."""
    return key[:13]


def record_upn(record: Record) -> str:
    """The pupil a record is about, for cohort filtering."""
    return record.key[:13] if isinstance(record, Deletion) else record.upn


def record_time(record: Record) -> str:
    """The record's change time (``updated_at``, or ``deleted_at`` for a deletion): the value
    watermarks are taken from."""
    return record.deleted_at if isinstance(record, Deletion) else record.updated_at


_KIND_PREFIX: dict[str, bytes] = {kind: b'{"kind":"%s",' % kind.encode() for kind in RECORD_KINDS}


def tagged_line(kind: RecordKind, line: bytes) -> bytes:
    """A delivery line for an *accepted* source line: the same JSON object with ``"kind"``
    first, built by splicing bytes instead of re-encoding (the transfer fast path).

    Only for lines a :class:`~b2bd.records.check.RecordDecoder` accepted: they are JSON
    objects with at least one field and no ``kind`` field. Note that msgspec, like most JSON
    readers, keeps the last of duplicated keys; a line with a duplicated key is passed on as
    it is, and readers that also keep the last one see what was checked.
    """
    return _KIND_PREFIX[kind] + line.lstrip()[1:]
