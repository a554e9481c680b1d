"""Generated hostile export folders (issue 10): random mixes of symlinks (inside and outside the
folder), FIFOs, folders, missing files, junk bytes, over-long lines, BOMs, CRLF, blank lines,
future timestamps, duplicate and control-character pupils, and manifests that lie about their
files. Whatever the mix, a real transfer (a) never lets an exception escape or ends ``internal``,
(b) writes nothing outside its delivery folder and the state dir, and (c) accounts for every line
it read: delivered, rejected or dropped, adding up to the lines in the files it read."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.transfer_world import OTHER, SECONDARY, World, mark, pupil, result, slot_at, upn

D = "2026-11-02"
TASKS = {
    "snapshot": ("data: {type: snapshot}\ncohort: {group: ncy}\n", ("pupils.jsonl",)),
    "changed": (
        "data: {type: changed}\ncohort: {group: ncy}\n",
        ("pupils.jsonl", "deletions.jsonl"),
    ),
    "attendance": (
        "data: {type: attendance, attendance: all-attendances-current-year}\n"
        "cohort: {group: ncy}\n",
        ("pupils.jsonl", "attendance.jsonl"),
    ),
    "attainment": (
        "data: {type: attainment}\ncohort: {group: ncy}\n",
        ("pupils.jsonl", "results.jsonl"),
    ),
}
VARIANTS = [
    "good", "missing", "symlink-inside", "symlink-outside", "fifo", "folder",
    "junk", "too-long", "bom-crlf-blank", "future", "duplicate", "control",
]  # fmt: skip
MANIFESTS = ["plain", "files-true", "files-false", "junk", "fifo", "symlink"]


def rows(name: str) -> list[Any]:
    if name == "pupils.jsonl":
        return [pupil(i, "7") for i in range(1, 6)] + [pupil(6, "12")]
    if name == "attendance.jsonl":
        return [mark(i, f"2026-10-{d:02d}") for i in range(1, 7) for d in (5, 6)]
    if name == "results.jsonl":
        return [result(i) for i in range(1, 7)]
    return [{"record": "pupil", "key": upn(9), "deleted_at": "2026-10-01T10:00:00Z"}]


def content(name: str, variant: str, junk: bytes) -> bytes:
    lines = [json.dumps(row).encode() for row in rows(name)]
    if variant == "junk":
        lines[1:1] = junk.split(b"\n")
    elif variant == "too-long":
        lines.insert(2, b'{"upn": "' + b"x" * 70_000 + b'"}')
    elif variant == "future":
        row = rows(name)[0]
        stamp = "deleted_at" if "deleted_at" in row else "updated_at"
        lines.append(json.dumps({**row, stamp: "2099-01-01T00:00:00Z"}).encode())
    elif variant == "duplicate":
        lines.append(lines[0].replace(b"Testname", b"Othername").replace(b"-10-05", b"-10-07"))
    elif variant == "control":
        lines.append(json.dumps(pupil(7, "7", surname="Nul\u0000l")).encode())
    if variant == "bom-crlf-blank":
        return b"\xef\xbb\xbf" + b"\r\n\r\n".join(lines) + b"\r\n"
    return b"\n".join(lines) + b"\n"


def lines_in(data: bytes) -> int:
    """Records a reader must account for: non-blank lines (CR and a leading BOM aside)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return sum(1 for line in data.split(b"\n") if line.rstrip(b"\r"))


def place(folder: Path, name: str, variant: str, data: bytes, victim: Path) -> None:
    path = folder / name
    if variant == "missing":
        return
    if variant == "symlink-inside":
        (folder / f"real-{name}").write_bytes(data)
        path.symlink_to(f"real-{name}")
    elif variant == "symlink-outside":
        path.symlink_to(victim)
    elif variant == "fifo":
        os.mkfifo(path)
    elif variant == "folder":
        path.mkdir()
    else:
        path.write_bytes(data)


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, Any]:
    """Every entry under ``root`` except under ``skip``: what it is and its bytes."""
    seen: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        if path.is_symlink():
            seen[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            seen[str(path)] = ("file", path.read_bytes(), oct(path.stat().st_mode))
        else:
            seen[str(path)] = ("other", oct(path.stat().st_mode))
    return seen


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    task=st.sampled_from(sorted(TASKS)),
    variants=st.fixed_dictionaries(
        {
            name: st.one_of(st.just("good"), st.sampled_from(VARIANTS))  # half good
            for name in ("pupils.jsonl", "attendance.jsonl", "results.jsonl", "deletions.jsonl")
        }
    ),
    manifest=st.sampled_from(MANIFESTS),
    junk=st.binary(max_size=300),
)
def test_hostile_export_folders(
    tmp_path_factory: pytest.TempPathFactory,
    task: str,
    variants: dict[str, str],
    manifest: str,
    junk: bytes,
) -> None:
    root = tmp_path_factory.mktemp("hostile")
    world = World(root)
    try:
        world.export(OTHER, pupils=[pupil(1, "7", estab="3003")])
        victim = root / "victim.jsonl"
        victim.write_bytes(json.dumps(pupil(1, "7", estab="3003")).encode() + b"\n")
        folder = world.school_dir(SECONDARY)
        folder.mkdir(parents=True)
        written: dict[str, bytes] = {}
        for name, variant in variants.items():
            data = content(name, variant, junk)
            place(folder, name, variant, data, victim)
            if variant in ("good", "junk", "too-long", "bom-crlf-blank", "future", "duplicate",
                           "control"):  # fmt: skip
                written[name] = data
        doc: dict[str, Any] = {
            "mis": "sims", "exported_at": "2026-11-27T18:00:00Z", "laestab": SECONDARY,
            "sims_version": "7.214", "services_manager": "running",
        }  # fmt: skip
        if manifest.startswith("files"):
            lie = manifest == "files-false"
            doc["files"] = {
                name: {"records": lines_in(data) + lie, "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in written.items()
            }
        if manifest == "fifo":
            os.mkfifo(folder / "manifest.json")
        elif manifest == "symlink":
            (folder / "manifest.json").symlink_to(world.school_dir(OTHER) / "manifest.json")
        else:
            text = json.dumps(doc).encode() if manifest != "junk" else junk
            (folder / "manifest.json").write_bytes(text)
        world.task("t", TASKS[task][0])
        delivery = world.la / SECONDARY / "t"
        before = snapshot(root, (world.la, world.state))

        run = world.run("t", slot_at(D))  # (a) nothing escapes

        (t,) = run.transfers
        assert t.outcome in ("succeeded", "failed")
        assert t.reason != "internal", t.message
        after = snapshot(root, (world.la, world.state))
        assert after == before  # (b) nothing written, changed or removed anywhere else...
        made = {p for p in world.la.rglob("*")} if world.la.exists() else set()
        assert made <= {world.la / SECONDARY, delivery, *delivery.glob("*")}  # ...but there
        if t.outcome == "succeeded":  # (c) every line read is accounted for
            read = [name for name in TASKS[task][1] if name in written]
            assert sorted(read) == sorted(TASKS[task][1]) or read == ["pupils.jsonl"]
            expected = sum(lines_in(written[name]) for name in read)
            assert t.read == expected
            assert t.read == sum(t.counts.values()) + t.rejected + sum(t.dropped.values())
            for reason, bad in (("too-long", "too-long"), ("future-timestamp", "future")):
                if any(variants[name] == bad for name in read):
                    assert t.rejected_by_reason.get(reason, 0) >= 1
        else:
            assert t.delivery is None
            assert not [p for p in delivery.glob("*") if not p.name.startswith(".")]
    finally:
        world.close()
