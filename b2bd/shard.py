"""Which bases an instance owns when several share an LA's bases (DESIGN section 10; pure).

Instances are partitioned, not coordinated: instance ``index`` of ``of`` owns exactly the bases
whose :func:`shard_of` is ``index``. The hash is Prometheus' ``hashmod``: the last 8 bytes of
the MD5 of the base id, big-endian, modulo ``of``. It depends on the base id alone, so

- every base has exactly one owner among ``0 .. of-1`` (no overlap, no gap);
- adding or removing a base never moves another base (each instance keeps its journal's
  watermarks for the bases it had);
- the answer is the same in every process, release and machine (never Python's ``hash()``,
  which is salted per process): changing it would hand bases to instances whose journals have
  never seen them. ``tests/test_shard.py`` pins known values.

Changing ``of`` moves most bases (hashmod is not a consistent hash); README ("Beyond one
machine") says what that costs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_SHARDS = 1024
"""The schema's limit on ``shard.of``."""

DEFAULT_INDEX_ENV = "B2BD_SHARD_INDEX"
"""The environment variable the examples pass the StatefulSet's pod ordinal in."""

_MAX_INDEX_TEXT = 4  # digits: MAX_SHARDS - 1 has four


def shard_of(base_id: str, of: int) -> int:
    """The shard ``0 .. of-1`` that owns ``base_id`` (Prometheus ``hashmod``)."""
    if of < 1:
        raise ValueError(f"a shard count is 1 or more, not {of}")
    digest = hashlib.md5(base_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % of


@dataclass(frozen=True)
class Shard:
    """This instance is shard ``index`` of ``of`` (``0 <= index < of``)."""

    index: int
    of: int

    def __post_init__(self) -> None:
        if not 1 <= self.of <= MAX_SHARDS or not 0 <= self.index < self.of:
            raise ValueError(f"shard {self.index}/{self.of} is out of range")

    def owns(self, base_id: str) -> bool:
        return shard_of(base_id, self.of) == self.index

    def owned(self, base_ids: Iterable[str]) -> tuple[str, ...]:
        """The ``base_ids`` this shard owns, in their order."""
        return tuple(b for b in base_ids if self.owns(b))

    def __str__(self) -> str:
        return f"{self.index}/{self.of}"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` (the CLI's ``--shard``) -> Shard, or ValueError with a one-line reason."""
    index, slash, of = text.partition("/")
    if not slash or not _digits(index) or not _digits(of):
        raise ValueError(f"{text!r} is not INDEX/COUNT, e.g. 0/3")
    n, i = int(of), int(index)
    if not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"the shard count is 1 to {MAX_SHARDS}, not {n}")
    if i >= n:
        raise ValueError(f"shard index {i} is out of range for {n} shards (0 to {n - 1})")
    return Shard(i, n)


def index_from_env(name: str, of: int, environ: Mapping[str, str]) -> int | str:
    """The shard index the variable ``name`` gives, or why it gives none (a message).

    Only plain ASCII digits count: a pod-index label is ``"3"``; ``"³"``, ``" 3"`` or ``"-1"`` are
    refused rather than guessed at.
    """
    value = environ.get(name)
    if value is None:
        return f"the environment variable {name} is not set (it gives this instance's shard index)"
    if not _digits(value):
        return f"the environment variable {name} is not a shard index (a number 0 to {of - 1})"
    index = int(value)
    if index >= of:
        return f"{name}={index} is out of range for of: {of} (0 to {of - 1})"
    return index


def _digits(text: str) -> bool:
    return 0 < len(text) <= _MAX_INDEX_TEXT and text.isascii() and text.isdigit()
