"""File-system access confined under a configured folder: the one way b2bd opens, creates and
durably writes files (DESIGN section 6, "Nothing under a school's folder or the LA store is
trusted to be what it seems").

A :class:`Folder` is an open directory descriptor. :meth:`Folder.open` opens a *configured*
path (b2bd.yaml's state dir or LA store, a base's endpoint path): that path may itself be, or
pass through, a symlink the LA set up, and is resolved once by the kernel. Everything below it is
reached with :meth:`Folder.child`, :meth:`Folder.open_read` and :meth:`Folder.create_temp`, one
name at a time relative to the parent's descriptor with ``O_NOFOLLOW``: a symlink, FIFO, device
or folder planted where a file or folder of ours should be is refused, never followed or waited
on. Contracts:

- **Reads** open ``O_NONBLOCK | O_NOFOLLOW`` and require a regular file (``fstat`` on the opened
  descriptor, so nothing can be swapped in between a check and the open). A FIFO is refused at
  once instead of blocking the reader until a writer appears.
- **Writes** go to a temporary file created ``O_CREAT | O_EXCL | O_NOFOLLOW`` under an
  unpredictable name (``.<name>.<16 hex digits>.tmp``), locked with ``flock`` while written; then
  ``fsync``, ``rename`` relative to the folder's descriptor, and ``fsync`` of the folder, so a
  reader (and a crash) sees the old file or the complete new one, never a partial one.
- **Modes** are exact whatever the umask: files 0640 and folders 0750 unless a stricter mode is
  asked for (the state dir's 0700, the key file's 0600); set with ``fchmod`` after creation.
- **Leftovers**: :meth:`Folder.remove_leftovers` deletes temporary files of ours (our naming
  pattern only, and only ones no live writer holds locked) that a crash left behind.
- **Errors** are :class:`~b2bd.faults.ConfinedError`: the full path, a fixed phrase saying what
  is wrong, and a ``kind`` (:data:`~b2bd.faults.KINDS`) from which callers derive their reason
  class. Never a value read from a file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from b2bd.faults import ConfinedError, Kind

FILE_MODE = 0o640
DIR_MODE = 0o750
READ_CHUNK = 1 << 20
"""Bytes per ``read`` call of :meth:`Reader.chunks`."""


_KIND_OF_ERRNO: dict[int, Kind] = {
    errno.ENOENT: "missing",
    errno.ELOOP: "not-ours",
    errno.ENOTDIR: "not-ours",
    errno.EISDIR: "not-ours",
    errno.ENXIO: "not-ours",
    errno.EACCES: "denied",
    errno.EPERM: "denied",
    errno.EROFS: "read-only",
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
    errno.EFBIG: "full",
    errno.ENOTCONN: "unreachable",
    errno.ESTALE: "unreachable",
    errno.EHOSTDOWN: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.ETIMEDOUT: "unreachable",
    errno.ECONNRESET: "unreachable",
    errno.ECONNABORTED: "unreachable",
}

_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
_SUB = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _error(path: Path, error: OSError) -> ConfinedError:
    kind = _KIND_OF_ERRNO.get(error.errno or 0, "failed")
    what = error.strerror or type(error).__name__
    if error.errno == errno.ELOOP:
        what = "is a symlink (not followed)"
    return ConfinedError(path, what, kind, error.errno)


def _check_name(folder: Path, name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ConfinedError(folder / name, "is not a plain file name", "not-ours")


_NOT_REGULAR: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISLNK, "is a symlink (not followed)"),
    (stat.S_ISFIFO, "is a FIFO, not a regular file"),
    (stat.S_ISDIR, "is a folder, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
    (stat.S_ISCHR, "is a device, not a regular file"),
    (stat.S_ISBLK, "is a device, not a regular file"),
)


def _describe(st: os.stat_result) -> str:
    """What is there instead of a regular file, in fixed words."""
    return next(
        (what for is_it, what in _NOT_REGULAR if is_it(st.st_mode)), "is not a regular file"
    )


class Folder:
    """An open folder (see the module docstring). Close it, or use it as a context manager."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, create: bool = False, mode: int = DIR_MODE) -> Folder:
        """Open a configured folder. Symlinks in ``path`` itself are followed (the LA's choice);
        nothing below it ever is. ``create`` makes the missing trailing components with
        ``mode``, each one's parent fsynced."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise ConfinedError(path, "no such folder", "missing", errno.ENOENT) from None
            _make_configured(path, mode)
            return cls.open(path)
        except OSError as error:
            raise _error(path, error) from None
        return cls(path, fd)

    def child(self, name: str, *, create: bool = False, mode: int = DIR_MODE) -> Folder:
        """The folder ``name`` in this one, never through a symlink; ``create`` makes it with
        exactly ``mode`` (and fsyncs this folder) when it is missing."""
        _check_name(self.path, name)
        path = self.path / name
        try:
            return Folder(path, os.open(name, _SUB, dir_fd=self.fd))
        except FileNotFoundError:
            if not create:
                raise ConfinedError(path, "no such folder", "missing", errno.ENOENT) from None
        except OSError as error:
            raise self._refused(name, error) from None
        try:
            os.mkdir(name, mode, dir_fd=self.fd)
        except FileExistsError:
            pass  # made by a concurrent transfer, or something planted: the open decides
        except OSError as error:
            raise _error(path, error) from None
        else:
            try:
                fd = os.open(name, _SUB, dir_fd=self.fd)
                os.fchmod(fd, mode)  # exact, whatever the umask
            except OSError as error:
                raise self._refused(name, error) from None
            self._fsync()
            return Folder(path, fd)
        return self.child(name)

    def descend(self, *names: str, create: bool = False, mode: int = DIR_MODE) -> Folder:
        """:meth:`child` repeatedly; the intermediate folders are closed."""
        folder = self
        for name in names:
            inner = folder.child(name, create=create, mode=mode)
            if folder is not self:
                folder.close()
            folder = inner
        return folder if folder is not self else Folder(self.path, os.dup(self.fd))

    def _refused(self, name: str, error: OSError) -> ConfinedError:
        """An open of ``name`` failed: say precisely what is there when it is not ours."""
        path = self.path / name
        if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EISDIR):
            try:
                found = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except OSError:
                return _error(path, error)
            if stat.S_ISREG(found.st_mode) and error.errno == errno.ENOTDIR:
                return ConfinedError(path, "is a file, not a folder", "not-ours", error.errno)
            return ConfinedError(path, _describe(found), "not-ours", error.errno)
        return _error(path, error)

    # -- reading ---------------------------------------------------------------------------

    def open_read(self, name: str) -> Reader:
        """Open the regular file ``name`` for reading without following a symlink or waiting
        on a FIFO. Raises ConfinedError (kind ``missing``, ``not-ours``, ...)."""
        _check_name(self.path, name)
        path = self.path / name
        try:
            fd = os.open(name, _READ, dir_fd=self.fd)
        except OSError as error:
            raise self._refused(name, error) from None
        try:
            st = os.fstat(fd)
        except OSError as error:
            os.close(fd)
            raise _error(path, error) from None
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ConfinedError(path, _describe(st), "not-ours")
        return Reader(path, fd)

    def read_small(self, name: str, limit: int) -> bytes:
        """The whole regular file ``name``; ConfinedError (``not-ours``) when it holds more
        than ``limit`` bytes."""
        with self.open_read(name) as reader:
            data = reader.read_at_most(limit + 1)
        if len(data) > limit:
            raise ConfinedError(self.path / name, f"larger than {limit} bytes", "not-ours")
        return data

    def names(self) -> list[str]:
        """The names in this folder (no order promised)."""
        try:
            with os.scandir(self.fd) as entries:
                return [entry.name for entry in entries]
        except OSError as error:
            raise _error(self.path, error) from None

    # -- writing ---------------------------------------------------------------------------

    def create_temp(self, name: str, *, mode: int = FILE_MODE, append: bool = False) -> TempFile:
        """A new temporary file that will become ``name`` (see :class:`TempFile`)."""
        _check_name(self.path, name)
        for _ in range(8):
            temp = f".{name}.{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(temp, _CREATE | (os.O_APPEND if append else 0), mode, dir_fd=self.fd)
            except FileExistsError:
                continue  # astronomically unlikely, or planted: pick another name
            except OSError as error:
                raise _error(self.path / temp, error) from None
            try:
                os.fchmod(fd, mode)
            except OSError as error:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=self.fd)
                raise _error(self.path / temp, error) from None
            # The lock marks it live for remove_leftovers(), where the file system can lock. A
            # cleanup that opened it between our create and our lock took it for a crash's
            # leftover (it holds the lock, or already unlinked it): use another name.
            held = lock(fd)
            if held is False or (held and os.fstat(fd).st_nlink == 0):
                os.close(fd)
                continue
            return TempFile(self, name, temp, fd)
        raise ConfinedError(self.path, "cannot pick a free temporary name", "failed")

    def write_file(self, name: str, data: bytes, *, mode: int = FILE_MODE) -> None:
        """Durably replace ``name`` with ``data`` (temp file, fsync, rename, folder fsync)."""
        with self.create_temp(name, mode=mode) as temp:
            temp.write(data)
            temp.commit()

    def unlink(self, name: str) -> bool:
        """Remove the entry ``name`` (a symlink is removed, not followed); False if missing."""
        _check_name(self.path, name)
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise _error(self.path / name, error) from None
        return True

    def rename(self, old: str, new: str) -> None:
        """Rename ``old`` to ``new`` inside this folder (replacing ``new``, never following
        it: a symlink planted at ``new`` is itself replaced)."""
        _check_name(self.path, old)
        _check_name(self.path, new)
        try:
            os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as error:
            raise _error(self.path / new, error) from None

    def exists(self, name: str) -> bool:
        """Whether anything (even a dangling symlink) is called ``name`` here."""
        _check_name(self.path, name)
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise _error(self.path / name, error) from None
        return True

    def remove_leftovers(self, *, also: re.Pattern[str] | None = None) -> int:
        """Delete temporary files of ours a crash left here: regular files named like
        :meth:`create_temp`'s (or matching ``also``) that no live writer holds locked.
        Returns how many were removed. Anything else is left alone, and so is a match we may
        not remove (planted by someone else in a sticky folder). The folder is walked one
        entry at a time: a school's folder may hold millions of names, and memory must not
        grow with them."""
        removed = 0
        try:
            with os.scandir(self.fd) as entries:
                for entry in entries:
                    name = entry.name
                    if _TEMP_RE.match(name) or (also is not None and also.match(name)):
                        removed += self._remove_leftover(name)
        except OSError as error:
            raise _error(self.path, error) from None
        if removed:
            self._fsync()
        return removed

    def _remove_leftover(self, name: str) -> int:
        """1 when ``name`` was a dead temporary file and is gone now, else 0."""
        try:
            fd = os.open(name, _READ, dir_fd=self.fd)
        except OSError:
            return 0  # a symlink or gone: not ours to judge
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode) or lock(fd) is False:
                return 0  # not a file, or a writer is alive
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            return 0  # gone meanwhile, or not ours to remove
        finally:
            os.close(fd)
        return 1

    def fsync(self) -> None:
        """Make this folder's entries (new, renamed, removed names) durable."""
        self._fsync()

    def _fsync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as error:
            raise _error(self.path, error) from None

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)


