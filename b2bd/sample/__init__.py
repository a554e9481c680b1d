"""Deterministic sample school data: export folders as the ``directory`` connector reads them.

Everything is fictional (names from a small built-in list, UPNs made up with valid check
letters) but shaped like a real SIMS export, so the example config, the tests and the
benchmarks exercise the same paths real data would:

- pupils with a realistic NCY spread for the phase (primary: N1 N2 R 1-6; secondary: 7-11 and
  sometimes a sixth form 12-13; a few X), dates of birth matching their NCY, a few looked
  after (``in_care`` with a ``care_authority``), some leavers (before and after 1 August),
  mid-year admissions, and a few temporary UPNs;
- a session mark for every AM and PM of every school day each pupil was on roll (Mon-Fri,
  minus half terms, Christmas, Easter and summer), with a realistic mix of DfE codes: mostly
  ``/`` and ``\\``, illness, appointments, lateness, unauthorised absence, trips, work
  experience, study leave, and the 2024 codes (K, C1, C2, J1, Q, Y1-Y7) only on or after
  19 August 2024 (their pre-2024 equivalents before it, H/J/Y included);
- results for KS1-, KS2-, phonics- and KS4-style assessments;
- ``updated_at`` spread over time (registers saved per class and session, some marks amended
  days later);
- bulk-deleted leavers: some leavers' pupil record, marks and results are gone and
  ``deletions.jsonl`` says so; others kept their pupil record but lost their marks.

Every manifest lists its data files with their record counts and sha256 (``files``), so the
directory connector checks that what it reads is what was exported (DESIGN section 5).

Output is byte-identical for the same arguments (every pupil draws from its own
``random.Random`` seeded by ``(seed, laestab, index)``); nothing reads the clock. Marks are
streamed (:func:`~b2bd.sample.marks.iter_mark_lines`), never held in memory.

Modules: :mod:`~b2bd.sample.school` (the spec, seeded streams), :mod:`~b2bd.sample.holidays`,
:mod:`~b2bd.sample.pupils`, :mod:`~b2bd.sample.marks`, :mod:`~b2bd.sample.results`,
:mod:`~b2bd.sample.writers`; the CLI is ``__main__``. Writers only for benchmarks and tests
(exports of an exact number of marks) live in ``tests/support/exports.py``.

CLI: ``python -m b2bd.sample OUT_DIR --laestab 8814001 --seed 1 --pupils 300`` (see ``--help``);
``python -m b2bd.sample --examples examples/schools`` regenerates the repository's examples.
"""

from __future__ import annotations

from b2bd.sample.holidays import easter_sunday, school_days
from b2bd.sample.pupils import SamplePupil, generate_pupils
from b2bd.sample.school import DEFAULT_UNTIL, SchoolSpec
from b2bd.sample.writers import (
    EXAMPLES,
    Counts,
    write_examples,
    write_export,
    write_la_outbound,
)

__all__ = [
    "DEFAULT_UNTIL",
    "EXAMPLES",
    "Counts",
    "SamplePupil",
    "SchoolSpec",
    "easter_sunday",
    "generate_pupils",
    "school_days",
    "write_examples",
    "write_export",
    "write_la_outbound",
]
