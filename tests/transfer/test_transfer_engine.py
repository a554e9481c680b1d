"""Fan-out, outcomes, reason classes, retries and timeouts, on real exports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from b2bd.config.load import load_config
from b2bd.transfer.engine import backoff_delays
from b2bd.transfer.results import Progress, TransferResult, run_outcome
from tests.support.transfer_world import (
    BOTH,
    OTHER,
    PRIMARY,
    SECONDARY,
    SETTINGS,
    SNAP,
    World,
    mark,
    pupil,
    slot_at,
)

D = "2026-11-02"


def two_schools(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.export(OTHER, pupils=[pupil(1, "7", estab="3003")])


def outcome_of(run, base: str) -> TransferResult:
    return next(t for t in run.transfers if t.base == base)


def test_run_is_journaled_from_start_to_finish(world: World) -> None:
    two_schools(world)
    world.task("snap", SNAP + BOTH)
    run = world.run("snap", slot_at(D))
    assert run.run == "snap/20261102T063000Z" and run.outcome == "succeeded"
    types = [r.type for r in world.journal_records()]
    assert types[0] == "run-started" and types[-1] == "run-finished"
    assert sorted(types[1:-1]) == ["transfer-succeeded", "transfer-succeeded"]
    started = world.journal_records()[0]
    assert sorted(started.bases) == [OTHER, SECONDARY]
    assert started.slot == dt.datetime(2026, 11, 2, 6, 30, tzinfo=dt.UTC)
    assert started.manual is False


def test_manual_run_id_and_delivery_name(world: World) -> None:
    two_schools(world)
    world.task("snap", SNAP)
    run = world.run("snap", dt.datetime(2026, 11, 2, 9, 15, 7, tzinfo=dt.UTC), manual=True)
    assert run.run == "snap/manual-20261102T091507Z"
    assert run.transfers[0].delivery is not None
    assert run.transfers[0].delivery.name == "manual-20261102T091507Z.jsonl"


@pytest.mark.parametrize(
    ("fault", "reason", "attempts"),
    [
        ("missing", "unreachable", 3),
        ("not-a-folder", "unreachable", 3),
        ("services-manager-stopped", "prerequisite", 1),
        ("old-sims-live", "prerequisite", 1),
        ("other-school", "bad-data", 1),
        ("no-manifest", "bad-data", 1),
    ],
)
def test_one_base_fault_fails_that_base_only(world: World, fault, reason, attempts) -> None:
    two_schools(world)
    school = world.school_dir(OTHER)
    if fault == "missing":
        for child in school.iterdir():
            child.unlink()
        school.rmdir()
    elif fault == "not-a-folder":  # tests run as root: a file where the folder should be
        for child in school.iterdir():
            child.unlink()
        school.rmdir()
        school.write_text("not a folder")
    elif fault == "services-manager-stopped":
        world.export(OTHER, pupils=[], manifest={"services_manager": "stopped"})
    elif fault == "old-sims-live":
        world.export(OTHER, pupils=[], manifest={"sims_version": "7.150"})
    elif fault == "other-school":
        world.export(OTHER, pupils=[], manifest={"laestab": "8819999"})
    else:
        (school / "manifest.json").unlink()
    world.task("snap", SNAP + BOTH)
    run = world.run("snap", slot_at(D))
    assert run.outcome == "partial"
    good, bad = outcome_of(run, SECONDARY), outcome_of(run, OTHER)
    assert good.outcome == "succeeded" and good.counts == {"pupil": 1}
    assert bad.outcome == "failed" and bad.reason == reason and bad.attempts == attempts
    assert bad.delivery is None and not list((world.la / OTHER).rglob("*.json*"))
    failed = [r for r in world.journal_records() if r.type == "transfer-failed"]
    assert [(r.base, r.reason, r.attempts) for r in failed] == [(OTHER, reason, attempts)]
    assert failed[0].message


def test_all_failing_is_a_failed_run(world: World) -> None:
    world.task("snap", SNAP + BOTH)
    run = world.run("snap", slot_at(D))
    assert run.outcome == "failed"
    finished = world.journal_records()[-1]
    assert finished.type == "run-finished" and finished.outcome == "failed"


def test_a_wonde_base_without_its_token_fails_alone_with_auth(world: World) -> None:
    two_schools(world)
    world.endpoints[OTHER] = "{type: wonde, school_id: A123, token: {credential: wonde}}"
    world.write_bases()
    world.task("snap", SNAP + BOTH)
    run = world.run("snap", slot_at(D))
    bad = outcome_of(run, OTHER)
    assert (bad.reason, bad.attempts) == ("auth", 1)
    assert bad.message.startswith("credential wonde: not found")
    assert outcome_of(run, SECONDARY).outcome == "succeeded"


def test_transient_failures_retry_with_exponential_backoff(world: World) -> None:
    world.task("snap", SNAP + "policy: {retries: 3, retry_backoff: 10s}\n")
    waits: list[float] = []
    run = world.run("snap", slot_at(D), wait=lambda s: waits.append(s) or False)
    assert waits == [10.0, 20.0, 40.0] == backoff_delays(3, dt.timedelta(seconds=10))
    assert run.transfers[0].attempts == 4 and run.transfers[0].reason == "unreachable"


def test_a_base_that_comes_back_during_retries_succeeds(world: World) -> None:
    world.task("snap", SNAP + "policy: {retries: 2, retry_backoff: 5s}\n")

    def wait(seconds: float) -> bool:
        world.export(SECONDARY, pupils=[pupil(1, "7")])  # the share is back
        return False

    run = world.run("snap", slot_at(D), wait=wait)
    assert run.outcome == "succeeded" and run.transfers[0].attempts == 2


def test_stopping_engine_does_not_sit_out_the_backoff(world: World) -> None:
    world.task("snap", SNAP + "policy: {retries: 5, retry_backoff: 1h}\n")
    stop = threading.Event()
    stop.set()
    run = world.run("snap", slot_at(D), stop=stop)
    assert run.transfers[0].attempts == 1 and run.transfers[0].reason == "unreachable"


def test_timeout_is_transient_and_leaves_no_delivery(world: World) -> None:
    world.export(pupils=[pupil(i, "7") for i in range(1, 50)], marks=[])
    world.task("snap", SNAP + "policy: {retries: 1, retry_backoff: 0s, timeout: 1m}\n")
    ticks = itertools.count(0, 45)  # every look at the clock is 45 s later
    run = world.run("snap", slot_at(D), monotonic=lambda: float(next(ticks)))
    transfer = run.transfers[0]
    assert (transfer.outcome, transfer.reason, transfer.attempts) == ("failed", "timeout", 2)
    folder = world.la / SECONDARY / "snap"
    assert list(folder.iterdir()) == []


def test_bases_run_concurrently_on_a_shared_pool(world: World) -> None:
    """Each transfer waits for the others at a barrier: only concurrent execution passes."""
    two_schools(world)
    world.export(PRIMARY, pupils=[pupil(1, "5", estab="2002")])
    world.task("snap", SNAP + f'bases: {{ids: ["{SECONDARY}", "{OTHER}", "{PRIMARY}"]}}\n')
    barrier = threading.Barrier(3, timeout=10)
    events: list[Progress] = []

    def on_progress(event: Progress) -> None:
        events.append(event)
        if event.event == "started":
            barrier.wait()

    with ThreadPoolExecutor(max_workers=3) as pool:
        engine = world.engine(pool=pool)
        run = engine.run(engine.config.tasks["snap"], slot_at(D), on_progress=on_progress)
    assert run.outcome == "succeeded"
    finished = [e for e in events if e.event == "finished"]
    assert sorted(e.base for e in finished) == sorted([SECONDARY, OTHER, PRIMARY])


def test_per_base_api_for_the_daemon(world: World) -> None:
    two_schools(world)
    world.task("snap", SNAP + BOTH)
    engine = world.engine()
    task = engine.config.tasks["snap"]
    context = engine.start_run(task, slot_at(D))
    done = engine.run_transfer(context, SECONDARY)
    skipped = engine.skip_transfer(context, OTHER, "overlap")
    result = engine.finish_run(context, [done, skipped])
    assert result.outcome == "succeeded"
    types = [r.type for r in world.journal_records()]
    assert types == ["run-started", "transfer-succeeded", "transfer-skipped", "run-finished"]


def test_run_outcome_table() -> None:
    def r(outcome: str) -> TransferResult:
        return TransferResult("t", "b", outcome)  # type: ignore[arg-type]  # the table's str

    assert run_outcome([r("succeeded"), r("succeeded")]) == "succeeded"
    assert run_outcome([r("succeeded"), r("failed")]) == "partial"
    assert run_outcome([r("failed"), r("failed")]) == "failed"
    assert run_outcome([r("succeeded"), r("skipped")]) == "succeeded"
    assert run_outcome([r("failed"), r("skipped")]) == "failed"


def test_leavers_memory_journaled_as_digests_of_delivered_pupils(world: World) -> None:
    pupils = [pupil(1, "7"), pupil(2, "7"), pupil(3, "8")]
    world.export(pupils=pupils, marks=[mark(1, "2026-10-05", "O"), mark(3, "2026-10-05", "/")])
    world.task(
        "abs",
        "data: {type: attendance, attendance: unauthorised-absences-current-year}\n"
        "cohort: {group: ncy}\n",
    )
    world.run("abs", slot_at(D))
    record = next(r for r in world.journal_records() if r.type == "transfer-succeeded")
    from b2bd.journal.keys import PupilKeyer

    keyer = PupilKeyer(world.state)
    # only pupil 1 had an unauthorised absence delivered
    assert list(record.pupils) == [keyer.digest(pupils[0]["upn"])]
    assert world.engine().leavers(SECONDARY) == {keyer.key(pupils[0]["upn"])}
    # a second run adds nothing new to the journal (digests already remembered)
    world.run("abs", slot_at("2026-11-09"))
    again = [r for r in world.journal_records() if r.type == "transfer-succeeded"][-1]
    assert list(again.pupils) == []
    assert json.loads(json.dumps(list(record.pupils)))  # plain hex strings


def test_to_school_never_creates_a_missing_school_folder(world: World) -> None:
    outbound = world.la / "outbound" / SECONDARY
    world.export(pupils=[pupil(1, "7")], deletions=[], folder=outbound, manifest={"mis": "one"})
    world.task(
        "back", "direction: to-school\ndata: {type: changed}\ncohort: {group: ncy, ncy: [7]}\n"
    )
    run = world.run("back", slot_at(D))
    assert run.transfers[0].reason == "unreachable"
    assert not world.school_dir(SECONDARY).exists()


def test_a_kept_task_version_meets_the_registry_as_it_is_now(world: World) -> None:
    """A registry edit that makes a task file invalid keeps its last good version in force;
    that version's transfers meet bases.yaml as it is now (DESIGN section 5, run-time guards)."""
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.export(PRIMARY, pupils=[pupil(2, "3", estab="2002")])
    world.export(OTHER, pupils=[pupil(3, "7", estab="3003")])
    ids = f'bases: {{ids: ["{SECONDARY}", "{PRIMARY}", "{OTHER}"]}}\n'
    world.task("snap", SNAP + ids)
    good = world.config()
    world.extra[SECONDARY] = "lockdown: true"
    world.bases[OTHER] = ("secondary", "sims", "7.100", "sec")  # wrongly entered, say
    del world.bases[PRIMARY]  # removed from bases.yaml altogether
    world.write_bases()
    now = load_config(world.config_dir, last_good=good)
    rules = {p.rule for p in now.problems if p.file == "tasks/snap.yaml"}
    assert rules == {"base-lockdown", "base-prerequisites", "base-unknown"}
    assert now.tasks["snap"] == good.tasks["snap"]  # kept in force, with its old targets

    engine = world.engine(now)
    run = engine.run(now.tasks["snap"], slot_at(D))
    by_base = {t.base: t for t in run.transfers}
    assert (by_base[SECONDARY].outcome, by_base[SECONDARY].reason) == ("skipped", "lockdown")
    assert "[base-lockdown]" in by_base[SECONDARY].message
    assert (by_base[OTHER].outcome, by_base[OTHER].reason) == ("failed", "prerequisite")
    assert by_base[OTHER].attempts == 1 and "[base-prerequisites]" in by_base[OTHER].message
    assert (by_base[PRIMARY].outcome, by_base[PRIMARY].reason) == ("failed", "prerequisite")
    assert "[base-unknown]" in by_base[PRIMARY].message
    assert run.outcome == "failed"
    assert not world.la.exists() or not list(world.la.rglob("*.jsonl"))
    journaled = {
        r.base: (r.type, r.reason)
        for r in world.journal_records()
        if r.type.startswith("transfer-")
    }
    assert journaled == {
        SECONDARY: ("transfer-skipped", "lockdown"),
        OTHER: ("transfer-failed", "prerequisite"),
        PRIMARY: ("transfer-failed", "prerequisite"),
    }


