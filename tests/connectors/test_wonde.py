"""The wonde connector against the emulator: a real HTTP server on 127.0.0.1, fed from the
sample-data generator. Retries wait through an injected ``sleep`` that records instead."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections import Counter
from pathlib import Path

import httpx
import pytest
import trustme

from b2bd.config.model import Endpoint
from b2bd.connectors.credentials import Secret
from b2bd.connectors.source import ConnectorError
from b2bd.connectors.wonde import (
    MAX_RETRY_AFTER,
    RETRY_DELAYS,
    DateTimeObject,
    WondeSource,
    calendar_date,
    updated_after,
    utc_time,
)
from b2bd.records import Pupil, Rejection, Result, SessionMark
from b2bd.sample import SchoolSpec, write_export
from tests.support.wonde_emulator import EmulatedSchool, Fault, WondeEmulator

TOKEN = "7e76896f9aca62569048c667db292d72dd84f224"
SCHOOL = "A8814001"
LAESTAB = "8814001"
NOW = dt.datetime(2026, 11, 27, 18, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wonde") / LAESTAB
    write_export(folder, SchoolSpec(laestab=LAESTAB, pupils=25, seed=5))
    return folder


def lines(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines() if line]


OPENED: list[WondeSource] = []


@pytest.fixture(autouse=True)
def _close_sources():
    yield
    while OPENED:
        OPENED.pop().close()


def opened(wonde: WondeSource) -> WondeSource:
    OPENED.append(wonde)
    return wonde


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def source(emulator: WondeEmulator, *, token: str = TOKEN, **kwargs) -> WondeSource:
    endpoint = kwargs.pop("endpoint", None) or Endpoint(
        type="wonde", school_id=SCHOOL, url=emulator.url
    )
    kwargs.setdefault("sleep", Sleeps())
    kwargs.setdefault("clock", lambda: NOW)
    return opened(WondeSource(endpoint, Secret(token), laestab=LAESTAB, **kwargs))


def emulate(export: Path, **kwargs) -> WondeEmulator:
    school_kwargs = {k: kwargs.pop(k) for k in ("dob", "zone", "null") if k in kwargs}
    school = EmulatedSchool.from_export(export, SCHOOL, **school_kwargs)
    return WondeEmulator([school], {TOKEN: None}, **kwargs)


class _Body(httpx.SyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self):
        yield self.data


def streamed(doc: object) -> httpx.Response:
    """A 200 answer of a MockTransport whose body streams, as from a socket (the connector reads
    raw bytes; httpx reads a ``json=``/``content=`` answer before anyone can)."""
    return httpx.Response(200, stream=_Body(json.dumps(doc).encode()))


def failure(call) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        call()
    return caught.value


# -- records ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dob", ["object", "string"])
def test_every_kind_reads_back_as_the_generated_records(export, dob):
    with emulate(export, dob=dob, zone="Europe/London") as emulator:
        wonde = source(emulator, per_page=7)
        pupils = [r for _, r in wonde.read("pupil")]
        marks = [r for _, r in wonde.read("mark")]
        results = [r for _, r in wonde.read("result")]
        wonde.close()
    assert all(isinstance(p, Pupil) for p in pupils)
    assert all(isinstance(m, SessionMark) for m in marks)
    assert all(isinstance(r, Result) for r in results)
    # Same records as the export files (the order differs: leavers come after the roll).
    as_dicts = lambda records: sorted(json.dumps(_fields(r), sort_keys=True) for r in records)  # noqa: E731
    assert as_dicts(pupils) == sorted(
        json.dumps(d, sort_keys=True) for d in lines(export, "pupils.jsonl")
    )
    assert as_dicts(marks) == sorted(
        json.dumps(d, sort_keys=True) for d in lines(export, "attendance.jsonl")
    )
    assert as_dicts(results) == sorted(
        json.dumps(d, sort_keys=True) for d in lines(export, "results.jsonl")
    )


def _fields(record) -> dict:
    import msgspec

    return msgspec.to_builtins(record)


def test_delivery_lines_are_our_records_never_the_api_json(export):
    with emulate(export) as emulator:
        raw, record = next(iter(source(emulator).read("mark")))
    assert json.loads(raw) == _fields(record)
    assert b"student_id" not in raw and b"attendance_code" not in raw


def test_pages_are_followed_until_more_is_false_and_per_page_may_be_a_string(export):
    count = len(lines(export, "attendance.jsonl"))
    for as_string in (True, False):
        with emulate(export, per_page_as_string=as_string) as emulator:
            wonde = source(emulator, per_page=500)
            assert sum(1 for _ in wonde.read("mark")) == count
            pages = [r for r in emulator.requests if "attendance" in r.path]
        assert len(pages) >= count // 500
        assert all(r.auth == "bearer" for r in pages)
        assert (
            pages[0].query["include"] == "attendance_code" and pages[0].query["per_page"] == "500"
        )
        assert [r.query.get("page") for r in pages[1:3]] == ["2", "3"]


def test_a_response_without_pagination_is_one_page(export):
    with emulate(export, max_per_page=100_000) as emulator:
        # The emulator leaves pagination out when nothing was asked and all fits one page; a
        # source asking per_page still stops after the page that says more: false.
        wonde = source(emulator, per_page=100_000)
        assert sum(1 for _ in wonde.read("result")) == len(lines(export, "results.jsonl"))
        status, page = emulator.answer(f"/v1.0/schools/{SCHOOL}/deletions", {}, TOKEN)
    assert status == 200 and "pagination" not in json.loads(page)["meta"]


def test_a_page_without_meta_ends_the_collection():
    """An API that sends no meta at all: each collection is its single page."""
    handler_calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        handler_calls.append(request.url.path)
        return streamed({"data": []})

    wonde = opened(
        WondeSource(
            Endpoint(type="wonde", school_id=SCHOOL, url="https://api.example/v1.0/"),
            Secret(TOKEN),
            transport=httpx.MockTransport(handler),
        )
    )
    assert list(wonde.read("result")) == []
    # Results name pupils by student id: the students (and leavers) are read first.
    assert handler_calls == [
        f"/v1.0/schools/{SCHOOL}/{path}/"
        for path in ("students", "students-leaver", "assessment/results")
    ]


def test_updated_after_narrows_marks_and_deletions_with_a_one_second_margin(export):
    marks = lines(export, "attendance.jsonl")
    since = sorted(m["updated_at"] for m in marks)[len(marks) // 2]
    expected = sum(1 for m in marks if m["updated_at"] >= since)
    with emulate(export) as emulator:  # the emulator's updated_after is exclusive
        wonde = source(emulator, per_page=1000)
        got = [r for _, r in wonde.read("mark", since=since)]
        asked = {r.query.get("updated_after") for r in emulator.requests if "attendance" in r.path}
        list(wonde.read("pupil", since=since))
        pupil_query = [r.query for r in emulator.requests if r.path.endswith("/students/")][-1]
    kept = [m for m in got if m.updated_at >= since]
    assert len(kept) == expected  # nothing at the watermark itself is lost
    assert asked == {updated_after(since)}
    assert updated_after("2026-11-02T09:10:11Z") == "2026-11-02 09:10:10"
    assert "updated_after" not in pupil_query  # pupils are always read whole


def test_times_dates_and_their_shapes():
    utc = DateTimeObject("2026-06-01 09:10:11.500000", 3, "UTC")
    london = DateTimeObject("2026-06-01 10:10:11.000000", 3, "Europe/London")
    offset = DateTimeObject("2026-06-01 10:10:11.000000", 1, "+01:00")
    assert utc_time(utc) == utc_time(london) == utc_time(offset) == "2026-06-01T09:10:11Z"
    assert utc_time("2026-06-01 09:10:11") == "2026-06-01T09:10:11Z"
    assert utc_time(DateTimeObject("2026-06-01 10:10:11", 2, "BST")) == ""  # ambiguous: rejected
    assert utc_time("yesterday") == ""
    assert utc_time(None) is None
    assert calendar_date(DateTimeObject("2010-02-11 00:00:00.000000", 3, "Europe/London")) == (
        "2010-02-11"
    )
    assert calendar_date("2010-02-11") == calendar_date("2010-02-11 00:00:00") == "2010-02-11"


def test_items_that_do_not_map_are_rejected_with_the_api_field_never_the_value(export):
    with emulate(export, null=["extended_details.in_lea_care"]) as emulator:
        rejected = [r for _, r in source(emulator).read("pupil")]
    assert set(rejected) == {Rejection("unmapped", "extended_details.in_lea_care")}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/students/"):
            student = {
                "id": "A1", "surname": "Secretname", "forename": "Child", "gender": "OTHER",
                "date_of_birth": "2014-02-30", "updated_at": "2026-01-01 10:00:00",
                "education_details": {"data": {
                    "upn": "B801200005001", "current_nc_year": "Reception",
                    "admission_date": "2020-09-03"}},
                "extended_details": {"data": {"in_lea_care": "N"}},
            }  # fmt: skip
            wrong_type = {"id": "A2", "education_details": {"data": {"upn": 7}}}
            huge = {"id": "A3", "surname": "x" * 70_000}
            return streamed({"data": [student, wrong_type, huge]})
        if path.endswith("/session/") and "leavers" not in path:
            marks = [
                {"student_id": "A9", "date": "2026-01-05", "session": "AM",
                 "attendance_code": {"data": {"code": "/"}}, "updated_at": "2026-01-05 09:00:00"},
                {"student_id": "A1", "date": "2026-01-05", "session": "am",
                 "attendance_code": {"data": {"code": "/"}}, "updated_at": "2026-01-05 09:00:00"},
                {"student_id": "A1", "date": "2026-01-06", "session": "AM",
                 "updated_at": "2026-01-06 09:00:00"},
            ]  # fmt: skip
            return streamed({"data": marks})
        return streamed({"data": []})

    wonde = opened(
        WondeSource(
            Endpoint(type="wonde", school_id=SCHOOL, url="https://api.example/v1.0/"),
            Secret(TOKEN),
            transport=httpx.MockTransport(handler),
        )
    )
    pupils = list(wonde.read("pupil"))
    assert [r for _, r in pupils] == [
        Rejection("schema", "sex"),  # OTHER is not M or F (checked after mapping, as for files)
        Rejection("unmapped", "education_details.data.upn"),
        Rejection("too-long"),
    ]
    for _, rejection in pupils:
        assert "Secretname" not in repr(rejection)
    marks = [r for _, r in wonde.read("mark")]
    assert marks[0] == Rejection("unmapped", "student_id")
    assert isinstance(marks[1], SessionMark) and marks[1].session == "AM"
    assert marks[2] == Rejection("unmapped", "attendance_code")


def test_deletions_are_counted_as_unmapped_and_leavers_moving_lists_are_not_deletions(export):
    school = EmulatedSchool.from_export(export, SCHOOL)
    gone = len(school.items["deletions"])
    moved = json.loads(school.items["students"][0].body)
    import msgspec

    school.items["deletions"] += [
        _item({"type": "student", "id": "A0", "mis_id": moved["mis_id"],
               "deleted_at": "2026-11-01 10:00:00", "restored_at": None}),
        _item({"type": "student", "id": "A0", "mis_id": "404",
               "deleted_at": "2026-11-01 10:00:00", "restored_at": "2026-11-02 10:00:00"}),
        _item({"type": "employee", "id": "E1", "deleted_at": "2026-11-01 10:00:00"}),
    ]  # fmt: skip
    assert msgspec  # (used by _item)
    with WondeEmulator([school], {TOKEN: None}) as emulator:
        got = [r for _, r in source(emulator).read("deletion")]
    assert got == [Rejection("unmapped", "id")] * gone


def _item(doc: dict):
    from tests.support.wonde_emulator import Item

    return Item(json.dumps(doc).encode(), "2026-11-01T10:00:00Z")


# -- the school: manifest and preflight's live checks ------------------------------------------


def test_manifest_of_an_approved_school(export):
    with emulate(export) as emulator:
        manifest = source(emulator).manifest()
    assert manifest.laestab == LAESTAB and manifest.mis is None
    assert manifest.services_manager is None and manifest.sims_version is None
    assert manifest.exported_at <= "2026-11-27T18:30:00Z"  # the server's Date, capped by our clock


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"school_id": "A0000000"}, "prerequisite", "not found"),
        ({"approved": False}, "prerequisite", "not approved"),
        ({"online": False}, "prerequisite", "offline"),
        ({"laestab": "8814999"}, "bad-data", "not 8814001"),
        ({"mis": "Arbor"}, "prerequisite", "not SIMS"),
    ],
)
def test_school_problems_have_their_reason_class(export, change, reason, words):
    school = EmulatedSchool.from_export(export, SCHOOL)
    asked = change.pop("school_id", SCHOOL)
    for key, value in change.items():
        setattr(school, key, value)
    with WondeEmulator([school], {TOKEN: None}) as emulator:
        endpoint = Endpoint(type="wonde", school_id=asked, url=emulator.url)
        error = failure(source(emulator, endpoint=endpoint).manifest)
    assert error.reason == reason and words in error.message


def test_a_token_not_granted_the_school_is_auth(export):
    school = EmulatedSchool.from_export(export, SCHOOL)
    with WondeEmulator([school], {TOKEN: frozenset({"A0000001"})}) as emulator:
        error = failure(source(emulator).manifest)
    assert error.reason == "auth" and "HTTP 403" in error.message


# -- faults: reason classes and retries ----------------------------------------------------


def test_wrong_token_is_auth_and_never_retried(export):
    with emulate(export) as emulator:
        sleeps = Sleeps()
        error = failure(lambda: list(source(emulator, token="0" * 40, sleep=sleeps).read("pupil")))
        assert len(emulator.requests) == 1
    assert error.reason == "auth" and sleeps == []
    with emulate(export) as emulator:
        emulator.inject(Fault("wrong-token"))
        assert failure(source(emulator).manifest).reason == "auth"


def test_429_honours_retry_after_then_succeeds(export):
    with emulate(export) as emulator:
        emulator.inject(Fault("429", times=2, path="students", seconds=7))
        sleeps = Sleeps()
        assert len(list(source(emulator, sleep=sleeps).read("pupil"))) > 0
    assert sleeps == [7.0, 7.0]


def test_429_as_an_http_date(export):
    later = email_date(NOW + dt.timedelta(seconds=12))
    with emulate(export) as emulator:
        emulator.inject(Fault("429", path="students", retry_after=later))
        sleeps = Sleeps()
        list(source(emulator, sleep=sleeps).read("pupil"))
    assert sleeps == [12.0]


def email_date(moment: dt.datetime) -> str:
    import email.utils

    return email.utils.format_datetime(moment, usegmt=True)


def test_a_retry_after_longer_than_the_cap_gives_up_at_once(export):
    with emulate(export) as emulator:
        emulator.inject(Fault("429", times=-1, seconds=MAX_RETRY_AFTER + 1))
        sleeps = Sleeps()
        error = failure(lambda: source(emulator, sleep=sleeps).manifest())
    assert (error.reason, sleeps) == ("unreachable", [])
    assert error.transient


@pytest.mark.parametrize("kind", ["500", "reset", "truncate"])
def test_server_errors_resets_and_truncated_bodies_are_retried(export, kind):
    with emulate(export) as emulator:
        emulator.inject(Fault(kind, times=2, path="students"))
        sleeps = Sleeps()
        pupils = list(source(emulator, sleep=sleeps).read("pupil"))
    assert len(pupils) == len(lines(export, "pupils.jsonl"))
    assert sleeps == list(RETRY_DELAYS[:2])


@pytest.mark.parametrize("kind", ["500", "reset", "truncate"])
def test_persistent_faults_end_unreachable_after_every_retry(export, kind):
    with emulate(export) as emulator:
        emulator.inject(Fault(kind, times=-1))
        sleeps = Sleeps()
        error = failure(lambda: source(emulator, sleep=sleeps).manifest())
    assert error.reason == "unreachable" and error.transient
    assert sleeps == list(RETRY_DELAYS)


def test_latency_beyond_the_read_timeout_is_timeout(export):
    with emulate(export) as emulator:
        emulator.inject(Fault("latency", times=-1, seconds=0.5))
        sleeps = Sleeps()
        wonde = source(emulator, sleep=sleeps, timeout=httpx.Timeout(0.1))
        error = failure(wonde.manifest)
    assert error.reason == "timeout" and error.transient and len(sleeps) == len(RETRY_DELAYS)


def test_latency_within_the_timeout_is_only_slow(export):
    with emulate(export) as emulator:
        emulator.inject(Fault("latency", times=3, seconds=0.05))
        assert source(emulator).manifest().laestab == LAESTAB


def test_nothing_listening_is_unreachable():
    with emulate_nothing() as url:
        wonde = opened(
            WondeSource(
                Endpoint(type="wonde", school_id=SCHOOL, url=url), Secret(TOKEN), sleep=Sleeps()
            )
        )
        error = failure(wonde.manifest)
    assert error.reason == "unreachable" and "cannot connect" in error.message


class emulate_nothing:
    """A loopback port with nothing listening."""

    def __enter__(self) -> str:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1.0/"

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("bad-json", "not JSON"),
        ("huge", "larger than"),
        ("foreign-next", "points outside"),
        ("loop-next", "repeats a page"),
    ],
)
def test_broken_answers_are_bad_data(export, kind, words):
    with emulate(export) as emulator:
        emulator.inject(Fault(kind, path="students"))
        wonde = source(emulator, max_page_bytes=1 << 20)
        error = failure(lambda: list(wonde.read("pupil")))
        hosts = {r.path for r in emulator.requests}
    assert error.reason == "bad-data" and words in error.message
    assert not error.transient
    assert all(not path.startswith("/v1.0/steal") for path in hosts)


def test_a_404_for_a_collection_is_prerequisite(export):
    school = EmulatedSchool.from_export(export, SCHOOL)
    with WondeEmulator([school], {TOKEN: None}) as emulator:
        wonde = source(emulator)
        wonde.school_url = wonde.school_url.replace(SCHOOL, "A0000000")
        error = failure(lambda: list(wonde.read("result")))
    assert error.reason == "prerequisite"


# -- authentication and TLS ---------------------------------------------------------------------


def test_the_emulator_accepts_basic_auth_with_the_token_as_user(export):
    with emulate(export) as emulator:
        answer = httpx.get(f"{emulator.url}schools/{SCHOOL}/students/", auth=(TOKEN, ""))
        refused = httpx.get(f"{emulator.url}schools/{SCHOOL}/students/", auth=("nope", ""))
        assert [r.auth for r in emulator.requests] == ["basic", "basic"]
    assert answer.status_code == 200 and refused.status_code == 401


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_emulator(export: Path, ca: trustme.CA) -> WondeEmulator:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return emulate(export, tls=context)


def test_a_self_signed_certificate_is_refused_unless_its_ca_is_configured(export, ca, tmp_path):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with tls_emulator(export, ca) as emulator:
        assert emulator.url.startswith("https://")
        plain = Endpoint(type="wonde", school_id=SCHOOL, url=emulator.url)
        error = failure(source(emulator, endpoint=plain).manifest)
        assert error.reason == "auth" and "not trusted" in error.message
        assert not error.transient
        trusted = Endpoint(type="wonde", school_id=SCHOOL, url=emulator.url, ca_bundle=bundle)
        assert source(emulator, endpoint=trusted).manifest().laestab == LAESTAB
        unverified = Endpoint(type="wonde", school_id=SCHOOL, url=emulator.url, tls_verify=False)
        assert source(emulator, endpoint=unverified).manifest().laestab == LAESTAB


def test_a_missing_ca_bundle_is_reported_without_a_request(export, ca, tmp_path):
    with tls_emulator(export, ca) as emulator:
        endpoint = Endpoint(
            type="wonde", school_id=SCHOOL, url=emulator.url, ca_bundle=tmp_path / "none.pem"
        )
        error = failure(source(emulator, endpoint=endpoint).manifest)
        assert emulator.requests == []
    assert "ca_bundle" in error.message


def test_one_connection_serves_every_page(export):
    with emulate(export) as emulator:
        wonde = source(emulator, per_page=50)
        wonde.manifest()
        for kind in ("pupil", "mark", "result"):
            list(wonde.read(kind))
        ports = Counter(r.client_port for r in emulator.requests)
        wonde.close()
    assert len(ports) == 1 and sum(ports.values()) > 20


def test_reprs_and_messages_never_show_the_token(export):
    wonde = WondeSource(Endpoint(type="wonde", school_id=SCHOOL), Secret(TOKEN))
    assert (
        TOKEN not in repr(wonde)
        and TOKEN not in repr(wonde._token)
        and TOKEN not in str(wonde._token)
    )
    with emulate(export) as emulator:
        emulator.inject(Fault("wrong-token"))
        error = failure(source(emulator).manifest)
    assert TOKEN not in str(error) and TOKEN not in repr(error)
