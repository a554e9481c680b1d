"""Exports for benchmarks and tests that need an exact number of marks (1M-10M for
benchmarks), streamed to disk from the sample generator (:mod:`b2bd.sample`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

import msgspec

from b2bd.sample import DEFAULT_UNTIL, Counts, SamplePupil, SchoolSpec, generate_pupils
from b2bd.sample.holidays import school_days
from b2bd.sample.marks import iter_mark_lines
from b2bd.sample.pupils import on_roll_days
from b2bd.sample.writers import manifest


def _bench_school(
    n_marks: int, seed: int, laestab: str
) -> tuple[SchoolSpec, list[SamplePupil], list[dt.date]]:
    """A secondary school just big enough for ``n_marks`` marks: the fewest leading pupils
    whose sessions on roll add up to at least ``n_marks``."""
    days = school_days(dt.date(DEFAULT_UNTIL.year - 1, 9, 1), DEFAULT_UNTIL)
    guess = max(10, n_marks // len(days) + 10)  # about twice the pupils needed
    spec = SchoolSpec(laestab=laestab, phase="secondary", pupils=guess, seed=seed)
    pupils = generate_pupils(spec)
    total = 0
    for count, sample in enumerate(pupils, start=1):
        if not (sample.pupil_deleted or sample.marks_deleted):
            total += 2 * sum(1 for _ in on_roll_days(sample.record, days))
        if total >= n_marks:
            return dataclasses.replace(spec, pupils=count), pupils[:count], days
    raise ValueError(f"cannot place {n_marks} marks")  # unreachable with the guess above


def write_bench_export(
    out_dir: Path, n_marks: int, seed: int = 1, laestab: str = "8814001"
) -> Counts:
    """A secondary-school export with exactly ``n_marks`` marks (1M-10M for benchmarks),
    streamed to disk: pupils are added until the marks suffice, over two academic years.
    Results and deletions are left empty (not what a marks benchmark measures)."""
    spec, pupils, days = _bench_school(n_marks, seed, laestab)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    counts = Counts()
    counts.pupils = counts.write(
        out_dir / "pupils.jsonl",
        (encoder.encode(p.record) + b"\n" for p in pupils if not p.pupil_deleted),
    )
    marks = iter_mark_lines(spec, pupils, days)
    counts.marks = counts.write(out_dir / "attendance.jsonl", itertools.islice(marks, n_marks))
    if counts.marks < n_marks:
        raise RuntimeError(f"generated only {counts.marks} of {n_marks} marks")
    counts.write(out_dir / "results.jsonl", iter(()))
    counts.write(out_dir / "deletions.jsonl", iter(()))
    (out_dir / "manifest.json").write_bytes(manifest(spec, counts))
    return counts
