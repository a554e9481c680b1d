"""The daemon as one shard of two (DESIGN section 10): a real subprocess on a copy of the shipped
example, its shard index from B2BD_SHARD_INDEX as the Kubernetes manifests pass it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.daemon import start_daemon, stop_daemon
from tests.support.deployment import Deployment

SHARD_1 = {"8813003", "8814001"}  # hashmod of the example's bases over 2 shards


def sharded_example(tmp_path) -> Deployment:
    d = Deployment.example(tmp_path)
    with (d.config / "b2bd.yaml").open("a") as f:
        f.write("shard: {index: {env: B2BD_SHARD_INDEX}, of: 2}\n")
    return d


def test_run_now_touches_only_the_bases_of_its_shard(tmp_path) -> None:
    d = sharded_example(tmp_path)
    view = json.loads(
        subprocess.run(
            [sys.executable, "-m", "b2bd", "--config", str(d.config), "validate", "--shard",
             "1/2", "--format", "json"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    )["shard"]  # fmt: skip
    assert set(view["bases"]) == SHARD_1
    here = {t for t, bases in view["tasks"].items() if bases}
    proc = start_daemon(d, None, "--now", env={"B2BD_SHARD_INDEX": "1"})
    try:
        d.wait_for(lambda: len(d.records("run-finished")) == len(here), 60, "--now runs")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert {r["task"] for r in d.records("run-started")} == here
    reached = {r["base"] for r in d.records() if "base" in r}
    assert reached and reached <= SHARD_1
    assert not d.records("slot-missed")
    events = [json.loads(line) for line in out.splitlines()]
    nxt = {e["task"]: e["slot"] for e in events if e["event"] == "next-slot"}
    # A task with no base here is never due here: another instance runs it.
    assert {t for t, slot in nxt.items() if slot is not None} <= here


def test_a_daemon_without_its_shard_index_does_not_start(tmp_path) -> None:
    """Taking every base would deliver twice; taking none would deliver nothing, silently."""
    d = sharded_example(tmp_path)
    proc = start_daemon(d, None)  # B2BD_SHARD_INDEX not set
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 78, out
    problem = json.loads(next(line for line in out.splitlines() if "config-invalid" in line))
    assert problem["rule"] == "shard-index" and problem["file"] == "b2bd.yaml"
    assert "B2BD_SHARD_INDEX is not set" in problem["message"]
    assert "Traceback" not in out
