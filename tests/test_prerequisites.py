"""One prerequisites check: ``validate``, ``preflight`` and a transfer reach the same verdict.

For random tasks x registered bases x live manifests, a task file that was valid against a good
registry meets an edited one (the "last good version kept in force" case): ``validate`` reports
what stands in the way, ``preflight --task`` says what a transfer would do, and a real transfer
(engine, real files, real journal) does it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from b2bd.config.load import load_config
from b2bd.journal.keys import PupilKeyer
from b2bd.journal.writer import Journal
from b2bd.preflight import check_base
from b2bd.transfer.engine import Engine
from tests.support.config_dir import b2bd_yaml

NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
STATIC_RULES = {"base-prerequisites", "base-lockdown", "sims-primary-only", "bases-file"}


BASE = """\
bases:
  - id: "{id}"
    name: School
    mis: {mis}
    sims_version: "{sims}"
    b2b_phase: {phase}
    services_manager: {ssm}
    lockdown: {lockdown}
    cross_border: {cross}
    tags: [t]
    endpoint: {{type: directory, path: school}}
"""

GOOD_BASE = {
    "mis": "sims-primary",
    "sims": "7.214",
    "phase": 2,
    "ssm": "true",
    "lockdown": "false",
    "cross": "true",
}

tasks = st.one_of(
    st.fixed_dictionaries(
        {
            "direction": st.just("from-school"),
            "data": st.sampled_from(
                [
                    "{type: snapshot}",
                    "{type: changed}",
                    "{type: attainment}",
                    "{type: attendance, attendance: all-attendances-current-year}",
                    "{type: attendance, attendance: attendance-changed}",
                ]
            ),
            "cohort": st.sampled_from(["{group: ncy}", "{group: lac}", "{group: leavers}"]),
        }
    ),
    st.just({"direction": "to-school", "data": "{type: changed}", "cohort": "{group: ncy}"}),
)


def mostly(good: Any, *bad: Any) -> st.SearchStrategy[Any]:
    """``good`` four times in five, else one of ``bad``: most examples then get past the
    registry to the live checks and to real transfers."""
    return st.one_of(
        st.just(good), st.just(good), st.just(good), st.just(good), st.sampled_from(bad)
    )


registries = st.fixed_dictionaries(
    {
        "mis": st.sampled_from(["sims", "sims-primary"]),
        "sims": st.sampled_from(["7.166", "7.167", "7.168", "7.214", "7.214", "7.150"]),
        "phase": mostly(2, 1),
        "ssm": mostly("true", "false"),
        "lockdown": mostly("false", "true"),
        "cross": mostly("true", "false"),  # false: a bases-file problem
    }
)
manifests = st.fixed_dictionaries(
    {
        "mis": st.sampled_from(["sims", "sims-primary"]),
        "sims_version": st.sampled_from([None, "7.150", "7.167", "7.214", "7.300"]),
        "services_manager": mostly("running", "stopped"),
        "laestab": mostly("mine", "other"),
    }
)


def write(root: Path, one: str, registry: dict[str, Any], task: dict[str, str]) -> None:
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    (root / "b2bd.yaml").write_text(
        b2bd_yaml(one_version=one, defaults="{retries: 1, retry_backoff: 0s}")
    )
    (root / "bases.yaml").write_text(BASE.format(id="9994001", **registry))
    (root / "tasks" / "t.yaml").write_text(
        f"id: t\ndirection: {task['direction']}\nbases: {{ids: ['9994001']}}\n"
        f"data: {task['data']}\ncohort: {task['cohort']}\n"
        'schedule: {weekly: {days: [mon], times: ["06:30"]}}\n'
    )


def write_exports(root: Path, manifest: dict[str, Any]) -> None:
    """The school's export, and the LA's own outbound records for it (to-school reads those,
    never the school's export: the LA's side is preflight's LA section, not the base's)."""
    doc = {**manifest, "exported_at": "2026-11-29T18:00:00Z"}
    doc["laestab"] = "9994001" if manifest["laestab"] == "mine" else "9994999"
    la = {"mis": "one", "exported_at": "2026-11-29T18:00:00Z", "laestab": "9994001"}
    for folder, content in ((root / "school", doc), (root / "la" / "outbound" / "9994001", la)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps(content))
        for name in ("pupils", "attendance", "results", "deletions"):
            (folder / f"{name}.jsonl").write_text("")  # complete, if empty


def rules_in(message: str) -> set[str]:
    return set(re.findall(r"\[([a-z-]+)\]", message))


@settings(max_examples=80, deadline=None)
@given(
    task=tasks,
    registry=registries,
    manifest=manifests,
    one=st.sampled_from(["3.58", "3.83"]),
)
def test_validate_preflight_and_a_transfer_agree(
    task: dict[str, str], registry: dict[str, Any], manifest: dict[str, Any], one: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, "3.83", GOOD_BASE, task)
        good = load_config(root, now=NOW)
        assert good.valid, good.problems
        kept = good.tasks["t"]  # the version a daemon keeps in force after a rejected edit

        write(root, one, registry, task)
        write_exports(root, manifest)
        edited = load_config(root, now=NOW)  # what `b2bd validate` sees
        said = {p.rule for p in edited.problems if p.file == "tasks/t.yaml"}
        said &= STATIC_RULES
        base = edited.bases["9994001"]
        assert edited.settings is not None

        report = check_base(base, edited.settings, task=kept)  # `b2bd preflight --task t`

        config = dataclasses.replace(edited, tasks={"t": kept})
        with (
            Journal.open(root / "state") as journal,
            Engine(config, journal, PupilKeyer(root / "state")) as engine,
        ):
            (transfer,) = engine.run(kept, NOW, bases=["9994001"]).transfers

    # Independent of the implementation: what the registry alone says.
    expected_static = set()
    if registry["lockdown"] == "true":
        expected_static.add("base-lockdown")
    if registry["cross"] == "false":
        expected_static.add("bases-file")
    attainment = "attainment" in task["data"]
    if (
        registry["sims"] < "7.166"
        or (attainment and registry["sims"] < "7.168")
        or registry["phase"] != 2
        or registry["ssm"] == "false"
        or (attainment and one == "3.58")
    ):
        expected_static.add("base-prerequisites")
    if "attendance-changed" in task["data"] and registry["mis"] != "sims-primary":
        expected_static.add("sims-primary-only")
    assert said == expected_static

    event(f"{transfer.outcome} {transfer.reason}")
    outcome = {"succeeded": "run"}.get(transfer.outcome, transfer.outcome)
    assert (report.verdict.outcome, report.verdict.reason) == (outcome, transfer.reason)
    if expected_static:
        assert rules_in(transfer.message) == expected_static
        if "base-lockdown" in expected_static:
            assert (transfer.outcome, transfer.reason) == ("skipped", "lockdown")
        else:
            assert (transfer.outcome, transfer.reason) == ("failed", "prerequisite")
            assert transfer.attempts == 1
        return

    # The registry is fine: the live manifest decides (from-school only).
    if task["direction"] == "to-school":
        assert transfer.outcome == "succeeded"
        return
    expected: tuple[str, str | None]
    if manifest["laestab"] == "other":
        expected = ("failed", "bad-data")  # the connector refuses another school's export
    elif manifest["services_manager"] == "stopped":
        expected = ("failed", "prerequisite")
    else:
        live = set()
        if manifest["mis"] != registry["mis"]:
            live.add("live-mis")
        version = manifest["sims_version"]
        if (
            version is not None
            and version != registry["sims"]
            and (version < "7.166" or (attainment and version < "7.168"))
        ):
            live.add("live-sims-version")
        expected = ("failed", "prerequisite") if live else ("succeeded", None)
        if live:
            assert rules_in(transfer.message) == live
    assert (transfer.outcome, transfer.reason) == expected
