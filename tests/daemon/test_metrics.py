"""``/metrics`` and ``/healthz`` of a real daemon subprocess, scraped over real HTTP on
127.0.0.1 (README "Metrics and health")."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from b2bd.journal.reader import read_journal
from tests.support.config_dir import b2bd_yaml
from tests.support.daemon import NotifySocket, start_daemon, stop_daemon
from tests.support.deployment import BASE, Deployment
from tests.support.oserrors import fill, tmpfs

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
DEFAULTS = "{retries: 0, retry_backoff: 1s, timeout: 5m}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_metrics(d: Deployment, port: int) -> None:
    extra = f'metrics: {{listen: "127.0.0.1:{port}"}}\n'
    settings = b2bd_yaml(d.state, d.la, concurrency=4, defaults=DEFAULTS, extra=extra)
    d.config.joinpath("b2bd.yaml").write_text(settings)


def get(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of one GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        response = conn.getresponse()
        body = response.read().decode()
        return response.status, response.getheader("Content-Type") or "", body
    finally:
        conn.close()


def scrape(port: int) -> tuple[Samples, set[str], str]:
    """Every sample by (name, labels), the family names, and the text."""
    status, content_type, text = get(port, "/metrics")
    assert status == 200, text
    assert content_type.startswith("text/plain"), content_type
    samples: Samples = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, families, text


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_until(check, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def good_and_failing(d: Deployment) -> None:
    """Task ``good`` reads a real export of 8814001; ``bad`` a school whose share is not there."""
    d.add_school("8814001")
    d.bases.append(BASE.format(id="8814002", path=d.root / "unmounted"))
    d.config.joinpath("bases.yaml").write_text("bases:\n" + "".join(d.bases))
    d.add_task("good", "8814001")
    d.add_task("bad", "8814002")


def journal_bytes(state: Path) -> int:
    return sum(
        p.stat().st_size
        for p in (state / "journal").iterdir()
        if p.name.endswith((".log", ".sum", ".jsonl"))
    )


def test_metrics_after_a_success_a_failed_base_and_a_rejected_reload_then_a_restart(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    d = deployment
    good_and_failing(d)
    port = free_port()
    with_metrics(d, port)
    proc = start_daemon(d, notify_socket, "--now")
    try:
        notify_socket.wait_for("READY=1")
        d.wait_for(lambda: len(d.records("run-finished")) == 2, 30, "both runs")
        (success,) = d.records("transfer-succeeded")
        (failure,) = d.records("transfer-failed")
        assert failure["base"] == "8814002"
        succeeded_at = _unix(str(success["ts"]))
        samples, _, text = scrape(port)
        transfers = {
            (dict(k[1])["task"], dict(k[1])["base"], dict(k[1])["outcome"]): v
            for k, v in samples.items()
            if k[0] == "b2bd_transfers_total"
        }
        assert transfers == {("good", "8814001", "succeeded"): 1, ("bad", "8814002", "failed"): 1}
        last = {
            tuple(sorted(dict(k[1]).items())): v
            for k, v in samples.items()
            if k[0] == "b2bd_task_last_success_timestamp_seconds"
        }
        assert last == {(("base", "8814001"), ("task", "good")): succeeded_at}
        counts = success["counts"]
        assert isinstance(counts, dict) and counts
        for kind, n in counts.items():
            assert value(samples, "b2bd_records_total", task="good", kind=kind) == n
        assert value(samples, "b2bd_transfer_duration_seconds_count", task="good") == 1
        assert value(samples, "b2bd_transfer_duration_seconds_count", task="bad") == 1
        assert value(samples, "b2bd_transfers_running") == 0
        assert value(samples, "b2bd_config_last_reload_successful") == 1
        assert value(samples, "b2bd_config_reloads_total") == 0
        assert value(samples, "b2bd_config_reload_failures_total") == 0
        assert value(samples, "b2bd_config_problems", severity="error") == 0
        good_at = value(samples, "b2bd_config_last_reload_success_timestamp_seconds")
        assert good_at is not None and good_at > 0
        next_slot = value(samples, "b2bd_task_next_slot_timestamp_seconds", task="good")
        assert next_slot is not None and next_slot > succeeded_at
        assert value(samples, "b2bd_slots_missed_total", task="good") is None
        # No process collector, no client-library defaults: only b2bd's own series.
        names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
        assert all(n.startswith("b2bd_") for n in names), names

        # A broken edit: rejected, the last good version stays in force.
        path = d.config / "tasks" / "good.yaml"
        path.write_text(path.read_text().replace("snapshot", "snapshots"))

        def failed_reload() -> Samples | None:
            now, _, _ = scrape(port)
            return now if value(now, "b2bd_config_reload_failures_total") else None

        samples = wait_until(failed_reload, "the failed reload in /metrics")
        assert value(samples, "b2bd_config_last_reload_successful") == 0
        reloads = value(samples, "b2bd_config_reloads_total")
        assert reloads == value(samples, "b2bd_config_reload_failures_total")
        assert value(samples, "b2bd_config_problems", severity="error") == 1
        assert value(samples, "b2bd_config_last_reload_success_timestamp_seconds") == good_at
        # The kept task still counts: its last success is still shown.
        assert (
            value(samples, "b2bd_task_last_success_timestamp_seconds", task="good", base="8814001")
            == succeeded_at
        )
        assert get(port, "/healthz")[0] == 200
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out

    # Compacted and restarted: counters start again, the last success is still known.
    compact = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(d.config), "journal", "compact"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert compact.returncode == 0, compact.stdout + compact.stderr
    assert not any(r.type == "transfer-succeeded" for r in read_journal(d.state))
    path.write_text(d.task_text("good", "8814001"))
    notify_socket.drain()
    proc = start_daemon(d, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
        samples, _, _ = scrape(port)
        assert (
            value(samples, "b2bd_task_last_success_timestamp_seconds", task="good", base="8814001")
            == succeeded_at
        )
        assert (
            value(samples, "b2bd_task_last_success_timestamp_seconds", task="bad", base="8814002")
            is None
        )
        assert not [k for k in samples if k[0] == "b2bd_transfers_total"]
        assert value(samples, "b2bd_config_last_reload_successful") == 1
        assert value(samples, "b2bd_journal_bytes") == journal_bytes(d.state)
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out


def test_a_task_removed_from_the_config_leaves_metrics_at_the_reload(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    d = deployment
    good_and_failing(d)
    port = free_port()
    with_metrics(d, port)
    proc = start_daemon(d, notify_socket, "--now")
    try:
        notify_socket.wait_for("READY=1")
        d.wait_for(lambda: len(d.records("run-finished")) == 2, 30, "both runs")
        samples, _, _ = scrape(port)
        assert value(samples, "b2bd_transfers_total", task="bad", base="8814002",
                     outcome="failed") == 1  # fmt: skip
        (d.config / "tasks" / "bad.yaml").unlink()

        def reloaded() -> Samples | None:
            now, _, _ = scrape(port)
            return now if value(now, "b2bd_config_reloads_total") else None

        samples = wait_until(reloaded, "the reload in /metrics")
        tasks = {dict(labels).get("task") for _, labels in samples}
        assert "bad" not in tasks, sorted(k for k in samples if dict(k[1]).get("task") == "bad")
        assert value(samples, "b2bd_transfers_total", task="good", base="8814001",
                     outcome="succeeded") == 1  # fmt: skip
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out


def test_metrics_listen_changed_on_reload_is_a_warning_not_silence(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """The server is bound at start: a reload that moves metrics.listen cannot move it. The
    operator who edits the port is told once (a warning naming both addresses), and scrapes
    keep working where they were."""
    d = deployment
    d.add_school("8814001")
    d.add_task("t", "8814001")
    port, moved = free_port(), free_port()
    with_metrics(d, port)
    proc = start_daemon(d, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
        with_metrics(d, moved)

        def reloaded() -> Samples | None:
            now, _, _ = scrape(port)
            return now if value(now, "b2bd_config_reloads_total") else None

        wait_until(reloaded, "the reload in /metrics")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    (warning,) = [e for e in events if e["event"] == "metrics-listen-changed"]
    assert warning["level"] == "warning"
    assert warning["serving"] == f"127.0.0.1:{port}"
    assert warning["configured"] == f"127.0.0.1:{moved}"
    assert "restart" in warning["message"]


def test_healthy_and_complete_as_soon_as_ready(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """READY=1 means serving: /healthz is 200 and /metrics shows every task's next slot at
    once, not after the loop's first turn. Here that turn is long: the daemon was down for 60
    days, so it first journals 40 tasks x 59 missed slots. A probe or scrape landing there saw
    503 "the loop has not started" and no next slots."""
    d = deployment
    d.add_school("8814001")
    for n in range(40):
        d.add_task(f"t{n:02d}", "8814001", policy="policy: {catch_up: none}\n")
    port = free_port()
    with_metrics(d, port)
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=60)).isoformat()
    proc = start_daemon(d, notify_socket, env={"B2BD_CLOCK_START": long_ago})
    try:
        notify_socket.wait_for("READY=1")
        d.wait_for(lambda: len(d.records("config-applied")) == 1, 30, "the first start")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    notify_socket.drain()
    proc = start_daemon(d, notify_socket)
    try:
        notify_socket.wait_for("READY=1")
        status, _, body = get(port, "/healthz")
        samples, _, _ = scrape(port)
        missed_during_scrape = len(d.records("slot-missed"))
        assert (status, body) == (200, "ok\n")
        slots = [k for k in samples if k[0] == "b2bd_task_next_slot_timestamp_seconds"]
        assert len(slots) == 40
    finally:
        code, out = stop_daemon(proc, timeout=120)
    assert code == 0, out
    assert missed_during_scrape < 40 * 59  # the scrapes did land in the long first turn


def _unix(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_port_in_use_at_start_is_one_error_line_and_exit_1(deployment: Deployment) -> None:
    d = deployment
    d.add_school("8814001")
    d.add_task("t", "8814001")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with_metrics(d, port)
        proc = start_daemon(d, None)
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            code, _ = stop_daemon(proc)
    assert code == 1, out
    errors = [json.loads(line) for line in out.splitlines() if '"error"' in line]
    assert [e["event"] for e in errors] == ["metrics-unusable"], out
    assert errors[0]["error"].startswith(f"cannot serve metrics on 127.0.0.1:{port}: ")
    assert "metrics.listen" in errors[0]["error"]
    assert "Traceback" not in out
    assert not d.records("daemon-started")


def test_healthz_turns_503_while_the_journal_dir_is_full_or_read_only(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """The state dir is a small tmpfs (as the full-disk tests use). Filled up: 503 naming the
    full file system. Then a read-only file system over the journal dir (a live tmpfs cannot be
    remounted read-only while the journal holds its files open for writing, so a read-only
    tmpfs is mounted on top, as the path resolves for the next file the journal creates): 503
    naming it. Each time /metrics keeps answering, and /healthz comes back to 200."""
    d = deployment
    d.add_school("8814001")
    d.add_task("t", "8814001")
    port = free_port()
    with_metrics(d, port)
    journal = d.state / "journal"

    def unhealthy() -> str:
        _, _, body = wait_until(
            lambda: (r := get(port, "/healthz"))[0] == 503 and r, "503 from /healthz"
        )
        assert scrape(port)[0]  # /metrics still answers
        # ... and /livez, the liveness probe: a restart would not free the disk.
        assert get(port, "/livez")[0:3:2] == (200, "ok\n")
        return body

    def healthy() -> None:
        wait_until(lambda: get(port, "/healthz")[0] == 200, "200 from /healthz again")

    with tmpfs(d.state, "1m"):
        proc = start_daemon(d, notify_socket)
        try:
            notify_socket.wait_for("READY=1")
            assert get(port, "/healthz")[0:3:2] == (200, "ok\n")
            filler = fill(d.state)
            try:
                body = unhealthy()
                assert "the journal is not writable" in body
                assert "file system is full" in body
                assert str(journal) in body
            finally:
                filler.unlink()
            healthy()
            _mount(journal, "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs")
            try:
                body = unhealthy()
                assert "the journal is not writable" in body
                assert "read-only" in body
            finally:
                subprocess.run(["umount", str(journal)], check=True)
            healthy()
        finally:
            code, out = stop_daemon(proc)
    assert code == 0, out
    assert "Traceback" not in out


def test_healthz_is_503_on_a_full_disk_that_still_takes_tiny_files(
    deployment: Deployment, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """ext4 with inline_data (and btrfs, by default) keeps a file of a few bytes inside its
    inode or metadata: when the data blocks are gone a 3-byte test write still succeeds while
    every journal append fails. The state dir here is such an ext4, filled to the last block."""
    d = deployment
    d.add_school("8814001")
    d.add_task("t", "8814001")
    port = free_port()
    with_metrics(d, port)
    image = tmp_path / "ext4.img"
    with image.open("wb") as f:
        f.truncate(16 * 1024 * 1024)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "inline_data", "-m", "0", str(image)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    d.state.mkdir(parents=True, exist_ok=True)
    _mount(d.state, "-o", "loop", str(image))
    try:
        proc = start_daemon(d, notify_socket)
        try:
            notify_socket.wait_for("READY=1")
            assert get(port, "/healthz")[0] == 200
            filler = fill(d.state)
            _, _, body = wait_until(
                lambda: (r := get(port, "/healthz"))[0] == 503 and r, "503 from /healthz"
            )
            assert "No space left on device" in body, body
            filler.unlink()
            wait_until(lambda: get(port, "/healthz")[0] == 200, "200 from /healthz again")
        finally:
            code, out = stop_daemon(proc)
        assert code == 0, out
    finally:
        subprocess.run(["umount", "-l", str(d.state)], check=False)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_metrics_server_waits_instead_of_spinning(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """accept() failing with EMFILE leaves the connection in the backlog, so the listening
    socket stays readable: a server that retries at once burns a core the daemon's loop and
    transfers need (as the control socket did)."""
    d = deployment
    d.add_school("8814001")
    d.add_task("t", "8814001")
    port = free_port()
    with_metrics(d, port)
    proc = start_daemon(d, notify_socket)
    waiting: list[socket.socket] = []
    try:
        notify_socket.wait_for("READY=1")
        in_use = len(os.listdir(f"/proc/{proc.pid}/fd"))
        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (in_use + 2, hard))
        for n in range(8):  # from several addresses: the per-peer limit is not what bites
            sock = socket.socket()
            sock.bind((f"127.0.0.{2 + n}", 0))
            sock.connect(("127.0.0.1", port))
            waiting.append(sock)
        time.sleep(0.5)
        before = _cpu_seconds(proc.pid)
        time.sleep(3)
        used = _cpu_seconds(proc.pid) - before
        for sock in waiting:
            sock.close()
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
        # a spinning accept loop burns a whole core here; waiting costs next to nothing
        assert used < 0.3, f"{used:.2f} s of CPU in 3 s while out of descriptors"
        wait_until(lambda: get(port, "/livez")[0] == 200, "/livez answering again")
    finally:
        for sock in waiting:
            sock.close()
        code, out = stop_daemon(proc)
    assert code == 0, out
    (warned,) = [json.loads(x) for x in out.splitlines() if "metrics-accept-failed" in x]
    assert warned["level"] == "error" and "Too many open files" in warned["error"]


def _mount(path: Path, *args: str) -> None:
    done = subprocess.run(["mount", *args, str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount on {path} (these tests need root, as CI runs): {done.stderr}")


def test_idle_and_trickling_clients_are_cut_and_the_daemon_keeps_serving(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    d = deployment
    d.add_school("8814001")
    d.add_task("t", "8814001")
    port = free_port()
    with_metrics(d, port)
    proc = start_daemon(d, notify_socket)
    idle: list[socket.socket] = []
    try:
        notify_socket.wait_for("READY=1")
        for _ in range(40):  # more than the server takes at once
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        trickler = socket.create_connection(("127.0.0.1", port), timeout=30)
        idle.append(trickler)
        request = b"GET /metrics HTTP/1.0\r\n" + b"X-Slow: " + b"a" * 200
        cut = False
        deadline = time.monotonic() + 60
        for byte in request:
            try:
                trickler.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            time.sleep(0.5)
            if time.monotonic() > deadline:
                break
        assert cut, "a client trickling its request one byte at a time was never cut off"
        # Every idle connection was closed by the server by now (none holds a thread).
        for sock in idle[:-1]:
            try:
                data = sock.recv(1)
            except ConnectionResetError:
                data = b""
            assert data == b""
        samples, _, _ = scrape(port)
        assert value(samples, "b2bd_config_last_reload_successful") == 1
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/nothing")[0] == 404
        status, content_type, text = get(port, "/metrics", "application/openmetrics-text")
        assert status == 200
        assert content_type.startswith("application/openmetrics-text")
        assert text.endswith("# EOF\n")
    finally:
        for sock in idle:
            sock.close()
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert "Traceback" not in out


def test_one_peer_holding_idle_connections_does_not_starve_the_probes(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    """A hostile peer (any pod the NetworkPolicy admits) keeping connections open must not
    take every slot: the kubelet's probe would fail and restart the daemon. Here the peer is
    127.0.0.2 (all of 127/8 is loopback), the probe comes from 127.0.0.1."""
    d = deployment
    d.add_school("8814001")
    d.add_task("t", "8814001")
    port = free_port()
    with_metrics(d, port)
    proc = start_daemon(d, notify_socket)
    idle: list[socket.socket] = []
    try:
        notify_socket.wait_for("READY=1")
        for _ in range(40):
            sock = socket.socket()
            sock.settimeout(30)
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", port))
            idle.append(sock)
        assert get(port, "/livez")[0:3:2] == (200, "ok\n")
        assert get(port, "/healthz")[0] == 200
    finally:
        for sock in idle:
            sock.close()
        code, out = stop_daemon(proc)
    assert code == 0, out


def test_alert_rules_and_dashboard_use_only_series_a_live_daemon_exposes(
    deployment: Deployment, notify_socket: NotifySocket
) -> None:
    d = deployment
    d.add_school("8814001")
    d.add_task("t", "8814001")
    port = free_port()
    with_metrics(d, port)
    proc = start_daemon(d, notify_socket, "--now")
    try:
        notify_socket.wait_for("READY=1")
        d.wait_for(lambda: d.records("run-finished"), 30, "the run")
        _, _, text = scrape(port)
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    kinds = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE"))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exposed = set(kinds)
    for name, kind in kinds.items():
        exposed.update(name + s for s in suffixes.get(kind, ()))

    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert len(alerts) == 3, alerts
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {m for e in [*alerts.values(), *exprs] for m in re.findall(r"\bb2bd_[a-z_]+", e)}
    assert used, "no b2bd series referenced"
    assert used <= exposed, f"not exposed by the daemon: {sorted(used - exposed)}"
    # The README shows the same three rules, verbatim.
    assert (MONITORING / "alerts.yaml").read_text() in (REPO / "README.md").read_text()
