"""Fan-out: one run over 500 bases whose endpoint answers after 100 ms (DESIGN section 9).

A config dir with 500 directory bases (all reading one small shared export: 20 pupils, a few
hundred marks) and one attendance task on all of them. Only in this script, the ``directory``
entry of ``b2bd.connectors.table.SOURCES`` is wrapped by ``SlowSource``, which sleeps 100 ms
before answering ``manifest()`` — the latency of a school's share or API. Everything else is the
real path: ``load_config``, a real journal (group commit), real deliveries (fsynced, renamed).

Prints the wall time at concurrency 16 (median of ``--repeat`` runs, default 3) and
sequentially (concurrency 1, one run: it takes ~50 s by construction), and the speed-up.
Target: <= 10 s at concurrency 16.

    .venv/bin/python bench/fanout.py [--bases 500] [--latency 0.1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support

from b2bd.config.load import load_config
from b2bd.config.model import Endpoint, Settings
from b2bd.connectors import table
from b2bd.connectors.source import Deadline, Manifest, Source, no_deadline
from b2bd.journal.keys import PupilKeyer
from b2bd.journal.writer import Journal
from b2bd.records.check import Rejection
from b2bd.records.model import Record, RecordKind
from b2bd.records.upn import make_upn
from b2bd.transfer.engine import Engine
from tests.support.config_dir import b2bd_yaml

TASK = """\
id: fanout
description: benchmark
direction: from-school
bases: {tags: [bench]}
data: {type: attendance, attendance: all-attendances-current-year}
cohort: {group: ncy}
schedule: {weekly: {days: [mon], times: ["06:30"]}}
policy: {retries: 0}
"""


class SlowSource:
    """A connector whose endpoint takes ``latency`` seconds to answer (bench only)."""

    latency = 0.1

    def __init__(self, inner: Source) -> None:
        self.inner = inner

    def manifest(self, *, deadline: Deadline = no_deadline) -> Manifest:
        time.sleep(self.latency)
        return self.inner.manifest(deadline=deadline)

    def read(
        self, kind: RecordKind, since: str | None = None, *, deadline: Deadline = no_deadline
    ) -> Iterator[tuple[bytes, Record | Rejection]]:
        return self.inner.read(kind, since, deadline=deadline)

    def close(self) -> None:
        self.inner.close()


def install_slow_directory() -> None:
    plain = table.SOURCES["directory"]

    def slow(endpoint: Endpoint, laestab: str | None, settings: Settings | None) -> Source:
        return SlowSource(plain(endpoint, None, settings))  # one shared export for every base

    table.SOURCES["directory"] = slow


def make_world(root: Path, n_bases: int, concurrency: int) -> Path:
    school = root / "school"
    school.mkdir(parents=True)
    (school / "manifest.json").write_text(
        json.dumps(
            {
                "mis": "sims",
                "sims_version": "7.214",
                "services_manager": "running",
                "exported_at": "2026-11-27T18:00:00Z",
            }
        )
    )
    pupils, marks = [], []
    for i in range(20):
        upn = make_upn("881", "4000", 20, i)
        pupils.append(
            {
                "upn": upn,
                "surname": "Bench",
                "forename": "Pupil",
                "dob": "2014-01-01",
                "sex": "F",
                "ncy": "7",
                "in_care": False,
                "care_authority": None,
                "admission_date": "2024-09-03",
                "leaving_date": None,
                "updated_at": "2026-01-01T00:00:00Z",
            }
        )
        for day in range(1, 11):
            for session, code in (("AM", "/"), ("PM", "\\")):
                date = f"2026-10-{day:02d}"
                marks.append(
                    {
                        "upn": upn,
                        "date": date,
                        "session": session,
                        "code": code,
                        "updated_at": f"{date}T09:00:00Z",
                    }
                )
    (school / "pupils.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pupils))
    (school / "attendance.jsonl").write_text("".join(json.dumps(m) + "\n" for m in marks))
    config = root / "config"
    (config / "tasks").mkdir(parents=True)
    (config / "b2bd.yaml").write_text(b2bd_yaml(la_name="Bench", concurrency=concurrency))
    bases = ["bases:"]
    for i in range(n_bases):
        bases.append(
            f'  - {{id: "{8814000 + i}", name: School {i}, phase: secondary, mis: sims,'
            ' sims_version: "7.214", b2b_phase: 2, services_manager: true, tags: [bench],'
            f" endpoint: {{type: directory, path: {school}}}}}"
        )
    (config / "bases.yaml").write_text("\n".join(bases) + "\n")
    (config / "tasks" / "fanout.yaml").write_text(TASK)
    return config


def one_run(n_bases: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory(prefix="b2bd-fanout-") as tmp:
        config = load_config(make_world(Path(tmp), n_bases, concurrency))
        assert config.settings is not None and config.valid, config.problems[:3]
        journal = Journal.open(config.settings.state_dir)
        slot = dt.datetime(2026, 11, 2, 6, 30, tzinfo=dt.UTC)
        start = time.perf_counter()
        with Engine(config, journal, PupilKeyer(config.settings.state_dir)) as engine:
            result = engine.run(config.tasks["fanout"], slot)
        seconds = time.perf_counter() - start
        journal.close()
        assert result.outcome == "succeeded", [t for t in result.transfers if t.reason][:3]
        assert len(result.transfers) == n_bases
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--bases", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    SlowSource.latency = args.latency
    install_slow_directory()
    runs = [one_run(args.bases, args.concurrency) for _ in range(args.repeat)]
    parallel = statistics.median(runs)
    print(
        f"{args.bases} bases, {args.latency * 1000:.0f} ms latency each, "
        f"python {sys.version.split()[0]}"
    )
    print(
        f"concurrency {args.concurrency}: {parallel:.2f} s (median of {len(runs)}: "
        + ", ".join(f"{r:.2f}" for r in runs)
        + ") target <= 10 s"
    )
    if not args.skip_sequential:
        sequential = one_run(args.bases, 1)
        print(f"sequential (concurrency 1, one run): {sequential:.2f} s")
        print(f"speed-up: {sequential / parallel:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
