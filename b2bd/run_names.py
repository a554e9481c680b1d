"""Run ids and delivery names (DESIGN section 6): pure, no clock, no I/O.

A run is ``<task>/<name>``, and its deliveries are ``<name>.jsonl`` beside
``<name>.manifest.json``. A scheduled run's name is its slot, ``YYYYMMDDTHHMMSSZ``: a slot is
started once (the journal says so), so the name is the run's own, and a retry of that slot
replaces its own earlier attempt. A manual run (``trigger``, ``run --now``) is named
``manual-YYYYMMDDTHHMMSSZ`` after the second it starts, with ``-2``, ``-3``... when that name
is taken, so **run ids never repeat** and no run's delivery replaces another run's:

- manual names of one task only ever increase, in (second, suffix) order (:func:`order`): a
  second run in the same second takes the next suffix, and if the clock reads earlier than the
  task's last manual run (it was stepped back) the new run takes that run's second with the
  next suffix rather than a name an older run may have had. The journal remembers each task's
  latest manual name (:class:`b2bd.journal.state.State` ``last_manual``), across restarts and
  compaction;
- a name some target folder already holds (a run the journal no longer knows: a state dir
  restored from backup) is skipped too: :func:`manual_name` asks ``taken``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from b2bd.schedule import slot_name

MANUAL = "manual-"
_MANUAL = re.compile(r"^manual-(\d{8}T\d{6}Z)(?:-([1-9][0-9]*))?$")


def order(name: str) -> tuple[str, int]:
    """A manual name's place in time: (its second, its suffix; 1 without one). Names that are
    not manual names sort first (they never constrain a new one)."""
    match = _MANUAL.match(name)
    if match is None:
        return ("", 0)
    return (match.group(1), int(match.group(2) or 1))


def manual_name(
    slot: dt.datetime, last: str | None, taken: Callable[[str], bool] = lambda _n: False
) -> str:
    """The name of a manual run starting at ``slot``, after the task's ``last`` manual run (or
    None), skipping any name ``taken`` says is in use."""
    second, suffix = slot_name(slot), 1
    if last is not None:
        last_second, last_suffix = order(last)
        if last_second >= second:
            second, suffix = last_second, last_suffix + 1
    while taken(name := _name(second, suffix)):
        suffix += 1
    return name


def _name(second: str, suffix: int) -> str:
    return f"{MANUAL}{second}" if suffix == 1 else f"{MANUAL}{second}-{suffix}"


def later(a: str | None, b: str) -> str:
    """The later of two manual names (``a`` may be None)."""
    return b if a is None or order(b) > order(a) else a
