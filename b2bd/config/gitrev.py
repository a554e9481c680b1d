"""A config dir as it was at a git revision, written into a temporary folder (``diff --git``).

Only the files the loader reads are taken out of the revision: ``b2bd.yaml``, ``bases.yaml``
and the task files directly in ``tasks/``, read with ``git ls-tree`` and ``git cat-file``
(no checkout, no work-tree, no hooks, no filters). A commit is untrusted input: an entry whose
name is not one plain path component, that is a symbolic link or a submodule, or that appears
twice is refused, never followed; files are created exclusively (``O_EXCL | O_NOFOLLOW``) in a
folder made for this call, so nothing outside it is read or written. A blob larger than the
loader accepts is written as a sparse file of its size (the loader then refuses it, as it
would the real file, without the bytes taking disk space).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from b2bd.config.load import BASES_FILE, SETTINGS_FILE, TASKS_DIR, is_task_file
from b2bd.config.yamlfile import MAX_BYTES
from b2bd.faults import explain
from b2bd.statedir import running_as

_BLOB_MODES = frozenset({"100644", "100755"})
_KINDS = {"120000": "a symbolic link", "160000": "a submodule", "040000": "a folder"}
_CHUNK = 1 << 16
GIT_TIMEOUT = 120.0


class GitRevError(Exception):
    """The revision cannot be compared (one line: what and why)."""


@dataclass(frozen=True)
class _Entry:
    mode: str
    kind: str
    oid: str
    size: int
    name: str


@contextmanager
def config_at(config_dir: Path, rev: str) -> Iterator[Path]:
    """A temporary config dir holding ``config_dir``'s loader files as they were at ``rev``;
    removed on exit. Raises GitRevError when the dir is not in a git work tree, the revision
    is unknown, the dir did not exist at it, or an entry is refused."""
    if not rev or rev.startswith("-") or "\0" in rev:
        raise GitRevError(f"{rev!r} is not a git revision")
    if not config_dir.is_dir():
        raise GitRevError(f"config dir {config_dir} does not exist or is not a directory")
    top = _git(
        config_dir, "rev-parse", "--show-toplevel", what=f"{config_dir} is not in a git work tree"
    )
    prefix = _git(
        config_dir, "rev-parse", "--show-prefix", what=f"{config_dir} is not in a git work tree"
    )
    repo = Path(top.rstrip("\n"))
    prefix = prefix.rstrip("\n")
    commit = _git(
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{rev}^{{commit}}",
        what=f"no commit {rev!r} in the git repository at {repo}",
    ).strip()
    where = f"{rev}:{prefix}" if prefix else f"{rev}:"
    tree = f"{commit}:{prefix.rstrip('/')}" if prefix else f"{commit}^{{tree}}"
    top_entries = _ls_tree(repo, tree, f"{prefix or './'} does not exist at {rev}")
    try:
        work = Path(tempfile.mkdtemp(prefix="b2bd-diff-"))
    except OSError as exc:
        raise GitRevError(_unwritable(exc, Path(tempfile.gettempdir()))) from None
    try:
        try:
            root = _extract(repo, work, top_entries, where)
        except OSError as exc:  # a full or read-only $TMPDIR: say where
            raise GitRevError(_unwritable(exc, work.parent)) from None
        yield root
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unwritable(exc: OSError, where: Path) -> str:
    return explain(exc, f"cannot write the revision's config files in {where}", user=running_as())


def _extract(repo: Path, work: Path, top_entries: list[_Entry], where: str) -> Path:
    """The loader files among ``top_entries`` (and in their tasks/ tree), written to a config
    dir made in ``work``; GitRevError for an entry refused."""
    root = work / "config"
    root.mkdir(mode=0o700)
    wanted: list[tuple[_Entry, str]] = []
    seen: set[str] = set()
    for entry in top_entries:
        _check_name(entry, where, seen)
        if entry.name in (SETTINGS_FILE, BASES_FILE):
            _check_blob(entry, where)
            wanted.append((entry, entry.name))
        elif entry.name == TASKS_DIR:
            if entry.mode == "040000":
                (root / TASKS_DIR).mkdir(mode=0o700)
                task_seen: set[str] = set()
                for task in _ls_tree(repo, entry.oid, f"{where}{TASKS_DIR} is unreadable"):
                    _check_name(task, f"{where}{TASKS_DIR}/", task_seen)
                    if is_task_file(task.name):
                        _check_blob(task, f"{where}{TASKS_DIR}/")
                        wanted.append((task, f"{TASKS_DIR}/{task.name}"))
            else:
                _check_blob(entry, where)
                _create(root, TASKS_DIR).close()  # the loader says: tasks is not a folder
    _write_blobs(repo, root, wanted, work)
    return root


def _git(cwd: Path, *args: str, what: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            # Names in a tree are bytes, not always UTF-8: read as the file system's names.
            encoding="utf-8",
            errors="surrogateescape",
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise GitRevError("git is not installed (needed by --git)") from None
    except subprocess.TimeoutExpired:
        raise GitRevError(f"git {args[0]} did not answer in {GIT_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        if "dubious ownership" in done.stderr:  # a checkout owned by another user (CI images)
            raise GitRevError(
                f"git refuses the repository at {cwd}: it belongs to another user (run "
                "`git config --global --add safe.directory DIR` for it as this user)"
            )
        raise GitRevError(what)
    return done.stdout


def _ls_tree(repo: Path, tree: str, what: str) -> list[_Entry]:
    """The entries of one tree (not recursive), with their sizes."""
    out = _git(repo, "ls-tree", "-z", "-l", "--end-of-options", tree, what=what)
    entries: list[_Entry] = []
    for record in out.split("\0"):
        if not record:
            continue
        meta, _, name = record.partition("\t")
        mode, kind, oid, size = meta.split()
        entries.append(_Entry(mode, kind, oid, int(size) if size.isdigit() else 0, name))
    return entries


def _check_name(entry: _Entry, where: str, seen: set[str]) -> None:
    """One plain path component, once: anything else can only come from a crafted commit."""
    name = entry.name
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise GitRevError(f"{where}: refused an entry named {name!r} (not a plain file name)")
    if name in seen:
        raise GitRevError(f"{where}: refused {name!r}, listed twice in one folder")
    seen.add(name)


def _shown(name: str) -> str:
    """A name from a commit, safe on a terminal (escape sequences shown as escapes)."""
    return name if name.isprintable() else repr(name)[1:-1]


def _check_blob(entry: _Entry, where: str) -> None:
    if entry.kind != "blob" or entry.mode not in _BLOB_MODES:
        kind = _KINDS.get(entry.mode, f"a {_shown(entry.kind)} of mode {_shown(entry.mode)}")
        raise GitRevError(
            f"{where}{_shown(entry.name)} is {kind}: --git compares regular files only "
            "(check out both sides and compare the two dirs instead)"
        )


def _create(root: Path, name: str) -> IO[bytes]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    return os.fdopen(os.open(root / name, flags, 0o600), "wb")


def _write_blobs(repo: Path, root: Path, wanted: list[tuple[_Entry, str]], work: Path) -> None:
    """Every wanted blob through one ``git cat-file --batch``, in order, each into its file."""
    if not wanted:
        return
    ids = work / "objects"
    ids.write_text("".join(f"{entry.oid}\n" for entry, _ in wanted), "ascii")
    with ids.open("rb") as stdin:
        try:
            proc = subprocess.Popen(
                ["git", "-C", str(repo), "cat-file", "--batch"],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise GitRevError("git is not installed (needed by --git)") from None
    assert proc.stdout is not None
    try:
        for entry, name in wanted:
            header = proc.stdout.readline().split()
            if len(header) != 3 or header[0].decode("ascii", "replace") != entry.oid:
                raise GitRevError(f"git cat-file gave no blob for {name} ({entry.oid})")
            size = int(header[2])
            with _create(root, name) as out:
                _copy(proc.stdout, out, size)
            proc.stdout.read(1)  # the newline after each object
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()


def _copy(source: IO[bytes], out: IO[bytes], size: int) -> None:
    """``size`` bytes from ``source``: the first MAX_BYTES + 1 written, the rest skipped and the
    file extended to ``size`` (sparse), so the loader sees the true size and refuses it."""
    left = size
    kept = 0
    while left:
        chunk = source.read(min(_CHUNK, left))
        if not chunk:
            raise GitRevError("git cat-file ended early")
        left -= len(chunk)
        if kept <= MAX_BYTES:
            out.write(chunk[: MAX_BYTES + 1 - kept])
            kept += min(len(chunk), MAX_BYTES + 1 - kept)
    if size > kept:
        out.flush()
        os.ftruncate(out.fileno(), size)
