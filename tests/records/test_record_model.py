from __future__ import annotations

import json

from b2bd.records import (
    RecordDecoder,
    SessionMark,
    key_upn,
    record_key,
    record_time,
    record_upn,
    tagged_line,
)
from b2bd.records.model import Deletion, Result


def test_record_keys_start_with_the_upn():
    mark = SessionMark("B801200005001", "2026-11-02", "PM", "/", "2026-11-02T13:00:00Z")
    result = Result(
        "B801200005001", "KS4", "SCIDA", "EX", None, "7", "2026-08-21", "2026-08-22T00:00:00Z"
    )
    assert record_key(mark) == "B801200005001/2026-11-02/PM"
    assert record_key(result) == "B801200005001/KS4/SCIDA/EX/-"
    assert key_upn(record_key(result)) == "B801200005001"
    deletion = Deletion("mark", record_key(mark), "2026-11-03T00:00:00Z")
    assert record_upn(deletion) == record_upn(mark) == "B801200005001"
    assert record_time(deletion) == "2026-11-03T00:00:00Z"
    assert record_time(mark) == "2026-11-02T13:00:00Z"
    # A key the checker accepts for its kind.
    assert RecordDecoder("deletion")(json.dumps({
        "record": "mark", "key": record_key(mark), "deleted_at": "2026-11-03T00:00:00Z"
    })) == deletion  # fmt: skip


def test_tagged_line_adds_kind_without_reencoding():
    raw = b'  {"upn": "B801200005001", "date": "2026-11-02", "session": "AM", "code": "\\\\",'
    raw += b' "updated_at": "2026-11-02T09:10:11Z"}'
    tagged = tagged_line("mark", raw)
    assert tagged.startswith(b'{"kind":"mark","upn"')
    doc = json.loads(tagged)
    assert doc.pop("kind") == "mark"
    assert doc == json.loads(raw)
    assert doc["code"] == "\\"


def test_times_compare_as_strings():
    # The contract the engine's watermarks rely on: fixed-width UTC times order as strings.
    stamps = ["2026-11-02T09:10:11Z", "2026-11-02T09:10:12Z", "2026-11-10T00:00:00Z"]
    assert sorted(stamps) == stamps
    assert stamps[0][:10] >= "2026-11-02"