def test_attendance_changed_against_a_base_re_registered_as_sims(world: World) -> None:
    world.export(PRIMARY, pupils=[pupil(2, "3", estab="2002")], marks=[])
    world.task(
        "ac",
        "data: {type: attendance, attendance: attendance-changed}\ncohort: {group: ncy}\n"
        f'bases: {{ids: ["{PRIMARY}"]}}\n',
    )
    good = world.config()
    assert world.run("ac", slot_at(D)).outcome == "succeeded"
    world.bases[PRIMARY] = ("primary", "sims", "7.210", "pri")
    world.write_bases()
    now = load_config(world.config_dir, last_good=good)
    assert {p.rule for p in now.problems} == {"sims-primary-only"}
    (transfer,) = world.engine(now).run(now.tasks["ac"], slot_at("2026-11-03")).transfers
    assert (transfer.outcome, transfer.reason, transfer.attempts) == ("failed", "prerequisite", 1)
    assert "[sims-primary-only]" in transfer.message


def test_a_live_manifest_that_disagrees_with_the_registry_fails_the_transfer(world: World) -> None:
    """A base registered SIMS Primary whose export says SIMS: preflight fails it, and so does
    every transfer (the live half of the one check)."""
    world.export(PRIMARY, pupils=[pupil(2, "3", estab="2002")], manifest={"mis": "sims"})
    world.task("snap", SNAP + f'bases: {{ids: ["{PRIMARY}"]}}\n')
    (transfer,) = world.run("snap", slot_at(D)).transfers
    assert (transfer.outcome, transfer.reason) == ("failed", "prerequisite")
    assert "[live-mis]" in transfer.message and transfer.attempts == 1


