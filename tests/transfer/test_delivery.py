"""Deliveries: names, manifest, modes whatever the umask, atomicity under SIGKILL, replace on
rerun, one writer per delivery."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from b2bd.transfer.delivery import DeliveryError, DeliveryPlace, DeliveryWriter
from tests.support.transfer_world import (
    ATT,
    SECONDARY,
    SNAP,
    World,
    mark,
    pupil,
    read_jsonl,
    slot_at,
)

D = "2026-11-02"


def test_delivery_names_manifest_and_checksum(world: World) -> None:
    world.export(pupils=[pupil(1, "7")], marks=[mark(1, "2026-10-05"), mark(1, "2026-10-06")])
    world.task("att", ATT)
    run = world.run("att", slot_at(D))
    folder = world.la / SECONDARY / "att"
    data = folder / "20261102T063000Z.jsonl"
    assert sorted(p.name for p in folder.iterdir()) == [
        "20261102T063000Z.jsonl",
        "20261102T063000Z.manifest.json",
    ]
    manifest = json.loads((folder / "20261102T063000Z.manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert manifest["bytes"] == data.stat().st_size
    assert manifest["counts"] == {"mark": 2}
    assert manifest["run"] == run.run and manifest["task"] == "att"
    assert manifest["base"] == SECONDARY and manifest["data_type"] == "attendance"
    assert manifest["window"]["dates"] == {"first": "2026-08-01", "last": "2026-11-02"}  # ends at D
    assert manifest["watermark"] == "2026-10-06T09:00:00Z"
    assert manifest["data_file"] == data.name
    # every line is the record plus "kind", byte for byte the source's fields
    lines = read_jsonl(data)
    assert lines[0] == {"kind": "mark", **mark(1, "2026-10-05")}


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_modes_whatever_the_umask(world: World, umask: int) -> None:
    world.export(pupils=[pupil(1, "7")])
    world.task("snap", SNAP)
    old = os.umask(umask)
    try:
        world.run("snap", slot_at(D))
    finally:
        os.umask(old)
    for path in (world.la, world.la / SECONDARY, world.la / SECONDARY / "snap"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o750, path
    for path in (world.la / SECONDARY / "snap").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_rerun_of_a_slot_replaces_not_duplicates(world: World) -> None:
    world.export(pupils=[pupil(1, "7"), pupil(2, "7")])
    world.task("snap", SNAP)
    world.run("snap", slot_at(D))
    world.export(pupils=[pupil(1, "7")])
    world.run("snap", slot_at(D))
    folder = world.la / SECONDARY / "snap"
    assert len(list(folder.iterdir())) == 2
    data = folder / "20261102T063000Z.jsonl"
    assert len(read_jsonl(data)) == 1
    manifest = json.loads((folder / "20261102T063000Z.manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


def test_a_second_writer_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    place = DeliveryPlace(tmp_path, ("out",), "20261102T063000Z")
    with DeliveryWriter(place) as first:
        first.write(b'{"kind":"pupil"}\n')
        with pytest.raises(DeliveryError) as caught:
            DeliveryWriter(place)
        assert caught.value.reason == "internal"
        first.commit({})
    assert place.data_path.read_bytes() == b'{"kind":"pupil"}\n'


def test_a_delivery_folder_swapped_for_a_symlink_mid_delivery_writes_nothing_through_it(
    tmp_path: Path,
) -> None:
    """A school renames its inbound/<task> folder while a delivery is being written into it and
    puts a symlink to somewhere else in its place: the delivery lands in the folder it opened
    (now under its new name, still the school's), nothing is written through the symlink."""
    school = tmp_path / "school"
    school.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    place = DeliveryPlace(school, ("inbound", "to"), "20261102T063000Z", create_root=False)
    with DeliveryWriter(place) as writer:
        writer.write(b'{"kind":"pupil"}\n')
        (school / "inbound" / "to").rename(school / "inbound" / "moved")
        (school / "inbound" / "to").symlink_to(victim)
        writer.write(b'{"kind":"mark"}\n')
        writer.commit({})
    assert list(victim.iterdir()) == []
    moved = school / "inbound" / "moved"
    assert sorted(p.name for p in moved.iterdir()) == [
        "20261102T063000Z.jsonl",
        "20261102T063000Z.manifest.json",
    ]
    assert (moved / "20261102T063000Z.jsonl").read_bytes() == b'{"kind":"pupil"}\n{"kind":"mark"}\n'


def test_abandoned_writer_leaves_nothing(tmp_path: Path) -> None:
    place = DeliveryPlace(tmp_path, ("out",), "x")
    with pytest.raises(RuntimeError), DeliveryWriter(place) as writer:
        writer.write(b"{}\n")
        raise RuntimeError("boom")
    assert list(place.folder.iterdir()) == []


# The child runs a real transfer and, once it has read 65,536 marks (the engine's first
# progress report: eight batches are in the temporary file by then), says so and blocks, so
# the test kills it provably mid-delivery.
KILLED = textwrap.dedent(
    """
    import datetime as dt, sys, threading
    from pathlib import Path
    from b2bd.config.load import load_config
    from b2bd.journal.writer import Journal
    from b2bd.journal.keys import PupilKeyer
    from b2bd.transfer.engine import Engine

    def progress(event):
        if event.event == "records" and event.records >= 65536:
            print("mid-delivery", flush=True)
            threading.Event().wait()

    config = load_config(Path(sys.argv[1]))
    journal = Journal.open(config.settings.state_dir)
    engine = Engine(config, journal, PupilKeyer(config.settings.state_dir))
    slot = dt.datetime(2026, 11, 2, 6, 30, tzinfo=dt.UTC)
    engine.run(config.tasks["att"], slot, manual=True, on_progress=progress)
    """
)


def test_kill_9_mid_delivery_leaves_nothing_visible_and_the_next_run_no_temp_file(
    world: World,
) -> None:
    # 400 pupils, a mark for every session from 1 August to D: 75,200 marks, all delivered (a
    # delivery holds at most two marks a day per cohort pupil, so repeats would be refused).
    pupils = [pupil(i, "7") for i in range(1, 401)]
    world.export(pupils=pupils, marks=[])
    first = dt.date(2026, 8, 1)
    days = [(first + dt.timedelta(n)).isoformat() for n in range(94)]
    with (world.school_dir(SECONDARY) / "attendance.jsonl").open("w") as marks:
        for i in range(1, 401):
            marks.writelines(
                json.dumps(mark(i, day, session=session)) + "\n"
                for day in days
                for session in ("AM", "PM")
            )
    world.task("att", ATT)
    world.config()  # valid before we start
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(world.config_dir)], stdout=subprocess.PIPE, text=True
    )
    folder = world.la / SECONDARY / "att"
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "mid-delivery\n"
        temps = [p for p in folder.iterdir() if p.name.startswith(".")]
        assert len(temps) == 1 and temps[0].stat().st_size > 0, temps
        assert temps[0].name.startswith(".manual-20261102T063000Z.jsonl.")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    visible = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    assert visible == []  # no data file, no manifest: readers see nothing
    world.export(pupils=pupils, marks=[mark(i, "2026-10-05") for i in range(1, 21)])
    run = world.run("att", slot_at(D), manual=True)
    records = [r.type for r in world.journal_records()]
    assert records[0] == "run-started" and records.count("run-started") == 2
    assert records.count("transfer-succeeded") == 1
    assert run.transfers[0].counts == {"mark": 20}
    # the second run removed the killed run's temporary file before writing: nothing hidden
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and all(n.startswith("manual-") for n in names), names


