"""The ``wonde`` connector, read side: a school's MIS data over a Wonde-compatible REST API
(DESIGN section 6; the facts are in notes/wonde.md, every assumption taken on its UNCERTAIN and
NOT FOUND parts is listed in README "Wonde bases").

Endpoint: ``{type: wonde, school_id, token: {credential: NAME}, url, ca_bundle, tls_verify}``.
``url`` is the API base (default ``https://api.wonde.com/v1.0/``); the school's resources live
under ``<url>schools/<school_id>/``. The token comes from :mod:`b2bd.connectors.credentials`
and is sent as ``Authorization: Bearer``; it never appears in a URL, a message or a repr.

What each record kind reads (:data:`RESOURCES`), all paginated:

==========  ===============================================================================
pupil       ``students`` and ``students-leaver``, ``include=education_details,extended_details``
mark        ``attendance/session`` and ``attendance-leavers/session``, ``include=attendance_code``
result      ``assessment/results``, ``include=aspect``
deletion    ``deletions``
==========  ===============================================================================

API items are mapped to our records (:func:`pupil_fields` and friends, tables of where each of
our fields comes from), encoded as our JSON line and checked by the same
:class:`~b2bd.records.check.RecordDecoder` as an export file's lines: one place for the checks,
and a delivery line is our record, never the API's JSON. An item that does not map (a field it
needs missing or null, say a scope not granted; a mark of a student the API did not list) is a
``Rejection("unmapped", <API field path>)``; one longer than 64 KiB is ``too-long``. Marks and
results name their pupil by Wonde student id: the pupil pass keeps id -> UPN for them.

Deletions name the deleted object by Wonde id and MIS id only, never by UPN, so a removed
pupil's or mark's *key* cannot be known once the object is gone: such an item is rejected as
``unmapped`` (counted, so the LA sees the school removed records); a student "deleted" from one
list who is still on the other (moved to leavers) is no deletion of ours and is left out, as
are restored items and objects of other types (contacts, classes...).

HTTP: one :class:`httpx.Client` per source (connection reuse across pages and kinds), TLS
verified (``ca_bundle`` replaces the public CAs; ``tls_verify: false`` turns it off, which
``validate`` warns about), redirects not followed, connect/read timeouts, and every socket wait
bounded by the caller's deadline (:class:`_DeadlineBackend`); gzip inflated here, a step at a
time (:meth:`WondeSource._body`); pages bounded in bytes and in values. Requests are retried
on connection errors, timeouts, 5xx and 429 (``Retry-After`` honoured up to
:data:`MAX_RETRY_AFTER`; a longer wait gives up at once) after :data:`RETRY_DELAYS`. Reason
classes: 401/403 -> ``auth`` (not retried), 404 -> ``prerequisite`` (unknown school or resource),
other statuses, bodies over :data:`MAX_PAGE_BYTES`, malformed JSON and pagination pointing
elsewhere -> ``bad-data``; connection failures and exhausted retries -> ``unreachable``; timeouts
-> ``timeout``; an untrusted TLS certificate -> ``auth``.

Pagination: follow ``meta.pagination.next`` while ``more`` is not false and ``next`` is set (a
page without a pagination object is the last; ``per_page`` may be a string); ``next`` must stay
on the configured server and under the school, and never repeat. Pages are fetched one at a
time: memory holds one page, whatever the number of records.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import re
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpcore
import httpx
import msgspec

from b2bd.clock import Now, utc_now
from b2bd.connectors.credentials import Secret, read_token
from b2bd.connectors.source import (
    LINE_LIMIT,
    TOO_LONG,
    ConnectorError,
    Deadline,
    FailureReason,
    Manifest,
    no_deadline,
)
from b2bd.records.check import RecordDecoder, Rejection
from b2bd.records.model import Pupil, Record, RecordKind, Result, SessionMark

if TYPE_CHECKING:
    from b2bd.config.model import Endpoint, Settings

DEFAULT_URL = "https://api.wonde.com/v1.0/"
PER_PAGE = 200
"""Items asked for per page (the API's per-endpoint maximums are not documented; a server that
caps lower still paginates correctly)."""
MAX_PAGE_BYTES = 16 << 20
"""A page body larger than this (after inflating) is ``bad-data``. A page of 200 students with
their includes is about 0.5 MiB."""
MAX_PAGE_VALUES = 1 << 18
"""A page with this many commas (so possibly this many items) is ``bad-data``: what decoding
it could allocate stays under 15 MiB (a student item has about 40 commas, a mark 10)."""
INFLATE_STEP = 1 << 20
"""Bytes inflated at a time (a 64 KiB network read of a bomb would inflate to 64 MiB at once)."""
MAX_NEXT_BYTES = 8192
"""A pagination ``next`` URL longer than this is not followed (``bad-data``)."""
CONTENT_ENCODINGS: dict[str, int | None] = {"identity": None, "gzip": 31, "x-gzip": 31}
"""Content-Encoding -> zlib ``wbits`` to inflate it (None: as is). We ask for gzip; anything
else (a stack of encodings, one we did not ask for) is ``bad-data``."""
MAX_ITEM_BYTES = LINE_LIMIT
"""An API item larger than this is rejected ``too-long`` (DESIGN section 5's line limit)."""
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
"""Seconds before retry 1, 2, ... of one request (connection errors, timeouts, 5xx, 429)."""
MAX_RETRY_AFTER = 60.0
"""The longest ``Retry-After`` waited for; a longer one fails the request at once (the
engine's own backoff retries the transfer later)."""
UPDATED_AFTER_MARGIN = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class Resource:
    """One school-scoped collection: its path under ``schools/<id>/`` and its includes."""

    path: str
    include: str | None = None


RESOURCES: dict[RecordKind, tuple[Resource, ...]] = {
    "pupil": (
        Resource("students", "education_details,extended_details"),
        Resource("students-leaver", "education_details,extended_details"),
    ),
    "mark": (
        Resource("attendance/session", "attendance_code"),
        Resource("attendance-leavers/session", "attendance_code"),
    ),
    "result": (Resource("assessment/results", "aspect"),),
    "deletion": (Resource("deletions"),),
}
"""Record kind -> the collections read for it, in order."""

CHANGED_FILTER: frozenset[RecordKind] = frozenset({"mark", "deletion"})
"""Kinds read with ``updated_after`` when the caller passes ``since``. Pupils are always read
whole: the cohort (and the pupils entering it) needs every pupil, changed or not."""

DELETION_TYPES: dict[str, str] = {"student": "pupil", "attendance": "mark", "result": "result"}
"""A deletion's ``type`` -> the record kind it concerns (the API's type strings are not
documented: an assumption, see README). Other types are not ours and are left out."""


# -- API item shapes (lenient: unknown fields ignored, scope-less values null) --------------


class DateTimeObject(msgspec.Struct, frozen=True):
    """PHP's DateTime serialisation: ``{"date": "2015-10-29 14:53:44.000000",
    "timezone_type": 3, "timezone": "UTC"}``."""

    date: str
    timezone_type: int | None = None
    timezone: str | None = None


WondeTime = DateTimeObject | str | None
Scalar = str | int | None


class EducationDetails(msgspec.Struct):
    upn: str | None = None
    current_nc_year: str | int | None = None
    admission_date: WondeTime = None
    leaving_date: WondeTime = None


class ExtendedDetails(msgspec.Struct):
    in_lea_care: bool | str | int | None = None
    lea_care_authority: str | int | None = None


class EducationInclude(msgspec.Struct):
    data: EducationDetails | None = None


class ExtendedInclude(msgspec.Struct):
    data: ExtendedDetails | None = None


class StudentItem(msgspec.Struct):
    id: str
    mis_id: Scalar = None
    surname: str | None = None
    forename: str | None = None
    legal_surname: str | None = None
    legal_forename: str | None = None
    gender: str | None = None
    date_of_birth: WondeTime = None
    updated_at: WondeTime = None
    education_details: EducationInclude | None = None
    extended_details: ExtendedInclude | None = None


class AttendanceCode(msgspec.Struct):
    code: str | None = None


class AttendanceCodeInclude(msgspec.Struct):
    data: AttendanceCode | None = None


class MarkItem(msgspec.Struct):
    student_id: Scalar = None
    date: WondeTime = None
    session: str | None = None
    attendance_code: AttendanceCodeInclude | str | None = None
    updated_at: WondeTime = None


class Aspect(msgspec.Struct):
    stage: str | None = None
    subject: str | None = None
    method: str | None = None
    component: str | int | None = None


class AspectInclude(msgspec.Struct):
    data: Aspect | None = None


class ResultItem(msgspec.Struct):
    student_id: Scalar = None
    result: str | int | float | None = None
    result_date: WondeTime = None
    updated_at: WondeTime = None
    aspect: AspectInclude | None = None


class DeletionItem(msgspec.Struct):
    type: str | None = None
    id: Scalar = None
    mis_id: Scalar = None
    deleted_at: WondeTime = None
    restored_at: WondeTime = None


class Pagination(msgspec.Struct):
    next: str | None = None
    more: bool | None = None
    per_page: int | str | None = None
    current_page: int | str | None = None


class Meta(msgspec.Struct):
    pagination: Pagination | None = None


class Page(msgspec.Struct):
    data: list[msgspec.Raw]
    meta: Meta | None = None


class School(msgspec.Struct):
    id: str | None = None
    la_code: Scalar = None
    establishment_number: Scalar = None
    mis: str | None = None


class SchoolDoc(msgspec.Struct):
    data: School


class SchoolMeta(msgspec.Struct):
    online: bool | None = None
    approved: bool | None = None


class SchoolMetaDoc(msgspec.Struct):
    data: SchoolMeta | None = None
    online: bool | None = None
    approved: bool | None = None


# -- values: API shapes -> our formats (pure) ----------------------------------------------

_UTC_NAMES: Final = frozenset({"UTC", "Z", "GMT", "+00:00", "-00:00", "Etc/UTC"})
_DATE_PREFIX: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?=$|[ T])")
_ZONES: dict[str, dt.tzinfo | None] = {}


