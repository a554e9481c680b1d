"""`validate --shard`, `plan --shard` and `trigger` on a sharded copy of the shipped example, as
an operator runs them: real subprocesses, real transfers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARD_FROM_ENV = "shard: {index: {env: B2BD_SHARD_INDEX}, of: 2}\n"
# hashmod of the example's bases over 2 shards (tests/test_shard.py pins the hash).
SHARD_0 = ["8812002", "8814004", "8815005"]
SHARD_1 = ["8813003", "8814001"]


def b2bd(config: Path, *args: str, index: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "B2BD_SHARD_INDEX"}
    if index is not None:
        env["B2BD_SHARD_INDEX"] = index
    return subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


@pytest.fixture
def example(tmp_path: Path) -> Path:
    for name in ("config", "examples"):
        shutil.copytree(REPO / name, tmp_path / name)
    config = tmp_path / "config"
    with (config / "b2bd.yaml").open("a") as f:
        f.write(SHARD_FROM_ENV)
    return config


def test_validate_checks_the_config_for_every_instance(example) -> None:
    # The variable belongs to the deployment, not to the repository CI validates.
    done = b2bd(example, "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shard" not in done.stdout
    summary = json.loads(b2bd(example, "validate", "--format", "json").stdout)
    assert "shard" not in summary


def test_validate_shows_one_shards_view(example) -> None:
    done = b2bd(example, "validate", "--shard", "1/2")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.splitlines()[-1] == "shard 1/2: 2 of 5 bases; 8 of 9 tasks reach a base on it"
    )
    views = [
        json.loads(b2bd(example, "validate", "--shard", f"{i}/2", "--format", "json").stdout)
        for i in range(2)
    ]
    assert [v["shard"]["bases"] for v in views] == [SHARD_0, SHARD_1]
    everything = json.loads(b2bd(example, "validate", "--format", "json", "--shard", "0/1").stdout)
    for task, bases in everything["shard"]["tasks"].items():
        split = [v["shard"]["tasks"].get(task, []) for v in views]
        assert sorted(split[0] + split[1]) == bases, task  # each target on exactly one shard
        assert set(split[0]) <= set(SHARD_0) and set(split[1]) <= set(SHARD_1)


def test_a_bad_shard_option_is_a_usage_error(example) -> None:
    done = b2bd(example, "validate", "--shard", "2/2")
    assert done.returncode == 2
    assert "shard index 2 is out of range for 2 shards (0 to 1)" in done.stderr
    assert "Traceback" not in done.stderr


def test_plan_shows_the_slots_of_the_tasks_with_a_base_on_the_shard(example) -> None:
    start = ["--from", "2026-12-07T00:00", "--until", "2026-12-13T23:59"]
    text = b2bd(example, "plan", "--shard", "0/2", *start).stdout
    assert " on shard 0/2 from Mon 2026-12-07 00:00 GMT" in text.splitlines()[0]
    assert text.splitlines()[-1].endswith("4 with no base on this shard.")
    tasks_0 = {s["task"] for s in json.loads(b2bd(example, "plan", "--shard", "0/2", "--format",
                                                  "json", *start).stdout)}  # fmt: skip
    assert "weekly-unauthorised-absence" not in tasks_0  # its bases are all on shard 1
    # b2bd.yaml's own shard, its index from the environment, gives the same view.
    from_env = b2bd(example, "plan", *start, index="0")
    assert from_env.returncode == 0, from_env.stderr
    assert from_env.stdout == text


def test_without_the_variable_plan_and_trigger_name_it(example) -> None:
    """`validate` is content without it, so the commands that need it say what is missing."""
    row = len((example / "b2bd.yaml").read_text().splitlines())  # the shard: line, appended
    line = (
        f"b2bd: {example}/b2bd.yaml:{row}:22: the environment variable B2BD_SHARD_INDEX is not set "
        "(it gives this instance's shard index) [shard-index]"
    )
    done = b2bd(example, "plan", "--count", "1")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"{line}; give --shard I/N to plan one shard\n"
    done = b2bd(example, "trigger", "daily-changed-data")
    assert done.returncode == 2
    assert done.stderr == f"{line}: b2bd.yaml is not usable, so no run can start\n"
    done = b2bd(example, "status")
    assert done.returncode == 2
    assert done.stderr == f"{line}: b2bd.yaml is not usable, so the state dir is unknown\n"


def test_trigger_runs_only_the_bases_this_shard_owns(example) -> None:
    done = b2bd(example, "trigger", "daily-changed-data", "--format", "json", index="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(t["base"] for t in json.loads(done.stdout)["transfers"]) == SHARD_1
    delivered = example.parent / "var" / "la"
    assert sorted(p.name for p in delivered.iterdir() if p.name.isdigit()) == SHARD_1


def test_trigger_refuses_a_base_of_another_shard(example) -> None:
    done = b2bd(example, "trigger", "daily-changed-data", "--base", "8814001", index="0")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "b2bd: base(s) 8814001 (shard 1) belong to another instance: this one is shard 0/2 "
        "(shard: in b2bd.yaml); trigger there"
    )
    done = b2bd(example, "trigger", "weekly-unauthorised-absence", index="0")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "b2bd: task weekly-unauthorised-absence has no bases to run on here (this instance is "
        "shard 0/2) (see `b2bd validate`)"
    )
    assert not (example.parent / "var" / "la").exists() or not any(
        (example.parent / "var" / "la").iterdir()
    )