def test_a_place_that_may_not_replace_never_does(tmp_path: Path) -> None:
    """A manual run's delivery: a name taken meanwhile fails (local) and the other run's
    files are left byte for byte."""
    root = tmp_path / "la"
    (root / "b" / "t").mkdir(parents=True)
    (root / "b" / "t" / "manual-x.jsonl").write_bytes(b"theirs\n")
    (root / "b" / "t" / "manual-x.manifest.json").write_bytes(b"{}\n")
    with DeliveryWriter(DeliveryPlace(root, ("b", "t"), "manual-x", replace=False)) as writer:
        writer.write(b"ours\n")
        with pytest.raises(DeliveryError, match=r"already there .*never replaced") as caught:
            writer.commit({"run": "t/manual-x"})
    assert caught.value.reason == "local"
    names = sorted(p.name for p in (root / "b" / "t").iterdir())
    assert names == ["manual-x.jsonl", "manual-x.manifest.json"]  # no temporary file left
    assert (root / "b" / "t" / "manual-x.jsonl").read_bytes() == b"theirs\n"
    with DeliveryWriter(DeliveryPlace(root, ("b", "t"), "manual-y", replace=False)) as writer:
        writer.write(b"ours\n")
        writer.commit({"run": "t/manual-y"})
    assert (root / "b" / "t" / "manual-y.jsonl").read_bytes() == b"ours\n"
