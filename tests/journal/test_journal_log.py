"""The journal on disk: appends, rotation, recovery of torn tails, refusal of other damage."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import pytest

from b2bd.journal.entries import BadEntry, JournalRepaired, SlotMissed
from b2bd.journal.reader import (
    JOURNAL_DIR,
    JournalDamaged,
    read_journal,
    read_state,
    scan_journal,
    scan_journal_retrying,
)
from b2bd.journal.writer import Journal, JournalBusy

T0 = dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)


def fill(journal: Journal, start: int, n: int) -> None:
    for i in range(start, start + n):
        journal.append("slot-missed", task=f"task-{i}", slot=T0 + dt.timedelta(hours=i))


def segments(state: Path) -> list[Path]:
    return sorted((state / JOURNAL_DIR).glob("*.log"))


def tasks_of(state: Path) -> list[str]:
    return [r.task for r in read_journal(state) if isinstance(r, SlotMissed)]


def snapshot_files(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (state / JOURNAL_DIR).iterdir() if p.name != "lock"}


def test_records_survive_reopen_with_contiguous_sequence_numbers(tmp_path, clock):
    with Journal.open(tmp_path, clock) as journal:
        fill(journal, 0, 5)
    with Journal.open(tmp_path, clock) as journal:
        fill(journal, 5, 5)
        records = list(journal.entries())
    assert [r.seq for r in records] == list(range(1, 11))
    assert [r.task for r in records] == [f"task-{i}" for i in range(10)]
    assert all(r.ts.tzinfo is dt.UTC for r in records)


def test_raw_segment_is_json_lines_with_crc_last(tmp_path, clock):
    with Journal.open(tmp_path, clock) as journal:
        record = journal.append("slot-missed", task="t", slot="2025-09-01T07:00:00+01:00")
    assert record.slot == dt.datetime(2025, 9, 1, 6, 0, tzinfo=dt.UTC)
    line = segments(tmp_path)[0].read_bytes()
    assert line.startswith(b'{"type":"slot-missed","seq":1,"ts":"2025-09-01T06:00:01Z",')
    assert b'"slot":"2025-09-01T06:00:00Z"' in line
    assert line.endswith(b'"}\n') and b',"crc":"' in line


def test_bad_fields_are_refused_and_consume_no_sequence_number(tmp_path, clock):
    with Journal.open(tmp_path, clock) as journal:
        with pytest.raises(BadEntry, match="unknown field"):
            journal.append("slot-missed", task="t", slot=T0, colour="red")
        with pytest.raises(BadEntry, match="timezone"):
            journal.append("slot-missed", task="t", slot=dt.datetime(2025, 1, 1))
        with pytest.raises(BadEntry, match="unknown journal record type"):
            journal.append("slot-mised", task="t", slot=T0)
        with pytest.raises(BadEntry, match="reason"):
            journal.append(
                "transfer-failed", run="r", task="t", base="b", reason="x", message="", attempts=1
            )
        assert journal.append("slot-missed", task="t", slot=T0).seq == 1


def test_segments_rotate_named_by_first_sequence_number(tmp_path, clock):
    with Journal.open(tmp_path, clock, segment_bytes=400) as journal:
        fill(journal, 0, 20)
    names = [p.name for p in segments(tmp_path)]
    assert len(names) > 3
    firsts = [int(n.removesuffix(".log")) for n in names]
    assert firsts[0] == 1
    counts = [p.read_bytes().count(b"\n") for p in segments(tmp_path)]
    assert [f + c for f, c in zip(firsts, counts, strict=True)][:-1] == firsts[1:]
    # closed segments are sealed, the open one is not
    sealed = sorted(p.name.removesuffix(".sum") for p in (tmp_path / JOURNAL_DIR).glob("*.sum"))
    assert sealed == names[:-1]
    assert tasks_of(tmp_path) == [f"task-{i}" for i in range(20)]


def test_second_writer_is_refused_while_the_first_holds_the_journal(tmp_path, clock):
    with Journal.open(tmp_path, clock), pytest.raises(JournalBusy, match="in use"):
        Journal.open(tmp_path, clock)
    Journal.open(tmp_path, clock).close()


def test_concurrent_appenders_each_get_their_record_exactly_once(tmp_path, clock):
    with Journal.open(tmp_path, clock, segment_bytes=2000) as journal:
        acked: list[int] = []
        lock = threading.Lock()

        def writer(w: int) -> None:
            for i in range(40):
                rec = journal.append("slot-missed", task=f"w{w}-{i}", slot=T0)
                with lock:
                    acked.append(rec.seq)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(acked) == list(range(1, 321))
    found = tasks_of(tmp_path)
    assert sorted(found) == sorted(f"w{w}-{i}" for w in range(8) for i in range(40))


def _last_record_span(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    return start, len(data)


@pytest.mark.parametrize("segment_bytes", [1 << 20, 500])
def test_truncation_at_every_byte_of_the_last_record_is_repaired(tmp_path, clock, segment_bytes):
    base = tmp_path / "base"
    with Journal.open(base, clock, segment_bytes=segment_bytes) as journal:
        fill(journal, 0, 12)
    last = segments(base)[-1]
    start, end = _last_record_span(last)
    original = last.read_bytes()
    for cut in range(start, end):
        state = tmp_path / f"cut{cut}"
        (state / JOURNAL_DIR).mkdir(parents=True)
        for p in (base / JOURNAL_DIR).iterdir():
            (state / JOURNAL_DIR / p.name).write_bytes(p.read_bytes())
        (state / JOURNAL_DIR / last.name).write_bytes(original[:cut])
        with Journal.open(state, clock) as journal:
            records = list(journal.entries())
            after = journal.append("slot-missed", task="after", slot=T0)
        assert [r.task for r in records if isinstance(r, SlotMissed)] == [
            f"task-{i}" for i in range(11)
        ]
        repaired = [r for r in records if isinstance(r, JournalRepaired)]
        if cut == start:  # the cut fell between records: nothing is damaged
            assert repaired == []
            assert after.seq == 12
            continue
        assert len(repaired) == 1
        rep = repaired[0]
        assert (rep.segment, rep.offset, rep.length) == (last.name, start, cut - start)
        assert (state / JOURNAL_DIR / rep.broken_file).read_bytes() == original[start:cut]
        assert rep.seq == 12 and after.seq == 13
        assert scan_journal(state / JOURNAL_DIR, deep=True).intact


def _flip_each_byte(tmp_path: Path, clock, record_index: int, segment_bytes: int):
    """Yield (state dir, segment name, record start, flipped offset) for a bit flip at every byte
    of the record ``record_index`` of the journal."""
    base = tmp_path / "base"
    if not base.exists():
        with Journal.open(base, clock, segment_bytes=segment_bytes) as journal:
            fill(journal, 0, 12)
    lines = []
    for path in segments(base):
        offset = 0
        for line in path.read_bytes().splitlines(keepends=True):
            lines.append((path, offset, len(line)))
            offset += len(line)
    path, start, length = lines[record_index]
    original = path.read_bytes()
    for i in range(start, start + length):
        state = tmp_path / f"flip{record_index}-{i}"
        (state / JOURNAL_DIR).mkdir(parents=True)
        for p in (base / JOURNAL_DIR).iterdir():
            (state / JOURNAL_DIR / p.name).write_bytes(p.read_bytes())
        damaged = bytearray(original)
        damaged[i] ^= 1 << (i % 8)
        (state / JOURNAL_DIR / path.name).write_bytes(bytes(damaged))
        yield state, path.name, start, i


def test_bit_flip_mid_segment_is_refused_naming_segment_and_offset(tmp_path, clock):
    for state, segment, start, _ in _flip_each_byte(tmp_path, clock, 6, 1 << 20):
        before = snapshot_files(state)
        with pytest.raises(JournalDamaged) as err:
            Journal.open(state, clock)
        assert (err.value.segment, err.value.offset) == (segment, start)
        assert segment in str(err.value) and str(start) in str(err.value)
        assert snapshot_files(state) == before  # nothing cut, nothing dropped
        with pytest.raises(JournalDamaged):
            list(read_journal(state))
        # every earlier record is intact
        scan = scan_journal(state / JOURNAL_DIR)
        assert scan.segments[0].count == 6


def test_bit_flip_in_an_older_segment_is_refused_even_in_its_last_record(tmp_path, clock):
    with Journal.open(tmp_path / "probe", clock, segment_bytes=500) as journal:
        fill(journal, 0, 12)
    first_count = segments(tmp_path / "probe")[0].read_bytes().count(b"\n")
    for state, segment, start, _ in _flip_each_byte(tmp_path, clock, first_count - 1, 500):
        with pytest.raises(JournalDamaged) as err:
            Journal.open(state, clock)
        assert (err.value.segment, err.value.offset) == (segment, start)


def test_bit_flip_in_the_last_record_is_cut_and_kept(tmp_path, clock):
    for state, segment, start, i in _flip_each_byte(tmp_path, clock, 11, 1 << 20):
        with Journal.open(state, clock) as journal:
            records = list(journal.entries())
        assert [r.task for r in records if isinstance(r, SlotMissed)] == [
            f"task-{k}" for k in range(11)
        ]
        rep = records[-1]
        assert isinstance(rep, JournalRepaired), i
        assert (rep.segment, rep.offset) == (segment, start)


def test_missing_middle_segment_is_refused(tmp_path, clock):
    with Journal.open(tmp_path, clock, segment_bytes=400) as journal:
        fill(journal, 0, 20)
    victim = segments(tmp_path)[1]
    victim.unlink()
    with pytest.raises(JournalDamaged, match="missing") as err:
        Journal.open(tmp_path, clock)
    assert err.value.segment == segments(tmp_path)[1].name
    segments(tmp_path)[0].unlink()  # now the journal starts mid-history without a checkpoint
    with pytest.raises(JournalDamaged, match="without a checkpoint"):
        Journal.open(tmp_path, clock)


def test_bad_seal_falls_back_to_per_record_checks_and_is_rewritten(tmp_path, clock):
    with Journal.open(tmp_path, clock, segment_bytes=400) as journal:
        fill(journal, 0, 20)
    seal = next((tmp_path / JOURNAL_DIR).glob("*.sum"))
    seal.write_bytes(b"00000000 1\n")
    with Journal.open(tmp_path, clock) as journal:
        assert len([r for r in journal.entries() if isinstance(r, SlotMissed)]) == 20
    assert seal.read_bytes() != b"00000000 1\n"


def test_compaction_keeps_state_and_drops_old_segments(tmp_path, clock):
    with Journal.open(tmp_path, clock, segment_bytes=400) as journal:
        fill(journal, 0, 20)
        before = journal.state()
        result = journal.compact()
        assert len(result.removed) > 1
        assert journal.state() == before
        fill(journal, 20, 2)
        records = list(journal.entries())
    assert records[0].type == "checkpoint" and records[0].seq == 21
    assert [r.seq for r in records] == [21, 22, 23]
    with Journal.open(tmp_path, clock) as journal:
        assert journal.state().last_slot_decided["task-21"] == T0 + dt.timedelta(hours=21)


def test_interrupted_compaction_is_finished_on_open(tmp_path, clock):
    with Journal.open(tmp_path, clock, segment_bytes=400) as journal:
        fill(journal, 0, 20)
    saved = snapshot_files(tmp_path)
    with Journal.open(tmp_path, clock) as journal:
        journal.compact()
        state = journal.state()
    # put the old segments back, as if the crash came before they were deleted
    for name, data in saved.items():
        (tmp_path / JOURNAL_DIR / name).write_bytes(data)
    with Journal.open(tmp_path, clock) as journal:
        assert journal.state() == state
        assert next(iter(journal.entries())).type == "checkpoint"
    assert len(segments(tmp_path)) == 1


def test_unrecorded_broken_file_gets_its_record_on_open(tmp_path, clock):
    """A crash after the tail was cut but before journal-repaired was written."""
    with Journal.open(tmp_path, clock) as journal:
        fill(journal, 0, 3)
    seg = segments(tmp_path)[0]
    (tmp_path / JOURNAL_DIR / f"{seg.name}.999.broken").write_bytes(b"xyz")
    with Journal.open(tmp_path, clock) as journal:
        reps = [r for r in journal.entries() if isinstance(r, JournalRepaired)]
    found = [(r.broken_file, r.offset, r.length) for r in reps]
    assert found == [(f"{seg.name}.999.broken", 999, 3)]
    with Journal.open(tmp_path, clock) as journal:  # recorded once, not on every open
        assert len([r for r in journal.entries() if isinstance(r, JournalRepaired)]) == 1


def test_leftover_temp_segment_is_removed(tmp_path, clock):
    with Journal.open(tmp_path, clock) as journal:
        fill(journal, 0, 3)
    tmp = tmp_path / JOURNAL_DIR / ".0000000000000004.log.tmp"
    tmp.write_bytes(b"half")
    with Journal.open(tmp_path, clock) as journal:
        assert journal.append("slot-missed", task="x", slot=T0).seq == 4
    assert not tmp.exists()


def test_files_are_private(tmp_path, clock):
    old = os.umask(0)
    try:
        with Journal.open(tmp_path / "state", clock, segment_bytes=300) as journal:
            fill(journal, 0, 5)
    finally:
        os.umask(old)
    for p in (tmp_path / "state" / JOURNAL_DIR).iterdir():
        assert p.stat().st_mode & 0o077 == 0, p
    assert (tmp_path / "state" / JOURNAL_DIR).stat().st_mode & 0o077 == 0


def test_a_reader_started_before_a_compaction_reads_every_record_it_snapshotted(tmp_path, clock):
    """The daemon compacts while a control-socket thread is reading (``history``, ``status``):
    the reader gets what was durable when it began, never a missing segment."""
    with Journal.open(tmp_path, clock, segment_bytes=400) as journal:
        fill(journal, 0, 20)
        expected = [r.seq for r in journal.entries()]
        state = journal.state()
        reading = iter(journal.entries())
        first = next(reading)
        also_reading = journal.entries(with_history=True)  # snapshotted, not yet started
        result = journal.compact()
        assert len(result.removed) > 1 and not any(
            (tmp_path / JOURNAL_DIR / name).exists() for name in result.removed
        )
        assert [first.seq, *(r.seq for r in reading)] == expected
        assert [r.seq for r in also_reading] == expected
        assert journal.state() == state


def test_lock_free_readers_meet_a_compaction_in_another_thread_without_error(tmp_path, clock):
    """`journal cat`, `journal verify` and `status` without the daemon's help read the journal
    without its lock while the daemon may compact it: a segment deleted between the listing and
    the read must not end them with "No such file". Many rounds of a real compaction racing
    real readers (no timing asserted: every read must simply succeed and be complete)."""
    with Journal.open(tmp_path, clock, segment_bytes=300) as journal:
        fill(journal, 0, 10)
        done = threading.Event()
        failures: list[BaseException] = []

        def read() -> None:
            while not done.is_set():
                try:
                    seqs = [r.seq for r in read_journal(tmp_path)]
                    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                    read_state(tmp_path)
                    # (a record being written may show as a torn tail: never as damage)
                    assert not scan_journal_retrying(tmp_path / JOURNAL_DIR, deep=True).damage
                except BaseException as exc:  # reported by the test thread
                    failures.append(exc)
                    return

        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            for i in range(150):
                fill(journal, 10 + 3 * i, 3)
                journal.compact()
                if failures:
                    break
        finally:
            done.set()
            for t in readers:
                t.join()
    assert failures == []
