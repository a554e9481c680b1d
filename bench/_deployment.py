"""A generated deployment for the daemon benchmarks (bench/idle.py, bench/reload.py).

``generate`` writes a config dir whose tasks are a realistic mix (weekly and monthly schedules,
every data type, ncy/lac/leavers cohorts, id/tag/all selectors, some policies, some disabled),
all valid, over a few bases with tiny real school exports. Every scheduled time is 2 to 3 hours
after the moment of generation in the task's timezone, so no slot falls due while a benchmark
runs: what is measured is the daemon waiting and reloading, not transfers.

The daemon itself runs through ``tests.support.daemon.DaemonProcess`` (the runner the tests use);
:func:`generated_daemon` gives both, and cleans up after them.

Not a benchmark itself (the leading underscore): the two scripts import it from this folder.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support

from b2bd.sample import SchoolSpec, write_export
from tests.support.config_dir import b2bd_yaml
from tests.support.daemon import DaemonProcess

LA = "881"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
NCY = ("E1", "E2", "N1", "N2", "R", *range(1, 15), "X")
ZONES = ("Europe/London",) * 9 + ("UTC",)
KINDS = (
    "all-attendances-current-year",
    "unauthorised-absences-current-year",
    "all-absences-current-year",
    "all-attendances-previous-year",
)
AREAS = ("north", "south", "east", "west")

DEFAULTS = "{retries: 3, retry_backoff: 30s, timeout: 15m, catch_up: latest, overlap: skip}"


@dataclass(frozen=True)
class BenchBase:
    id: str
    mis: str
    tags: tuple[str, ...]


@dataclass
class Deployment:
    """Where a generated deployment lives: config dir, state dir (journal), LA store, exports."""

    root: Path
    bases: list[BenchBase] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def journal_dir(self) -> Path:
        return self.state / "journal"

    def task_path(self, n: int) -> Path:
        return self.config / "tasks" / f"task-{n:04d}.yaml"


def generate(root: Path, *, tasks: int, bases: int, now: dt.datetime, seed: int = 11) -> Deployment:
    """Write the deployment under ``root``; scheduled times are 2-3 h after ``now``."""
    rng = random.Random(seed)
    deployment = Deployment(root)
    (deployment.config / "tasks").mkdir(parents=True)
    deployment.config.joinpath("b2bd.yaml").write_text(
        b2bd_yaml(
            deployment.state,
            root / "la",
            la_code=LA,
            la_name="Benchshire",
            timezone="Europe/London",
            concurrency=8,
            defaults=DEFAULTS,
        )
    )
    lines = ["bases:"]
    for n in range(bases):
        laestab = f"{LA}{4001 + n:04d}"
        primary = n % 2 == 0
        mis = "sims-primary" if primary and n % 4 == 0 else "sims"
        tags = (AREAS[n % len(AREAS)], "primary" if primary else "secondary")
        folder = root / "schools" / laestab
        spec = SchoolSpec(
            laestab,
            phase="primary" if primary else "secondary",
            pupils=6,
            seed=n,
            mis=mis,
            marks_from=now.date() - dt.timedelta(days=21),
            marks_until=now.date(),
        )
        write_export(folder, spec)
        lines += [
            f'  - id: "{laestab}"',
            f"    name: School {n}",
            f"    phase: {tags[1]}",
            f"    mis: {mis}",
            '    sims_version: "7.214"',
            "    b2b_phase: 2",
            "    services_manager: true",
            f"    tags: [{', '.join(tags)}]",
            f"    endpoint: {{type: directory, path: {folder}}}",
        ]
        deployment.bases.append(BenchBase(laestab, mis, tags))
    deployment.config.joinpath("bases.yaml").write_text("\n".join(lines) + "\n")
    for n in range(tasks):
        deployment.task_path(n).write_text(task_text(rng, n, deployment.bases, now))
    return deployment


@contextmanager
def generated_daemon(
    prefix: str, *, tasks: int, bases: int, keep: bool
) -> Iterator[tuple[Path, Deployment, DaemonProcess]]:
    """A deployment generated now in a new temp dir (``prefix``) and a daemon for it, not yet
    started; on the way out the daemon is stopped (SIGTERM) and the dir removed, or kept with
    ``keep`` (its path printed)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    daemon: DaemonProcess | None = None
    try:
        deployment = generate(work, tasks=tasks, bases=bases, now=dt.datetime.now(dt.UTC))
        daemon = DaemonProcess(deployment)
        yield work, deployment, daemon
    finally:
        if daemon is not None:
            daemon.stop()  # a daemon already stopped stays so
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (a benchmark prints them beside its figures)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _times(rng: random.Random, zone: str, now: dt.datetime) -> str:
    """One or two HH:MM times 2-3 hours after ``now`` in ``zone`` (whole minutes, so at least
    119 minutes away: never due during a benchmark)."""
    local = now.astimezone(ZoneInfo(zone))
    picks = {
        (local + dt.timedelta(minutes=rng.randint(121, 179))).strftime("%H:%M")
        for _ in range(rng.randint(1, 2))
    }
    return "[" + ", ".join(f'"{t}"' for t in sorted(picks)) + "]"


