"""Loading a whole config dir: files -> documents -> schema -> model -> rules -> Config.

This is the I/O shell of the config package: it lists and reads the files, and hands the
documents to the pure schema, build and rules modules. It never raises for bad content: every
problem of every file is collected in one pass, with file, line and column.

Reload semantics (``last_good``): a file that fails validation keeps its last good version in
force (the previous settings, the previous registry, or the previous task from the same file),
while every valid file applies.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from pathlib import Path

from b2bd.clock import utc_now
from b2bd.config.build import DEFAULT_STATE_DIR, build_base, build_settings, build_task
from b2bd.config.model import DEFAULT_TIMEZONE, Base, Config, Policy, Problem, Settings, Task
from b2bd.config.packaged import validator
from b2bd.config.parallel import fork_map
from b2bd.config.rules import (
    BaseIndex,
    ShardChoice,
    duplicate_ids,
    endpoint_findings,
    ignore_findings,
    la_findings,
    registry_problems,
    resolve_bases,
    resolve_shard,
    split_ignored,
    task_findings,
)
from b2bd.config.schema import DocumentKind, Finding, check
from b2bd.config.yamlfile import (
    MAX_BYTES,
    MAX_NODES,
    MAX_REGISTRY_NODES,
    FileProblem,
    Loaded,
    decode,
    parse,
)
from b2bd.faults import explain
from b2bd.shard import Shard
from b2bd.statedir import running_as

# Problem's own order (its fields, compared in turn), as a key: the same sort, in C.
_PROBLEM_ORDER = attrgetter(*(f.name for f in fields(Problem) if f.compare))
SETTINGS_FILE = "b2bd.yaml"
BASES_FILE = "bases.yaml"
TASKS_DIR = "tasks"
_EDITOR_TEMP_SUFFIXES = ("~", ".swp", ".swo", ".swx", ".tmp", ".bak", ".orig")


class ConfigDirError(Exception):
    """The config dir itself cannot be read (a usage error, not a validation problem)."""


def is_task_file(name: str) -> bool:
    """Task files are ``*.yaml``/``*.yml``; hidden files (``.x``, ``..data``), editor temp and
    backup files are ignored."""
    return (
        not name.startswith((".", "#"))
        and name.endswith((".yaml", ".yml"))
        and not name.endswith(_EDITOR_TEMP_SUFFIXES)
    )


def config_files(root: Path) -> list[str]:
    """The files of a config dir, relative to it, in a stable order (no task files when the
    ``tasks/`` folder is unusable: :func:`tasks_dir_problem` says why)."""
    try:
        os.listdir(root)  # the dir itself must be a readable folder
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ConfigDirError(f"config dir {root} does not exist or is not a directory") from exc
    except OSError as exc:
        raise ConfigDirError(
            explain(exc, "cannot read the config dir", root, user=running_as())
        ) from exc
    files = [SETTINGS_FILE, BASES_FILE]
    try:
        names = sorted(entry.name for entry in os.scandir(root / TASKS_DIR))
    except OSError:
        return files
    files.extend(f"{TASKS_DIR}/{name}" for name in names if is_task_file(name))
    return files


TASKS_DIR_PROBLEMS: dict[int, str] = {
    errno.ENOENT: "the tasks/ folder is missing: every task file lives in it (a config without "
    "tasks has an empty tasks/ folder; in git, keep a .gitkeep in it)",
    errno.ENOTDIR: "tasks is not a folder: task files live in a tasks/ folder",
}


def tasks_dir_problem(root: Path) -> Problem | None:
    """A ``file-unreadable`` error on ``tasks/`` when that folder is missing, is not a folder or
    cannot be listed: never read as "no tasks", which would stop every schedule."""
    try:
        with os.scandir(root / TASKS_DIR):
            return None
    except OSError as exc:
        message = TASKS_DIR_PROBLEMS.get(exc.errno or 0) or explain(
            exc, "cannot list tasks/", user=running_as()
        )
    return Problem(f"{TASKS_DIR}/", 0, 0, "file-unreadable", "error", message)


def read_bytes(path: Path, root: Path, *, root_resolved: bool = False) -> bytes:
    """The bytes of a config file, or FileProblem(file-unreadable).

    Symlinks are followed only while they stay inside ``root`` (a ConfigMap's ``..data`` link
    does; a link to /etc/shadow does not). ``root_resolved``: ``root`` is already free of
    symlinks (a load of many files resolves it once).
    """
    try:
        real = path.resolve(strict=True)
        if not real.is_relative_to(root if root_resolved else root.resolve()):
            raise FileProblem("file-unreadable", "symlink leads outside the config dir")
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise FileProblem("file-unreadable", "file not found (dangling symlink?)") from exc
    except OSError as exc:
        raise FileProblem("file-unreadable", f"cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("file-unreadable", "not a regular file")
        if info.st_size > MAX_BYTES:
            raise FileProblem("file-unreadable", f"larger than 1 MiB ({info.st_size} bytes)")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            raw = stream.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        raise FileProblem("file-unreadable", "larger than 1 MiB")
    return raw


def read_text(path: Path, root: Path) -> str:
    return decode(read_bytes(path, root))


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of each config file's bytes, as ``load_config`` would record them: a cheap way to
    tell whether anything changed since the last load."""
    digests: dict[str, str] = {}
    for name in config_files(root):
        try:
            digests[name] = hashlib.sha256(read_bytes(root / name, root)).hexdigest()
        except FileProblem:
            continue
    return digests