# -- run ids never repeat; no delivery replaced by another run ------------------------------

T = dt.datetime(2026, 11, 2, 9, 15, 7, tzinfo=dt.UTC)


def deliveries(world: World, task: str = "snap") -> dict[str, bytes]:
    folder = world.la / SECONDARY / task
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_manual_runs_in_one_second_get_their_own_ids_and_deliveries(world: World) -> None:
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    first = world.run("snap", T, manual=True)
    world.export(SECONDARY, pupils=[pupil(1, "7"), pupil(2, "8")])  # a change in between
    second = world.run("snap", T, manual=True)  # a new engine: names come from the journal
    assert (first.run, second.run) == (
        "snap/manual-20261102T091507Z",
        "snap/manual-20261102T091507Z-2",
    )
    files = deliveries(world)
    assert sorted(files) == [
        "manual-20261102T091507Z-2.jsonl",
        "manual-20261102T091507Z-2.manifest.json",
        "manual-20261102T091507Z.jsonl",
        "manual-20261102T091507Z.manifest.json",
    ]
    assert files["manual-20261102T091507Z.jsonl"].count(b"\n") == 1  # the first run's, intact
    assert files["manual-20261102T091507Z-2.jsonl"].count(b"\n") == 2
    started = [r.run for r in world.journal_records() if r.type == "run-started"]
    assert started == [first.run, second.run]
    # After a clock step back the next manual run still gets a name never used.
    third = world.run("snap", T - dt.timedelta(minutes=5), manual=True)
    assert third.run == "snap/manual-20261102T091507Z-3"