def _schedule(rng: random.Random, now: dt.datetime) -> list[str]:
    zone = rng.choice(ZONES)
    if rng.random() < 0.6:
        days = sorted(rng.sample(range(7), rng.randint(1, 5)))
        lines = [
            "  weekly:",
            f"    days: [{', '.join(DAYS[d] for d in days)}]",
            f"    times: {_times(rng, zone, now)}",
        ]
    else:
        month_days = [str(d) for d in sorted(rng.sample(range(1, 29), rng.randint(1, 3)))]
        if rng.random() < 0.3:
            month_days.append("last")
        months = "all" if rng.random() < 0.6 else ", ".join(
            sorted(rng.sample(MONTHS, 4), key=MONTHS.index)
        )  # fmt: skip
        lines = [
            "  monthly:",
            f"    days: [{', '.join(month_days)}]",
            f"    months: [{months}]",
            f"    times: {_times(rng, zone, now)}",
        ]
    if zone != "Europe/London" or rng.random() < 0.3:
        lines.append(f"  timezone: {zone}")
    if rng.random() < 0.1:
        lines.append(f"  expires: {now.year + 2}-07-31")
    return lines


def task_text(
    rng: random.Random, n: int, bases: list[BenchBase], now: dt.datetime, note: str = ""
) -> str:
    """One valid task file; ``note`` goes into the description (a content change for reloads)."""
    direction = "to-school" if rng.random() < 0.1 else "from-school"
    data_type = (
        "changed"
        if direction == "to-school"
        else rng.choice(("attainment", "attendance", "attendance", "changed", "snapshot"))
    )
    kind = None
    if data_type == "attendance":
        kind = "attendance-changed" if rng.random() < 0.1 else rng.choice(KINDS)
    group = (
        "ncy" if direction == "to-school" else rng.choice(("ncy", "ncy", "ncy", "lac", "leavers"))
    )
    lines = [
        f"id: task-{n:04d}",
        f"description: Generated {data_type} task {n} for the daemon benchmarks{note}",
        f"direction: {direction}",
    ]
    if rng.random() < 0.05:
        lines.append("enabled: false")
    selector = rng.random()
    if kind == "attendance-changed":
        pool = [b for b in bases if b.mis == "sims-primary"]
        chosen = rng.sample(pool, rng.randint(1, min(2, len(pool))))
        lines.append(f"bases: {{ids: [{', '.join(f'{chr(34)}{b.id}{chr(34)}' for b in chosen)}]}}")
    elif selector < 0.5:
        chosen = rng.sample(bases, rng.randint(1, min(4, len(bases))))
        lines.append(f"bases: {{ids: [{', '.join(f'{chr(34)}{b.id}{chr(34)}' for b in chosen)}]}}")
    elif selector < 0.9:
        lines.append(f"bases: {{tags: [{', '.join(rng.sample((*AREAS, 'primary'), 2))}]}}")
    else:
        lines.append("bases: {all: true}")
    lines += ["data:", f"  type: {data_type}"]
    if kind:
        lines.append(f"  attendance: {kind}")
        if rng.random() < 0.5:
            lines.append(f"  months: {rng.randint(1, 6)}")
    lines += ["cohort:", f"  group: {group}"]
    if group == "ncy" and rng.random() < 0.7:
        ncy = sorted(rng.sample(range(len(NCY)), rng.randint(1, 6)))
        lines.append(f"  ncy: [{', '.join(str(NCY[i]) for i in ncy)}]")
    lines.append("schedule:")
    lines += _schedule(rng, now)
    if rng.random() < 0.4:
        lines += [
            "policy:",
            f"  retries: {rng.randint(0, 5)}",
            f"  timeout: {rng.choice(('5m', '15m', '1h'))}",
            f"  catch_up: {rng.choice(('none', 'latest', 'all'))}",
            f"  starting_deadline: {rng.choice(('1h', '12h'))}",
        ]
        if rng.random() < 0.5:
            lines.append(f"  jitter: {rng.choice(('5m', '10m'))}")
    return "\n".join(lines) + "\n"
