"""What the journal remembers about pupils, per base: compact, pure, replayed from deltas.

Two memories (DESIGN section 5), both of keyed digests, never UPNs:

- the **leavers memory** of a base: every pupil a succeeded non-leavers from-school transfer
  delivered any record about (only ever grows; the ``leavers`` cohort is drawn from it);
- the **cohort memory** of each ``changed`` task at that base: the cohort members that task has
  delivered, so that pupils crossing the cohort's edge by the calendar are followed (joiners get
  their full record, remembered pupils who left get their current record once and are then
  forgotten).

Representation (why it is small: 500 bases x 2,000 pupils x 10 changed tasks must replay in
seconds within 150 MB): a pupil is a 64-bit **key**, the first 16 hex digits of its HMAC digest
(:func:`key_of`; two of a school's 2,000 pupils share one with odds near 1e-13). A base's
leavers memory is an ``array('Q')`` of keys in the order they were first journaled; a task's
cohort memory is a bitmap (a Python int) over positions in that array. Journal records carry
deltas: ``transfer-succeeded`` appends its new ``pupils`` (full hex digests) to the array and
then applies ``joined``/``left`` bitmaps (:func:`encode_bits`) to the task's bitmap. Because a
position's meaning comes from the order of the array, the engine and the replay apply the same
records in the same order per base (:meth:`BaseMemory.apply`), and a checkpoint keeps the array
and the bitmaps as they are (:meth:`BaseMemory.snapshot`).
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import msgspec

from b2bd.journal.entries import MemorySnapshot


def key_of(digest: str) -> int:
    """The 64-bit memory key of a pupil's hex digest."""
    return int(digest[:16], 16)


def keys_of(digests: Iterable[str]) -> array[int]:
    """:func:`key_of` of many digests at once, at C speed (a base's first transfer brings
    thousands): their first 16 hex digits joined, read as big-endian 64-bit integers."""
    keys = array("Q")
    keys.frombytes(bytes.fromhex("".join([d[:16] for d in digests])))
    if sys.byteorder == "little":
        keys.byteswap()
    return keys


def keys_of_json(raw: msgspec.Raw | bytes) -> array[int]:
    """:func:`keys_of` of a JSON array of digests as the journal writes it (``["<64 hex>",
    ...]``, compact), sliced straight from its bytes: replaying a journal whose records bring
    a million digests then makes no string for each. Anything else is decoded as JSON."""
    data = memoryview(raw)
    if len(data) == 2 and data.tobytes() == b"[]":
        return array("Q")  # most transfers: nobody new
    n = (len(data) - 1) // 67  # '[', then per digest '"' + 64 hex + '"', ',' between, ']'
    if (
        n
        and len(data) == 67 * n + 1
        and data[:2].tobytes() == b'["'
        and data[-2:].tobytes() == b'"]'
    ):
        hexes = b"".join([data[2 + 67 * i : 18 + 67 * i] for i in range(n)])
        keys = array("Q")
        keys.frombytes(binascii.unhexlify(hexes))
        if sys.byteorder == "little":
            keys.byteswap()
        return keys
    return keys_of(msgspec.json.decode(data, type=list[str]))


def encode_bits(bits: int) -> str:
    """A bitmap (bit i = position i) as base64 of its little-endian bytes, ``""`` for none;
    whole zero bytes below its lowest set bit are left out and counted in an ``N:`` prefix,
    so one pupil crossing the edge at position 2,000 costs a few bytes, not 250."""
    if not bits:
        return ""
    skip = ((bits & -bits).bit_length() - 1) // 8
    rest = bits >> (8 * skip)
    text = base64.b64encode(rest.to_bytes((rest.bit_length() + 7) // 8, "little")).decode()
    return f"{skip}:{text}" if skip else text


def decode_bits(text: str) -> int:
    """The bitmap :func:`encode_bits` wrote."""
    if not text:
        return 0
    skip, _, data = text.rpartition(":")
    return int.from_bytes(base64.b64decode(data), "little") << (8 * int(skip or 0))


def bits_of(positions: Iterable[int]) -> int:
    bits = 0
    for position in positions:
        bits |= 1 << position
    return bits


def positions_of(bits: int) -> Iterator[int]:
    """The set positions of a bitmap, lowest first."""
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for byte_index, byte in enumerate(data):
        while byte:
            low = byte & -byte
            yield byte_index * 8 + low.bit_length() - 1
            byte ^= low


@dataclass(eq=True)
class BaseMemory:
    """One base's leavers memory (``keys``) and its changed tasks' cohort memories
    (``members``: task id -> bitmap over positions in ``keys``)."""

    keys: array[int] = field(default_factory=lambda: array("Q"))
    members: dict[str, int] = field(default_factory=dict)

    def apply(self, task: str, pupils: array[int], joined: str, left: str) -> None:
        """A succeeded transfer's deltas: its new pupils (keys, :func:`keys_of` of its
        ``pupils`` digests) join the leavers memory, then ``joined``/``left``
        (:func:`encode_bits`) change ``task``'s cohort memory. The one way both the engine and
        the replay change a memory."""
        self.keys.extend(pupils)
        if joined or left:
            bits = (self.members.get(task, 0) | decode_bits(joined)) & ~decode_bits(left)
            bits &= (1 << len(self.keys)) - 1  # a position past the pupils means nobody
            if bits:
                self.members[task] = bits
            else:
                self.members.pop(task, None)

    def index(self) -> dict[int, int]:
        """key -> position (for one transfer; a key listed twice maps to its last place)."""
        return dict(zip(self.keys, range(len(self.keys)), strict=True))

    def leavers(self) -> frozenset[int]:
        return frozenset(self.keys)

    def cohort(self, task: str) -> frozenset[int]:
        """The keys ``task`` remembers as delivered cohort members at this base."""
        keys = self.keys
        return frozenset(keys[p] for p in positions_of(self.members.get(task, 0)))

    def snapshot(self) -> MemorySnapshot:
        data = self.keys
        if sys.byteorder == "big":  # the checkpoint is little-endian on every machine
            data = array("Q", data)
            data.byteswap()
        return MemorySnapshot(
            keys=base64.b64encode(data.tobytes()).decode(),
            members={task: encode_bits(bits) for task, bits in sorted(self.members.items())},
        )

    @classmethod
    def restore(cls, snap: MemorySnapshot) -> BaseMemory:
        keys = array("Q")
        keys.frombytes(base64.b64decode(snap.keys))
        if sys.byteorder == "big":
            keys.byteswap()
        return cls(keys, {task: decode_bits(bits) for task, bits in snap.members.items()})

    def copy(self) -> BaseMemory:
        return BaseMemory(array("Q", self.keys), dict(self.members))


Memory = Mapping[str, BaseMemory]
"""Base id -> its memories."""
