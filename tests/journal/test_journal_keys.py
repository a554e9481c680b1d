"""Pupil digests: keyed, stable, never the UPN; the key file is private and made once."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from b2bd.journal.keys import KEY_FILE, KeyFileError, PupilKeyer, open_keyer

UPN = "A123456789012"


def test_digest_is_keyed_hex_without_the_upn(tmp_path):
    keyer = PupilKeyer(tmp_path / "state")
    digest = keyer.digest(UPN)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert UPN not in digest and UPN.lower() not in digest
    assert keyer.digest(UPN) == digest == keyer.digest(" a123456789012 ")
    assert keyer.digest("B123456789012") != digest


def test_key_file_is_0600_and_reused(tmp_path):
    old = os.umask(0)
    try:
        first = PupilKeyer(tmp_path).digest(UPN)
    finally:
        os.umask(old)
    key = tmp_path / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    assert PupilKeyer(tmp_path).digest(UPN) == first
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temp file left behind


def test_different_key_files_give_different_digests(tmp_path):
    assert PupilKeyer(tmp_path / "a").digest(UPN) != PupilKeyer(tmp_path / "b").digest(UPN)


def test_racing_first_uses_agree_on_one_key(tmp_path):
    digests: list[str] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        keyer = PupilKeyer(tmp_path)
        barrier.wait()
        digests.append(keyer.digest(UPN))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(digests)) == 1


def test_damaged_key_file_is_refused_not_replaced(tmp_path):
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(KeyFileError, match="restore it from backup"):
        PupilKeyer(tmp_path).digest(UPN)
    assert (tmp_path / KEY_FILE).read_bytes() == b"short"


def test_a_keyer_that_may_not_create_refuses_a_missing_key(tmp_path):
    keyer = PupilKeyer(tmp_path, create=False)
    with pytest.raises(KeyFileError, match="is missing, but the journal holds pupil digests"):
        keyer.check()
    with pytest.raises(KeyFileError):
        keyer.digest(UPN)
    assert list(tmp_path.iterdir()) == []
    first = PupilKeyer(tmp_path).digest(UPN)  # allowed to create: made once
    assert PupilKeyer(tmp_path, create=False).digest(UPN) == first


def test_open_keyer_follows_what_the_journal_holds(tmp_path):
    with pytest.raises(KeyFileError):
        open_keyer(tmp_path / "a", journal_holds_digests=True)
    assert not (tmp_path / "a" / KEY_FILE).exists()
    open_keyer(tmp_path / "b", journal_holds_digests=False)
    assert len((tmp_path / "b" / KEY_FILE).read_bytes()) == 32