def test_a_delivery_the_journal_does_not_know_is_never_replaced(world: World) -> None:
    """A state dir restored from an older backup: the folder holds a delivery of the name the
    next manual run would take; that run takes the next name instead."""
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    folder = world.la / SECONDARY / "snap"
    folder.mkdir(parents=True)
    (folder / "manual-20261102T091507Z.jsonl").write_bytes(b"an earlier run's data\n")
    run = world.run("snap", T, manual=True)
    assert run.run == "snap/manual-20261102T091507Z-2"
    assert (folder / "manual-20261102T091507Z.jsonl").read_bytes() == b"an earlier run's data\n"


def test_runs_started_at_once_in_one_engine_are_separate_runs(world: World) -> None:
    """Triggers racing into one engine (the daemon's control socket): each gets its own run
    id. (Their transfers of one task and base then run one after another: the daemon's overlap
    policy, and one writer per delivery folder, see to that.)"""
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    engine = world.engine()
    task = engine.config.tasks["snap"]
    barrier = threading.Barrier(6)

    def start(_: int):
        barrier.wait()
        return engine.start_run(task, T, manual=True)

    with ThreadPoolExecutor(6) as pool:
        contexts = list(pool.map(start, range(6)))
    assert len({c.run for c in contexts}) == 6
    results = [engine.finish_run(c, [engine.run_transfer(c, SECONDARY)]) for c in contexts]
    assert all(r.outcome == "succeeded" for r in results)
    started = [r.run for r in world.journal_records() if r.type == "run-started"]
    finished = [r.run for r in world.journal_records() if r.type == "run-finished"]
    assert sorted(started) == sorted(finished) == sorted(c.run for c in contexts)
    files = deliveries(world)
    assert len(files) == 12 and all(data.count(b"\n") for data in files.values())


def test_a_reload_gives_the_engine_its_config_and_settings_as_one(world: World) -> None:
    """Engine.reconfigure swaps config and settings in one assignment (a transfer attempt
    reads the pair once): after a reload that moves the LA store, the next transfer delivers to
    the new store; a reload whose b2bd.yaml was rejected (no settings) brings its bases and
    tasks with the settings already in force."""
    world.export(SECONDARY, pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    engine = world.engine()
    (world.config_dir / "b2bd.yaml").write_text(SETTINGS.replace("path: la}", "path: la2}"))
    moved = world.config()
    engine.reconfigure(moved)
    assert engine.in_force.config is moved and engine.in_force.settings is moved.settings
    run = engine.run(moved.tasks["snap"], slot_at(D))
    assert run.outcome == "succeeded"
    assert list((world.config_dir / "la2").rglob("*.jsonl"))
    assert not world.la.exists() or not list(world.la.rglob("*.jsonl"))
    kept = dataclasses.replace(moved, settings=None)
    engine.reconfigure(kept)
    assert engine.in_force.config is kept and engine.in_force.settings is moved.settings
    assert (engine.config, engine.settings) == (kept, moved.settings)
