"""Writing generated schools: export folders as the ``directory`` connector reads them (each
data file written whole then renamed, the manifest listing every file's record count and
sha256), the LA's outbound changes, and the repository's examples."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from b2bd.records.model import Deletion
from b2bd.sample.holidays import school_days
from b2bd.sample.marks import iter_mark_lines
from b2bd.sample.pupils import CARE_AUTHORITIES, SamplePupil, generate_pupils, on_roll_days
from b2bd.sample.results import results_for
from b2bd.sample.school import SchoolSpec, stamp


@dataclass
class Counts:
    """Records written per file, and each file's ``{"records": N, "sha256": H}`` for the
    manifest (by file name)."""

    pupils: int = 0
    marks: int = 0
    results: int = 0
    deletions: int = 0
    files: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)

    def write(self, path: Path, lines: Iterator[bytes]) -> int:
        """Write ``path`` (:func:`write_lines`), remembering its facts."""
        count, digest = write_lines(path, lines)
        self.files[path.name] = {"records": count, "sha256": digest}
        return count


def write_lines(path: Path, lines: Iterator[bytes]) -> tuple[int, str]:
    """Write lines to ``path`` via a temporary file and rename; return the line count and the
    file's sha256."""
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    digest = hashlib.sha256()
    with tmp.open("wb", buffering=1 << 20) as handle:
        for line in lines:
            handle.write(line)
            digest.update(line)
            count += 1
    os.replace(tmp, path)
    return count, digest.hexdigest()


def manifest(spec: SchoolSpec, counts: Counts, *, outbound: bool = False) -> bytes:
    """The export's manifest.json: the school's facts (the LA's for ``outbound``) and the
    files written so far."""
    doc: dict[str, object] = {
        "mis": "one" if outbound else spec.mis,
        "exported_at": spec.exported_at,
        "laestab": spec.laestab,
    }
    if not outbound:
        doc["sims_version"] = spec.sims_version
        doc["services_manager"] = spec.services_manager
    doc["files"] = dict(sorted(counts.files.items()))
    return json.dumps(doc, indent=2).encode() + b"\n"


