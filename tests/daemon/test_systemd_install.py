"""README's systemd install, typed verbatim into a freshly booted Debian bookworm with real
systemd 252 (systemd-nspawn), and the service it gives checked as an operator would.

Marked ``nspawn``: needs root, ``systemd-nspawn`` and ``mmdebstrap`` (``.ci/run`` installs them and
runs ``pytest -m nspawn``; it fails, never skips, when it cannot). The root filesystem is built
once and cached as a tarball (``var/ci-cache/`` or ``$B2BD_CI_CACHE``), with the dependencies'
wheels beside it, so the container installs b2bd without a package index; every run boots a
fresh copy, so nothing of an earlier boot hides a first-boot bug. What the container can and
cannot prove: README's "The container test" (cgroup limits and BPF-based settings are accepted
but not enforced here).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.wonde_emulator import EmulatedSchool, WondeEmulator

pytestmark = pytest.mark.nspawn

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("B2BD_CI_CACHE", REPO / "var" / "ci-cache"))
PACKAGES = "systemd,dbus,python3,python3-venv,jq"  # README: what the install assumes
SUITE = "bookworm"
SRC = "/usr/src/b2bd"  # the checkout the operator stands in
WHEELS = "/var/cache/b2bd-wheels"
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}
ERR, WARNING = 3, 4  # syslog priorities: journalctl -p err, -p warning
TASKS = sorted(p.stem for p in (REPO / "config" / "tasks").glob("*.yaml"))


def readme_block(name: str) -> str:
    """The shell block between README's ``<!-- NAME:begin/end -->`` markers, as written there."""
    text = (REPO / "README.md").read_text()
    pattern = rf"<!-- {name}:begin -->\n```sh\n(.*?)```\n<!-- {name}:end -->"
    match = re.search(pattern, text, re.S)
    assert match, f"README lost its <!-- {name}:begin/end --> block"
    return match.group(1)


def install_block() -> str:
    """README's install steps, exactly as written there."""
    return readme_block("install")


def daily_commands() -> list[str]:
    """README's day-to-day commands, one per line, each as written there (comment and all)."""
    return [line for line in readme_block("daily").splitlines() if line.strip()]


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed (.ci/run installs systemd-container and mmdebstrap)")
    return path


def run(*cmd: str, timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


# -- the cached root filesystem and wheels ---------------------------------------------------


def mirror() -> str:
    """The Debian mirror apt already uses on this host."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def rootfs_tarball() -> Path:
    key = hashlib.sha256(f"{SUITE} minbase {PACKAGES}".encode()).hexdigest()[:12]
    tarball = CACHE / f"{SUITE}-{key}.tar.zst"
    if not tarball.exists():
        need("mmdebstrap")
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar.zst")
        built = run("mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE,
                    str(partial), mirror(), timeout=1200)  # fmt: skip
        if built.returncode != 0:
            pytest.fail(f"mmdebstrap failed:\n{built.stderr[-4000:]}")
        partial.rename(tarball)
    return tarball


def wheelhouse() -> Path:
    """Wheels of every runtime dependency and of the build backend, for an offline install."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wants = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    key = hashlib.sha256("\n".join(sorted(wants)).encode()).hexdigest()[:12]
    folder = CACHE / f"wheels-{key}"
    if not folder.is_dir():
        partial = CACHE / f"wheels-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        got = run(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                  "--dest", str(partial), *wants, timeout=1200)  # fmt: skip
        if got.returncode != 0:
            pytest.fail(f"pip download of the dependencies failed:\n{got.stderr[-4000:]}")
        partial.rename(folder)
    return folder


def fresh_root(parent: Path) -> Path:
    root = parent / "root"
    root.mkdir()
    unpacked = run("tar", "--zstd", "-xpf", str(rootfs_tarball()), "-C", str(root))
    assert unpacked.returncode == 0, unpacked.stderr
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "var", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis", "build"
    )
    shutil.copytree(REPO, root / SRC.lstrip("/"), ignore=ignore)
    shutil.copytree(wheelhouse(), root / WHEELS.lstrip("/"))
    # The container's own console getty would wait on a console nobody types into.
    (root / "etc/systemd/system/console-getty.service").symlink_to("/dev/null")
    return root


