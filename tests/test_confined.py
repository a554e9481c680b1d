"""b2bd.confined on real folders: nothing below a configured root is followed or waited on."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from b2bd.confined import Folder
from b2bd.faults import ConfinedError
from tests.support.oserrors import open_tmp

__all__ = ["open_tmp"]


def test_the_configured_path_may_be_a_symlink_but_nothing_below_it(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "file").write_text("x")
    (tmp_path / "link").symlink_to(real)
    (real / "sub-link").symlink_to(real / "sub")
    (real / "file-link").symlink_to(real / "file")
    with Folder.open(tmp_path / "link") as root:
        with root.open_read("file") as reader:
            assert reader.read_at_most(10) == b"x"
        with pytest.raises(ConfinedError) as caught:
            root.child("sub-link")
        assert caught.value.kind == "not-ours" and "is a symlink" in str(caught.value)
        with pytest.raises(ConfinedError) as caught:
            root.open_read("file-link")
        assert caught.value.kind == "not-ours"
        with pytest.raises(ConfinedError) as caught:
            root.child("file", create=True)
        assert "is a file, not a folder" in str(caught.value)


@pytest.mark.parametrize("thing", ["fifo", "folder", "socket"])
def test_reads_need_a_regular_file_and_never_wait(tmp_path: Path, thing: str) -> None:
    target = tmp_path / "pupils.jsonl"
    if thing == "fifo":
        os.mkfifo(target)  # opening it for reading without O_NONBLOCK would block forever
    elif thing == "folder":
        target.mkdir()
    else:
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
        sock.close()
    with Folder.open(tmp_path) as root, pytest.raises(ConfinedError) as caught:
        root.open_read("pupils.jsonl")
    assert caught.value.kind == "not-ours"
    assert "not a regular file" in str(caught.value) or "No such device" in str(caught.value)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_modes_are_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with Folder.open(tmp_path / "a" / "b", create=True) as root:
            with root.descend("c", "d", create=True) as inner:
                inner.write_file("f", b"data")
            with root.child("private", create=True, mode=0o700) as private:
                private.write_file("key", b"k", mode=0o600)
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    for folder in ("a", "a/b", "a/b/c", "a/b/c/d"):
        assert mode(tmp_path / folder) == 0o750, folder
    assert mode(tmp_path / "a/b/c/d/f") == 0o640
    assert mode(tmp_path / "a/b/private") == 0o700
    assert mode(tmp_path / "a/b/private/key") == 0o600


def test_temp_files_are_exclusive_unpredictable_and_cleaned_up(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    with Folder.open(tmp_path) as root:
        one = root.create_temp("out.jsonl")
        two = root.create_temp("out.jsonl")
        assert one.temp != two.temp and one.temp.startswith(".out.jsonl.")
        one.write(b"abc")
        (tmp_path / "out.jsonl").symlink_to(victim)
        one.commit()  # the symlink planted at the name is replaced, not written through
        assert (tmp_path / "out.jsonl").read_bytes() == b"abc"
        assert victim.read_text() == "keep"
        # two is still being written (locked): a cleanup leaves it; once its writer is gone
        # (a crash: the lock goes with the process), the cleanup removes it
        (tmp_path / ".other.tmp").write_text("not ours")
        assert root.remove_leftovers() == 0
        assert two.fd is not None
        fcntl.flock(two.fd, fcntl.LOCK_UN)
        assert root.remove_leftovers() == 1
        assert sorted(root.names()) == [".other.tmp", "out.jsonl", "victim"]


def test_an_exclusive_commit_never_replaces(tmp_path: Path) -> None:
    with Folder.open(tmp_path) as root:
        root.write_file("key", b"first")
        with root.create_temp("key") as temp:
            temp.write(b"second")
            with pytest.raises(ConfinedError) as caught:
                temp.commit(replace=False)
        assert caught.value.errno is not None
        assert (tmp_path / "key").read_bytes() == b"first"
        assert [n for n in root.names() if n.endswith(".tmp")] == []


def test_errors_name_the_path_and_classify(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfinedError) as caught:
        Folder.open(tmp_path / "file")
    assert caught.value.kind == "not-ours" and str(tmp_path / "file") in str(caught.value)
    with pytest.raises(ConfinedError) as caught:
        Folder.open(tmp_path / "missing")
    assert caught.value.kind == "missing"
    with Folder.open(tmp_path) as root, pytest.raises(ConfinedError) as caught:
        root.child("..")
    assert caught.value.kind == "not-ours"


def test_leftover_cleanup_does_not_hold_the_folder_listing(tmp_path: Path) -> None:
    """A school can fill its inbound/<task> folder with millions of files: cleaning up before a
    delivery walks the folder one entry at a time instead of holding every name (300,000 names
    of 200 bytes held the daemon at +78 MiB; a few million would pass MemoryMax and take every
    school's transfers down with it)."""
    import tracemalloc

    folder_path = tmp_path / "inbound"
    folder_path.mkdir()
    stem = "n" * 200
    for i in range(10_000):
        (folder_path / f"{stem}{i}").touch()
    (folder_path / ".20261102T063000Z.jsonl.0123456789abcdef.tmp").touch()
    with Folder.open(folder_path) as folder:
        tracemalloc.start()
        try:
            removed = folder.remove_leftovers()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert removed == 1
    assert peak < 256 * 1024, f"cleanup held {peak} bytes"  # the listing was ~2.5 MB


def test_a_leftover_that_cannot_be_removed_is_left_and_the_write_goes_on(open_tmp: Path) -> None:
    """A school that owns a sticky inbound folder can plant a file named like our temporary
    files that we may not delete: it is not ours, so it is left alone and the delivery is still
    written (it used to escape as a bare PermissionError: an `internal` failure every run)."""
    from tests.support.oserrors import run_as_nobody

    folder_path = open_tmp / "inbound"
    folder_path.mkdir()
    folder_path.chmod(0o1777)  # sticky: only a file's owner may remove it
    planted = folder_path / ".20261102T063000Z.jsonl.0123456789abcdef.tmp"
    planted.touch()  # root's

    def clean_and_write() -> int:
        with Folder.open(folder_path) as folder:
            removed = folder.remove_leftovers()
            folder.write_file("delivery.jsonl", b"{}\n")
        return removed

    code, _out, err = run_as_nobody(clean_and_write)
    assert (code, err) == (0, "")
    assert planted.exists()
    assert (folder_path / "delivery.jsonl").read_bytes() == b"{}\n"