class Reader:
    """An open regular file (from :meth:`Folder.open_read`)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def chunks(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The file's bytes, ``size`` at a time, until end of file. A read error raises
        ConfinedError (for a network share, mid-file)."""
        read, fd = os.read, self.fd
        while True:
            try:
                chunk = read(fd, size)
            except OSError as error:
                raise _error(self.path, error) from None
            if not chunk:
                return
            yield chunk

    def read_at_most(self, limit: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        for chunk in self.chunks(min(limit, READ_CHUNK)):
            parts.append(chunk)
            got += len(chunk)
            if got >= limit:
                break
        return b"".join(parts)[:limit]

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TempFile:
    """A file being written under a temporary name in its folder. :meth:`commit` makes it
    ``name`` (durably); leaving the ``with`` block without committing removes it."""

    def __init__(self, folder: Folder, name: str, temp: str, fd: int) -> None:
        self.folder = folder
        self.name = name
        self.temp = temp
        self.fd: int | None = fd
        self._done = False

    @property
    def path(self) -> Path:
        return self.folder.path / self.temp

    def write(self, data: bytes) -> None:
        fd = self._open_fd()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except OSError as error:
                raise _error(self.path, error) from None

    def sync(self) -> None:
        """fsync the data written so far."""
        try:
            os.fsync(self._open_fd())
        except OSError as error:
            raise _error(self.path, error) from None

    def commit(self, *, keep_open: bool = False, replace: bool = True) -> int | None:
        """fsync, rename to ``name``, fsync the folder. ``replace=False`` refuses to replace an
        existing ``name`` (an exclusive create: ConfinedError with errno EEXIST). With
        ``keep_open`` the descriptor stays open and is returned (the caller closes it)."""
        fd = self._open_fd()
        self.sync()
        folder = self.folder
        try:
            if replace:
                os.rename(self.temp, self.name, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
            else:
                os.link(self.temp, self.name, src_dir_fd=folder.fd, dst_dir_fd=folder.fd,
                        follow_symlinks=False)  # fmt: skip
                os.unlink(self.temp, dir_fd=folder.fd)
        except FileExistsError as error:
            self.abort()
            raise ConfinedError(folder.path / self.name, "exists already", "failed",
                                error.errno) from None  # fmt: skip
        except OSError as error:
            self.abort()
            raise _error(folder.path / self.name, error) from None
        folder.fsync()
        self.fd = None
        self._done = True
        if keep_open:
            return fd
        os.close(fd)
        return None

    def abort(self) -> None:
        """Remove the temporary file (best effort: a leftover is cleaned up later). Nothing to
        do once committed."""
        if self._done:
            return
        self._done = True
        fd, self.fd = self.fd, None
        with contextlib.suppress(OSError):
            os.unlink(self.temp, dir_fd=self.folder.fd)
        if fd is not None:
            os.close(fd)

    def _open_fd(self) -> int:
        if self.fd is None:
            raise ConfinedError(self.path, "already committed or aborted", "failed")
        return self.fd

    def __enter__(self) -> TempFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            self.abort()


def lock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` on ``fd`` without waiting: True when taken, False when
    someone else holds it, None when the file system cannot lock (some network file systems
    refuse it on a folder or a read-only descriptor): then nothing is promised by the lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        return None
    return True


def _make_configured(path: Path, mode: int) -> None:
    """Create the missing trailing components of a configured path with exactly ``mode``,
    fsyncing each new entry's parent."""
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for component in reversed(missing):
        try:
            os.mkdir(component, mode)
        except FileExistsError:
            continue
        except OSError as error:
            raise _error(component, error) from None
        try:
            os.chmod(component, mode)
            fsync_dir(component.parent)
        except OSError as error:
            raise _error(component, error) from None


def fsync_dir(directory: Path) -> None:
    """fsync a configured folder by path (after a file in it was created, renamed or removed:
    fsyncing the file alone does not make its name durable)."""
    with Folder.open(directory) as folder:
        folder.fsync()