# -- the booted container --------------------------------------------------------------------


class Container:
    """systemd booted in ``root`` by systemd-nspawn; commands run inside through nsenter."""

    def __init__(self, root: Path, log: Path) -> None:
        need("systemd-nspawn")
        self.log = log.open("w")
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(root), "-b", "--register=no", "--keep-unit", "-q",
             "--system-call-filter=bpf"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            self.pid = self._init_pid()
            self._booted()
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            raise

    def _booted(self) -> None:
        """Wait for the boot to finish (systemctl answers only once PID 1 listens)."""
        deadline = time.monotonic() + 120
        state = ""
        while time.monotonic() < deadline and not state:
            state = self.sh("systemctl is-system-running --wait", timeout=120).stdout.strip()
            time.sleep(0 if state else 0.2)
        assert state in ("running", "degraded"), (state, self.sh("systemctl --failed").stdout)

    def _init_pid(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = run("pgrep", "-P", str(self.proc.pid), "-x", "systemd").stdout.split()
            if found:
                return int(found[0])
            assert self.proc.poll() is None, Path(self.log.name).read_text()
            time.sleep(0.1)
        raise AssertionError("systemd did not start in the container")

    def sh(
        self, script: str, *, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``sh -c script`` inside the container, as root, with a clean environment."""
        pairs = [f"{k}={v}" for k, v in {**ENV, **(env or {})}.items()]
        return run("nsenter", "-t", str(self.pid), "-a", "env", "-i", *pairs, "sh", "-c", script,
                   timeout=timeout)  # fmt: skip

    def ok(self, script: str, timeout: float = 120) -> str:
        done = self.sh(script, timeout=timeout)
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def show(self, *props: str) -> dict[str, str]:
        out = self.ok(f"systemctl show b2bd -p {','.join(props)}")
        return dict(line.split("=", 1) for line in out.splitlines())

    def events(self, priority: int = 7, since: str = "") -> list[dict[str, object]]:
        """b2bd's log lines (JSON objects) that journald stored at ``priority`` or more urgent
        (3: what ``journalctl -p err`` shows), after the cursor ``since``. Filtered here, not
        with ``-p``: journalctl 252 with both ``-p`` and ``--after-cursor`` drops the first
        match when the cursor's own entry does not match."""
        cursor = f"--after-cursor='{since}'" if since else ""
        out = self.ok(f"journalctl -u b2bd -o json {cursor} --no-pager")
        found = []
        for line in out.splitlines():
            entry = json.loads(line)
            message = entry.get("MESSAGE")
            ours = isinstance(message, str) and message.startswith("{")
            if ours and int(entry["PRIORITY"]) <= priority:
                found.append(json.loads(message))
        return found

    def cursor(self) -> str:
        out = self.ok("journalctl -u b2bd -n 1 -o export --no-pager | sed -n 's/^__CURSOR=//p'")
        return out.strip()

    def wait(self, script: str, what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.sh(script)
            if done.returncode == 0:
                return done.stdout
            time.sleep(0.3)
        logs = self.sh("journalctl -u b2bd -o cat --no-pager | tail -40").stdout
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def poweroff(self) -> None:
        self.sh("systemctl poweroff")
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Container, str]]:
    """A booted container in which README's install block has been run; (container, output)."""
    if os.geteuid() != 0:
        pytest.fail("the systemd install test boots a container: it must run as root (CI does)")
    parent = tmp_path_factory.mktemp("nspawn")
    container = Container(fresh_root(parent), parent / "console.log")
    try:
        done = container.sh(
            f"cd {SRC} && set -eux\n{install_block()}",
            env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS},
            timeout=600,
        )
        assert done.returncode == 0, f"README's install steps failed:\n{done.stdout}{done.stderr}"
        yield container, done.stdout + done.stderr
    finally:
        container.poweroff()