@dataclass
class _File:
    """One file during a load: its document or the problem that stopped it."""

    name: str
    kind: DocumentKind
    digest: str = ""
    doc: Loaded | None = None
    findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems) or any(
            f.severity == "error" for f in self.findings
        )

    def positioned(self) -> Iterator[Problem]:
        yield from self.problems
        assert self.doc is not None or not self.findings
        for f in self.findings:
            assert self.doc is not None
            pos = self.doc.key_at(f.pointer) if f.at_key else self.doc.value_at(f.pointer)
            yield Problem(self.name, pos.line, pos.column, f.rule, f.severity, f.message, f.pointer)


ParseCache = dict[tuple[str, str], tuple[Loaded | None, tuple[Finding, ...], tuple[Problem, ...]]]
"""(file, sha256) -> what parsing and the schema said about those bytes; lets a reload re-check
only the files that changed."""


Examined = tuple[str, Loaded | None, tuple[Finding, ...], tuple[Problem, ...]]
"""What one file's bytes said: their sha256 ("" when unreadable), the document, the schema's
findings and the problems that stopped it."""

_Job = tuple[str, DocumentKind, bytes | None]  # file, kind, bytes (None: still to be read)

POOL_MIN_FILES = 200
"""A load with ``workers`` > 1 forks worker processes only when more files than this need
parsing (below that, starting them costs more than it saves), and uses at most one process per
this many files."""


def _problem(name: str, exc: FileProblem) -> Problem:
    return Problem(name, exc.line, exc.column, exc.rule, "error", exc.message)


def _read_raw(root: Path, real_root: Path, name: str) -> bytes:
    path = root / name
    if not path.exists() and not path.is_symlink():
        raise FileProblem("file-unreadable", "missing")
    return read_bytes(path, real_root, root_resolved=True)


def _examine(root: Path, real_root: Path, job: _Job) -> Examined:
    """Read (unless the job carries the bytes), parse and schema-check one file. Pure in what it
    returns: the same bytes give the same answer in any process."""
    name, kind, raw = job
    if raw is None:
        try:
            raw = _read_raw(root, real_root, name)
        except FileProblem as exc:
            return "", None, (), (_problem(name, exc),)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        limit = MAX_REGISTRY_NODES if kind == "bases" else MAX_NODES
        doc = parse(decode(raw), name, limit)
    except FileProblem as exc:
        return digest, None, (), (_problem(name, exc),)
    return digest, doc, tuple(check(validator(kind), doc)), ()


def _examine_chunk(root: Path, real_root: Path, jobs: list[_Job]) -> list[Examined]:
    return [_examine(root, real_root, job) for job in jobs]


