"""Shards (DESIGN section 10): which instance owns a base, as Prometheus' hashmod decides."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bd.shard import MAX_SHARDS, Shard, index_from_env, parse_shard, shard_of

LAESTAB = st.text(alphabet="0123456789", min_size=7, max_size=7)
IDS = st.one_of(LAESTAB, st.text(min_size=0, max_size=20))


def prometheus_hashmod(value: str, modulus: int) -> int:
    """Prometheus' relabel ``hashmod`` as its Go source writes it: md5, then ``sum64`` ORs
    each byte in at shift (15 - i) * 8, where a Go shift of 64 or more gives 0."""
    s = 0
    for i, byte in enumerate(hashlib.md5(value.encode()).digest()):
        shift = (15 - i) * 8
        if shift < 64:
            s |= byte << shift
    return s % modulus


@given(st.lists(LAESTAB, min_size=500, max_size=500, unique=True), st.integers(1, 64))
@settings(max_examples=40, deadline=None)
def test_shards_partition_500_bases_with_no_overlap_and_no_gap(bases, of) -> None:
    owned = [set(Shard(i, of).owned(bases)) for i in range(of)]
    assert sum(len(o) for o in owned) == len(bases)  # no overlap: no base counted twice
    assert set().union(*owned) == set(bases)  # no gap
    for base in bases:
        assert [i for i in range(of) if Shard(i, of).owns(base)] == [shard_of(base, of)]


@given(
    st.lists(LAESTAB, min_size=1, max_size=500, unique=True),
    LAESTAB,
    st.integers(0, 500),
    st.integers(1, 64),
)
@settings(max_examples=60, deadline=None)
def test_adding_a_base_never_moves_another_bases_shard(bases, new, where, of) -> None:
    grown = [*bases[:where], new, *bases[where:]] if new not in bases else bases
    for i in range(of):
        before = set(Shard(i, of).owned(bases))
        after = set(Shard(i, of).owned(grown))
        assert after - before <= {new}
        assert before <= after


@given(IDS, st.integers(1, MAX_SHARDS))
def test_the_hash_is_prometheus_hashmod(base_id, of) -> None:
    assert shard_of(base_id, of) == prometheus_hashmod(base_id, of)


def test_known_values_never_change() -> None:
    # A changed hash would hand bases to instances whose journals have never seen them.
    assert [shard_of("8814001", n) for n in (1, 2, 3, 7, 1024)] == [0, 1, 1, 2, 299]
    assert [shard_of("8812002", n) for n in (1, 2, 3, 7, 1024)] == [0, 0, 1, 4, 494]
    assert [shard_of("8813003", n) for n in (1, 2, 3, 7, 1024)] == [0, 1, 0, 3, 267]


def test_the_hash_is_the_same_in_another_process() -> None:
    # Never Python's hash(): str hashes are salted per process (PYTHONHASHSEED).
    import subprocess
    import sys

    code = "from b2bd.shard import shard_of; print(shard_of('8814001', 1024))"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout  # fmt: skip
        assert out.strip() == "299"


@pytest.mark.parametrize(
    ("text", "shard"),
    [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), ("1023/1024", Shard(1023, 1024))],
)
def test_parse_shard(text, shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/3", "shard index 3 is out of range for 3 shards (0 to 2)"),
        ("0/0", "the shard count is 1 to 1024, not 0"),
        ("0/1025", "the shard count is 1 to 1024, not 1025"),
        ("1", "'1' is not INDEX/COUNT, e.g. 0/3"),
        ("-1/3", "'-1/3' is not INDEX/COUNT, e.g. 0/3"),
        ("¹/3", "'¹/3' is not INDEX/COUNT, e.g. 0/3"),
        (" 1/3", "' 1/3' is not INDEX/COUNT, e.g. 0/3"),
        ("1/99999999999999999999", "'1/99999999999999999999' is not INDEX/COUNT, e.g. 0/3"),
    ],
)
def test_parse_shard_refuses(text, message) -> None:
    with pytest.raises(ValueError) as caught:
        parse_shard(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("environ", "found"),
    [
        ({"I": "2"}, 2),
        ({"I": "0"}, 0),
        ({}, "the environment variable I is not set (it gives this instance's shard index)"),
        ({"I": "3"}, "I=3 is out of range for of: 3 (0 to 2)"),
        ({"I": ""}, "the environment variable I is not a shard index (a number 0 to 2)"),
        ({"I": "²"}, "the environment variable I is not a shard index (a number 0 to 2)"),
        ({"I": " 1"}, "the environment variable I is not a shard index (a number 0 to 2)"),
        ({"I": "-1"}, "the environment variable I is not a shard index (a number 0 to 2)"),
        ({"I": "b2bd-1"}, "the environment variable I is not a shard index (a number 0 to 2)"),
        ({"I": "9" * 5000}, "the environment variable I is not a shard index (a number 0 to 2)"),
    ],
)
def test_index_from_env(environ, found) -> None:
    assert index_from_env("I", 3, environ) == found
