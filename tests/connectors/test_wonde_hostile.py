"""The wonde connector against a hostile or broken API server (tests/support/hostile_http.py, a
real socket on 127.0.0.1 whose every byte the test writes): bodies that never end or trickle,
bombs, pages built to exhaust memory, JSON that is no JSON, pagination and redirects that lead
elsewhere, rate limits that never lift, answers that echo the token. Where the attack is on the
process itself (memory), the connector runs in a subprocess and its peak RSS is measured."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable

import pytest

from b2bd.config.model import Endpoint
from b2bd.connectors.credentials import Secret
from b2bd.connectors.source import ConnectorError
from b2bd.connectors.wonde import MAX_PAGE_BYTES, WondeSource
from b2bd.records import Rejection
from b2bd.records.upn import make_upn
from tests.support.hostile_http import HostileServer, Seen, Send, response

TOKEN = "5e1f0e5e1f0e5e1f0e5e1f0e5e1f0e5e1f0e5e1f"  # the sentinel: must never come back
SCHOOL = "A8814001"
CHILD = make_upn("881", "4001", 12, 1)
OTHER_CHILD = make_upn("881", "4001", 12, 2)


def _student(sid: str = "S1", upn: str = CHILD, name: str = "Zebedee") -> dict:
    return {
        "id": sid,
        "mis_id": sid,
        "surname": name,
        "forename": name,
        "gender": "MALE",
        "date_of_birth": "2012-03-04",
        "updated_at": {"date": "2026-11-01 10:00:00.000000", "timezone_type": 3, "timezone": "UTC"},
        "education_details": {
            "data": {
                "upn": upn,
                "current_nc_year": "9",
                "admission_date": "2020-09-01",
                "leaving_date": None,
            }
        },
        "extended_details": {"data": {"in_lea_care": False}},
    }


def page(items: list, meta: dict | None = None) -> bytes:
    doc: dict = {"data": items}
    if meta is not None:
        doc["meta"] = meta
    return json.dumps(doc).encode()


EMPTY = page([])


def serving(students: Callable[[Seen, Send], bool] | bytes) -> Callable[[Seen, Send], bool]:
    """An answer function: ``students`` for the students collection, empty pages elsewhere."""

    def answer(seen: Seen, send: Send) -> bool:
        if "/students/" in seen.path + "/" and "leaver" not in seen.path:
            if callable(students):
                return students(seen, send)
            send(response(students))
            return True
        send(response(EMPTY))
        return True

    return answer


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def source(url: str, **kwargs) -> WondeSource:
    kwargs.setdefault("sleep", Sleeps())
    return WondeSource(Endpoint(type="wonde", school_id=SCHOOL, url=url), Secret(TOKEN), **kwargs)


def failure(call: Callable[[], object]) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        call()
    error = caught.value
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    return error


def pupils(wonde: WondeSource, **kwargs) -> list:
    try:
        return list(wonde.read("pupil", **kwargs))
    finally:
        wonde.close()


def expiring(seconds: float) -> Callable[[], float]:
    """A transfer deadline ``seconds`` from now (real time: the server trickles in real time):
    returns the seconds left, raises ConnectorError("timeout") once they are gone."""
    end = time.monotonic() + seconds

    def deadline() -> float:
        left = end - time.monotonic()
        if left <= 0:
            raise ConnectorError("timeout", "transfer took longer than its timeout")
        return left

    return deadline


# -- memory: what a page can make us hold ------------------------------------------------------

RUN = """
import json, sys
from b2bd.config.model import Endpoint
from b2bd.connectors.source import ConnectorError
from b2bd.connectors.credentials import Secret
from b2bd.connectors.wonde import MAX_PAGE_BYTES, WondeSource
src = WondeSource(Endpoint(type="wonde", school_id=sys.argv[2], url=sys.argv[1]), Secret("t"),
                  sleep=lambda s: None)
try:
    out = {"records": sum(1 for _ in src.read("pupil"))}