def write_export(out_dir: Path, spec: SchoolSpec) -> Counts:
    """Write a complete school export folder (manifest and the four data files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    pupils = generate_pupils(spec)
    counts = Counts()
    counts.pupils = counts.write(
        out_dir / "pupils.jsonl",
        (encoder.encode(p.record) + b"\n" for p in pupils if not p.pupil_deleted),
    )
    days = school_days(spec.first_mark_day, spec.marks_until)
    deletions = _deletions(spec, pupils, days)
    removed = frozenset(d.key for d in deletions if d.record == "mark")
    counts.marks = counts.write(
        out_dir / "attendance.jsonl", iter_mark_lines(spec, pupils, days, removed)
    )
    counts.results = counts.write(
        out_dir / "results.jsonl",
        (
            encoder.encode(r) + b"\n"
            for p in pupils
            if not p.pupil_deleted
            for r in results_for(spec, p)
        ),
    )
    counts.deletions = counts.write(
        out_dir / "deletions.jsonl",
        (encoder.encode(d) + b"\n" for d in deletions),
    )
    (out_dir / "manifest.json").write_bytes(manifest(spec, counts))
    return counts


def _deletions(spec: SchoolSpec, pupils: list[SamplePupil], days: list[dt.date]) -> list[Deletion]:
    """Bulk-deleted pupils, then a few single marks removed at the source (entered for the
    wrong pupil and taken out again): :func:`iter_mark_lines` leaves those marks out."""
    out = [
        Deletion(record="pupil", key=sample.record.upn, deleted_at=sample.deleted_at)
        for sample in pupils
        if sample.pupil_deleted and sample.deleted_at is not None
    ]
    rng = random.Random(f"{spec.seed}/{spec.laestab}/deleted-marks")
    with_marks = [p for p in pupils if not (p.pupil_deleted or p.marks_deleted)]
    for sample in rng.sample(with_marks, min(3, len(with_marks))):
        on_roll = list(on_roll_days(sample.record, days))
        if not on_roll:
            continue
        day = rng.choice(on_roll)
        deleted_at = min(stamp(day + dt.timedelta(days=1), rng), spec.exported_at)
        key = f"{sample.record.upn}/{day.isoformat()}/{rng.choice(('AM', 'PM'))}"
        out.append(Deletion(record="mark", key=key, deleted_at=deleted_at))
    return out


def write_la_outbound(la_store: Path, spec: SchoolSpec, changes: int = 20) -> Counts:
    """Write the LA's own change records for a base into ``<la_store>/outbound/<laestab>/``
    (same layout as a school export; manifest without services_manager), for to-school
    transfers: ``changes`` pupils of the school whose details the LA updated (care status,
    care authority), with ``updated_at`` spread over the generated period, plus one deletion.
    The UPNs are those :func:`write_export` gives the same spec's pupils."""
    out_dir = la_store / "outbound" / spec.laestab
    out_dir.mkdir(parents=True, exist_ok=True)
    pupils = [p for p in generate_pupils(spec) if not p.pupil_deleted]
    rng = random.Random(f"{spec.seed}/{spec.laestab}/la-outbound")
    chosen = sorted(rng.sample(range(len(pupils)), min(changes, len(pupils))))
    first = spec.first_mark_day
    span = max(1, (spec.marks_until - first).days)
    encoder = msgspec.json.Encoder()
    records = []
    for i in chosen:
        pupil = pupils[i].record
        in_care = not pupil.in_care if rng.random() < 0.5 else pupil.in_care
        changed = stamp(first + dt.timedelta(days=rng.randrange(span)), rng)
        records.append(
            msgspec.structs.replace(
                pupil,
                in_care=in_care,
                care_authority=(pupil.care_authority or rng.choice(CARE_AUTHORITIES))
                if in_care
                else None,
                updated_at=min(changed, spec.exported_at),
            )
        )
    counts = Counts()
    counts.pupils = counts.write(
        out_dir / "pupils.jsonl", (encoder.encode(r) + b"\n" for r in records)
    )
    deletions = []
    if len(pupils) > changes:
        gone = pupils[rng.randrange(len(pupils))].record
        deletions.append(Deletion(record="pupil", key=gone.upn, deleted_at=spec.exported_at))
    counts.deletions = counts.write(
        out_dir / "deletions.jsonl", (encoder.encode(d) + b"\n" for d in deletions)
    )
    (out_dir / "manifest.json").write_bytes(manifest(spec, counts, outbound=True))
    return counts


EXAMPLES: tuple[SchoolSpec, ...] = (
    SchoolSpec("8814001", "secondary", pupils=90, seed=1, sixth_form=True),
    SchoolSpec("8812002", "primary", pupils=80, seed=2, mis="sims-primary", sims_version="7.212"),
    SchoolSpec("8813003", "secondary", pupils=80, seed=3, sixth_form=False),
    SchoolSpec("8814004", "secondary", pupils=30, seed=4, sims_version="7.150"),
    SchoolSpec("8815005", "primary", pupils=30, seed=5, sims_version="7.214"),
)
"""The example config's bases (``examples/schools/<laestab>/``): kept small for the repo."""
EXAMPLE_MARKS_FROM = dt.date(2026, 6, 1)


def write_examples(root: Path) -> dict[str, Counts]:
    """(Re)generate every example school under ``root`` (``examples/schools``), and the LA's
    outbound changes for them beside it (``examples/la/outbound/<laestab>``), which the example
    config's to-school task reads."""
    out = {}
    for spec in EXAMPLES:
        dated = dataclasses.replace(spec, marks_from=EXAMPLE_MARKS_FROM)
        out[spec.laestab] = write_export(root / spec.laestab, dated)
        write_la_outbound(root.parent / "la", dated)
    return out
