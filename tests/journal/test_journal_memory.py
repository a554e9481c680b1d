"""Pupil memories: keys, bitmaps and checkpoints are exact and small."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from b2bd.journal.memory import (
    BaseMemory,
    bits_of,
    decode_bits,
    encode_bits,
    key_of,
    keys_of,
    keys_of_json,
    positions_of,
)


@given(st.sets(st.integers(0, 5000)))
def test_bitmaps_round_trip(positions) -> None:
    bits = bits_of(positions)
    assert set(positions_of(bits)) == positions
    assert decode_bits(encode_bits(bits)) == bits
    assert (encode_bits(bits) == "") == (not positions)


def test_a_2000_pupil_bitmap_is_a_few_hundred_bytes() -> None:
    assert len(encode_bits(bits_of(range(2000)))) <= 336


@given(
    st.lists(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), unique=True, max_size=50),
    st.data(),
)
def test_apply_and_checkpoint(digests, data) -> None:
    memory = BaseMemory()
    memory.apply("t", keys_of(digests), encode_bits(bits_of(range(len(digests)))), "")
    gone = data.draw(st.sets(st.integers(0, max(len(digests) - 1, 0))))
    memory.apply("t", keys_of([]), "", encode_bits(bits_of(p for p in gone if p < len(digests))))
    expected = {key_of(d) for i, d in enumerate(digests) if i not in gone}
    assert memory.cohort("t") == expected
    assert memory.leavers() == {key_of(d) for d in digests}
    assert BaseMemory.restore(memory.snapshot()) == memory
    assert memory.cohort("other task") == frozenset()


HEX = st.from_regex(r"[0-9a-fA-F]{1,70}", fullmatch=True)


@given(st.lists(st.one_of(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), HEX), max_size=30))
def test_keys_of_json_reads_what_the_journal_writes(digests) -> None:
    """The fast path (compact 64-hex digests) and the decoding path agree with key_of."""
    if any(len(d) < 16 for d in digests):
        return  # not digests at all
    raw = msgspec.json.encode(digests)
    assert list(keys_of_json(raw)) == [key_of(d) for d in digests]
    spaced = msgspec.Raw(b" " + raw.replace(b",", b", ") + b" ")
    assert list(keys_of_json(spaced)) == [key_of(d) for d in digests]


def test_one_pupil_crossing_the_edge_costs_a_few_bytes_however_large_the_school() -> None:
    for position in (0, 7, 8, 1999, 99_999):
        text = encode_bits(1 << position)
        assert len(text) <= 10 and decode_bits(text) == 1 << position, text


def test_positions_past_the_remembered_pupils_mean_nobody() -> None:
    """A bitmap naming a position the base's memory does not hold (only a damaged or
    hand-edited journal could) changes nobody and never makes cohort() fail."""
    memory = BaseMemory()
    memory.apply("t", keys_of(["ab" * 32, "cd" * 32]), encode_bits(0b1011), "")
    assert memory.cohort("t") == {key_of("ab" * 32), key_of("cd" * 32)}
