"""Transfer throughput: attendance marks/s from a directory export to a delivery (DESIGN section 9).

For each size (default 1M and 10M marks) a secondary-school export is generated with
``tests.support.exports.write_bench_export`` (streamed) into a temp dir, then, each in a fresh
subprocess
(so ``ru_maxrss`` is that run's own peak):

- ``engine``: the real path — ``load_config`` of a generated config dir, a real journal, and
  ``Engine.run`` of an attendance task (``all-attendances-current-year``, ``months: 13``,
  cohort NCY 7-11) at 2026-11-27: pupils pass, then every mark decoded and checked
  (``RecordDecoder``), filtered by cohort/year/months, passed through as raw bytes to an
  atomic, fsynced delivery with its sha256;
- ``bare``: the ceiling — read the same file line by line, ``msgspec`` typed decode into
  ``SessionMark`` and encode back, write every line (no checks, no filters, no hashing).

- ``previous`` (with ``--previous REV``): the ``engine`` child run against the b2bd package of
  git revision REV (extracted with ``git archive`` and put first on ``PYTHONPATH``), on the same
  export, interleaved with the others: the ratio to the previous version (DESIGN section 9: the
  figures hold with the safe opens, per-line limits, integrity checks and accounting in place).

The export's manifest lists its files with record counts and sha256 (as ``b2bd.sample`` writes
them), so the current engine also verifies both. Prints marks/s (all marks read / wall time),
marks per CPU second of the child (steadier than wall time when other work shares the cores),
peak RSS, and the engine/bare and engine/previous ratios of both. Runs ``--repeat`` times
(default 3) per size and mode and reports medians; pass ``--repeat-large 1`` to run the 10M
size once (it is then a single measurement, said so in the output).

    .venv/bin/python bench/transfer.py [--sizes 1000000 10000000] [--repeat 3] [--previous REV]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository: tests.support

from tests.support.config_dir import b2bd_yaml  # noqa: E402

TASK = """\
id: bench-attendance
description: benchmark
direction: from-school
bases: {ids: ["8814001"]}
data: {type: attendance, attendance: all-attendances-current-year, months: 13}
cohort: {group: ncy, ncy: [7, 8, 9, 10, 11]}
schedule: {weekly: {days: [mon], times: ["06:30"]}}
policy: {retries: 0, timeout: 1h}
"""
B2BD = b2bd_yaml(
    la_name="Bench", timezone="Europe/London", academic_year_start="08-01", concurrency=1
)
BASES = """\
bases:
  - id: "8814001"
    name: Bench School
    phase: secondary
    mis: sims
    sims_version: "7.214"
    b2b_phase: 2
    services_manager: true
    endpoint: {type: directory, path: school}
