"""Bringing One's existing scheduled tasks across: a legacy CSV export -> task files.

The export has one row per task per base, with One's own labels (notes/domain.md 1.2, 1.3)::

    Task Name,Owner,Locked,Base,Direction,Data Type,Attendance Option,Group,NCY,Month Filter,
    Frequency,Days,Dates,Months,Times,Start,Expiry

The pure core (:func:`migrate`) turns rows into task documents and problems:

1. each row's values are mapped from One's labels to task fields (:func:`row_fields`); a value
   that has no mapping is ``migrate-value``, a school-owned task the school has locked is
   ``migrate-school-locked`` (the LA may not take it over);
2. each row, as a one-base task, goes through the same checks ``b2bd validate`` makes (JSON
   Schema, then the exchange rules against the target config's bases.yaml), so a row is refused
   with DESIGN's own rule ids: ``to-school-changed-only``, ``to-school-ncy-only``,
   ``base-unknown``, ``base-lockdown``, ``base-prerequisites``, ``sims-primary-only``,
   ``time-format``, ``ncy-code``, ``ncy-unexpected``, ``months-attendance-only``...;
3. rows identical except for Base become one task over the bases of the rows that passed
   (``bases: {ids: [...]}``, sorted);
4. each task is written out as YAML, read back with the config loader's YAML 1.2 parser and
   validated again; only a document that reads back unchanged and valid is returned.

Task ids come from the task names: lower-case ASCII, runs of anything else become one hyphen,
at most 63 characters. Ids are given to every group in row order, whether or not its rows pass,
so fixing a bad row never renames another task; a clash (two groups with one name, or an id
another file of the config already has) takes the next free ``-2``, ``-3``... suffix.

Output is deterministic: the same rows give byte-identical files (no timestamps, fixed key
order, the source file named by its base name only).

Times: a Weekly or Monthly task without Times runs at Start's time, as One does ("once a day at
the time specified in the Start field"); a Once task runs at Start's date and time.

Start and Expiry bound the slots (:func:`_first_day`, :func:`_last_day`). For Weekly and Monthly,
Start becomes ``schedule.starts`` and Expiry ``schedule.expires``, inclusive local dates, so that
b2bd runs exactly the slots One would have run and never one that One would not: One runs a slot
at or after Start's time and at or before Expiry's. A Start whose time is after every run time of
its day starts the day after; an Expiry whose time is before every run time of its day expires
the day before. When the time falls between two run times of that day, whole dates cannot say
it: b2bd leaves that day out (starts the day after / expires the day before), and the row gets a
``migrate-partial-day`` warning naming the runs One would still have made that day. Start is
always written, even when it has passed, so the same export always gives the same files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import jsonschema

from b2bd.config.build import build_schedule, build_task
from b2bd.config.model import DEFAULT_TIMEZONE, Base, Policy, Settings
from b2bd.config.rules import resolve_bases, task_findings
from b2bd.config.schema import Finding, check
from b2bd.config.yamlfile import FileProblem, parse
from b2bd.schedule import slots

COLUMNS: tuple[str, ...] = (
    "Task Name",
    "Owner",
    "Locked",
    "Base",
    "Direction",
    "Data Type",
    "Attendance Option",
    "Group",
    "NCY",
    "Month Filter",
    "Frequency",
    "Days",
    "Dates",
    "Months",
    "Times",
    "Start",
    "Expiry",
)
GROUPING_COLUMNS = tuple(c for c in COLUMNS if c != "Base")

RULE_VALUE = "migrate-value"
RULE_SCHOOL_LOCKED = "migrate-school-locked"
RULE_DUPLICATE = "migrate-duplicate"
RULE_PARTIAL_DAY = "migrate-partial-day"

# One's labels -> task values. Matching ignores case and repeated spaces; the keys are what
# messages offer as the choices.
OWNERS = {"LA": "LA", "School": "School"}
LOCKED = {"Yes": True, "No": False, "": False}
DIRECTIONS = {"Export from School": "from-school", "Export to School": "to-school"}
DATA_TYPES = {
    "Attainment Data": "attainment",
    "Attendance Data": "attendance",
    "Changed Data": "changed",
    "Snapshot Data": "snapshot",
}
ATTENDANCE_OPTIONS = {
    "All Attendances for Current Academic Year": "all-attendances-current-year",
    "All Unauthorised Absences for Current Academic Year": "unauthorised-absences-current-year",
    "All Absences for Current Academic Year": "all-absences-current-year",
    "All Attendances for Previous Academic Year": "all-attendances-previous-year",
    "Attendance Changed Data (SIMS Primary)": "attendance-changed",
}
GROUPS = {"NCY": "ncy", "LAC": "lac", "Looked After": "lac", "Leavers": "leavers"}
FREQUENCIES = {"Once": "once", "Weekly": "weekly", "Monthly": "monthly"}
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS = {
    **{full[:3]: full[:3].lower() for full in _DAY_NAMES},
    **{full: full[:3].lower() for full in _DAY_NAMES},
}
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
MONTH_NAMES = {
    **{full[:3]: full[:3].lower() for full in _MONTH_NAMES},
    **{full: full[:3].lower() for full in _MONTH_NAMES},
}

# Which CSV column a finding's JSON pointer is about (longest prefix wins).
POINTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("/bases", "Base"),
    ("/direction", "Direction"),
    ("/data/attendance", "Attendance Option"),
    ("/data/months", "Month Filter"),
    ("/data", "Data Type"),
    ("/cohort/ncy", "NCY"),
    ("/cohort", "Group"),
    ("/schedule/weekly/days", "Days"),
    ("/schedule/monthly/days", "Dates"),
    ("/schedule/monthly/months", "Months"),
    ("/schedule/weekly/times", "Times"),
    ("/schedule/monthly/times", "Times"),
    ("/schedule/once", "Start"),
    ("/schedule/expires", "Expiry"),
    ("/schedule", "Frequency"),
    ("/id", "Task Name"),
    ("/description", "Task Name"),
)

_UK_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2}))?\Z")
_SHORT_TIME = re.compile(r"^\d:\d\d\Z")
_LAESTAB = re.compile(r"^[0-9]{7}\Z")
_ASCII_DIGITS = re.compile(r"^[0-9]{1,6}\Z")  # str.isdigit() also takes "²", which int() refuses
_SAFE_PLAIN = re.compile(r"^[a-z][a-z-]*\Z")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
ID_MAX = 63
PLACEHOLDER_ID = "migrating"


class LegacyFileError(Exception):
    """The export as a whole cannot be read (exit 2): encoding, or not the expected columns."""


@dataclass(frozen=True)
class Row:
    """One data row; ``line`` is its first line in the file (the header is line 1)."""

    line: int
    values: Mapping[str, str]
    width: int = len(COLUMNS)  # how many fields the row had

    def __getitem__(self, column: str) -> str:
        return self.values[column]


@dataclass(frozen=True, order=True)
class RowProblem:
    """Why a row (or part of it) was not migrated, or a warning about what was."""

    line: int
    rule: str
    message: str
    severity: Literal["error", "warning"] = "error"
    column: str = ""


@dataclass(frozen=True)
class TaskDocument:
    """One task file to write: ``text`` is the whole file, comment header included."""

    id: str
    rows: tuple[int, ...]
    bases: tuple[str, ...]
    text: str

    @property
    def file_name(self) -> str:
        return f"{self.id}.yaml"


@dataclass(frozen=True)
class Migration:
    documents: tuple[TaskDocument, ...]
    problems: tuple[RowProblem, ...]
    rows: int

    @property
    def failed_rows(self) -> frozenset[int]:
        return frozenset(p.line for p in self.problems if p.severity == "error")


# ---- reading the export (pure: text in) ------------------------------------------------------


def decode(raw: bytes, encoding: str = "utf-8") -> str:
    """The export's text: a UTF-8 BOM is dropped; bytes that are not ``encoding`` raise
    LegacyFileError naming their line, column and byte offset.

    Non-UTF-8 exports are refused rather than guessed at: Excel's "CSV (Comma delimited)" on
    Windows writes cp1252, but so do other code pages, and a wrong guess silently changes names.
    The message says how to get UTF-8 out of Excel, or to name the encoding with --encoding.
    """
    name = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    try:
        return raw.decode(name)
    except LookupError as exc:
        raise LegacyFileError(f"unknown encoding {encoding!r}") from exc
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise LegacyFileError(
            f"not valid {encoding} at line {line}, column {column} (byte offset {exc.start}, "
            f'byte 0x{raw[exc.start]:02x}): save it from Excel as "CSV UTF-8", or give the '
            "file's encoding with --encoding (e.g. --encoding cp1252)"
        ) from exc


def read_rows(text: str) -> list[Row]:
    """The data rows of an export's text (CRLF or LF). Blank lines are skipped.

    The header must name exactly COLUMNS, in any order (surrounding spaces ignored); anything
    else raises LegacyFileError. A row with the wrong number of fields keeps what it has, and
    :func:`migrate` reports it.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    try:
        header = next(reader, None)
        if header is None:
            raise LegacyFileError("the file is empty: expected a header row")
        names = [h.strip() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        unknown = [n for n in names if n not in COLUMNS]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if missing or unknown or duplicated:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if unknown:
                parts.append("unexpected " + ", ".join(repr(n) for n in unknown))
            if duplicated:
                parts.append("repeated " + ", ".join(duplicated))
            raise LegacyFileError(
                "line 1 is not the expected header ("
                + "; ".join(parts)
                + "): expected "
                + ",".join(COLUMNS)
            )
        rows: list[Row] = []
        line = reader.line_num + 1
        for record in reader:
            if any(field.strip() for field in record):
                values = {name: "" for name in COLUMNS}
                for name, value in zip(names, record, strict=False):
                    values[name] = value.strip()
                rows.append(Row(line, values, len(record)))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise LegacyFileError(f"line {reader.line_num}: {exc}") from exc
    return rows


# ---- one row: One's labels -> task fields (pure) ---------------------------------------------


@dataclass
class _Fields:
    """A row's task fields (without id and bases) and the notes for its comment header."""

    doc: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    def refuse(self, row: Row, column: str, message: str, rule: str = RULE_VALUE) -> None:
        self.problems.append(RowProblem(row.line, rule, message, "error", column))


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


_V = TypeVar("_V")


def _find(table: Mapping[str, _V], text: str) -> _V | None:
    wanted = _key(text)
    return next((value for label, value in table.items() if _key(label) == wanted), None)


def _lookup(fields: _Fields, row: Row, column: str, table: Mapping[str, Any]) -> Any:
    value = row[column]
    found = _find(table, value)
    if found is None:
        shown = repr(value) if value else "empty"
        choices = ", ".join(label for label in table if label)
        fields.refuse(row, column, f"{column} is {shown}: expected one of {choices}")
    return found


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


def _uk_datetime(fields: _Fields, row: Row, column: str) -> tuple[dt.date, dt.time | None] | None:
    value = row[column]
    match = _UK_DATE.match(value)
    try:
        if match is None:
            raise ValueError
        day, month, year, hour, minute = match.groups()
        date = dt.date(int(year), int(month), int(day))
        time = dt.time(int(hour), int(minute)) if hour is not None else None
    except ValueError:
        fields.refuse(
            row, column, f"{column} {value!r} is not dd/mm/yyyy or dd/mm/yyyy HH:MM (UK form)"
        )
        return None
    return date, time


def _times(row: Row) -> list[str]:
    # "6:30" is unambiguous and common from spreadsheets; anything else goes to the validator
    # as written, which reports time-format.
    return [f"0{t}" if _SHORT_TIME.match(t) else t for t in _items(row["Times"])]


def _ncy(text: str) -> list[int | str]:
    return [int(code) if _ASCII_DIGITS.match(code) else code.upper() for code in _items(text)]


def row_fields(row: Row) -> _Fields:
    """Map one row's One labels to task fields (id and bases are added later)."""
    fields = _Fields()
    if row.width != len(COLUMNS):
        fields.refuse(row, "", f"the row has {row.width} fields, the header {len(COLUMNS)}")
        return fields
    name = row["Task Name"]
    if not name:
        fields.refuse(row, "Task Name", "Task Name is empty")

    owner = _lookup(fields, row, "Owner", OWNERS)
    locked = _lookup(fields, row, "Locked", LOCKED)
    if owner == "School" and locked:
        fields.refuse(
            row,
            "Locked",
            "the school owns this task and has locked it down: the LA may not take it over "
            "(ask the school to unlock it, or leave it with the school)",
            RULE_SCHOOL_LOCKED,
        )
    elif owner == "School":
        fields.notes.append(
            "Owned by the school in One (not locked); from now on the LA manages it here."
        )
    if not _LAESTAB.match(row["Base"]):
        fields.refuse(row, "Base", f"Base {row['Base']!r} is not a 7-digit LAESTAB")

    doc = fields.doc
    doc["description"] = name
    doc["direction"] = _lookup(fields, row, "Direction", DIRECTIONS)
    data: dict[str, Any] = {"type": _lookup(fields, row, "Data Type", DATA_TYPES)}
    if row["Attendance Option"]:
        data["attendance"] = _lookup(fields, row, "Attendance Option", ATTENDANCE_OPTIONS)
    if row["Month Filter"]:
        if _ASCII_DIGITS.match(row["Month Filter"]):
            data["months"] = int(row["Month Filter"])
        else:
            fields.refuse(
                row, "Month Filter", f"Month Filter {row['Month Filter']!r} is not 1 to 13"
            )
    doc["data"] = data

    group = _lookup(fields, row, "Group", GROUPS)
    cohort: dict[str, Any] = {"group": group}
    ncy = row["NCY"]
    if _key(ncy) == "all":
        if group == "ncy":
            cohort["ncy"] = "all"
    elif ncy:
        cohort["ncy"] = _ncy(ncy)
    doc["cohort"] = cohort

    doc["schedule"] = _schedule(fields, row)
    return fields


def _schedule(fields: _Fields, row: Row) -> dict[str, Any]:
    frequency = _lookup(fields, row, "Frequency", FREQUENCIES)
    start = _uk_datetime(fields, row, "Start") if row["Start"] else None
    times = _times(row)
    schedule: dict[str, Any] = {}
    for column, used_by in (("Days", "weekly"), ("Dates", "monthly"), ("Months", "monthly")):
        if row[column] and frequency is not None and frequency != used_by:
            fields.refuse(
                row,
                column,
                f"{column} is only used by {used_by.title()} tasks (Frequency is "
                f"{row['Frequency']}): leave it empty",
            )
    if not times and start is not None and start[1] is not None:
        times = [start[1].strftime("%H:%M")]

    if frequency == "once":
        if not row["Start"]:
            fields.refuse(row, "Start", "a Once task needs its Start date and time")
        elif start is not None:
            date, at = start
            if len(times) > 1:
                fields.refuse(row, "Times", "a Once task runs at one time")
            elif at is None and not times:
                fields.refuse(row, "Start", "a Once task needs a time: in Start or in Times")
            elif at is not None and times and times[0] != at.strftime("%H:%M"):
                fields.refuse(
                    row, "Times", f"Times {row['Times']!r} disagrees with Start {row['Start']!r}"
                )
            else:
                schedule["once"] = f"{date.isoformat()}T{times[0]}"
    elif frequency in ("weekly", "monthly"):
        if not times:
            fields.refuse(row, "Times", "no run time: give Times, or a time in Start")
        rule: dict[str, Any] = {}
        if frequency == "weekly":
            days = [_lookup_item(fields, row, "Days", d, WEEKDAYS) for d in _items(row["Days"])]
            if not days:
                fields.refuse(row, "Days", "a Weekly task needs Days, e.g. Mon;Wed")
            rule["days"] = days
        else:
            rule["days"] = [_date(fields, row, d) for d in _items(row["Dates"])]
            if not rule["days"]:
                fields.refuse(row, "Dates", "a Monthly task needs Dates, e.g. 1;15;Last")
            months = _items(row["Months"])
            if [_key(m) for m in months] == ["all"]:
                rule["months"] = ["all"]
            elif months:
                rule["months"] = [
                    _lookup_item(fields, row, "Months", m, MONTH_NAMES) for m in months
                ]
        rule["times"] = times
        schedule[frequency] = rule
        if start is not None:
            schedule["starts"] = _first_day(fields, row, start, schedule)

    if row["Expiry"]:
        expiry = _uk_datetime(fields, row, "Expiry")
        if expiry is not None:
            schedule["expires"] = _last_day(fields, row, expiry, schedule)
    return schedule


def _lookup_item(
    fields: _Fields, row: Row, column: str, item: str, table: Mapping[str, str]
) -> str:
    found = _find(table, item)
    if found is None:
        names = ", ".join(label for label in table if len(label) == 3)
        fields.refuse(row, column, f"{column}: {item!r} is not one of {names} (or in full)")
        return item
    return found


def _date(fields: _Fields, row: Row, item: str) -> int | str:
    if _key(item) == "last":
        return "last"
    if _ASCII_DIGITS.match(item):
        return int(item)  # the validator checks the range
    fields.refuse(row, "Dates", f"Dates: {item!r} is not a day of the month or Last")
    return item


def _runs_on(schedule: Mapping[str, Any], day: dt.date) -> list[str]:
    """The local times (HH:MM) at which ``schedule``'s rule runs on ``day``, by the calendar
    itself (read in UTC, so listed times are the times of the day); [] for a rule that does
    not build (the row is refused by validation anyway)."""
    rule = {k: v for k, v in schedule.items() if k in ("weekly", "monthly", "once")}
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    try:
        built = build_schedule(rule, ZoneInfo("UTC"))
        found = slots(built, midnight - _TICK, midnight + dt.timedelta(days=1) - _TICK)
        return [slot.strftime("%H:%M") for slot in found]
    except (KeyError, TypeError, ValueError):
        return []


_TICK = dt.timedelta(microseconds=1)


def _first_day(
    fields: _Fields,
    row: Row,
    start: tuple[dt.date, dt.time | None],
    schedule: Mapping[str, Any],
) -> str:
    """``starts``: Start's date, or the day after when One would not run all of that day's
    runs (they are before Start's time)."""
    date, at = start
    runs = _runs_on(schedule, date)
    if at is None or all(t >= at.strftime("%H:%M") for t in runs):
        fields.notes.append(f"One began running it on {row['Start']} (Start).")
        return date.isoformat()
    later = [t for t in runs if t >= at.strftime("%H:%M")]
    if later:
        _partial_day(
            fields, row, "Start", f"began at {row['Start']}", later, "starts the day after"
        )
    else:
        fields.notes.append(
            f"One began running it on {row['Start']} (Start), after every run time that day: "
            "starts is the day after."
        )
    return (date + dt.timedelta(days=1)).isoformat()


def _last_day(
    fields: _Fields,
    row: Row,
    expiry: tuple[dt.date, dt.time | None],
    schedule: Mapping[str, Any],
) -> str:
    """``expires``: Expiry's date, or the day before when One would not run all of that day's
    runs (they are after Expiry's time)."""
    date, at = expiry
    if at is None:
        return date.isoformat()
    runs = _runs_on(schedule, date)
    if all(t <= at.strftime("%H:%M") for t in runs):
        when = "after every run time that day" if runs else "a day it does not run"
        fields.notes.append(f"Expiry in One: {row['Expiry']}, {when}: expires is that date.")
        return date.isoformat()
    earlier = [t for t in runs if t <= at.strftime("%H:%M")]
    if earlier:
        _partial_day(
            fields, row, "Expiry", f"expires at {row['Expiry']}", earlier, "expires the day before"
        )
    else:
        fields.notes.append(
            f"Expiry in One: {row['Expiry']}, before every run time that day: "
            "expires is the day before."
        )
    return (date - dt.timedelta(days=1)).isoformat()


def _partial_day(
    fields: _Fields, row: Row, column: str, what: str, lost: Sequence[str], choice: str
) -> None:
    message = (
        f"the task {what}, between its runs of that day: One would still have run at "
        f"{', '.join(lost)} that day, which b2bd, bounded by whole dates, leaves out ({choice})"
    )
    fields.notes.append(message[0].upper() + message[1:] + ".")
    fields.problems.append(RowProblem(row.line, RULE_PARTIAL_DAY, message, "warning", column))


# ---- ids (pure) ------------------------------------------------------------------------------


def slug(name: str) -> str:
    """A task id from a task name: ASCII lower-case, other runs -> '-', at most 63 chars."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return text[:ID_MAX].rstrip("-") or "task"


def allocate_ids(names: Iterable[str], taken: Iterable[str] = ()) -> list[str]:
    """One id per name, in order: its slug, or the slug with the next free ``-N`` suffix."""
    used = set(taken)
    ids: list[str] = []
    for name in names:
        base = slug(name)
        candidate, n = base, 1
        while candidate in used:
            n += 1
            suffix = f"-{n}"
            candidate = base[: ID_MAX - len(suffix)].rstrip("-") + suffix
        used.add(candidate)
        ids.append(candidate)
    return ids


# ---- YAML out (pure) -------------------------------------------------------------------------

_KEY_ORDER = ("id", "description", "direction", "bases", "data", "cohort", "schedule")
_BLOCK_KEYS = frozenset({"data", "cohort", "schedule"})


def _printable(code: int) -> bool:
    # YAML's printable set, less the characters YAML 1.1 readers take as line breaks (NEL,
    # LS, PS) and the BOM: those are written escaped so that every reader gets them back.
    if code in (0x2028, 0x2029, 0xFEFF):
        return False
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar; anything unprintable is escaped."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif _printable(code):
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _SAFE_PLAIN.match(text) and text not in _YAML_WORDS:
        return text
    return quoted(text)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def to_yaml(doc: Mapping[str, Any]) -> str:
    """A task document as YAML in a fixed layout: ids, times, dates and names quoted, so the
    loader's YAML 1.2 typing (and YAML 1.1 tools) read back exactly ``doc``."""
    lines = []
    for key in sorted(doc, key=lambda k: (_KEY_ORDER.index(k) if k in _KEY_ORDER else 99, k)):
        value = doc[key]
        if key == "id":
            lines.append(f"id: {quoted(value)}")
        elif key in _BLOCK_KEYS and isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {_flow(v)}" for k, v in value.items())
        else:
            lines.append(f"{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def _plain(name: str) -> str:
    return name if re.fullmatch(r"[\w.+ -]+", name, re.ASCII) else quoted(name)


def _header(source: str, rows: Sequence[int], name: str, notes: Sequence[str]) -> str:
    which = "row" if len(rows) == 1 else "rows"
    lines = [
        f"# Migrated from One by b2bd migrate: {_plain(source)}, {which} "
        + ", ".join(map(str, rows)),
        f"# (One task {quoted(name)}; one row per base).",
        *(f"# {note}" for note in notes),
    ]
    return "\n".join(lines) + "\n"


# ---- validation (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class TargetConfig:
    """What the target config says: its bases, settings and the task ids other files hold."""

    bases: Mapping[str, Base]
    settings: Settings | None
    taken_ids: frozenset[str] = frozenset()
    task_schema: jsonschema.protocols.Validator = field(kw_only=True)
    """The task files' validator (:func:`b2bd.config.packaged.validator`, built by the shell)."""


def validate_text(
    text: str, doc: Mapping[str, Any], target: TargetConfig, now: dt.datetime
) -> list[Finding]:
    """The findings ``b2bd validate`` would report for this task file, plus one if the text
    does not read back as ``doc``."""
    try:
        loaded = parse(text, "migrated.yaml")
    except FileProblem as exc:
        return [Finding("", exc.rule, exc.message)]
    if loaded.data != doc:
        return [Finding("", "migrate-internal", "the YAML written does not read back the same")]
    findings = check(target.task_schema, loaded)
    if any(f.severity == "error" for f in findings):
        return findings
    zone = target.settings.timezone if target.settings else DEFAULT_TIMEZONE
    defaults = target.settings.defaults if target.settings else Policy()
    task = build_task(loaded.data, "migrated.yaml", zone, defaults)
    findings.extend(resolve_bases(task, target.bases, target.settings).findings)
    findings.extend(task_findings(task, target.settings, now))
    return findings


def _column(pointer: str) -> str:
    best = ""
    column = ""
    for prefix, name in POINTER_COLUMNS:
        if (pointer == prefix or pointer.startswith(prefix + "/")) and len(prefix) > len(best):
            best, column = prefix, name
    return column


def _row_findings(line: int, findings: Iterable[Finding]) -> list[RowProblem]:
    return [RowProblem(line, f.rule, f.message, f.severity, _column(f.pointer)) for f in findings]


# ---- the whole export (pure) -----------------------------------------------------------------


def migrate(rows: Sequence[Row], source: str, target: TargetConfig, now: dt.datetime) -> Migration:
    """Rows -> task documents and problems (see the module docstring). ``source`` is the name
    the comment headers give the export; ``now`` (aware) decides which schedules are past."""
    problems: list[RowProblem] = []
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.values.get(c, "") for c in GROUPING_COLUMNS), []).append(row)
    ids = allocate_ids((members[0]["Task Name"] for members in groups.values()), target.taken_ids)

    documents: list[TaskDocument] = []
    for task_id, members in zip(ids, groups.values(), strict=True):
        good: list[tuple[Row, _Fields]] = []
        seen: dict[str, int] = {}
        for row in members:
            if row["Base"] in seen:
                problems.append(
                    RowProblem(
                        row.line,
                        RULE_DUPLICATE,
                        f"repeats row {seen[row['Base']]} (same task, same base): counted once",
                        "warning",
                        "Base",
                    )
                )
            seen.setdefault(row["Base"], row.line)
            fields = row_fields(row)
            problems.extend(fields.problems)
            if any(p.severity == "error" for p in fields.problems):
                continue
            doc = {"id": PLACEHOLDER_ID, **fields.doc, "bases": {"ids": [row["Base"]]}}
            found = _row_findings(row.line, validate_text(to_yaml(doc), doc, target, now))
            problems.extend(found)
            if not any(p.severity == "error" for p in found):
                good.append((row, fields))
        if good:
            document = _document(task_id, good, source, target, now)
            if isinstance(document, TaskDocument):
                documents.append(document)
            else:
                problems.extend(document)
    return Migration(tuple(documents), tuple(sorted(problems)), len(rows))


def _document(
    task_id: str,
    good: Sequence[tuple[Row, _Fields]],
    source: str,
    target: TargetConfig,
    now: dt.datetime,
) -> TaskDocument | list[RowProblem]:
    first_row, first = good[0]
    bases = sorted({row["Base"] for row, _ in good})
    doc = {"id": task_id, **first.doc, "bases": {"ids": bases}}
    body = to_yaml(doc)
    errors = [f for f in validate_text(body, doc, target, now) if f.severity == "error"]
    lines = tuple(row.line for row, _ in good)
    if errors:
        return [p for line in lines for p in _row_findings(line, errors)]
    text = _header(source, lines, first_row["Task Name"], first.notes) + body
    return TaskDocument(task_id, lines, tuple(bases), text)


Outcome = Literal["written", "unchanged", "overwritten", "left-alone"]


def placement(existing: bytes | None, wanted: bytes, *, force: bool) -> Outcome:
    """What writing a task file's ``wanted`` bytes over the ``existing`` file (None: there is
    none) comes to: an identical file is left as it is, one that differs is left alone unless
    ``force``."""
    if existing == wanted:
        return "unchanged"
    if existing is not None and not force:
        return "left-alone"
    return "written" if existing is None else "overwritten"