def _examine_all(root: Path, real_root: Path, jobs: list[_Job], workers: int) -> list[Examined]:
    """Every job's answer, in the jobs' order; with ``workers`` > 1, in forked processes
    (:func:`b2bd.config.parallel.fork_map`), at most one per POOL_MIN_FILES files (forking
    costs the parent a few ms each)."""
    workers = min(workers, -(-len(jobs) // POOL_MIN_FILES))
    return fork_map(functools.partial(_examine_chunk, root, real_root), jobs, workers)


def _read_files(root: Path, files: list[_File], cache: ParseCache | None, workers: int) -> None:
    """Fill in each file's digest, document, findings and problems; with a ``cache``, only the
    files whose bytes it has not seen are parsed."""
    real_root = root.resolve()  # once, not per file: symlinks may lead anywhere inside it
    jobs: list[_Job] = []
    pending: list[_File] = []
    for file in files:
        raw = None
        if cache is not None:
            try:
                raw = _read_raw(root, real_root, file.name)
            except FileProblem as exc:
                file.problems.append(_problem(file.name, exc))
                continue
            file.digest = hashlib.sha256(raw).hexdigest()
            known = cache.get((file.name, file.digest))
            if known is not None:
                file.doc = known[0]
                file.findings.extend(known[1])
                file.problems.extend(known[2])
                continue
        jobs.append((file.name, file.kind, raw))
        pending.append(file)
    for file, (digest, doc, findings, problems) in zip(
        pending, _examine_all(root, real_root, jobs, workers), strict=True
    ):
        file.digest, file.doc = digest, doc
        file.findings.extend(findings)
        file.problems.extend(problems)
        if cache is not None and digest:
            cache[(file.name, digest)] = (doc, findings, problems)


def load_config(
    root: Path,
    *,
    now: dt.datetime | None = None,
    last_good: Config | None = None,
    cache: ParseCache | None = None,
    workers: int = 1,
    shard: ShardChoice = "config",
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate every file under ``root`` and build the model from the valid ones.

    ``now`` (aware) decides which schedules are already expired; it defaults to the current
    time. ``cache``, kept by the caller between loads, skips re-parsing unchanged files.
    ``workers`` > 1 parses and schema-checks the files in that many processes when more than
    POOL_MIN_FILES need it; it forks, so only a process without other threads may ask for it
    (``b2bd validate`` does; the daemon does not). The result is the same either way.
    ``shard`` chooses whose view the tasks' targets are (:data:`~b2bd.config.rules.ShardChoice`;
    b2bd.yaml's by default, its ``{env: NAME}`` index read from ``environ``, default
    ``os.environ``): a task's targets are the bases it would reach that the shard owns.
    ``environ`` also gives ``$STATE_DIRECTORY``, the state dir when b2bd.yaml names none.
    Raises ConfigDirError only when ``root`` itself is unusable.
    """
    environ = os.environ if environ is None else environ
    now = now or utc_now()
    root = root.absolute()
    names = config_files(root)
    settings_file = _File(SETTINGS_FILE, "b2bd")
    bases_file = _File(BASES_FILE, "bases")
    task_files = [_File(name, "task") for name in names[2:]]
    _read_files(root, [settings_file, bases_file, *task_files], cache, workers)
    if cache is not None:
        live = {(f.name, f.digest) for f in (settings_file, bases_file, *task_files)}
        for key in [k for k in cache if k not in live]:
            del cache[key]

    settings = _settings(settings_file, root, last_good, shard, environ)
    bases = _bases(bases_file, root, settings, last_good)
    tasks_problem = tasks_dir_problem(root)
    if tasks_problem is not None and last_good is not None:
        tasks = dict(last_good.tasks)  # an unusable tasks/ keeps every last good task in force
    else:
        # The shard b2bd.yaml gave, or the one asked for even when b2bd.yaml is unusable.
        owner = settings.shard if settings is not None else None
        if isinstance(shard, Shard):
            owner = shard
        tasks = _tasks(task_files, bases, settings, now, last_good, owner)

    files = [settings_file, bases_file, *task_files]
    found = [p for f in files for p in f.positioned()]
    if tasks_problem is not None:
        found.append(tasks_problem)
    problems, ignored = split_ignored(
        sorted(found, key=_PROBLEM_ORDER), settings.ignore if settings else frozenset()
    )
    digests = {f.name: f.digest for f in files if f.digest}
    return Config(root, settings, bases, tasks, problems, digests, ignored)


def config_path(root: Path, text: str) -> Path:
    """Where a path written in b2bd.yaml or bases.yaml points: as written when absolute, else
    against the config dir ``root``, symlinks followed."""
    path = Path(text)
    if path.is_absolute():
        return path
    try:
        return (root / path).resolve()
    except RuntimeError:  # a symlink loop: as written, so that using it names the path (ELOOP)
        return Path(os.path.abspath(root / path))


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """The state dir when b2bd.yaml names none: the first entry of ``$STATE_DIRECTORY`` (set
    by systemd's StateDirectory=), else /var/lib/b2bd."""
    return Path(environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE_DIR)


def _settings(
    file: _File,
    root: Path,
    last_good: Config | None,
    shard: ShardChoice,
    environ: Mapping[str, str],
) -> Settings | None:
    if file.doc is None or file.has_errors:
        return last_good.settings if last_good else None
    settings = build_settings(
        file.doc.data, functools.partial(config_path, root), default_state_dir(environ)
    )
    for finding in (*la_findings(settings), *ignore_findings(file.doc.data.get("ignore", ()))):
        file.add(finding)
    owned, findings = resolve_shard(file.doc.data.get("shard"), shard, environ)
    for finding in findings:
        file.add(finding)
    if file.has_errors:
        return last_good.settings if last_good else None
    return replace(settings, shard=owned)


def _bases(
    file: _File, root: Path, settings: Settings | None, last_good: Config | None
) -> dict[str, Base]:
    """The registry. Entries with schema errors are left out, so that the tasks' checks still
    see every good base; but an invalid bases.yaml as a whole is replaced by the last good one."""
    if file.doc is None or not isinstance(file.doc.data.get("bases"), list):
        return dict(last_good.bases) if last_good else {}
    bad = {_entry_index(f.pointer) for f in file.findings if f.severity == "error"}
    place = functools.partial(config_path, root)
    entries = [
        (i, build_base(entry, place))
        for i, entry in enumerate(file.doc.data["bases"])
        if i not in bad and None not in bad
    ]
    wrong: dict[str, list[str]] = {}
    for index, base_id, message, problem in registry_problems(entries, settings):
        file.add(Finding(f"/bases/{index}/id", "bases-file", message))
        wrong.setdefault(base_id, []).append(problem)
    for finding in endpoint_findings(entries):
        file.add(finding)
    if file.has_errors and last_good:
        return dict(last_good.bases)
    registry: dict[str, Base] = {}
    for _, base in entries:
        registry.setdefault(base.id, base)
    # A base with a bases-file problem stays known (tasks naming it are told why) but carries
    # its problems, so no task targets it and no transfer reaches it.
    for base_id, problems in wrong.items():
        registry[base_id] = replace(registry[base_id], problems=tuple(dict.fromkeys(problems)))
    return registry


def _entry_index(pointer: str) -> int | None:
    parts = pointer.split("/")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "bases" and parts[2].isdigit() else None


def _tasks(
    files: list[_File],
    bases: dict[str, Base],
    settings: Settings | None,
    now: dt.datetime,
    last_good: Config | None,
    shard: Shard | None,
) -> dict[str, Task]:
    zone = settings.timezone if settings else DEFAULT_TIMEZONE
    defaults = settings.defaults if settings else Policy()
    built: dict[str, Task] = {}
    index = BaseIndex(bases, settings)
    for file in files:
        if file.doc is None or file.has_errors:
            continue
        task = build_task(file.doc.data, file.name, zone, defaults)
        resolution = resolve_bases(task, bases, settings, index)
        for finding in (*resolution.findings, *task_findings(task, settings, now)):
            file.add(finding)
        if not file.has_errors:
            targets = shard.owned(resolution.targets) if shard else resolution.targets
            built[file.name] = replace(task, targets=targets)

    for task_id, claimants in duplicate_ids(built.values()).items():
        others = ", ".join(t.file for t in claimants)
        for task in claimants:
            file = next(f for f in files if f.name == task.file)
            file.add(Finding("/id", "id-duplicate", f"task id {task_id!r} is claimed by {others}"))
            del built[task.file]

    if last_good:
        # An invalid file keeps its last good task, unless a valid file now claims that id.
        claimed = {t.id for t in built.values()}
        previous = {t.file: t for t in last_good.tasks.values()}
        for file in files:
            old = previous.get(file.name)
            if old and file.has_errors and old.id not in claimed:
                built[file.name] = old
                claimed.add(old.id)
    return {task.id: task for task in built.values()}