# -- what an operator checks ---------------------------------------------------------------------


def test_the_service_runs_as_the_b2bd_user_from_a_verified_unit(installed) -> None:
    c, _ = installed
    props = c.show("ActiveState", "MainPID", "User", "NRestarts", "Documentation")
    assert props["ActiveState"] == "active" and props["NRestarts"] == "0"
    uid = c.ok("id -u b2bd").strip()
    status = c.ok(f"cat /proc/{props['MainPID']}/status")
    assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s", status, re.M), status
    verify = c.sh("systemd-analyze verify /etc/systemd/system/b2bd.service")
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    (doc,) = props["Documentation"].split()
    c.ok(f"test -s {doc.removeprefix('file://')}")
    # The owners and modes README's table promises.
    listing = c.ok("stat -c '%n %U:%G %a' /etc/b2bd /var/lib/b2bd /var/spool/b2bd "
                   "/var/spool/b2bd/outbound /srv/b2b/schools /srv/b2b/schools/8814001/inbound "
                   "/run/b2bd /run/b2bd/b2bd.sock")  # fmt: skip
    assert listing.split("\n")[:-1] == [
        "/etc/b2bd root:b2bd 750",
        "/var/lib/b2bd b2bd:b2bd 700",
        "/var/spool/b2bd b2bd:b2bd 750",
        "/var/spool/b2bd/outbound root:b2bd 750",
        "/srv/b2b/schools root:b2bd 750",
        "/srv/b2b/schools/8814001/inbound b2bd:b2bd 750",
        "/run/b2bd b2bd:b2bd 750",
        "/run/b2bd/b2bd.sock b2bd:b2bd 660",
    ]


def test_every_example_task_delivers(installed) -> None:
    c, _ = installed
    # Test-only runtime drop-in: `run --now` starts every enabled task once at start.
    c.ok("mkdir -p /run/systemd/system/b2bd.service.d && printf '%s\\n' '[Service]' 'ExecStart=' "
         "'ExecStart=/opt/b2bd/venv/bin/b2bd --config /etc/b2bd run --now' "
         "> /run/systemd/system/b2bd.service.d/now.conf && systemctl daemon-reload && "
         "systemctl restart b2bd")  # fmt: skip
    finished = "b2bd --config /etc/b2bd journal cat --type run-finished"
    try:
        c.wait(f"test $({finished} | wc -l) -ge {len(TASKS)}", "every example task's run", 120)
    finally:
        c.ok("rm /run/systemd/system/b2bd.service.d/now.conf && systemctl daemon-reload")
    runs = [json.loads(line) for line in c.ok(finished).splitlines()]
    assert sorted(r["task"] for r in runs) == TASKS
    assert {r["outcome"] for r in runs} == {"succeeded"}, runs
    files = c.ok("find /var/spool/b2bd/88* /srv/b2b/schools/*/inbound -name '*.jsonl' "
                 "-printf '%u:%g %m %p\\n'")  # fmt: skip
    lines = files.splitlines()
    assert any("/inbound/" in line for line in lines)  # to-school: into the schools' folders
    assert any(line.split()[2].startswith("/var/spool/b2bd/88") for line in lines)
    assert all(line.startswith("b2bd:b2bd 640 ") for line in lines), lines


def test_systemctl_reload_is_answered(installed) -> None:
    c, _ = installed
    mark = c.cursor()
    c.ok("systemctl reload b2bd")
    # `systemctl reload` returns when SIGHUP is sent; the unit is `reloading` until the daemon's
    # READY=1 (a loaded machine makes that visible): it must come back to active.
    c.wait('test "$(systemctl show b2bd -p ActiveState --value)" = active', "active again")
    c.wait(f"journalctl -u b2bd -o cat --after-cursor='{mark}' | grep -q reload-requested",
           "the daemon's reload-requested")  # fmt: skip


