"""A Wonde-compatible API server for tests, benchmarks and offline trials.

A real HTTP server (stdlib ``http.server``, HTTP/1.1 keep-alive, one thread per connection) on
127.0.0.1 serving the documented subset of notes/wonde.md, fed from export folders written by
the sample-data generator (:mod:`b2bd.sample`), so one generated school can be read through the
``directory`` connector and through the ``wonde`` connector and the deliveries compared.

Served, under ``/v1.0/`` (paths with and without the trailing slash):

- ``schools/{id}`` and ``meta/schools/{id}`` (``online``, ``approved``);
- ``schools/{id}/students`` and ``students-leaver`` (includes ``education_details``,
  ``extended_details``), ``attendance/session`` and ``attendance-leavers/session`` (include
  ``attendance_code``), ``assessment/results`` (include ``aspect``), ``deletions``;
- auth: ``Authorization: Bearer TOKEN`` or Basic with the token as user and an empty password;
  no or another token: 401; a token not granted the school: 403; an unknown school: 404;
- pagination: ``per_page`` (default 50, at most ``max_per_page``) and ``page``; ``meta.pagination``
  with a full ``next`` URL, ``more`` and ``per_page`` as a *string* (as in the docs example);
  left out when no ``per_page`` was asked and everything fits in one page (as documented);
- ``updated_after``: ``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM:SS`` (UTC), **exclusive** (the
  strictest reading: the connector must cope);
- injectable faults (:class:`Fault`): latency, 429 with ``Retry-After``, 500, connection reset,
  truncated body, wrong token, malformed JSON, a 2 MiB body, a ``next`` URL pointing to
  another server or back to the same page.

How our records become API items (the connector maps them back): a pupil is a student (legal
and preferred names, ``gender`` MALE/FEMALE, ``date_of_birth`` as a DateTimeObject or a plain
string, ``education_details.data`` with ``upn``, ``current_nc_year``, admission and leaving
dates, ``extended_details.data`` with ``in_lea_care`` and ``lea_care_authority``); pupils who
have left by the export date are listed by ``students-leaver``, their marks by
``attendance-leavers/session``; a mark is ``{student_id, date, session, attendance_code: {data:
{code}}, updated_at}``; a result is ``{student_id, result, result_date, updated_at, aspect:
{data: {stage, subject, method, component}}}``; a deletion is ``{type: student|attendance|result,
id, mis_id, deleted_at, restored_at: null}``.

On its own: ``python -m tests.support.wonde_emulator --examples examples/schools --port 8099
--token dev-token`` serves every example school as school id ``A<LAESTAB>`` (see README).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import msgspec

DEFAULT_PAGE = 50
ITEM_KINDS = ("students", "leavers", "marks", "leaver_marks", "results", "deletions")
COLLECTIONS: dict[str, str] = {
    "students": "students",
    "students-leaver": "leavers",
    "attendance/session": "marks",
    "attendance-leavers/session": "leaver_marks",
    "assessment/results": "results",
    "deletions": "deletions",
}
"""Path under ``schools/{id}/`` -> the item list it serves."""
INCLUDES: dict[str, frozenset[str]] = {
    "students": frozenset({"education_details", "extended_details"}),
    "leavers": frozenset({"education_details", "extended_details"}),
    "marks": frozenset({"attendance_code"}),
    "leaver_marks": frozenset({"attendance_code"}),
    "results": frozenset({"aspect"}),
    "deletions": frozenset(),
}

FaultKind = Literal[
    "latency", "429", "500", "reset", "truncate", "wrong-token", "bad-json", "huge",
    "foreign-next", "loop-next",
]  # fmt: skip


@dataclass
class Fault:
    """A misbehaviour for the next ``times`` requests whose path contains ``path`` (-1: every
    one). ``seconds``: the latency, or the ``Retry-After`` a 429 sends (``retry_after`` gives
    the header text verbatim instead, e.g. an HTTP date)."""

    kind: FaultKind
    times: int = 1
    path: str = ""
    seconds: float = 0.0
    retry_after: str | None = None


@dataclass
class Item:
    """One API item: its JSON with every include, and its change time (our UTC format)."""

    body: bytes
    updated: str


@dataclass
class EmulatedSchool:
    """One school as the API shows it."""

    school_id: str
    laestab: str
    name: str = "Emulated School"
    mis: str = "SIMS"
    approved: bool = True
    online: bool = True
    items: dict[str, list[Item]] = field(default_factory=lambda: {k: [] for k in ITEM_KINDS})

    @classmethod
    def from_export(
        cls,
        folder: Path,
        school_id: str | None = None,
        *,
        dob: Literal["object", "string"] = "object",
        zone: str = "UTC",
        null: Iterable[str] = (),
    ) -> EmulatedSchool:
        """The school whose data is the export folder ``folder`` (manifest and jsonl files of
        :mod:`b2bd.sample`). ``dob``: how dates of birth are shaped; ``zone``: the zone the
        DateTimeObjects are written in; ``null``: dotted field paths a missing scope turns to
        null (``extended_details.in_lea_care``)."""
        manifest = json.loads((folder / "manifest.json").read_text())
        laestab = manifest["laestab"]
        today = manifest["exported_at"][:10]
        school = cls(school_id or f"A{laestab}", laestab)
        convert = _Converter(laestab, dob, zone, frozenset(null))
        ids: dict[str, tuple[str, str]] = {}
        leavers: set[str] = set()
        for row in _rows(folder / "pupils.jsonl"):
            ids[row["upn"]] = convert.identity(row["upn"])
            left = row["leaving_date"] is not None and row["leaving_date"] <= today
            if left:
                leavers.add(row["upn"])
            school.items["leavers" if left else "students"].append(convert.student(row))
        for row in _rows(folder / "attendance.jsonl"):
            where = "leaver_marks" if row["upn"] in leavers else "marks"
            school.items[where].append(convert.mark(row))
        for row in _rows(folder / "results.jsonl"):
            school.items["results"].append(convert.result(row))
        for row in _rows(folder / "deletions.jsonl"):
            school.items["deletions"].append(convert.deletion(row))
        return school


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def wonde_id(prefix: str, text: str) -> str:
    """A stable Wonde-looking id (``A1749191433``) for a key of ours."""
    return f"{prefix}{int(hashlib.sha256(text.encode()).hexdigest()[:8], 16):010d}"


class _Converter:
    def __init__(self, laestab: str, dob: str, zone: str, null: frozenset[str]) -> None:
        self.laestab = laestab
        self.dob = dob
        self.zone = zone
        self.null = null
        self.encode = msgspec.json.Encoder().encode
        self._tz = dt.UTC if zone == "UTC" else _zoneinfo(zone)

    def identity(self, upn: str) -> tuple[str, str]:
        key = f"{self.laestab}/{upn}"
        return wonde_id("A", key), str(int(hashlib.sha256(key.encode()).hexdigest()[:6], 16))

    def time(self, stamp: str) -> dict[str, Any]:
        moment = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        local = moment.astimezone(self._tz)
        return {
            "date": local.strftime("%Y-%m-%d %H:%M:%S.000000"),
            "timezone_type": 3,
            "timezone": self.zone,
        }

    def day(self, date: str | None) -> dict[str, Any] | None:
        if date is None:
            return None
        return {"date": f"{date} 00:00:00.000000", "timezone_type": 3, "timezone": self.zone}

    def _nulled(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Set each dotted path of ``self.null`` to null (an include's ``data`` is stepped
        through: ``extended_details.in_lea_care``)."""
        for path in self.null:
            *parents, last = path.split(".")
            node: Any = doc
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
                if isinstance(node, dict) and set(node) == {"data"}:
                    node = node["data"]
            if isinstance(node, dict) and last in node:
                node[last] = None
        return doc

    def student(self, row: dict[str, Any]) -> Item:
        student_id, mis_id = self.identity(row["upn"])
        doc = {
            "id": student_id,
            "upi": hashlib.md5(f"{mis_id}/{self.laestab}".encode()).hexdigest(),
            "mis_id": mis_id,
            "initials": row["forename"][:1] + row["surname"][:1],
            "title": None,
            "surname": row["surname"],
            "forename": row["forename"],
            "middle_names": None,
            "legal_surname": row["surname"],
            "legal_forename": row["forename"],
            "gender": {"M": "MALE", "F": "FEMALE"}[row["sex"]],
            "date_of_birth": self.day(row["dob"]) if self.dob == "object" else row["dob"],
            "restored_at": None,
            "created_at": self.time(row["updated_at"]),
            "updated_at": self.time(row["updated_at"]),
            "education_details": {
                "data": {
                    "admission_number": mis_id.zfill(6),
                    "upn": row["upn"],
                    "former_upn": None,
                    "current_nc_year": row["ncy"],
                    "admission_date": self.day(row["admission_date"]),
                    "leaving_date": self.day(row["leaving_date"]),
                }
            },
            "extended_details": {
                "data": {
                    "sen_status": "N",
                    "free_school_meals": False,
                    "in_lea_care": row["in_care"],
                    "ever_in_care": row["in_care"],
                    "lea_care_authority": row["care_authority"],
                }
            },
        }
        return Item(self.encode(self._nulled(doc)), row["updated_at"])

    def mark(self, row: dict[str, Any]) -> Item:
        student_id, _ = self.identity(row["upn"])
        key = f"{row['upn']}/{row['date']}/{row['session']}"
        doc = {
            "id": wonde_id("B", key),
            "student_id": student_id,
            "date": row["date"],
            "session": row["session"],
            "attendance_code": {"data": {"id": wonde_id("C", row["code"]), "code": row["code"]}},
            "comment": None,
            "updated_at": self.time(row["updated_at"]),
        }
        return Item(self.encode(self._nulled(doc)), row["updated_at"])

    def result(self, row: dict[str, Any]) -> Item:
        student_id, _ = self.identity(row["upn"])
        aspect = "/".join(str(row[k]) for k in ("stage", "subject", "method", "component"))
        doc = {
            "id": wonde_id("R", f"{row['upn']}/{aspect}"),
            "student_id": student_id,
            "result": row["result"],
            "result_date": self.day(row["result_date"]),
            "updated_at": self.time(row["updated_at"]),
            "aspect": {
                "data": {
                    "id": wonde_id("S", aspect),
                    "name": " ".join(str(row[k]) for k in ("stage", "subject", "method")),
                    "stage": row["stage"],
                    "subject": row["subject"],
                    "method": row["method"],
                    "component": row["component"],
                }
            },
        }
        return Item(self.encode(self._nulled(doc)), row["updated_at"])

    def deletion(self, row: dict[str, Any]) -> Item:
        kind = {"pupil": "student", "mark": "attendance", "result": "result"}[row["record"]]
        if row["record"] == "pupil":
            object_id, mis_id = self.identity(row["key"])
        else:
            object_id, mis_id = wonde_id("B", row["key"]), None
        doc = {
            "type": kind,
            "id": object_id,
            "mis_id": mis_id,
            "deleted_at": self.time(row["deleted_at"]),
            "restored_at": None,
        }
        return Item(self.encode(doc), row["deleted_at"])


