"""The run journal: append-only, checksummed, crash-safe; the daemon's only state.

- :mod:`.records`: the record types and their fields;
- :mod:`.log`: segments on disk, framing, fsync, recovery, group commit, compaction;
- :mod:`.state`: the pure replay of records into :class:`State`;
- :mod:`.keys`: keyed digests so no UPN is ever journaled in clear.
"""

from __future__ import annotations

from b2bd.journal.keys import PupilKeyer
from b2bd.journal.log import (
    Journal,
    JournalBusy,
    JournalDamaged,
    JournalError,
    JournalFailed,
    read_journal,
    scan_journal,
)
from b2bd.journal.records import BadRecord, Record
from b2bd.journal.state import State, replay

__all__ = [
    "BadRecord",
    "Journal",
    "JournalBusy",
    "JournalDamaged",
    "JournalError",
    "JournalFailed",
    "PupilKeyer",
    "Record",
    "State",
    "read_journal",
    "replay",
    "scan_journal",
]
