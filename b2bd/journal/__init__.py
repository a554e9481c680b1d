"""The run journal: append-only, checksummed, crash-safe; the daemon's only state.

- :mod:`.entries`: the journal entry types and their fields (not the pupil records of
  :mod:`b2bd.records`);
- :mod:`.reader`: the format on disk (segments, framing, seals) and everything that only reads
  it, without the lock (``journal verify``/``cat``, ``status``, ``history``, benches);
- :mod:`.writer`: :class:`~b2bd.journal.writer.Journal`, the one writer: open and repair, group
  commit, compaction;
- :mod:`.state`: the pure replay of entries into :class:`~b2bd.journal.state.State`;
- :mod:`.history`, :mod:`.memory`: the pure run history and the pupil memories;
- :mod:`.keys`: keyed digests so no UPN is ever journaled in clear.

This package imports nothing: import the module you need (so the pure core can use
:mod:`.state` and :mod:`.history` without loading the writer).
"""