def test_a_manual_trigger_runs_beside_the_live_service(installed) -> None:
    c, _ = installed
    pid = c.show("MainPID")["MainPID"]
    out = c.ok("b2bd trigger daily-changed-data --format json")
    result = json.loads(out)
    assert result["outcome"] == "succeeded" and result["run"].startswith("daily-changed-data/")
    assert c.show("MainPID")["MainPID"] == pid  # the service was not stopped for it
    started = c.ok("b2bd --config /etc/b2bd journal cat --type run-started")
    assert sum(json.loads(line)["run"] == result["run"] for line in started.splitlines()) == 1


def test_the_day_to_day_commands_work_as_typed_beside_the_live_service(installed) -> None:
    """README's day-to-day block, line by line as root, verbatim: each must succeed, and each
    shows what README says it does; the service is neither stopped nor restarted."""
    c, _ = installed
    pid = c.show("MainPID")["MainPID"]
    before = json.loads(c.ok("b2bd history --format json --limit 100000"))
    out: dict[str, str] = {}
    for line in daily_commands():
        done = c.sh(line)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        out[line.split("#")[0].strip()] = done.stdout
    (trigger,) = [o for cmd, o in out.items() if cmd.startswith("b2bd trigger ")]
    assert trigger.startswith("run daily-changed-data/manual-") and " succeeded " in trigger
    run = trigger.split()[1].rstrip(":")
    assert f"daemon: running, pid {pid}" in out["b2bd status"]
    warnings = out["journalctl -u b2bd -p warning"]
    assert "config-warning" in warnings  # the example's deliberate warnings, logged at start
    assert "daemon-ready" not in warnings and "run-started" not in warnings
    events = [json.loads(x) for x in out["journalctl -u b2bd -o cat | jq -cR 'fromjson?'"]
              .splitlines()]  # fmt: skip
    assert {"daemon-ready", "run-started", "reload-requested"} <= {e["event"] for e in events}
    compacted = out["b2bd journal compact"]
    assert compacted.startswith(f"compacted by the running daemon (pid {pid}): checkpoint is ")
    history = out["b2bd history daily-changed-data"]
    assert run in history
    logged = c.ok(
        "journalctl -u b2bd -o cat | jq -cR 'fromjson? | select(.event == \"journal-compacted\")'"
    )
    assert json.loads(logged.splitlines()[-1])["via"] == "control-socket"
    # Compaction kept every run, and root wrote nothing of its own into the state dir.
    after = json.loads(c.ok("b2bd history --format json --limit 100000"))
    assert [r["run"] for r in after] == [run] + [r["run"] for r in before]
    checkpoints = c.ok("b2bd --config /etc/b2bd journal cat --type checkpoint").splitlines()
    assert len(checkpoints) == 1  # the live journal now starts with it (history kept aside)
    owners = c.ok("find /var/lib/b2bd -printf '%u:%g %p\\n'").splitlines()
    assert owners and all(o.startswith("b2bd:b2bd ") for o in owners), owners
    assert c.show("MainPID")["MainPID"] == pid  # the service was not stopped for any of it
    # ...and it goes on: a trigger on the compacted journal
    again = json.loads(c.ok("b2bd trigger daily-changed-data --format json"))
    assert again["outcome"] == "succeeded"


def test_root_is_sent_to_the_service_user_when_the_service_is_stopped(installed) -> None:
    """README's "Commands as root": with the service stopped, what would write the state dir
    as root is refused with one line naming runuser; as b2bd the same command works."""
    c, _ = installed
    c.ok("systemctl stop b2bd")
    try:
        for command in ("b2bd journal compact", "b2bd trigger daily-changed-data"):
            refused = c.sh(command)
            assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
            (line,) = refused.stderr.splitlines()
            assert line.startswith("b2bd: /var/lib/b2bd belongs to b2bd: as root, ")
            assert "runuser -u b2bd -- b2bd " in line
        c.ok("runuser -u b2bd -- b2bd journal compact")
        assert c.sh("b2bd status").returncode == 0  # reading is never refused
        owners = c.ok("find /var/lib/b2bd -printf '%u %p\\n'").splitlines()
        assert all(o.startswith("b2bd ") for o in owners), owners
    finally:
        c.ok("systemctl start b2bd")
    assert c.show("ActiveState")["ActiveState"] == "active"


