"""Records a transfer moves: their types, checks, the attendance code table, UPNs, NCYs and
academic years.

- :mod:`b2bd.records.model`: the Structs ``Pupil``, ``SessionMark``, ``Result``, ``Deletion``,
  record keys, and :func:`~b2bd.records.model.tagged_line` (pass-through delivery lines).
- :mod:`b2bd.records.check`: ``RecordDecoder(kind)(line) -> record | Rejection``.
- :mod:`b2bd.records.codes`: the attendance code table and its derived sets.
- :mod:`b2bd.records.upn`, :mod:`b2bd.records.ncy`: UPN check letters, NCY codes.
- :mod:`b2bd.records.academic`: academic years and month windows (pure).
- :mod:`b2bd.records.shapes`: the JSON Schema of each record kind, from the Structs (pure);
  :mod:`b2bd.records.schemas` writes them into ``schemas/records/*.json``.
"""

from __future__ import annotations

from b2bd.records.check import REASONS, Reason, RecordDecoder, Rejection, decode
from b2bd.records.model import (
    RECORD_KINDS,
    Deletion,
    Pupil,
    Record,
    RecordKind,
    Result,
    SessionMark,
    key_upn,
    record_key,
    record_time,
    record_upn,
    tagged_line,
)

__all__ = [
    "REASONS",
    "RECORD_KINDS",
    "Deletion",
    "Pupil",
    "Reason",
    "Record",
    "RecordDecoder",
    "RecordKind",
    "Rejection",
    "Result",
    "SessionMark",
    "decode",
    "key_upn",
    "record_key",
    "record_time",
    "record_upn",
    "tagged_line",
]
