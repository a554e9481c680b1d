"""What a transfer delivers: every data type x cohort group, every attendance kind around
1 August, the leavers rule, changed data across runs, bulk-deleted leavers, rejections,
to-school."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from b2bd.journal.writer import Journal
from tests.support.transfer_world import (
    CHANGED,
    PRIMARY,
    SECONDARY,
    SNAP,
    World,
    mark,
    pupil,
    read_jsonl,
    result,
    slot_at,
    upn,
)

D = "2026-11-02"  # a Monday in 2026/27
D0 = "2026-07-01"  # before the leavers left


def cohort_school() -> dict[str, dict]:
    """Pupils by role; leavers left on 2026-07-20."""
    return {
        "y7": pupil(1, "7"),
        "y9": pupil(2, "9"),
        "x": pupil(3, "X"),
        "lac": pupil(4, "8", in_care=True),
        "leaver_sent": pupil(5, "10", leaving="2026-07-20"),
        "leaver_unsent": pupil(6, "11", leaving="2026-07-20"),
        "future": pupil(7, "7", admission="2026-12-01"),
        "lac_left": pupil(8, "10", in_care=True, leaving="2026-07-20"),
    }


def write_cohort_school(world: World) -> dict[str, dict]:
    pupils = cohort_school()
    world.export(
        pupils=list(pupils.values()),
        marks=[mark(i, "2026-10-05", "O") for i in range(1, 9)]
        + [mark(i, "2026-06-10", "/") for i in range(1, 9)],
        results=[result(i) for i in range(1, 9)],
        deletions=[],
    )
    return pupils


EXPECTED_COHORT = {
    ("ncy", "[7, X]"): {"y7", "x"},
    ("ncy", None): {"y7", "y9", "x", "lac"},
    ("lac", None): {"lac"},
    ("leavers", None): {"leaver_sent", "lac_left"},
}


@pytest.mark.parametrize("data_type", ["snapshot", "changed", "attainment", "attendance"])
@pytest.mark.parametrize(
    ("group", "ncy"), [("ncy", "[7, X]"), ("ncy", None), ("lac", None), ("leavers", None)]
)
def test_data_type_by_cohort_group(world: World, data_type, group, ncy) -> None:
    pupils = write_cohort_school(world)
    # The leavers memory: a snapshot of Year 10 in July sent leaver_sent (not leaver_unsent).
    world.task("memory", "data: {type: snapshot}\ncohort: {group: ncy, ncy: [10]}\n")
    cohort = f"cohort: {{group: {group}" + (f", ncy: {ncy}" if ncy else "") + "}\n"
    data = {
        "attendance": "data: {type: attendance, attendance: all-attendances-current-year}\n",
    }.get(data_type, f"data: {{type: {data_type}}}\n")
    world.task("t", data + cohort)
    world.run("memory", slot_at(D0))
    run = world.run("t", slot_at(D))
    assert run.outcome == "succeeded"
    lines = world.lines(run)
    want = {pupils[name]["upn"] for name in EXPECTED_COHORT[(group, ncy)]}
    kinds = {"snapshot": {"pupil"}, "changed": {"pupil"}, "attainment": {"result"}}
    assert {line["kind"] for line in lines} <= kinds.get(data_type, {"mark"})
    assert {line["upn"] for line in lines} == want
    if data_type == "attendance":
        # current year only: the June marks are 2025/26
        assert {line["date"] for line in lines} == {"2026-10-05"}
    manifest = world.manifest(run)
    assert manifest["cohort"]["group"] == group
    assert manifest["cohort"]["reference_date"] == D
    assert sum(manifest["counts"].values()) == len(lines)


ATT_MARKS = {
    "a": ("2025-07-15", "/"),
    "b": ("2025-09-10", "O"),
    "c": ("2026-06-30", "I"),
    "d": ("2026-07-31", "/"),
    "e": ("2026-08-03", "G"),
    "f": ("2024-08-15", "H"),
}

ATT_EXPECTED = {
    # (kind, D, months): marks kept. Every window ends at D: "e" (3 August) is never sent on
    # 31 July or 1 August.
    ("all-attendances-current-year", "2026-07-31", None): "bcd",
    ("all-attendances-current-year", "2026-07-31", 1): "cd",
    ("all-attendances-current-year", "2026-08-01", None): "",
    ("all-attendances-current-year", "2026-08-01", 1): "",
    ("unauthorised-absences-current-year", "2026-07-31", None): "b",
    ("unauthorised-absences-current-year", "2026-07-31", 1): "",
    ("unauthorised-absences-current-year", "2026-08-01", None): "",
    ("unauthorised-absences-current-year", "2026-08-01", 1): "",
    ("all-absences-current-year", "2026-07-31", None): "bc",
    ("all-absences-current-year", "2026-07-31", 1): "c",
    ("all-absences-current-year", "2026-08-01", None): "",
    ("all-absences-current-year", "2026-08-01", 1): "",
    ("all-attendances-previous-year", "2026-07-31", None): "af",
    # the previous year's last month (July 2025), never an inverted window
    ("all-attendances-previous-year", "2026-07-31", 1): "a",
    ("all-attendances-previous-year", "2026-08-01", None): "bcd",
    ("all-attendances-previous-year", "2026-08-01", 1): "d",
    ("attendance-changed", "2026-07-31", None): "abcdf",
    ("attendance-changed", "2026-07-31", 1): "cd",
    ("attendance-changed", "2026-08-01", None): "abcdf",
    ("attendance-changed", "2026-08-01", 1): "d",
}


@pytest.mark.parametrize(("kind", "day", "months"), sorted(ATT_EXPECTED, key=str))
def test_attendance_kinds_around_1_august(world: World, kind, day, months) -> None:
    base = PRIMARY if kind == "attendance-changed" else SECONDARY
    estab = base[3:]
    p = pupil(1, "5", admission="2023-09-04", estab=estab)
    marks = [mark(1, date, code, estab=estab) for date, code in ATT_MARKS.values()]
    world.export(base, pupils=[p], marks=marks)
    data = f"data: {{type: attendance, attendance: {kind}" + (
        f", months: {months}}}\n" if months else "}\n"
    )
    world.task("att", data + f'cohort: {{group: ncy}}\nbases: {{ids: ["{base}"]}}\n')
    run = world.run("att", slot_at(day, "12:00"))
    lines = world.lines(run, base)
    by_date = {date: name for name, (date, _) in ATT_MARKS.items()}
    assert (
        "".join(sorted(by_date[line["date"]] for line in lines))
        == ATT_EXPECTED[(kind, day, months)]
    )
    assert all(line["kind"] == "mark" for line in lines)


def test_leavers_rule(world: World) -> None:
    pupils = write_cohort_school(world)
    world.task(
        "leavers",
        "data: {type: attendance, attendance: all-attendances-previous-year}\n"
        "cohort: {group: leavers}\n",
    )
    world.task("snap", SNAP)
    first = world.run("leavers", slot_at(D))
    assert world.lines(first) == []  # never sent before: absent
    world.run("snap", slot_at(D0))  # both leavers were on roll then, and are sent
    second = world.run("leavers", slot_at("2026-11-09"))
    got = {line["upn"] for line in world.lines(second)}
    assert got == {pupils[n]["upn"] for n in ("leaver_sent", "leaver_unsent", "lac_left")}
    # a leavers task remembers nothing itself
    succeeded = [r for r in world.journal_records() if r.type == "transfer-succeeded"]
    assert [list(r.pupils) for r in succeeded if r.task == "leavers"] == [[], []]


def test_changed_data_across_two_runs_is_inclusive_and_skips_nothing(world: World) -> None:
    p1 = pupil(1, "7", updated="2026-10-01T10:00:00Z")
    p2 = pupil(2, "8", updated="2026-10-05T10:00:00Z")
    p3 = pupil(3, "9", updated="2026-10-03T10:00:00Z")
    world.export(pupils=[p1, p2, p3], deletions=[])
    world.task("chg", CHANGED)
    first = world.run("chg", slot_at("2026-10-06"))
    assert {line["upn"] for line in world.lines(first)} == {p1["upn"], p2["upn"], p3["upn"]}
    assert first.transfers[0].watermark == "2026-10-05T10:00:00Z"
    # Between runs: p3 changes at exactly the watermark (a same-second edit), p1 later; a
    # deletion of one of p1's marks arrives.
    p3 = {**p3, "surname": "Changed", "updated_at": "2026-10-05T10:00:00Z"}
    p1 = {**p1, "ncy": "8", "updated_at": "2026-10-07T08:00:00Z"}
    deletion = {
        "record": "mark",
        "key": f"{p1['upn']}/2026-10-06/AM",
        "deleted_at": "2026-10-07T09:00:00Z",
    }
    world.export(pupils=[p1, p2, p3], deletions=[deletion])
    second = world.run("chg", slot_at("2026-10-08"))
    lines = world.lines(second)
    pupils_sent = {line["upn"]: line for line in lines if line["kind"] == "pupil"}
    # p2 (at the watermark, unchanged) is re-sent: the window is inclusive; consumers dedupe.
    assert set(pupils_sent) == {p1["upn"], p2["upn"], p3["upn"]}
    assert pupils_sent[p3["upn"]]["surname"] == "Changed"
    assert [line["key"] for line in lines if line["kind"] == "deletion"] == [deletion["key"]]
    assert second.transfers[0].watermark == "2026-10-07T09:00:00Z"
    manifest = world.manifest(second)
    assert manifest["window"]["updated_since"] == "2026-10-05T10:00:00Z"
    # third run with nothing new: only the records at the watermark itself
    third = world.run("chg", slot_at("2026-10-09"))
    assert [line["kind"] for line in world.lines(third)] == ["deletion"]


def test_watermark_not_advanced_by_failure_and_next_run_covers_the_gap(world: World) -> None:
    p1 = pupil(1, "7", updated="2026-10-01T10:00:00Z")
    world.export(pupils=[p1], deletions=[])
    world.task("chg", CHANGED)
    world.run("chg", slot_at("2026-10-02"))
    p2 = pupil(2, "7", updated="2026-10-02T12:00:00Z")
    world.export(pupils=[p1, p2], deletions=[])
    school = world.school_dir(SECONDARY)
    school.rename(school.with_name("away"))
    failed = world.run("chg", slot_at("2026-10-03"))
    assert failed.outcome == "failed" and failed.transfers[0].reason == "unreachable"
    school.with_name("away").rename(school)
    p3 = pupil(3, "7", updated="2026-10-03T12:00:00Z")
    world.export(pupils=[p1, p2, p3], deletions=[])
    # a fresh engine replays the journal: the watermark is still the first run's
    engine = world.engine()
    assert engine.watermark("chg", SECONDARY) == "2026-10-01T10:00:00Z"
    third = engine.run(engine.config.tasks["chg"], slot_at("2026-10-04"))
    assert {line["upn"] for line in world.lines(third)} == {p1["upn"], p2["upn"], p3["upn"]}


def test_bulk_deleted_leavers_are_reported_missing_not_an_error(world: World) -> None:
    gone = pupil(5, "10", leaving="2026-07-20")
    kept = pupil(6, "10", leaving="2026-07-20")
    world.export(
        pupils=[gone, kept, pupil(1, "7")], marks=[mark(5, "2026-06-10"), mark(6, "2026-06-10")]
    )
    world.task("snap", SNAP)
    world.run("snap", slot_at(D0))
    # SIMS bulk delete: gone's whole record, kept's attendance only
    deletion = {"record": "pupil", "key": gone["upn"], "deleted_at": "2026-09-20T10:00:00Z"}
    world.export(pupils=[kept, pupil(1, "7")], marks=[], deletions=[deletion])
    world.task(
        "leavers",
        "data: {type: attendance, attendance: all-attendances-previous-year}\n"
        "cohort: {group: leavers}\n",
    )
    world.task("chg", CHANGED)
    run = world.run("leavers", slot_at(D))
    transfer = run.transfers[0]
    assert run.outcome == "succeeded"
    assert transfer.missing == 1 and transfer.counts == {"mark": 0}
    assert world.manifest(run)["missing"] == 1
    record = [r for r in world.journal_records() if r.type == "transfer-succeeded"][-1]
    assert record.missing == 1
    # the changed task tells the LA about the deleted pupil it was sent before
    changed = world.run("chg", slot_at(D))
    assert [line["key"] for line in world.lines(changed) if line["kind"] == "deletion"] == [
        gone["upn"]
    ]


def test_invalid_records_are_rejected_and_counted(world: World) -> None:
    good = pupil(1, "7")
    bad_letter = {**pupil(2, "7"), "upn": "A" + upn(2)[1:]}
    if bad_letter["upn"] == upn(2):
        bad_letter["upn"] = "B" + upn(2)[1:]
    marks = [
        mark(1, "2026-10-05", "O"),
        {**mark(1, "2026-10-06"), "code": "ZZ"},
        {**mark(1, "2026-10-07"), "date": "2026-02-30"},
        {**mark(1, "2026-10-08"), "upn": bad_letter["upn"]},
        "not json at all",
    ]
    world.export(pupils=[good, bad_letter], marks=marks)
    world.task(
        "att",
        "data: {type: attendance, attendance: all-attendances-current-year}\n"
        "cohort: {group: ncy}\n",
    )
    run = world.run("att", slot_at(D))
    transfer = run.transfers[0]
    assert transfer.outcome == "succeeded"
    assert [line["date"] for line in world.lines(run)] == ["2026-10-05"]
    assert transfer.rejected == 5
    manifest = world.manifest(run)
    assert manifest["rejected"] == 5
    assert manifest["rejected_by_reason"] == {
        "attendance-code": 1,
        "date": 1,
        "json": 1,
        "upn-check-letter": 2,
    }
    record = [r for r in world.journal_records() if r.type == "transfer-succeeded"][-1]
    assert record.rejected == 5


def test_to_school_delivers_listed_ncys_into_the_school_inbound(world: World) -> None:
    world.export(SECONDARY, pupils=[])  # the school's own folder (its inbound/ goes inside)
    outbound = world.la / "outbound" / SECONDARY
    # the X pupil's change is the newest: the watermark is taken before cohort filtering
    rows = [
        pupil(1, "6"),
        pupil(2, "7"),
        pupil(3, "8"),
        pupil(4, "X", updated="2026-03-01T09:00:00Z"),
    ]
    world.export(pupils=rows, deletions=[], folder=outbound, manifest={"mis": "one"})
    (outbound / "manifest.json").write_text(
        json.dumps({"mis": "one", "exported_at": "2026-11-01T10:00:00Z", "laestab": SECONDARY})
    )
    world.task(
        "back",
        "direction: to-school\ndata: {type: changed}\ncohort: {group: ncy, ncy: [6, 7]}\n",
    )
    run = world.run("back", slot_at(D))
    transfer = run.transfers[0]
    assert transfer.outcome == "succeeded", transfer
    assert transfer.delivery == world.school_dir(SECONDARY) / "inbound" / "back" / (
        "20261102T063000Z.jsonl"
    )
    assert {line["upn"] for line in read_jsonl(transfer.delivery)} == {upn(1), upn(2)}
    assert not (world.la / SECONDARY).exists()
    # second run: only what changed since
    rows[0] = {**rows[0], "updated_at": "2026-11-02T09:00:00Z"}
    rows[2] = {**rows[2], "updated_at": "2026-11-02T09:00:00Z"}
    world.export(pupils=rows, deletions=[], folder=outbound, manifest={"mis": "one"})
    again = world.run("back", slot_at("2026-11-03"))
    assert transfer.watermark == "2026-03-01T09:00:00Z"
    assert {line["upn"] for line in world.lines(again)} == {upn(1)}


def test_a_run_as_of_a_past_date_sends_nothing_dated_or_changed_after_it(world: World) -> None:
    """trigger --as-of D runs as it would have on D: a change made after D, a mark dated after
    D and a deletion after D are not sent, and the watermark stays within D, so the next run
    sends them."""
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    world.task("chg", CHANGED)
    world.task(
        "att",
        "data: {type: attendance, attendance: all-attendances-current-year}\n"
        "cohort: {group: ncy}\n",
    )
    # Both pupils are sent once (the task's first run: both join its cohort).
    world.export(pupils=[pupil(1, "7", updated="2026-09-01T10:00:00Z"), pupil(2, "7")])
    engine = world.engine()
    engine.run(engine.config.tasks["chg"], now, manual=True, as_of=dt.date(2026, 9, 15))
    early = pupil(1, "7", updated="2026-09-20T10:00:00Z")  # changed before D
    late = pupil(2, "7", updated="2026-10-20T10:00:00Z")  # changed after D
    deletion = {
        "record": "mark",
        "key": f"{upn(1)}/2026-09-07/AM",
        "deleted_at": "2026-10-10T09:00:00Z",
    }
    world.export(
        pupils=[early, late],
        marks=[mark(1, "2026-09-28", "O"), mark(1, "2026-10-05", "O")],
        deletions=[deletion],
    )
    day = dt.date(2026, 10, 1)
    first = engine.run(engine.config.tasks["chg"], now, manual=True, as_of=day)
    # neither the late change nor the deletion
    assert [line["upn"] for line in world.lines(first)] == [upn(1)]
    transfer = first.transfers[0]
    assert transfer.watermark == "2026-09-20T10:00:00Z"
    assert transfer.dropped["after-reference-date"] == 2, transfer.dropped
    manifest = world.manifest(first)
    assert manifest["cohort"]["reference_date"] == "2026-10-01" and manifest["cohort"]["as_of"]
    assert manifest["window"]["changed_before"] == "2026-10-01T23:00:00Z"  # midnight BST
    as_of = [r.as_of for r in world.journal_records() if r.type == "run-started"]
    assert as_of == ["2026-09-15", "2026-10-01"]

    att = engine.run(engine.config.tasks["att"], now, manual=True, as_of=day)
    assert [line["date"] for line in world.lines(att)] == ["2026-09-28"]
    assert world.manifest(att)["window"]["dates"] == {"first": "2026-08-01", "last": "2026-10-01"}

    # The next run (as of today) sends what the past one held back; the tie on the
    # watermark (the inclusive window) sends the early pupil again.
    second = world.engine().run(engine.config.tasks["chg"], now + dt.timedelta(hours=1))
    sent = {(line["kind"], line.get("upn") or line.get("key")) for line in world.lines(second)}
    assert sent == {("pupil", upn(1)), ("pupil", upn(2)), ("deletion", deletion["key"])}
    assert second.transfers[0].watermark == "2026-10-20T10:00:00Z"


def test_changed_data_follows_the_cohort_edge_and_compaction_keeps_the_memory(
    world: World,
) -> None:
    """The issue's cases: a Year 7 admitted on 5 January whose record was last edited in
    October, and a pupil whose leaving date was entered weeks ahead. Neither change is
    above the watermark when it matters; both reach the LA, once. The memory survives a
    restart and `journal compact`."""
    october = "2025-10-14T10:00:00Z"
    joiner = pupil(1, "7", admission="2026-01-05", updated=october)
    leaver = pupil(2, "8", admission="2024-09-03", updated="2025-11-20T10:00:00Z")
    leaver["leaving_date"] = "2026-02-13"
    stays = pupil(3, "8", admission="2024-09-03", updated=october)
    # The newest change read (the watermark) is outside the cohort: no ties on it below.
    other = pupil(4, "10", admission="2022-09-03", updated="2025-11-25T10:00:00Z")
    world.export(pupils=[joiner, leaver, stays, other])
    world.task("chg", "data: {type: changed}\ncohort: {group: ncy, ncy: [7, 8]}\n")

    def run(day: str) -> set[str]:
        engine = world.engine()  # a fresh engine each day: state replayed from the journal
        result = engine.run(engine.config.tasks["chg"], slot_at(day))
        return {line["upn"] for line in world.lines(result)}

    assert run("2025-12-01") == {upn(2), upn(3)}  # the first run: the cohort joins
    assert run("2026-01-04") == set()
    assert run("2026-01-05") == {upn(1)}  # admitted today: sent, whatever its updated_at
    assert run("2026-01-06") == set()
    world.close()
    with Journal.open(world.state) as journal:
        journal.compact()
    assert run("2026-02-12") == set()  # nothing forgotten, nothing re-sent
    sent = run("2026-02-13")  # the leaving date arrives
    assert sent == {upn(2)}
    last = world.journal_records()[-2]
    assert last.type == "transfer-succeeded" and last.left and not last.pupils
    assert run("2026-02-14") == set()  # once
    # No UPN anywhere in the journal: the memory is keyed digests and bitmaps.
    journal_text = b"".join(p.read_bytes() for p in (world.state / "journal").iterdir())
    assert not any(upn(n).encode() in journal_text for n in (1, 2, 3))


def test_a_pupil_flipped_in_and_out_of_the_cohort_daily_costs_one_record_and_no_memory(
    world: World,
) -> None:
    """A hostile (or broken) school flips one child in and out of care every day among 300
    pupils it never edits: each day's looked-after run sends exactly that child's current
    record, the base's leavers memory stops growing after the first run, and each day's
    journal record carries a cohort-memory change of a few bytes, never the roll."""
    world.task("lac", "data: {type: changed}\ncohort: {group: lac}\n")
    world.task("all", CHANGED)
    roll = [pupil(n, "8", updated="2025-10-01T10:00:00Z") for n in range(1, 301)]
    flipper = 150  # in the middle of the roll: its position is not the last
    sizes: list[int] = []
    for day in range(1, 15):
        date = f"2025-11-{day:02d}"
        in_care = day % 2 == 1
        roll[flipper - 1] = pupil(flipper, "8", in_care=in_care, updated="2025-10-01T10:00:00Z")
        world.export(pupils=roll, manifest={"exported_at": f"{date}T05:00:00Z"})
        engine = world.engine()
        if day == 1:  # the school's first run: the whole roll joins the every-NCY task
            first = engine.run(engine.config.tasks["all"], slot_at(date))
            assert len(world.lines(first)) == 300
        result = engine.run(engine.config.tasks["lac"], slot_at(date))
        sent = world.lines(result)
        assert [(r["upn"], r["in_care"]) for r in sent] == [(upn(flipper), in_care)], day
        (transfer,) = result.transfers
        assert (transfer.joined, transfer.left) == ((1, 0) if in_care else (0, 1))
        record = world.journal_records()[-2]
        assert record.type == "transfer-succeeded" and not record.pupils
        sizes.append(len(record.joined) + len(record.left))
        assert len(world.engine().leavers(SECONDARY)) == 300
    assert max(sizes) <= 8  # one bit: "<byte offset>:<one byte as base64>"
    again = world.run("lac", slot_at("2025-11-15"))
    assert world.lines(again) == []  # the last day's state is remembered: nothing new


def test_two_changed_tasks_at_one_base_in_parallel_journal_what_the_engine_remembers(
    world: World,
) -> None:
    """The cohort memory's positions depend on the order pupils entered the base's memory:
    two tasks delivering new pupils at one base at once must journal them in the order the
    engine applied them, so a restarted engine (a replay) remembers exactly the same."""
    world.task("lower", "data: {type: changed}\ncohort: {group: ncy, ncy: [7, 8]}\n")
    world.task("upper", "data: {type: changed}\ncohort: {group: ncy, ncy: [9, 10]}\n")
    world.task("all", CHANGED)
    roll = [pupil(n, str(7 + n % 4), updated="2025-10-01T10:00:00Z") for n in range(1, 401)]
    world.export(pupils=roll)
    engine = world.engine()
    tasks = engine.config.tasks
    for day in ("2025-11-03", "2025-11-04"):
        if day == "2025-11-04":  # ten more pupils, admitted today, in every year
            roll += [pupil(n, str(7 + n % 4), admission=day, updated="2025-10-20T10:00:00Z")
                     for n in range(401, 411)]  # fmt: skip
            world.export(pupils=roll)
        with ThreadPoolExecutor(3) as runs:
            futures = [runs.submit(engine.run, tasks[t], slot_at(day))
                       for t in ("lower", "upper", "all")]  # fmt: skip
            results = [future.result() for future in futures]
        assert all(r.outcome == "succeeded" for r in results), results
        joined = [r.transfers[0].joined for r in results]
        assert joined == ([200, 200, 400] if day == "2025-11-03" else [5, 5, 10])
    live = {t: engine.members(t, SECONDARY) for t in ("lower", "upper", "all")}
    replayed = world.engine()
    assert {t: replayed.members(t, SECONDARY) for t in live} == live
    assert replayed.leavers(SECONDARY) == engine.leavers(SECONDARY)
    assert len(live["lower"]) == len(live["upper"]) == 205 and len(live["all"]) == 410