MANIFEST = "/srv/b2b/schools/8814001/manifest.json"
RUNNING, STOPPED = '"services_manager": "running"', '"services_manager": "stopped"'
TASK = "/etc/b2bd/tasks/daily-changed-data.yaml"


def test_failures_are_in_journalctl_p_err_and_info_is_not(installed) -> None:
    c, _ = installed
    mark = c.cursor()
    try:
        # A school whose SIMS Services Manager stopped: its transfer fails (not retried).
        c.ok(f"sed -i 's/{RUNNING}/{STOPPED}/' {MANIFEST}")
        assert c.sh("b2bd trigger daily-changed-data").returncode == 1
        # A task file broken in place: rejected, the last good version stays.
        c.ok(f"sed -i 's/^direction: from-school/direction: sideways/' {TASK}")
        c.wait(f"journalctl -u b2bd -o cat --after-cursor='{mark}' | grep -q config-rejected",
               "config-rejected")  # fmt: skip
    finally:
        c.ok(f"sed -i 's/{STOPPED}/{RUNNING}/' {MANIFEST} && "
             f"sed -i 's/^direction: sideways/direction: from-school/' {TASK}")  # fmt: skip
    errors = c.events(ERR, since=mark)
    assert {"transfer-failed", "config-rejected"} <= {str(e["event"]) for e in errors}, c.ok(
        f"journalctl -u b2bd -o json --after-cursor='{mark}' --no-pager"
    )
    (failed,) = [e for e in errors if e["event"] == "transfer-failed"]
    assert failed["base"] == "8814001" and failed["reason"] == "prerequisite"
    warnings = {(str(e["event"]), str(e.get("outcome"))) for e in c.events(WARNING, since=mark)}
    assert ("run-finished", "partial") in warnings
    assert not {"daemon-ready", "run-started", "reload-requested"} & {e[0] for e in warnings}


def _fails_once_without_restart(c: Container, change: str, code: int, event: str) -> None:
    """Stop the service, ``change`` something, start it: it must fail with ``code`` and one
    error line, and not be restarted."""
    c.ok("systemctl stop b2bd")
    mark = c.cursor()
    c.ok(change)
    c.sh("systemctl start b2bd")
    time.sleep(11)  # longer than RestartSec=10s: a restart would have happened by now
    props = c.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert props == {"ActiveState": "failed", "Result": "exit-code",
                     "ExecMainStatus": str(code), "NRestarts": "0"}, props  # fmt: skip
    errors = c.events(ERR, since=mark)
    assert [e["event"] for e in errors] == [event], errors
    logged = c.ok(f"journalctl -u b2bd -o cat --after-cursor='{mark}'")
    assert "Traceback" not in logged


def test_an_unreadable_config_is_exit_78_once(installed) -> None:
    c, _ = installed
    try:
        _fails_once_without_restart(c, "chmod 0700 /etc/b2bd", 78, "config-unusable")
    finally:
        c.ok("chmod 0750 /etc/b2bd && systemctl reset-failed b2bd && systemctl start b2bd")


def test_an_unreadable_pupil_key_is_exit_1_once(installed) -> None:
    c, _ = installed
    try:
        _fails_once_without_restart(
            c, "chown root:root /var/lib/b2bd/pupil.key", 1, "pupil-key-unusable"
        )
    finally:
        c.ok("chown b2bd:b2bd /var/lib/b2bd/pupil.key && systemctl reset-failed b2bd && "
             "systemctl start b2bd")  # fmt: skip


def block_commands(name: str) -> list[str]:
    """README's block ``name`` as commands, one per line as written there (comment and all)."""
    return [line for line in readme_block(name).splitlines() if line.strip()]