def _zone(value: DateTimeObject) -> dt.tzinfo | None:
    name = value.timezone
    if name is None or name in _UTC_NAMES:
        return dt.UTC
    zone = _ZONES.get(name, ...)
    if zone is ...:
        zone = None
        if name[:1] in "+-":  # timezone_type 1: an offset
            try:
                zone = dt.datetime.fromisoformat(f"2000-01-01T00:00:00{name}").tzinfo
            except ValueError:
                zone = None
        elif value.timezone_type != 2:  # type 2 abbreviations (BST...) are ambiguous
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                zone = None
        if len(_ZONES) < 1024:
            _ZONES[name] = zone
    return zone


def utc_time(value: WondeTime) -> str | None:
    """A Wonde time as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds); None when absent, ``""``
    when unreadable (which the record checks reject as a ``date``). A DateTimeObject is read in
    its own zone; a string without an offset is UTC."""
    if value is None:
        return None
    if isinstance(value, DateTimeObject):
        text, zone = value.date, _zone(value)
        if zone is None:
            return ""
    else:
        text, zone = value, dt.UTC
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def calendar_date(value: WondeTime) -> str | None:
    """A date as ``YYYY-MM-DD``: a DateTimeObject's or a string's date part (``2010-02-11``,
    ``2010-02-11 00:00:00``), or None. A date is not moved between zones: a date of birth
    is a calendar day wherever it was stored. Real-day checks are the record checks' job."""
    if value is None:
        return None
    text = value.date if isinstance(value, DateTimeObject) else value
    found = _DATE_PREFIX.match(text)
    return found.group(0) if found else text


