"""The image's promise, without a container engine: b2bd runs on a read-only root filesystem,
writing only to the volumes it is given (DESIGN section 10; the StatefulSet sets
readOnlyRootFilesystem). A real daemon runs the shipped example with ``--now`` in a private
mount namespace where every filesystem is remounted read-only, except the state and LA store
volume, the runtime dir and the schools' folders — as in the pod — and with the container's
environment (PYTHONDONTWRITEBYTECODE, RUNTIME_DIRECTORY, the shard index from the environment,
/healthz on the metrics port)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest

from b2bd.journal.reader import read_journal

REPO = Path(__file__).resolve().parents[2]

# Runs as root in its own mount namespace: every mount but /proc, /sys and /dev (as in a pod:
# /dev/shm stays writable) becomes read-only; then each of $B2BD_TEST_RW is bound onto itself
# read-write. It checks the root really is read-only before starting the daemon.
READ_ONLY_ROOT = r"""
set -e
awk '{print $5}' /proc/self/mountinfo | sort -ru | while read -r m; do
  case "$m" in /proc*|/sys*|/dev*) continue;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
IFS=:
for d in $B2BD_TEST_RW; do mount --bind "$d" "$d"; mount -o remount,bind,rw "$d"; done
unset IFS
if touch "$B2BD_CONFIG/.probe" 2>/dev/null; then echo "the root is not read-only" >&2; exit 99; fi
exec "$@"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def entries(state: Path, kind: str) -> list[dict[str, object]]:
    if not (state / "journal").exists():
        return []
    found = [json.loads(msgspec.json.encode(e)) for e in read_journal(state)]
    return [e for e in found if e["type"] == kind]


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return int(answer.status)
    except OSError:
        return 0


def test_the_daemon_writes_only_to_its_volumes(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is not installed")
    for name in ("config", "examples"):
        shutil.copytree(REPO / name, tmp_path / name)
    config, var, run = tmp_path / "config", tmp_path / "var", tmp_path / "run"
    var.mkdir()
    run.mkdir()
    port = free_port()
    with (config / "b2bd.yaml").open("a") as f:
        f.write(f'metrics: {{listen: "127.0.0.1:{port}"}}\n')
        f.write("shard: {index: {env: B2BD_SHARD_INDEX}, of: 1}\n")
    tasks = len(list((config / "tasks").glob("*.yaml")))
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "STATE_DIRECTORY")},
        "PYTHONDONTWRITEBYTECODE": "1",
        "RUNTIME_DIRECTORY": str(run),
        "B2BD_SHARD_INDEX": "0",
        "B2BD_CONFIG": str(config),
        "B2BD_TEST_RW": ":".join(map(str, (var, run, tmp_path / "examples" / "schools"))),
    }
    namespace = [unshare, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace.insert(1, "--map-root-user")
    proc = subprocess.Popen(
        [*namespace, "sh", "-c", READ_ONLY_ROOT, "sh", sys.executable, "-m", "b2bd", "run",
         "--now"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    state = var / "state"
    try:
        deadline = time.monotonic() + 120
        while len(entries(state, "run-finished")) < tasks and proc.poll() is None:
            assert time.monotonic() < deadline, "the --now runs did not finish"
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[0]
        assert healthz(port) == 200
        assert (run / "b2bd.sock").is_socket()  # the control socket, in the runtime dir
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Read-only file system" not in out
    outcomes = {e["task"]: e["outcome"] for e in entries(state, "run-finished")}
    assert len(outcomes) == tasks
    assert set(outcomes.values()) == {"succeeded"}, outcomes
    assert list((var / "la").iterdir())  # the deliveries
    assert not (config / ".probe").exists()
    assert not list(config.rglob("__pycache__"))