def test_an_operator_in_the_group_b2bd_uses_the_running_service(installed) -> None:
    """README's operator block, typed line by line: alice (created here, as an LA would) joins
    the group, and her `status` and `trigger` go through the control socket to the service."""
    c, _ = installed
    c.ok("useradd -m -s /bin/sh alice")
    assert c.sh("runuser -u alice -- b2bd status").returncode != 0  # not yet in the group
    pid = c.show("MainPID")["MainPID"]
    out: dict[str, str] = {}
    for line in block_commands("operator"):
        done = c.sh(f"cd {SRC} && {line}")
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        out[line.split("#")[0].strip()] = done.stdout
    assert f"daemon: running, pid {pid}" in out["runuser -u alice -- b2bd status"]
    (trigger,) = [o for cmd, o in out.items() if " trigger " in cmd]
    assert trigger.startswith("run daily-changed-data/manual-") and " succeeded " in trigger
    run = trigger.split()[1].rstrip(":")
    # The run happened in the service (its journal, as b2bd), not in a process of alice's.
    started = c.ok("b2bd --config /etc/b2bd journal cat --type run-started")
    assert sum(json.loads(line)["run"] == run for line in started.splitlines()) == 1
    owners = c.ok("find /var/lib/b2bd /var/spool/b2bd -user alice").strip()
    assert owners == "", owners
    assert c.show("MainPID")["MainPID"] == pid


BASES = "/etc/b2bd/bases.yaml"
MOVED = ("path: /srv/b2b/schools/8814001}", "path: /mnt/schools/8814001}")


def test_a_drop_in_adds_a_schools_path_and_memory_limits(installed) -> None:
    """README's drop-in block, typed verbatim with base 8814001 mounted under /mnt/schools:
    the unit shows the settings, and a to-school run writes the moved school's inbound/ (which
    ProtectSystem=strict would refuse without the drop-in's ReadWritePaths=)."""
    c, _ = installed
    c.ok("mkdir -p /mnt/schools && cp -a /srv/b2b/schools/8814001 /mnt/schools/ && "
         "find /mnt/schools/8814001/inbound -type f -delete && "
         f"sed -i 's#{MOVED[0]}#{MOVED[1]}#' {BASES}"
         f" && grep -qF '{MOVED[1]}' {BASES}")  # fmt: skip
    try:
        done = c.sh(f"cd {SRC} && set -eu\n{readme_block('dropin')}")
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        props = c.show("ActiveState", "ReadWritePaths", "MemoryHigh", "MemoryMax")
        assert props["ActiveState"] == "active", props
        assert "-/mnt/schools" in props["ReadWritePaths"].split(), props
        assert props["MemoryHigh"] == str(960 << 20) and props["MemoryMax"] == str(1200 << 20)
        assert "MemoryMax=1258291200" in done.stdout  # what the block's last line shows
        c.wait("test -S /run/b2bd/b2bd.sock", "the restarted service's control socket")
        result = json.loads(c.ok("b2bd trigger to-school-changes --format json"))
        assert result["outcome"] == "succeeded", result
        files = c.ok("find /mnt/schools/8814001/inbound -type f -printf '%u:%g %m %p\\n'")
        lines = files.splitlines()
        assert lines and all(f.startswith("b2bd:b2bd 640 ") for f in lines), files
    finally:
        c.ok(f"sed -i 's#{MOVED[1]}#{MOVED[0]}#' {BASES}")