"""


def make_config(root: Path, school: Path) -> None:
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    (root / "b2bd.yaml").write_text(B2BD)
    (root / "bases.yaml").write_text(BASES.replace("path: school", f"path: {school}"))
    (root / "tasks" / "bench.yaml").write_text(TASK)


def peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM): ru_maxrss would also count the parent's memory
    from before the exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_engine(school: Path, work: Path) -> dict[str, float]:
    from b2bd.config.load import load_config
    from b2bd.journal.keys import PupilKeyer
    from b2bd.journal.writer import Journal
    from b2bd.transfer.engine import Engine

    root = work / "config"
    make_config(root, school)
    config = load_config(root)
    assert config.settings is not None and config.valid, config.problems
    journal = Journal.open(config.settings.state_dir)
    slot = dt.datetime(2026, 11, 27, 19, 0, tzinfo=dt.UTC)
    start, cpu = time.perf_counter(), time.process_time()
    with Engine(config, journal, PupilKeyer(config.settings.state_dir)) as engine:
        result = engine.run(config.tasks["bench-attendance"], slot)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    journal.close()
    transfer = result.transfers[0]
    assert transfer.outcome == "succeeded", transfer
    return {"seconds": seconds, "cpu": cpu, "delivered": transfer.counts["mark"],
            "rss_mb": peak_rss_mb()}  # fmt: skip


def child_bare(school: Path, work: Path) -> dict[str, float]:
    import msgspec

    from b2bd.records.model import SessionMark

    decoder = msgspec.json.Decoder(SessionMark)
    encoder = msgspec.json.Encoder()
    out: list[bytes] = []
    written = 0
    start, cpu = time.perf_counter(), time.process_time()
    with (
        open(school / "attendance.jsonl", "rb", buffering=1 << 20) as src,
        open(work / "bare.jsonl", "wb", buffering=1 << 20) as dst,
    ):
        for line in src:
            out.append(encoder.encode(decoder.decode(line)) + b"\n")
            if len(out) >= 8192:
                dst.write(b"".join(out))
                written += len(out)
                out.clear()
        dst.write(b"".join(out))
        written += len(out)
        dst.flush()
        os.fsync(dst.fileno())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "delivered": written, "rss_mb": peak_rss_mb()}


def run_child(mode: str, school: Path, previous: Path | None = None) -> dict[str, float]:
    env = dict(os.environ)
    if mode == "previous":
        assert previous is not None
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(previous), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix=f"b2bd-bench-{mode}-") as work:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "bare" if mode == "bare" else "engine",
             str(school), work],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
    return json.loads(proc.stdout)


def extract_revision(rev: str, into: Path) -> Path:
    """The b2bd package (and the schemas it loads) of git revision ``rev`` of this checkout,
    unpacked under ``into``."""
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", rev, "b2bd", "schemas"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def generate(school: Path, n: int) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from tests.support.exports import "
            "write_bench_export;"
            "write_bench_export(Path(sys.argv[1]), int(sys.argv[2]))",
            str(school),
            str(n),
        ],
        check=True,
        cwd=REPO,  # so that tests.support imports
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-large", type=int, default=1, help="runs for sizes >= 5M")
    parser.add_argument("--previous", metavar="REV", help="also run the engine of git revision REV")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SCHOOL", "WORK"))
    args = parser.parse_args()
    if args.child:
        mode, school, work = args.child
        fn = child_engine if mode == "engine" else child_bare
        print(json.dumps(fn(Path(school), Path(work))))
        return 0

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; marks/s = marks read / wall s")
    modes = ["engine", "bare"]
    previous_code: Path | None = None
    holder = tempfile.TemporaryDirectory(prefix="b2bd-bench-previous-")
    if args.previous:
        previous_code = extract_revision(args.previous, Path(holder.name))
        modes = ["engine", "previous", "bare"]
        print(f"previous = the engine of git revision {args.previous}")
    print(
        f"{'marks':>11} {'mode':>8} {'runs':>4} {'marks/s':>11} {'per cpu s':>11} "
        f"{'delivered':>10} {'peak RSS':>9}"
    )
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="b2bd-bench-export-") as tmp:
            school = Path(tmp) / "school"
            generate(school, n)
            runs = args.repeat_large if n >= 5_000_000 else args.repeat
            rates: dict[str, float] = {}
            cpu_rates: dict[str, float] = {}
            # Interleaved (engine, previous, bare, engine, ...) so load on a shared machine
            # falls on every mode alike.
            all_samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
            for _ in range(runs):
                for mode in modes:
                    all_samples[mode].append(run_child(mode, school, previous_code))
            for mode in modes:
                samples = all_samples[mode]
                seconds = statistics.median(s["seconds"] for s in samples)
                rss = max(s["rss_mb"] for s in samples)
                rates[mode] = n / seconds
                cpu_rates[mode] = n / statistics.median(s["cpu"] for s in samples)
                print(
                    f"{n:>11,} {mode:>8} {runs:>4} {rates[mode]:>11,.0f} {cpu_rates[mode]:>11,.0f} "
                    f"{int(samples[0]['delivered']):>10,} {rss:>7.1f}MB"
                )
            note = "median" if runs > 1 else "single run"
            for other in ("bare", "previous"):
                if other not in rates:
                    continue
                print(
                    f"{n:>11,}  engine/{other} = {rates['engine'] / rates[other]:.2f} wall, "
                    f"{cpu_rates['engine'] / cpu_rates[other]:.2f} cpu ({note})"
                )
            print(f"{n:>11,}  target: >= 300,000 marks/s and engine/bare >= 0.50")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
