"""Every data type and cohort through the Wonde emulator delivers what the same generated school
delivers through its export folder.

Two worlds, one per connector, run the same tasks in the same order on one generated school
(secondary, and a SIMS Primary school for attendance-changed). Deliveries are compared as sorted
lines: the API lists leavers after the roll, so the order differs and nothing else may. The one
documented difference: the API names deleted objects by Wonde id, never by UPN, so no deletion
is delivered from a Wonde base; each is counted as ``unmapped`` instead (README, Wonde bases).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bd.sample import SchoolSpec, write_export
from tests.support.transfer_world import PRIMARY, SECONDARY, World, read_jsonl, slot_at
from tests.support.wonde_emulator import EmulatedSchool, Item, WondeEmulator

TOKEN = "0123456789abcdef0123456789abcdef01234567"
SPECS = {
    SECONDARY: SchoolSpec(laestab=SECONDARY, pupils=24, seed=15, sixth_form=True),
    PRIMARY: SchoolSpec(
        laestab=PRIMARY, phase="primary", pupils=20, seed=12, mis="sims-primary",
        sims_version="7.210",
    ),
}  # fmt: skip
D = "2026-11-27"
EARLIER = "2025-10-01"  # pupils who have left since were on roll: the leavers memory learns them

ATTENDANCE_KINDS = (
    "all-attendances-current-year",
    "unauthorised-absences-current-year",
    "all-absences-current-year",
    "all-attendances-previous-year",
)
TASKS: dict[str, str] = {
    "remember": "data: {type: snapshot}\ncohort: {group: ncy}\n",
    **{
        f"{data}-{group}": f"data: {{type: {data}}}\ncohort: {{group: {group}}}\n"
        for data in ("snapshot", "changed", "attainment")
        for group in ("ncy", "lac", "leavers")
    },
    "snapshot-ncy-7-x": "data: {type: snapshot}\ncohort: {group: ncy, ncy: [7, 12, X]}\n",
    **{
        f"att-{kind}": f"data: {{type: attendance, attendance: {kind}}}\ncohort: {{group: ncy}}\n"
        for kind in ATTENDANCE_KINDS
    },
    "att-months-lac": "data: {type: attendance, attendance: all-attendances-current-year, "
    "months: 2}\ncohort: {group: lac}\n",
    "att-leavers": "data: {type: attendance, attendance: all-attendances-current-year}\n"
    "cohort: {group: leavers}\n",
    "att-changed": "data: {type: attendance, attendance: attendance-changed}\n"
    f'cohort: {{group: ncy}}\nbases: {{ids: ["{PRIMARY}"]}}\n',
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {base: _written(root / base, spec) for base, spec in SPECS.items()}


def _written(folder: Path, spec: SchoolSpec) -> Path:
    write_export(folder, spec)
    return folder


@pytest.fixture
def emulator(exports) -> Iterator[WondeEmulator]:
    schools = [EmulatedSchool.from_export(folder) for folder in exports.values()]
    with WondeEmulator(schools, {TOKEN: None}) as running:
        yield running


def world_for(root: Path, exports: dict[str, Path], wonde_url: str | None) -> World:
    world = World(root)
    for base, _folder in exports.items():
        if wonde_url is None:
            write_export(world.school_dir(base), SPECS[base])
        else:
            world.endpoints[base] = (
                f"{{type: wonde, school_id: A{base}, token: {{credential: wonde}}, "
                f'url: "{wonde_url}"}}'
            )
    world.write_bases()
    for task_id, body in TASKS.items():
        world.task(task_id, body)
    return world


def run_all(world: World) -> dict[str, tuple[list[str], dict]]:
    """Run every task (``remember`` first, at an earlier date; attendance-changed twice, the
    second time from its watermark); each delivery as sorted lines, with its manifest."""
    out: dict[str, tuple[list[str], dict]] = {}
    order = ["remember", *[t for t in TASKS if t != "remember"], "att-changed"]
    for number, task_id in enumerate(order):
        day = EARLIER if task_id == "remember" else D
        slot = slot_at(day, f"19:{number:02d}")
        result = world.run(task_id, slot, manual=True)
        base = PRIMARY if task_id == "att-changed" else SECONDARY
        transfer = next(t for t in result.transfers if t.base == base)
        assert transfer.outcome == "succeeded", transfer
        assert transfer.delivery is not None
        lines = sorted(json.dumps(r, sort_keys=True) for r in read_jsonl(transfer.delivery))
        key = task_id if task_id not in out else f"{task_id}-again"
        out[key] = (lines, world.manifest(result, base))
    world.close()
    return out


def test_every_data_type_and_cohort_delivers_the_same_records(
    tmp_path, exports, emulator, monkeypatch
):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "wonde").write_text(TOKEN + "\n")  # as LoadCredential= leaves it
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    by_folder = run_all(world_for(tmp_path / "directory", exports, None))
    by_api = run_all(world_for(tmp_path / "wonde", exports, emulator.url))

    assert by_api.keys() == by_folder.keys()
    served_deletions = {
        base: sum(1 for line in (folder / "deletions.jsonl").read_text().splitlines() if line)
        for base, folder in exports.items()
    }
    assert all(served_deletions.values())
    for task_id, (folder_lines, folder_manifest) in by_folder.items():
        api_lines, api_manifest = by_api[task_id]
        kept = [line for line in folder_lines if '"kind": "deletion"' not in line]
        assert api_lines == kept, task_id
        assert api_manifest["counts"] == {
            kind: (0 if kind == "deletion" else n) for kind, n in folder_manifest["counts"].items()
        }, task_id
        reads_deletions = "deletion" in folder_manifest["counts"]
        base = PRIMARY if task_id.startswith("att-changed") else SECONDARY
        expected_rejections = {"unmapped": served_deletions[base]} if reads_deletions else {}
        if task_id == "att-changed-again":  # updated_after: only deletions since the watermark
            expected_rejections = api_manifest["rejected_by_reason"]
        assert api_manifest["rejected_by_reason"] == expected_rejections, task_id
        assert folder_manifest["rejected_by_reason"] == {}, task_id
        if not reads_deletions:
            assert api_manifest["watermark"] == folder_manifest["watermark"], task_id
    # Something was compared: every cohort delivered records, leavers included.
    assert [t for t, (lines, _) in by_api.items() if not lines] == []
    # The second attendance-changed run read only from its watermark on, and lost nothing.
    again, first = by_api["att-changed-again"][1], by_api["att-changed"][1]
    assert 0 < again["read"] < first["read"]
    assert by_api["att-changed-again"][0] == by_folder["att-changed-again"][0]


def test_a_change_time_from_the_future_is_rejected_and_moves_no_watermark(
    tmp_path, exports, monkeypatch
):
    """A school whose API stamps one student in 2031 (a broken clock, or a hostile server):
    that student is rejected ``future-timestamp`` (DESIGN section 5) and the watermark stays
    at the real change times, so the school's later changes are not frozen out."""
    school = EmulatedSchool.from_export(exports[SECONDARY])
    first = school.items["students"][0]
    doc = json.loads(first.body)
    doc["updated_at"] = {"date": "2031-01-01 00:00:00.000000", "timezone": "UTC"}
    school.items["students"][0] = Item(json.dumps(doc).encode(), "2031-01-01T00:00:00Z")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "wonde").write_text(TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    with WondeEmulator([school], {TOKEN: None}) as emulator:
        world = world_for(tmp_path / "wonde", {SECONDARY: exports[SECONDARY]}, emulator.url)
        result = world.run("changed-ncy", slot_at(D, "19:00"), manual=True)
        manifest = world.manifest(result, SECONDARY)
        world.close()
    transfer = next(t for t in result.transfers if t.base == SECONDARY)
    assert transfer.outcome == "succeeded", transfer
    assert manifest["rejected_by_reason"].get("future-timestamp") == 1
    assert manifest["watermark"] is not None and manifest["watermark"] < "2027"
    delivered = read_jsonl(transfer.delivery)
    assert all(r.get("upn") != doc["education_details"]["data"]["upn"] for r in delivered)