def test_a_template_instance_runs_beside_the_service(installed) -> None:
    """README's b2bd@ block, typed verbatim: b2bd@essex runs as b2bd with its own config,
    journal and control socket, and delivers into its own LA store."""
    c, _ = installed
    done = c.sh(f"cd {SRC} && set -eu\n{readme_block('instance')}")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = c.ok("systemctl show b2bd@essex -p ActiveState,MainPID,NRestarts")
    props = dict(line.split("=", 1) for line in out.splitlines())
    assert props["ActiveState"] == "active" and props["NRestarts"] == "0", props
    uid = c.ok("id -u b2bd").strip()
    status = c.ok(f"cat /proc/{props['MainPID']}/status")
    assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s", status, re.M), status
    assert f"daemon: running, pid {props['MainPID']}" in done.stdout
    c.ok("test -S /run/b2bd/essex/b2bd.sock")
    result = json.loads(
        c.ok("b2bd --config /etc/b2bd/essex trigger daily-changed-data --format json")
    )
    assert result["outcome"] == "succeeded", result
    journal = c.ok("runuser -u b2bd -- b2bd --config /etc/b2bd/essex journal cat --type "
                   "run-started")  # fmt: skip
    assert any(json.loads(line)["run"] == result["run"] for line in journal.splitlines())
    c.ok("find /var/lib/b2bd/essex -user b2bd | grep -q .")
    files = c.ok("find /var/spool/b2bd/essex/88* -name '*.jsonl' -printf '%u:%g %m %p\\n'")
    lines = files.splitlines()
    assert lines and all(f.startswith("b2bd:b2bd 640 ") for f in lines), files
    # ...and the main service is unaffected by an instance's config dir inside /etc/b2bd.
    assert c.show("ActiveState")["ActiveState"] == "active"
    c.ok("systemctl stop b2bd@essex")


WONDE_BASE = "8813003"
DIRECTORY_ENDPOINT = f"endpoint: {{type: directory, path: /srv/b2b/schools/{WONDE_BASE}}}"


def test_a_wonde_token_from_the_credential_store_reaches_the_api_and_nothing_else(
    installed,
) -> None:
    """README's credential block, typed verbatim with base 8813003 read through the Wonde
    emulator (on the host's loopback, which the container shares): the token file is root's,
    the service gets it through LoadCredential=, the API sees it, no output or file has it."""
    c, _ = installed
    token = secrets.token_hex(16)
    school = EmulatedSchool.from_export(REPO / "examples" / "schools" / WONDE_BASE)
    with WondeEmulator([school], {token: None}) as api:
        wonde = (f"endpoint: {{type: wonde, school_id: {school.school_id}, "
                 f"token: {{credential: wonde}}, url: \"{api.url}\"}}")  # fmt: skip
        c.ok(f"printf '%s\\n' {token} > {SRC}/wonde.token && "
             f"sed -i 's#{DIRECTORY_ENDPOINT}#{wonde}#' {BASES} && "
             f"grep -qF '{wonde}' {BASES}")  # fmt: skip
        try:
            done = c.sh(f"cd {SRC} && set -eu\n{readme_block('credential')}")
            assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
            assert c.ok("stat -c '%U %a' /etc/credstore /etc/credstore/wonde").split("\n")[:2] == [
                "root 700",
                "root 600",
            ]
            assert c.sh("runuser -u b2bd -- cat /etc/credstore/wonde").returncode != 0
            assert c.sh(f"test -e {SRC}/wonde.token").returncode != 0  # no copy left behind
            c.wait("test -S /run/b2bd/b2bd.sock", "the restarted service's control socket")
            out = c.ok(f"b2bd trigger weekly-unauthorised-absence --base {WONDE_BASE} "
                       "--format json")  # fmt: skip
            result = json.loads(out)
            assert result["outcome"] == "succeeded", result
            assert any("/students" in path for path in api.paths())  # read through the API
            seen = c.ok("journalctl -b --no-pager -o cat; b2bd status; b2bd history; "
                        f"grep -rl {token} /var/lib/b2bd /var/spool/b2bd /etc/b2bd "
                        "|| true")  # fmt: skip
            assert token not in seen and token not in out + done.stdout + done.stderr
        finally:
            c.ok(f"sed -i 's#{wonde}#{DIRECTORY_ENDPOINT}#' {BASES}")


def test_systemctl_stop_is_clean(installed) -> None:
    c, _ = installed
    assert c.show("ActiveState")["ActiveState"] == "active"
    c.ok("systemctl stop b2bd")
    props = c.show("ActiveState", "Result", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    last = c.ok("b2bd --config /etc/b2bd journal cat | tail -1")
    assert json.loads(last)["type"] == "daemon-stopped"