except ConnectorError as error:
    out = {"reason": error.reason, "message": error.message}
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        out["peak_mib"] = int(line.split()[1]) // 1024
print(json.dumps(out))
"""


def read_in_subprocess(url: str) -> dict:
    """Read pupils in a fresh interpreter: what it got and its own peak RSS (VmHWM, MiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", RUN, url, SCHOOL], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


BASELINE_MIB = 45  # an interpreter with b2bd and httpx imported is about 35 MiB
PAGE_BUDGET_MIB = 80  # what one hostile page may add (8 transfers must fit MemoryMax=640M)


def test_a_page_of_millions_of_tiny_items_is_refused_without_holding_them():
    # 8 Mi one-byte items in a page just under MAX_PAGE_BYTES: as msgspec.Raw objects that
    # would be about 450 MiB.
    body = b'{"data":[' + b"0," * ((MAX_PAGE_BYTES >> 1) - 8) + b"0]}"
    assert len(body) < MAX_PAGE_BYTES
    with HostileServer(serving(body)) as server:
        got = read_in_subprocess(server.url)
    assert got.get("reason") == "bad-data" and "values in one page" in got["message"], got
    assert got["peak_mib"] < BASELINE_MIB + PAGE_BUDGET_MIB, got


def gzip_bomb(mib: int) -> bytes:
    """A gzip body that inflates to ``mib`` MiB of JSON whitespace (about 1 KiB per MiB). Its
    CRC is not computed: nothing should ever read that far."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = squeeze.compress(b'{"data":[') + squeeze.flush(zlib.Z_FULL_FLUSH)
    block = squeeze.compress(b" " * (1 << 20)) + squeeze.flush(zlib.Z_FULL_FLUSH)
    tail = squeeze.compress(b"]}") + squeeze.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + head + block * mib + tail + struct.pack("<II", 0, 0)


def gzipped(data: bytes) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    return squeeze.compress(data) + squeeze.flush()


@pytest.mark.parametrize("layers", [1, 2])
def test_a_gzip_bomb_is_refused_without_inflating_it(layers):
    body = gzip_bomb(1024)  # 1 GiB inflated
    for _ in range(layers - 1):
        body = gzipped(body)  # gzip of a gzip bomb: a few KiB that inflate twice
    encoding = ", ".join(["gzip"] * layers)
    answer = response(body, headers={"Content-Encoding": encoding})
    with HostileServer(serving(answer_bytes(answer))) as server:
        got = read_in_subprocess(server.url)
    assert got.get("reason") == "bad-data", got
    assert got["peak_mib"] < BASELINE_MIB + PAGE_BUDGET_MIB, got


def answer_bytes(raw: bytes) -> Callable[[Seen, Send], bool]:
    def answer(seen: Seen, send: Send) -> bool:
        send(raw)
        return True

    return answer


def test_a_gzipped_page_is_read():
    body = gzipped(page([_student()]))
    with HostileServer(
        serving(answer_bytes(response(body, headers={"Content-Encoding": "gzip"})))
    ) as server:
        got = pupils(source(server.url))
        accept = server.requests[0].headers.get("accept-encoding", "")
    assert [type(r).__name__ for _, r in got] == ["Pupil"]
    assert "gzip" in accept


@pytest.mark.parametrize(
    "body",
    [b"\x1f\x8b\x08\x00garbage-not-deflate", gzipped(page([_student()]))[:-12]],
    ids=["not-gzip", "cut-short"],
)
def test_a_broken_gzip_body_is_bad_data(body):
    answer = response(body, headers={"Content-Encoding": "gzip"})
    with HostileServer(serving(answer_bytes(answer))) as server:
        error = failure(lambda: pupils(source(server.url)))
    assert error.reason == "bad-data"


def test_an_encoding_we_did_not_ask_for_is_bad_data():
    answer = response(b"\x00\x01\x02", headers={"Content-Encoding": "br"})
    with HostileServer(serving(answer_bytes(answer))) as server:
        error = failure(lambda: pupils(source(server.url)))
    assert error.reason == "bad-data"


# -- time: the transfer's deadline holds whatever the server does ---------------------------------


def trickle(head: bytes, every: float, stop: Callable[[], bool]) -> Callable[[Seen, Send], bool]:
    """An answer that sends ``head`` a byte at a time, then one more space every ``every``
    seconds, for ever (until the client hangs up or the server stops)."""

    def answer(seen: Seen, send: Send) -> bool:
        for byte in head:
            send(bytes([byte]))
            time.sleep(every)
        while not stop():
            send(b" ")
            time.sleep(every)
        return False

    return answer


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_server_trickling_a_byte_at_a_time_meets_the_deadline(where):
    holder: list[HostileServer] = []
    stop = lambda: holder[0].stopped  # noqa: E731
    if where == "body":
        # headers at once, then a body that never ends, a byte every 50 ms (each read in time)
        head = response(b"", headers={"Transfer-Encoding": "chunked"}, length=False)

        def answer(seen: Seen, send: Send) -> bool:
            send(head)
            while not stop():
                send(b"1\r\n \r\n")
                time.sleep(0.05)
            return False

    else:
        answer = trickle(b"HTTP/1.1 200 OK\r\nX-Padding: ", 0.05, stop)
    with HostileServer(serving(answer)) as server:
        holder.append(server)
        started = time.monotonic()
        error = failure(lambda: pupils(source(server.url), deadline=expiring(1.0)))
        took = time.monotonic() - started
    assert error.reason == "timeout"
    assert took < 4.0  # 1 s deadline; the 60 s read timeout never fires on a trickle


def test_the_manifest_meets_the_deadline_too():
    def answer(seen: Seen, send: Send) -> bool:
        send(response(b"", headers={"Transfer-Encoding": "chunked"}, length=False))
        while not server.stopped:
            send(b"1\r\n \r\n")
            time.sleep(0.05)
        return False

    with HostileServer(answer) as server:
        wonde = source(server.url)
        started = time.monotonic()
        error = failure(lambda: wonde.manifest(deadline=expiring(1.0)))
        wonde.close()
    assert error.reason == "timeout" and time.monotonic() - started < 4.0


@pytest.mark.parametrize("retry_after", ["50", "1000000000", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_retry_after_beyond_the_deadline_is_never_waited_for(retry_after):
    answer = answer_bytes(response(b"{}", 429, {"Retry-After": retry_after}))
    with HostileServer(answer) as server:
        sleeps = Sleeps()
        error = failure(lambda: pupils(source(server.url, sleep=sleeps), deadline=expiring(30)))
    assert sleeps == [] and error.transient


def test_429_for_ever_ends_after_the_retries():
    with HostileServer(answer_bytes(response(b"{}", 429, {"Retry-After": "1"}))) as server:
        sleeps = Sleeps()
        error = failure(lambda: pupils(source(server.url, sleep=sleeps)))
        asked = len(server.requests)
    assert error.reason == "unreachable" and asked == len(sleeps) + 1 and sum(sleeps) < 60


# -- JSON that is no JSON, or JSON built to hurt -------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"data":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        b'{"data":[{"id":"S1"},{"id":"S2","x":' + b"[" * 5_000 + b"]" * 5_000 + b"}]}",
        b'{"data":[],"meta":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        b'{"data":[{"id":"S1","surname":NaN}]}',
        b'{"data":[{"id":"S1"}],"meta":{"pagination":{"more":true,"next":1e999}}}',
    ],
    ids=["nested-items", "one-item-nested", "nested-meta", "nan", "1e999-next"],
)
def test_json_built_to_hurt_is_bad_data(body):
    with HostileServer(serving(body)) as server:
        error = failure(lambda: pupils(source(server.url)))
    assert error.reason == "bad-data"


@pytest.mark.parametrize(
    ("item", "rejection"),
    [
        (b'{"id":"S1","surname":"\xff\xfe"}', "json"),
        (b'{"id":"S1","mis_id":1e999}', "unmapped"),
        (b'{"id":7}', "unmapped"),
    ],
    ids=["invalid-utf8", "1e999", "id-not-a-string"],
)
def test_items_that_are_not_what_they_seem_are_rejected_alone(item, rejection):
    body = b'{"data":[' + json.dumps(_student()).encode() + b"," + item + b"]}"
    with HostileServer(serving(body)) as server:
        got = pupils(source(server.url))
    assert type(got[0][1]).__name__ == "Pupil"
    assert got[1][1] == Rejection(rejection, got[1][1].field)
    assert got[1][1].reason == rejection


def test_one_student_id_with_two_upns_maps_no_mark_to_either():
    # The same Wonde id on the roll and among leavers, each with another child's UPN: a mark of
    # that id must not be delivered as either child's.
    marks = page(
        [
            {
                "student_id": "S1",
                "date": "2026-10-01",
                "session": "AM",
                "attendance_code": {"data": {"code": "/"}},
                "updated_at": "2026-10-01 09:00:00",
            }
        ]
    )

    def answer(seen: Seen, send: Send) -> bool:
        if seen.path.endswith("/students-leaver/"):
            send(response(page([_student("S1", OTHER_CHILD, "Yolanda")])))
        elif seen.path.endswith("/students/"):
            send(response(page([_student("S1", CHILD)])))
        elif "attendance/session" in seen.path and "leavers" not in seen.path:
            send(response(marks))
        else:
            send(response(EMPTY))
        return True

    with HostileServer(answer) as server:
        wonde = source(server.url)
        got = list(wonde.read("mark"))
        wonde.close()
    assert [r for _, r in got] == [Rejection("unmapped", "student_id")]


# -- where the token may go ----------------------------------------------------------------------


def leads_to(target: str, kind: str) -> Callable[[Seen, Send], bool]:
    def answer(seen: Seen, send: Send) -> bool:
        if kind == "next":
            meta = {"pagination": {"next": target, "more": True, "per_page": "1"}}
            send(response(page([_student()], meta)))
        else:
            send(response(b"", int(kind), {"Location": target}))
        return True

    return answer


@pytest.mark.parametrize("kind", ["next", "301", "302", "307", "308"])
@pytest.mark.parametrize("where", ["other-port", "http-with-user", "other-host-name"])
def test_the_token_never_goes_to_another_origin(kind, where):
    with HostileServer(lambda seen, send: False) as elsewhere:
        port = elsewhere.url.split(":")[2].split("/")[0]
        target = {
            "other-port": f"{elsewhere.url}schools/{SCHOOL}/students/?page=2",
            "http-with-user": f"http://u:p@127.0.0.1:{port}/v1.0/schools/{SCHOOL}/students/",
            "other-host-name": f"http://localhost:{port}/v1.0/schools/{SCHOOL}/students/",
        }[where]
        with HostileServer(serving(leads_to(target, kind))) as server:
            error = failure(lambda: pupils(source(server.url)))
        assert elsewhere.requests == []
    assert error.reason == "bad-data"


def test_a_next_that_escapes_the_school_by_dot_segments_is_refused():
    def answer(seen: Seen, send: Send) -> bool:
        return leads_to(f"{server.url}schools/{SCHOOL}/%2e%2e/A0000001/students/", "next")(
            seen, send
        )

    with HostileServer(serving(answer)) as server:
        error = failure(lambda: pupils(source(server.url)))
        paths = [r.path for r in server.requests]
    assert error.reason == "bad-data"
    assert not any("A0000001" in p for p in paths)


def test_pagination_that_never_ends_is_stopped_by_the_deadline():
    # every page has one item and a fresh next: no repeat to catch, only the deadline
    def answer(seen: Seen, send: Send) -> bool:
        number = int(seen.query.get("page", "1"))
        following = f"{server.url}schools/{SCHOOL}/students/?page={number + 1}"
        meta = {"pagination": {"next": following, "more": True, "per_page": "1"}}
        send(response(page([_student(f"S{number}")], meta)))
        return True

    with HostileServer(serving(answer)) as server:
        error = failure(lambda: pupils(source(server.url), deadline=expiring(1.0)))
    assert error.reason == "timeout"


@pytest.mark.parametrize("status", [401, 403, 500, 418])
def test_an_answer_echoing_the_token_and_a_child_is_never_quoted(status):
    body = json.dumps({"error": f"bad token {TOKEN} for Zebedee {CHILD}"}).encode()
    with HostileServer(answer_bytes(response(body, status))) as server:
        error = failure(lambda: pupils(source(server.url)))
    assert "Zebedee" not in error.message and CHILD not in error.message


# -- digits that are not ASCII digits -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "\u00b2"}, {"Retry-After": "9" * 400}],
    ids=["superscript-two", "400-digits"],
)
def test_a_retry_after_that_is_no_number_is_a_plain_429(headers):
    with HostileServer(answer_bytes(response(b"{}", 429, headers))) as server:
        sleeps = Sleeps()
        error = failure(lambda: pupils(source(server.url, sleep=sleeps)))
    assert error.reason == "unreachable"


def test_a_content_length_of_unicode_digits_is_refused_as_broken():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}"
    with HostileServer(answer_bytes(raw)) as server:
        error = failure(lambda: pupils(source(server.url)))
    assert error.reason in ("unreachable", "bad-data")


@pytest.mark.parametrize("ncy", ["\u00b2", "\u0663", "9" * 5000, "Year \u00b2"])
def test_an_ncy_of_digits_python_cannot_read_rejects_only_that_student(ncy):
    odd = _student("S2", OTHER_CHILD)
    odd["education_details"]["data"]["current_nc_year"] = ncy
    with HostileServer(serving(page([_student(), odd]))) as server:
        got = pupils(source(server.url))
    assert type(got[0][1]).__name__ == "Pupil"
    assert isinstance(got[1][1], Rejection)


def test_the_deadline_holds_through_a_proxy_from_the_environment(monkeypatch):
    # An LA's egress proxy (HTTP_PROXY for the service) that trickles: the same deadline.
    def answer(seen: Seen, send: Send) -> bool:
        send(response(b"", headers={"Transfer-Encoding": "chunked"}, length=False))
        while not proxy.stopped:
            send(b"1\r\n \r\n")
            time.sleep(0.05)
        return False

    with HostileServer(answer) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("v1.0/"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        started = time.monotonic()
        error = failure(lambda: pupils(source("http://wonde.invalid/v1.0/"), deadline=expiring(1)))
        assert proxy.requests and proxy.requests[0].headers["host"] == "wonde.invalid"
    assert error.reason == "timeout" and time.monotonic() - started < 4.0