SEX: dict[str, str] = {"MALE": "M", "FEMALE": "F", "M": "M", "F": "F"}
NCY_ALIASES: dict[str, str] = {"RECEPTION": "R", "0": "R", "YR": "R"}
"""NCY spellings seen from consumers of the API (notes/wonde.md section 4) -> our codes."""
TRUTH: dict[str, bool] = {
    "TRUE": True, "YES": True, "Y": True, "1": True,
    "FALSE": False, "NO": False, "N": False, "0": False,
}  # fmt: skip


def ncy_code(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip().upper()
    text = NCY_ALIASES.get(text, text)
    if text.startswith("YEAR "):
        text = text[5:].strip()
    return str(int(text)) if _digits(text, 4) else text


def _digits(text: str, most: int) -> bool:
    """Whether ``text`` is 1 to ``most`` ASCII digits (``str.isdigit`` also takes ``²`` and
    ``٣``, which ``int`` refuses or reads; and ``int`` refuses over 4,300 digits)."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def flag(value: bool | str | int | None) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    return TRUTH.get(str(value).strip().upper())


def _text(value: Scalar | float) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class Unmapped(Exception):
    """An item lacks what a field of ours needs; ``field`` is the API field path."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _need(value: Any, field: str) -> Any:
    if value is None:
        raise Unmapped(field)
    return value


def pupil_fields(item: StudentItem) -> Pupil:
    """Our pupil from a student with its education and extended details. Legal names come
    first (as in a CTF), the preferred ones only when they are missing."""
    education = item.education_details.data if item.education_details else None
    extended = item.extended_details.data if item.extended_details else None
    if education is None:
        raise Unmapped("education_details")
    if extended is None:
        raise Unmapped("extended_details")
    in_care = flag(extended.in_lea_care)
    authority = _text(extended.lea_care_authority)
    return Pupil(
        upn=_need(education.upn, "education_details.upn"),
        surname=_need(item.legal_surname or item.surname, "surname"),
        forename=_need(item.legal_forename or item.forename, "forename"),
        dob=_need(calendar_date(item.date_of_birth), "date_of_birth"),
        sex=SEX.get((item.gender or "").upper(), _need(item.gender, "gender")),
        ncy=_need(ncy_code(education.current_nc_year), "education_details.current_nc_year"),
        in_care=_need(in_care, "extended_details.in_lea_care"),
        care_authority=authority if in_care else None,
        admission_date=_need(
            calendar_date(education.admission_date), "education_details.admission_date"
        ),
        leaving_date=calendar_date(education.leaving_date),
        updated_at=_need(utc_time(item.updated_at), "updated_at"),
    )


# -- the source ------------------------------------------------------------------------------

Sleep = Callable[[float], None]


def open_wonde(endpoint: Endpoint, laestab: str | None, settings: Settings | None) -> WondeSource:
    """The SOURCES factory: reads the token (``auth`` when it cannot), builds no connection."""
    if not endpoint.school_id or not endpoint.token_credential:
        raise ConnectorError("internal", "wonde endpoint without school_id or token credential")
    token = read_token(
        endpoint.token_credential, settings.credentials if settings is not None else {}
    )
    return WondeSource(endpoint, token, laestab=laestab)


class WondeSource:
    """Reads one school through the API (see the module docstring). ``sleep``, ``clock`` and
    ``timeout`` are injected by tests; ``transport`` replaces httpx's network transport."""

    def __init__(
        self,
        endpoint: Endpoint,
        token: Secret,
        *,
        laestab: str | None = None,
        per_page: int = PER_PAGE,
        max_page_bytes: int = MAX_PAGE_BYTES,
        sleep: Sleep = time.sleep,
        clock: Now = utc_now,
        timeout: httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = endpoint.url or DEFAULT_URL
        self.base_url = base if base.endswith("/") else base + "/"
        self.school_id = endpoint.school_id or ""
        self.school_url = f"{self.base_url}schools/{quote(self.school_id, safe='')}/"
        self.laestab = laestab
        self.per_page = per_page
        self.max_page_bytes = max_page_bytes
        self._endpoint = endpoint
        self._token = token
        self._sleep = sleep
        self._clock = clock
        self._transport = transport
        self._timeout = timeout or httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        self._client: httpx.Client | None = None
        self._backend = _DeadlineBackend()
        self._origin = httpx.URL(self.school_url)
        self._server_date: str | None = None
        self._students: dict[str, str] | None = None  # Wonde student id -> UPN
        self._mis_ids: set[str] = set()  # MIS ids of every student listed
        self._encoder = msgspec.json.Encoder()
        self._page = msgspec.json.Decoder(Page)

    def __repr__(self) -> str:
        return f"WondeSource(school_id={self.school_id!r}, url={self.base_url!r})"

    # -- the Source protocol -------------------------------------------------------------

    def manifest(self, *, deadline: Deadline = no_deadline) -> Manifest:
        """The school as the API describes it: known (404: ``prerequisite``), access approved
        and online (``meta/schools/<id>``: ``prerequisite`` otherwise), the same LAESTAB as
        the base (``bad-data`` otherwise), running SIMS (``prerequisite`` otherwise; which
        SIMS edition is not said, so ``mis`` is None). ``exported_at`` is the server's
        ``Date`` of that answer, never later than our clock."""
        what = f"school {self.school_id}"
        school_url = f"{self.base_url}schools/{quote(self.school_id, safe='')}"
        body = self._get(school_url, None, what, deadline)
        school = self._decode(body, SchoolDoc, what).data
        meta_what = f"access to school {self.school_id}"
        meta_url = f"{self.base_url}meta/schools/{quote(self.school_id, safe='')}"
        meta_body = self._get(meta_url, None, meta_what, deadline)
        meta_doc = self._decode(meta_body, SchoolMetaDoc, meta_what)
        meta = meta_doc.data or SchoolMeta(online=meta_doc.online, approved=meta_doc.approved)
        if meta.approved is not True:
            raise ConnectorError(
                "prerequisite", f"{what}: access is not approved in Wonde (meta says approved: no)"
            )
        if meta.online is False:
            raise ConnectorError(
                "prerequisite", f"{what}: Wonde reports the school offline (its MIS is not syncing)"
            )
        laestab = None
        la, estab = _text(school.la_code), _text(school.establishment_number)
        if la is not None and estab is not None:
            laestab = f"{la}{estab.zfill(4)}" if estab.isdigit() else f"{la}{estab}"
            if self.laestab is not None and laestab != self.laestab:
                raise ConnectorError(
                    "bad-data",
                    f"{what}: its la_code and establishment_number are not {self.laestab}: "
                    "check school_id in bases.yaml",
                )
        if school.mis is not None and "SIMS" not in school.mis.upper():
            raise ConnectorError("prerequisite", f"{what}: Wonde says its MIS is not SIMS")
        return Manifest(mis=None, exported_at=self._exported_at(), laestab=laestab)

    def read(
        self, kind: RecordKind, since: str | None = None, *, deadline: Deadline = no_deadline
    ) -> Iterator[tuple[bytes, Record | Rejection]]:
        """Every record of ``kind`` (see the module docstring); with ``since``, marks and
        deletions are asked for ``updated_after`` one second before it (whether the API's bound
        is inclusive is not documented). ``deadline`` is called after every page."""
        if kind == "pupil":
            yield from self._pupils(deadline)
            return
        students = self._student_map(deadline)
        mapper = _MAPPERS[kind](self, students)
        params: dict[str, str] = {}
        if since is not None and kind in CHANGED_FILTER:
            params["updated_after"] = updated_after(since)
        for resource in RESOURCES[kind]:
            for raw in self._items(resource, params, deadline):
                mapped = mapper(raw)
                if mapped is not None:
                    yield mapped

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- record kinds --------------------------------------------------------------------

    def _pupils(self, deadline: Deadline) -> Iterator[tuple[bytes, Record | Rejection]]:
        students: dict[str, str] = {}
        mis_ids: set[str] = set()
        decode_item = msgspec.json.Decoder(StudentItem).decode
        check = RecordDecoder("pupil").decode
        encode = self._encoder.encode
        for resource in RESOURCES["pupil"]:
            for raw in self._items(resource, {}, deadline):
                item = _item(decode_item, raw)
                if isinstance(item, tuple):
                    yield item
                    continue
                mis_id = _text(item.mis_id)
                if mis_id is not None:
                    mis_ids.add(mis_id)
                education = item.education_details.data if item.education_details else None
                if education is not None and isinstance(education.upn, str):
                    # an id listed twice with two UPNs names no one: its marks are unmapped
                    known = students.setdefault(item.id, education.upn)
                    if known != education.upn:
                        students[item.id] = ""

                try:
                    pupil = pupil_fields(item)
                except Unmapped as missing:
                    yield bytes(raw), Rejection("unmapped", missing.field)
                    continue
                line = encode(pupil)
                yield line, check(line)
        self._students, self._mis_ids = students, mis_ids

    def _student_map(self, deadline: Deadline) -> dict[str, str]:
        """Wonde student id -> UPN, from the pupil pass (made now if none was)."""
        if self._students is None:
            for _ in self._pupils(deadline):
                pass
        assert self._students is not None
        return self._students

    def _marks(self, students: dict[str, str]) -> Callable[[msgspec.Raw], _Yield]:
        decode_item = msgspec.json.Decoder(MarkItem).decode
        check = RecordDecoder("mark").decode
        encode = self._encoder.encode
        times: dict[DateTimeObject | str, str] = {}
        dates: dict[DateTimeObject | str, str] = {}

        def mark(raw: msgspec.Raw) -> _Yield:
            item = _item(decode_item, raw)
            if isinstance(item, tuple):
                return item
            upn = students.get(item.student_id) if isinstance(item.student_id, str) else None
            if not upn:
                return bytes(raw), _UNKNOWN_STUDENT
            code = item.attendance_code
            if not isinstance(code, str):
                code = code.data.code if code is not None and code.data is not None else None
                if code is None:
                    return bytes(raw), _NO_CODE
            stamp = item.updated_at
            if stamp is None:
                return bytes(raw), _NO_UPDATED
            updated = times.get(stamp)
            if updated is None:
                if len(times) >= _MAX_CACHE:
                    times.clear()
                updated = times[stamp] = utc_time(stamp) or ""
            day = dates.get(item.date) if item.date is not None else None
            if day is None:
                if item.date is None:
                    return bytes(raw), _NO_DATE
                if len(dates) >= _MAX_CACHE:
                    dates.clear()
                day = dates[item.date] = calendar_date(item.date) or ""
            line = encode(
                SessionMark(
                    upn=upn,
                    date=day,
                    # any text: check(line) below rejects a session other than AM/PM
                    session=(item.session or "").upper(),  # type: ignore[arg-type]
                    code=code,
                    updated_at=updated,
                )
            )
            return line, check(line)

        return mark

    def _results(self, students: dict[str, str]) -> Callable[[msgspec.Raw], _Yield]:
        decode_item = msgspec.json.Decoder(ResultItem).decode
        check = RecordDecoder("result").decode
        encode = self._encoder.encode

        def result(raw: msgspec.Raw) -> _Yield:
            item = _item(decode_item, raw)
            if isinstance(item, tuple):
                return item
            try:
                upn = students.get(item.student_id) if isinstance(item.student_id, str) else None
                if not upn:
                    return bytes(raw), _UNKNOWN_STUDENT
                aspect = item.aspect.data if item.aspect is not None else None
                if aspect is None:
                    raise Unmapped("aspect")
                record = Result(
                    upn=upn,
                    stage=_need(aspect.stage, "aspect.stage"),
                    subject=_need(aspect.subject, "aspect.subject"),
                    method=_need(aspect.method, "aspect.method"),
                    component=_text(aspect.component),
                    result=_need(_text(item.result), "result"),
                    result_date=_need(calendar_date(item.result_date), "result_date"),
                    updated_at=_need(utc_time(item.updated_at), "updated_at"),
                )
            except Unmapped as missing:
                return bytes(raw), Rejection("unmapped", missing.field)
            line = encode(record)
            return line, check(line)

        return result

    def _deletions(self, students: dict[str, str]) -> Callable[[msgspec.Raw], _Yield | None]:
        decode_item = msgspec.json.Decoder(DeletionItem).decode
        still_listed = set(students) | self._mis_ids

        def deletion(raw: msgspec.Raw) -> _Yield | None:
            item = _item(decode_item, raw)
            if isinstance(item, tuple):
                return item
            kind = DELETION_TYPES.get((item.type or "").lower())
            if kind is None or item.restored_at is not None:
                return None  # not a record of ours, or no longer deleted
            if kind == "pupil" and (
                _text(item.id) in still_listed or _text(item.mis_id) in still_listed
            ):
                return None  # moved between students and leavers: still at the school
            return bytes(raw), _UNKNOWN_KEY

        return deletion

    # -- HTTP ------------------------------------------------------------------------------

    def _items(
        self, resource: Resource, extra: dict[str, str], deadline: Deadline
    ) -> Iterator[msgspec.Raw]:
        """Every item of one collection, page by page (see the module docstring)."""
        params = {"per_page": str(self.per_page), **extra}
        if resource.include:
            params["include"] = resource.include
        url = f"{self.school_url}{resource.path}/"
        query: dict[str, str] | None = params
        seen: set[bytes] = set()  # digests of the pages asked for: a cycle of any length ends
        number = 1
        while True:
            what = f"{resource.path} page {number}"
            page = self._decode(self._get(url, query, what, deadline), Page, what)
            deadline()
            yield from page.data
            pagination = page.meta.pagination if page.meta is not None else None
            if pagination is None or not page.data or pagination.more is False:
                return
            following = pagination.next
            if not following:
                return
            here = url if query is None else str(httpx.URL(url, params=query))
            seen.add(hashlib.sha256(here.encode()).digest())
            if hashlib.sha256(following.encode()).digest() in seen:
                raise ConnectorError("bad-data", f"{what}: pagination 'next' repeats a page")
            if not self._on_school(following):
                raise ConnectorError(
                    "bad-data", f"{what}: pagination 'next' points outside {self.school_url}"
                )
            url, query, number = following, None, number + 1

    def _on_school(self, url: str) -> bool:
        """Whether ``url`` is on the configured server (scheme, host, port) and under the
        school's path, with no user info and no dot segment (``%2e%2e`` that a server would
        resolve to another school)."""
        if len(url) > MAX_NEXT_BYTES:
            return False
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            return False
        origin = self._origin
        return (
            target.scheme == origin.scheme
            and target.host == origin.host
            and target.port == origin.port
            and not target.userinfo
            and target.path.startswith(origin.path)
            and not _DOT_SEGMENTS.intersection(target.path.split("/"))
        )

    def _get(
        self, url: str, params: dict[str, str] | None, what: str, deadline: Deadline
    ) -> bytearray:
        """One GET with retries (module docstring); the body, at most ``max_page_bytes``.
        No wait, on the socket or between attempts, outlasts ``deadline``."""
        client = self._http(deadline)
        attempts = len(RETRY_DELAYS) + 1
        for attempt in range(attempts):
            reason: FailureReason
            deadline()
            try:
                with client.stream("GET", url, params=params) as response:
                    status = response.status_code
                    if status == 200:
                        body = self._body(response, what, deadline)
                        self._server_date = response.headers.get("date")
                        return body
                    reason, message, wait = self._refusal(status, response.headers, what, attempt)
            except httpx.TimeoutException:
                reason, message = "timeout", f"{what}: no answer within the timeout"
                wait = RETRY_DELAYS[attempt] if attempt < len(RETRY_DELAYS) else None
            except httpx.TransportError as error:
                if _untrusted_certificate(error):
                    raise ConnectorError(
                        "auth",
                        f"{what}: the server's TLS certificate is not trusted "
                        "(set ca_bundle for a private CA)",
                    ) from None
                reason = "unreachable"
                message = f"{what}: {_transport_problem(error)}"
                wait = RETRY_DELAYS[attempt] if attempt < len(RETRY_DELAYS) else None
            if wait is None:
                raise ConnectorError(reason, message)
            left = deadline()
            if left is not None and wait >= left:
                raise ConnectorError(
                    reason, f"{message}; a retry in {wait:.0f} s would outlast the transfer"
                )
            self._sleep(wait)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _refusal(
        self, status: int, headers: httpx.Headers, what: str, attempt: int
    ) -> tuple[FailureReason, str, float | None]:
        """(reason, message, seconds to wait before retrying or None to give up) for a
        non-200 answer."""
        retry = RETRY_DELAYS[attempt] if attempt < len(RETRY_DELAYS) else None
        if status in (401, 403):
            return "auth", f"{what}: the API refused the token (HTTP {status})", None
        if status == 404:
            return "prerequisite", f"{what}: not found (HTTP 404): unknown school or resource", None
        if status == 429:
            asked = _retry_after(headers.get("retry-after"), self._clock())
            if asked is not None and asked > MAX_RETRY_AFTER:
                return (
                    "unreachable",
                    f"{what}: rate limited (HTTP 429), asked to wait {asked:.0f} s",
                    None,
                )
            wait = retry if asked is None or retry is None else max(asked, 0.0)
            return "unreachable", f"{what}: rate limited (HTTP 429)", wait
        if status >= 500:
            return "unreachable", f"{what}: server error (HTTP {status})", retry
        return "bad-data", f"{what}: unexpected HTTP {status}", None

    def _body(self, response: httpx.Response, what: str, deadline: Deadline) -> bytearray:
        """The body, inflated here (never by httpx, whose decoders inflate a whole network
        read at once, and a stack of them a bomb's every layer): at most ``max_page_bytes``
        after inflating, the deadline checked on every network read."""
        limit = self.max_page_bytes
        too_big = ConnectorError("bad-data", f"{what}: response larger than {limit} bytes")
        length = response.headers.get("content-length", "")
        if _digits(length, 20) and int(length) > limit:
            raise too_big
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in CONTENT_ENCODINGS:
            raise ConnectorError("bad-data", f"{what}: a Content-Encoding we did not ask for")
        wbits = CONTENT_ENCODINGS[encoding]
        inflate = zlib.decompressobj(wbits) if wbits is not None else None
        body = bytearray()
        try:
            for chunk in response.iter_raw():
                deadline()
                if inflate is None:
                    body += chunk
                    if len(body) > limit:
                        raise too_big
                    continue
                while chunk:
                    body += inflate.decompress(chunk, min(INFLATE_STEP, limit + 1 - len(body)))
                    if len(body) > limit:
                        raise too_big
                    chunk = inflate.unconsumed_tail
        except zlib.error:
            raise ConnectorError("bad-data", f"{what}: the compressed body is corrupt") from None
        if inflate is not None and not inflate.eof:
            raise ConnectorError("bad-data", f"{what}: the compressed body is cut short")
        return body  # not copied to bytes: msgspec decodes (and its Raws keep) the buffer

    def _decode(self, body: bytes | bytearray, shape: type[Any], what: str) -> Any:
        """``body`` as ``shape``; ``bad-data`` when it is not JSON of that shape, nests deeper
        than msgspec recurses, or (a page) holds more than :data:`MAX_PAGE_VALUES` values:
        msgspec makes a ``Raw`` (48 bytes) of each item before any check, so a 16 MiB page
        of ``0,0,0...`` would hold 400 MiB; its commas bound its items, and counting them is a
        C loop."""
        try:
            if shape is Page:
                if body.count(b",") >= MAX_PAGE_VALUES:
                    raise ConnectorError(
                        "bad-data", f"{what}: more than {MAX_PAGE_VALUES} values in one page"
                    )
                return self._page.decode(body)
            return msgspec.json.decode(body, type=shape)
        except msgspec.ValidationError as error:
            raise ConnectorError(
                "bad-data", f"{what}: unexpected JSON shape ({_path_of(error) or 'document'})"
            ) from None
        except msgspec.DecodeError:
            raise ConnectorError("bad-data", f"{what}: the response is not JSON") from None
        except RecursionError:
            raise ConnectorError("bad-data", f"{what}: the JSON nests too deeply") from None

    def _http(self, deadline: Deadline) -> httpx.Client:
        """The source's client (made on first use); every socket wait it makes from now on
        ends by ``deadline`` (see :class:`_DeadlineBackend`)."""
        if self._client is None:
            self._client = httpx.Client(
                headers={
                    "Authorization": f"Bearer {self._token.reveal()}",
                    "Accept": "application/json",
                    "Accept-Encoding": "gzip",
                    "User-Agent": "b2bd",
                },
                timeout=self._timeout,
                verify=self._verify(),
                follow_redirects=False,
                transport=self._transport,
            )
            _bound_by(self._client, self._backend)
        self._backend.deadline = deadline
        return self._client

    def _verify(self) -> ssl.SSLContext | bool:
        endpoint = self._endpoint
        if not endpoint.tls_verify:
            return False
        if endpoint.ca_bundle is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(endpoint.ca_bundle))
        except (OSError, ssl.SSLError) as error:
            raise ConnectorError(
                "local",
                f"ca_bundle {endpoint.ca_bundle}: {getattr(error, 'strerror', None) or 'not PEM'}",
            ) from None

    def _exported_at(self) -> str:
        now = self._clock().astimezone(dt.UTC).replace(microsecond=0)
        stamp = now
        if self._server_date:
            try:
                told = email.utils.parsedate_to_datetime(self._server_date)
            except (TypeError, ValueError):
                told = None
            if told is not None and told.tzinfo is not None:
                stamp = min(now, told.astimezone(dt.UTC))
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


_Yield = tuple[bytes, Record | Rejection]
Item = TypeVar("Item", StudentItem, MarkItem, ResultItem, DeletionItem)
_MAPPERS: dict[
    RecordKind, Callable[[WondeSource, dict[str, str]], Callable[[msgspec.Raw], Any]]
] = {
    "mark": WondeSource._marks,
    "result": WondeSource._results,
    "deletion": WondeSource._deletions,
}

_TOO_LONG = TOO_LONG
_NOT_JSON = Rejection("json")
_UNKNOWN_STUDENT = Rejection("unmapped", "student_id")
_UNKNOWN_KEY = Rejection("unmapped", "id")
_NO_CODE = Rejection("unmapped", "attendance_code")
_NO_UPDATED = Rejection("unmapped", "updated_at")
_NO_DATE = Rejection("unmapped", "date")
_MAX_CACHE: Final = 100_000
_DOT_SEGMENTS: Final = frozenset({".", ".."})
_PATH: Final = re.compile(r"at `\$\.?([\w.\[\]]*)`")


def _item(decode: Callable[[msgspec.Raw], Item], raw: msgspec.Raw) -> Item | _Yield:
    """The API item, or what to yield instead: too long, not JSON, or a field of a type we do
    not read (``unmapped``, with its path)."""
    if len(raw) > MAX_ITEM_BYTES:
        return b"", _TOO_LONG
    try:
        return decode(raw)
    except msgspec.ValidationError as error:
        return bytes(raw), _unmapped(error)
    except (msgspec.DecodeError, RecursionError):
        return bytes(raw), _NOT_JSON


def _path_of(error: msgspec.ValidationError) -> str | None:
    """The API field path msgspec names (``$.a.b`` -> ``a.b``), never the value."""
    found = _PATH.search(str(error))
    return found.group(1) if found else None


def _unmapped(error: msgspec.ValidationError) -> Rejection:
    return Rejection("unmapped", _path_of(error))


def updated_after(since: str) -> str:
    """``updated_after`` for records changed at or after ``since`` (our UTC time): the API's
    documented ``YYYY-MM-DD HH:MM:SS``, one second earlier in case its bound is exclusive."""
    moment = dt.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ") - UPDATED_AFTER_MARGIN
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds a ``Retry-After`` asks for (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if _digits(text, 20):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _untrusted_certificate(error: BaseException) -> bool:
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


_TRANSPORT_PROBLEMS: tuple[tuple[type[httpx.TransportError], str], ...] = (
    (httpx.ConnectError, "cannot connect"),
    (httpx.RemoteProtocolError, "the connection broke off (reset or truncated answer)"),
    (httpx.ReadError, "the connection broke off while reading"),
    (httpx.WriteError, "the connection broke off while sending"),
)


def _transport_problem(error: httpx.TransportError) -> str:
    """What went wrong, in our words (httpx's own text can carry a URL or header bytes)."""
    for kind, words in _TRANSPORT_PROBLEMS:
        if isinstance(error, kind):
            return words
    return f"transport error ({type(error).__name__})"


# -- every socket wait ends by the transfer's deadline -----------------------------------------


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sync backend, except that each connect, TLS handshake, read and write
    waits at most until :attr:`deadline` (set by the source before each request): httpx's
    timeouts bound one read, so a server trickling a byte a second would otherwise hold a
    transfer for ever. The deadline raises once it has passed."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()
        self.deadline: Deadline = no_deadline

    def clamp(self, timeout: float | None) -> float | None:
        left = self.deadline()
        if left is None:
            return timeout
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, self.clamp(timeout), local_address, socket_options
        )
        return _DeadlineStream(stream, self)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, self.clamp(timeout), socket_options)
        return _DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, backend: _DeadlineBackend) -> None:
        self._stream = stream
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._backend.clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._backend.clamp(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, self._backend.clamp(timeout))
        return _DeadlineStream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _bound_by(client: httpx.Client, backend: _DeadlineBackend) -> None:
    """Give every connection pool of ``client`` (the default transport and those of any proxy
    from the environment) ``backend``. httpx has no public way to pass a network backend;
    httpcore's pools keep theirs in ``_network_backend`` (httpx 0.28-0.29, httpcore 1.x;
    tests/connectors/test_wonde_hostile.py fails if that ever stops working)."""
    for transport in (client._transport, *client._mounts.values()):
        if not isinstance(transport, httpx.HTTPTransport):
            continue  # a test's MockTransport, or no proxy for that pattern (None)
        pool: Any = getattr(transport, "_pool", None)  # httpcore private: anything, or None
        if not hasattr(pool, "_network_backend"):
            raise ConnectorError("internal", "this httpx/httpcore keeps no _network_backend")
        pool._network_backend = backend