def _zoneinfo(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


@dataclass(frozen=True)
class Request:
    """One request as the emulator saw it (for assertions): no token, only the scheme."""

    path: str
    query: dict[str, str]
    auth: str  # "bearer", "basic" or "none"
    status: int
    client_port: int = 0  # one per connection: tells connection reuse


class WondeEmulator:
    """The server. ``tokens``: token -> the school ids it may read (None: every school).

    Use as a context manager (or :meth:`start`/:meth:`stop`); :attr:`url` is the API base to
    put in a base's endpoint. ``tls``: an ``ssl.SSLContext`` (server side) to serve https.
    """

    def __init__(
        self,
        schools: Iterable[EmulatedSchool] = (),
        tokens: dict[str, frozenset[str] | None] | None = None,
        *,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        max_per_page: int = 1000,
        per_page_as_string: bool = True,
    ) -> None:
        self.schools = {school.school_id: school for school in schools}
        self.tokens: dict[str, frozenset[str] | None] = (
            tokens if tokens is not None else {"test-token": None}
        )
        self.max_per_page = max_per_page
        self.per_page_as_string = per_page_as_string
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.emulator = self
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._tls = tls is not None
        self._thread: threading.Thread | None = None
        self._filtered: dict[tuple[str, str, str], list[Item]] = {}

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1.0/"

    def start(self) -> WondeEmulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="wonde-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WondeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def fault_for(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times != 0 and fault.path in path:
                    if fault.times > 0:
                        fault.times -= 1
                    return dataclasses.replace(fault)
        return None

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # -- answers (pure of the socket) ------------------------------------------------------

    def answer(self, path: str, query: dict[str, str], token: str | None) -> tuple[int, Any]:
        """(status, JSON document or raw bytes) for a GET."""
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "v1.0":
            return 404, {"error": "not found"}
        parts = parts[1:]
        allowed = self.tokens.get(token) if token is not None else None
        if token is None or token not in self.tokens:
            return 401, {"error": "unauthenticated", "error_description": "invalid token"}
        if len(parts) >= 2 and parts[0] == "meta" and parts[1] == "schools" and len(parts) == 3:
            school = self.schools.get(parts[2])
            if school is None:
                return 404, {"error": "not found"}
            return 200, {"data": {"online": school.online, "approved": school.approved,
                                  "audited": True, "custom_attendance_codes": False}}  # fmt: skip
        if len(parts) < 2 or parts[0] != "schools":
            return 404, {"error": "not found"}
        school = self.schools.get(parts[1])
        if school is None:
            return 404, {"error": "not found"}
        if allowed is not None and school.school_id not in allowed:
            return 403, {"error": "forbidden"}
        if len(parts) == 2:
            la, estab = school.laestab[:3], school.laestab[3:]
            return 200, {"data": {
                "id": school.school_id, "name": school.name, "establishment_number": estab,
                "urn": 100000 + int(estab), "phase_of_education": "SECONDARY", "la_code": la,
                "timezone": "Europe/London", "mis": school.mis,
                "region": {"code": "GBR", "domain": "api.wonde.com"},
            }}  # fmt: skip
        if not school.approved:
            return 403, {"error": "access not approved"}
        collection = COLLECTIONS.get("/".join(parts[2:]))
        if collection is None:
            return 404, {"error": "not found"}
        return 200, self._page(school, collection, "/".join(parts), query)

    def _page(
        self, school: EmulatedSchool, collection: str, path: str, query: dict[str, str]
    ) -> bytes:
        since = _updated_after(query.get("updated_after"))
        key = (school.school_id, collection, since or "")
        items = self._filtered.get(key)
        if items is None:
            items = [i for i in school.items[collection] if since is None or i.updated > since]
            self._filtered[key] = items
        asked = query.get("per_page")
        per_page = min(self.max_per_page, max(1, int(asked))) if asked else DEFAULT_PAGE
        page = max(1, int(query.get("page", "1")))
        chunk = items[(page - 1) * per_page : page * per_page]
        wanted = {i.strip() for i in query.get("include", "").split(",") if i.strip()}
        missing = INCLUDES[collection] - wanted
        bodies = (
            [i.body for i in chunk] if not missing else [_without(i.body, missing) for i in chunk]
        )
        more = page * per_page < len(items)
        meta: dict[str, Any] = {}
        if asked or len(items) > per_page:
            following = None
            if more:
                following = f"{self.url}{path}/?" + urlencode({**query, "page": str(page + 1)})
            previous = None
            if page > 1:
                previous = f"{self.url}{path}/?" + urlencode({**query, "page": str(page - 1)})
            meta["pagination"] = {
                "next": following,
                "previous": previous,
                "more": more,
                "per_page": str(per_page) if self.per_page_as_string else per_page,
                "current_page": page,
            }
        if wanted:
            meta["includes"] = sorted(wanted)
        return b'{"data":[' + b",".join(bodies) + b'],"meta":' + json.dumps(meta).encode() + b"}"


def _without(body: bytes, missing: set[str] | frozenset[str]) -> bytes:
    doc = json.loads(body)
    for name in missing:
        doc.pop(name, None)
    return json.dumps(doc).encode()


def _updated_after(value: str | None) -> str | None:
    """``YYYY-MM-DD[ HH:MM:SS]`` (UTC) as our time format, for comparisons."""
    if not value:
        return None
    text = value.strip().replace("T", " ")
    if len(text) == 10:
        text += " 00:00:00"
    moment = dt.datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: WondeEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (or refuses our certificate) is not our problem


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle holds the body
        # back until the client's delayed ACK (40 ms a page).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        emulator = self.server.emulator
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        scheme, token = _token(self.headers.get("Authorization"))
        fault = emulator.fault_for(split.path)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "wrong-token":
            token, fault = "not-the-token", None
        status, doc = emulator.answer(split.path, query, token)
        emulator.record(Request(split.path, query, scheme, status, self.client_address[1]))
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"}
        if fault is not None:
            if fault.kind == "429":
                status, body = 429, b'{"error":"too many requests"}'
                headers["Retry-After"] = fault.retry_after or str(int(fault.seconds))
            elif fault.kind == "500":
                status, body = 500, b'{"error":"server error"}'
            elif fault.kind == "reset":
                self._reset()
                return
            elif fault.kind == "bad-json":
                body = body[: len(body) // 2] + b"}}garbage"
            elif fault.kind == "huge":  # 2 MiB: over the limit a test sets, not a memory hog
                body = b'{"data":[' + b",".join([b'{"pad":"' + b"x" * 1000 + b'"}'] * 2_000)
                body += b"]}"
            elif fault.kind in ("foreign-next", "loop-next") and status == 200:
                doc = json.loads(body)
                here = f"{emulator.url}{split.path.removeprefix('/v1.0/')}?{split.query}"
                target = "http://192.0.2.1/v1.0/steal" if fault.kind == "foreign-next" else here
                doc.setdefault("meta", {})["pagination"] = {"next": target, "more": True}
                body = json.dumps(doc).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(body)

    def _reset(self) -> None:
        """Close the connection with a TCP reset (SO_LINGER 0)."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


def _token(header: str | None) -> tuple[str, str | None]:
    if not header:
        return "none", None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return "bearer", value.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, _password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "basic", None
        return "basic", user or None
    return "none", None


# -- on its own ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.wonde_emulator",
        description="Serve generated school exports through a Wonde-compatible API on "
        "127.0.0.1 (school id A<LAESTAB>).",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--examples", type=Path, help="a folder of export folders (one per base)")
    what.add_argument("--export", type=Path, action="append", help="one export folder")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--token", default="dev-token", help="the token clients must send")
    parser.add_argument("--per-page-max", type=int, default=1000)
    args = parser.parse_args(argv)
    folders = (
        sorted(p for p in args.examples.iterdir() if (p / "manifest.json").is_file())
        if args.examples
        else args.export
    )
    schools = [EmulatedSchool.from_export(folder) for folder in folders]
    emulator = WondeEmulator(
        schools, {args.token: None}, port=args.port, max_per_page=args.per_page_max
    )
    print(f"Wonde emulator on {emulator.url}", flush=True)
    for school in schools:
        counts = ", ".join(f"{len(v)} {k}" for k, v in school.items.items())
        print(f"  school {school.school_id} (LAESTAB {school.laestab}): {counts}", flush=True)
    try:
        emulator._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
