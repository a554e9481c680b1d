"""The ``directory`` connector, read side: a school's export folder (DESIGN sections 5 and 6).

Layout of an export folder (a school's, or the LA's ``<la_outbound>/<base>/``)::

    manifest.json      {"mis": "sims", "sims_version": "7.214", "services_manager": "running",
                        "exported_at": "2026-11-27T18:00:00Z", "laestab": "8814001",
                        "files": {"pupils.jsonl": {"records": 812, "sha256": "..."}, ...}}
    pupils.jsonl       one pupil record per line      (kind "pupil")       required
    attendance.jsonl   one session mark per line      (kind "mark")        required to read marks
    results.jsonl      one result per line            (kind "result")      required to read results
    deletions.jsonl    one deletion per line          (kind "deletion")    optional (none = empty)

The folder is untrusted (DESIGN section 6): everything is opened through
:class:`b2bd.confined.Folder` (no symlink followed below the configured path, regular files
only, opened non-blocking so a FIFO is refused rather than waited on). Files are read in 1 MiB
chunks; the transfer's deadline is checked per chunk; a line over
:data:`~b2bd.connectors.source.LINE_LIMIT` is rejected ``too-long`` and skipped to its newline
without being held; a UTF-8 BOM at the start of a file is dropped; blank lines are not records.

Integrity (DESIGN section 5): a file the data type needs is ``bad-data`` when missing or not a
regular file; when the manifest lists a file under ``files`` with ``records`` (non-blank lines)
and/or ``sha256`` (of the file's bytes), the file is checked against them once read to the end,
and a mismatch (a truncated or replaced file) is ``bad-data`` before the transfer can succeed. A
file listed there must exist.

Failure classes: folder missing, not a folder or unreadable -> ``unreachable`` (transient: a
share may come back); manifest missing, not JSON or malformed, or naming another LAESTAB ->
``bad-data``; services_manager ``stopped`` (or absent where required) -> ``prerequisite``. No
message quotes a value from the manifest or the files: they name the file, field, line and rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from b2bd.confined import Folder
from b2bd.connectors.source import (
    LINE_LIMIT,
    TOO_LONG,
    ConnectorError,
    Deadline,
    FailureReason,
    Manifest,
    no_deadline,
)
from b2bd.faults import ConfinedError, Kind
from b2bd.records.check import RecordDecoder, Rejection, is_utc_time
from b2bd.records.model import Record, RecordKind

MANIFEST_FILE = "manifest.json"
FILES: dict[RecordKind, str] = {
    "pupil": "pupils.jsonl",
    "mark": "attendance.jsonl",
    "result": "results.jsonl",
    "deletion": "deletions.jsonl",
}
"""Record kind -> its file name in an export folder."""
OPTIONAL: frozenset[RecordKind] = frozenset({"deletion"})
"""Kinds whose file may be absent (meaning: none)."""

READ_REASON: dict[Kind, FailureReason] = {
    "missing": "bad-data",
    "not-ours": "bad-data",
    "denied": "bad-data",
    "read-only": "unreachable",
    "full": "unreachable",
    "unreachable": "unreachable",
    "failed": "unreachable",
}
"""Reason class of a file in the export that cannot be read, by what is wrong with it."""
BELOW_REASON: dict[Kind, FailureReason] = {
    **dict.fromkeys(READ_REASON, "unreachable"),
    "not-ours": "bad-data",
}
"""... of a folder below the configured path (a symlink there is never followed: ``bad-data``).
The configured folder itself that cannot be opened is ``unreachable`` (a share not mounted)."""

_MAX_MANIFEST = 1 << 16
_BOM = b"\xef\xbb\xbf"
_NL = b"\n"
_SHA256_HEX = r"^[0-9a-f]{64}$"


class _FileFacts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    records: Annotated[int, msgspec.Meta(ge=0)] | None = None
    sha256: Annotated[str, msgspec.Meta(pattern=_SHA256_HEX)] | None = None


class _ManifestDoc(msgspec.Struct, frozen=True):
    # Unknown fields are allowed: an export tool may add its own, and none of them matter here.
    mis: Annotated[str, msgspec.Meta(max_length=64)]
    exported_at: str
    services_manager: Literal["running", "stopped"] | None = None
    sims_version: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    laestab: str | None = None
    files: dict[str, _FileFacts] | None = None


def _manifest_problem(error: msgspec.DecodeError) -> str:
    """A fixed description of what is wrong with a manifest: msgspec's message may quote the
    offending value, so only the field path it names is kept."""
    text = str(error)
    if isinstance(error, msgspec.ValidationError):
        if "Object missing required field" in text:
            return "a required field (mis, exported_at) is missing"
        at = text.rfind("- at `$")
        where = text[at + 6 : text.index("`", at + 6)] if at >= 0 else "$"
        field = where.split("[")[0].split(".")
        name = ".".join(part for part in field[1:] if part) or "the document"
        if name == "files":
            return "files: every entry must be {records: N, sha256: 64 hex digits}"
        return f"field {name[:40]}: wrong type or value"
    return "not a JSON object"


class DirectorySource:
    """Reads one export folder.

    ``path`` is the configured folder (it may itself be a symlink set by the LA); ``below``
    names sub-folders of it to read instead (the LA outbound store's ``<base>``), reached
    without following symlinks. ``laestab``: when given, the manifest's ``laestab`` (if it has
    one) must equal it, so a base whose path points at another school's folder fails as
    ``bad-data`` instead of delivering the wrong children's data. ``require_services_manager``:
    a school export must say SIMS Services Manager is ``running``; the LA's own outbound store
    passes False.

    The folder is opened once, at the first :meth:`manifest` or :meth:`read`, and held until
    :meth:`close`: every file of one transfer comes from the folder whose manifest was checked,
    even if the configured path is swapped meanwhile (an export tool renaming a fresh export
    into place, a school pointing its folder elsewhere). A new source sees the new folder.
    """

    def __init__(
        self,
        path: Path,
        *,
        below: tuple[str, ...] = (),
        laestab: str | None = None,
        require_services_manager: bool = True,
    ) -> None:
        self.root = Path(path)
        self.below = below
        self.path = self.root.joinpath(*below)
        self.laestab = laestab
        self.require_services_manager = require_services_manager
        self._doc: _ManifestDoc | None = None
        self._held: Folder | None = None

    def manifest(self, *, deadline: Deadline = no_deadline) -> Manifest:
        """The folder's manifest, checked (see the module docstring for the failure classes)."""
        doc = self._manifest_doc()
        return Manifest(
            mis=doc.mis,
            exported_at=doc.exported_at,
            services_manager=doc.services_manager,
            sims_version=doc.sims_version,
            laestab=doc.laestab,
        )

    def _manifest_doc(self) -> _ManifestDoc:
        try:
            data = self._folder().read_small(MANIFEST_FILE, _MAX_MANIFEST)
        except ConfinedError as error:
            if error.kind == "missing":
                raise ConnectorError("bad-data", f"{error.path}: no manifest") from None
            raise ConnectorError(READ_REASON[error.kind], str(error)) from None
        manifest_path = self.path / MANIFEST_FILE
        try:
            doc = msgspec.json.decode(data, type=_ManifestDoc)
        except msgspec.DecodeError as error:
            problem = _manifest_problem(error)
            raise ConnectorError("bad-data", f"{manifest_path}: {problem}") from None
        except RecursionError:  # nesting deeper than the decoder will follow
            raise ConnectorError("bad-data", f"{manifest_path}: nested too deeply") from None
        if not is_utc_time(doc.exported_at):
            raise ConnectorError(
                "bad-data", f"{manifest_path}: exported_at is not YYYY-MM-DDTHH:MM:SSZ"
            )
        if self.laestab is not None and doc.laestab is not None and doc.laestab != self.laestab:
            # The export's own LAESTAB is not quoted: it is a value from the school's file.
            raise ConnectorError(
                "bad-data",
                f"{manifest_path}: laestab is not this base's ({self.laestab}): "
                "the endpoint path may point at another school's export",
            )
        if self.require_services_manager and doc.services_manager != "running":
            state = doc.services_manager or "not reported"
            raise ConnectorError(
                "prerequisite", f"{manifest_path}: SIMS Services Manager is {state}"
            )
        self._doc = doc
        return doc

    def read(
        self, kind: RecordKind, since: str | None = None, *, deadline: Deadline = no_deadline
    ) -> Iterator[tuple[bytes, Record | Rejection]]:
        """Stream every record line of ``kind``'s file as (raw line without newline, record or
        rejection); see :class:`b2bd.connectors.source.Source` and the module docstring.
        ``since`` is ignored: a file is read whole."""
        decode = RecordDecoder(kind).decode
        too_long = TOO_LONG
        for lines, skipped in self.batches(kind, deadline=deadline):
            for line in lines:
                yield line, decode(line)
            for _ in range(skipped):
                yield b"", too_long

    def close(self) -> None:
        """Release the folder held since the first read (a later read opens it afresh)."""
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def lines(self, kind: RecordKind) -> Iterator[bytes]:
        """The raw non-blank lines of ``kind``'s file (no checks; too-long lines left out)."""
        for lines, _skipped in self.batches(kind):
            yield from lines

    def batches(
        self, kind: RecordKind, *, deadline: Deadline = no_deadline
    ) -> Iterator[tuple[list[bytes], int]]:
        """``kind``'s file as (complete non-blank lines of one chunk, how many too-long lines
        ended in it), checked against the manifest's ``files`` entry at the end."""
        doc = self._doc if self._doc is not None else self._manifest_doc()
        name = FILES[kind]
        facts = (doc.files or {}).get(name)
        try:
            reader = self._folder().open_read(name)
        except ConfinedError as error:
            if error.kind == "missing" and kind in OPTIONAL and facts is None:
                return
            what = "missing (the export must have it)" if error.kind == "missing" else None
            message = f"{error.path}: {what}" if what else str(error)
            raise ConnectorError(READ_REASON[error.kind], message) from None
        path = reader.path
        hasher = hashlib.sha256() if facts is not None and facts.sha256 is not None else None
        records = 0
        try:
            with reader:
                for lines, skipped in _split(reader.chunks(LINE_LIMIT), deadline, hasher):
                    records += len(lines) + skipped
                    yield lines, skipped
        except ConfinedError as error:
            raise ConnectorError(READ_REASON[error.kind], str(error)) from None
        if facts is not None:
            if facts.records is not None and records != facts.records:
                raise ConnectorError(
                    "bad-data",
                    f"{path}: {records} records read, the manifest says {facts.records} "
                    "(truncated or replaced while exported?)",
                )
            if hasher is not None and hasher.hexdigest() != facts.sha256:
                raise ConnectorError(
                    "bad-data", f"{path}: sha256 differs from the manifest's (changed or truncated)"
                )

    def _folder(self) -> Folder:
        """The export folder, opened at the first call and held until :meth:`close`."""
        if self._held is None:
            self._held = self._open_folder()
        return self._held

    def _open_folder(self) -> Folder:
        try:
            root = Folder.open(self.root)
        except ConfinedError as error:
            if error.kind == "missing":
                raise ConnectorError("unreachable", f"{self.root}: no such folder") from None
            raise ConnectorError("unreachable", str(error)) from None
        if not self.below:
            return root
        try:
            return root.descend(*self.below)
        except ConfinedError as error:
            if error.kind == "missing":
                raise ConnectorError("unreachable", f"{error.path}: no such folder") from None
            raise ConnectorError(BELOW_REASON[error.kind], str(error)) from None
        finally:
            root.close()


def _split(
    chunks: Iterator[bytes], deadline: Deadline, hasher: hashlib._Hash | None
) -> Iterator[tuple[list[bytes], int]]:
    """Cut chunks of at most :data:`LINE_LIMIT` bytes into lines: (complete non-blank lines,
    too-long lines ended) per chunk.

    Never holds more than one line limit plus one chunk: a partial line longer than the limit
    is dropped and the rest of it skipped up to its newline. Since a chunk is no longer than the
    limit, only a chunk's first line (the one continuing the previous chunk's tail) can be too
    long: one length check per chunk, not per line. ``\\r\\n`` endings and a BOM at the very
    start are tolerated. The common case (no CR, no blank line) is one ``split`` in C.
    """
    limit = LINE_LIMIT
    carry = b""
    skipping = False
    first = True
    for chunk in chunks:
        deadline()
        if hasher is not None:
            hasher.update(chunk)
        if skipping:
            end = chunk.find(_NL)
            if end < 0:
                continue
            chunk = chunk[end + 1 :]
            skipping = False
        data = carry + chunk if carry else chunk
        if first:
            if len(data) < len(_BOM) and _BOM.startswith(data):
                carry = data
                continue
            first = False
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
        lines = data.split(_NL)
        carry = lines.pop()
        skipped = 0
        if len(carry) > limit + 1:  # (+1: it may yet end in the \r of a \r\n)
            carry = b""
            skipping = True
            skipped = 1
        if lines:
            if b"\r" in data:
                lines = [line.rstrip(b"\r") for line in lines]
            if len(lines[0]) > limit:
                del lines[0]
                skipped += 1
            if b"" in lines:
                lines = [line for line in lines if line]
        if lines or skipped:
            yield lines, skipped
    deadline()
    if first and carry.startswith(_BOM):
        carry = carry[len(_BOM) :]
    carry = carry.rstrip(b"\r")
    if len(carry) > limit:  # a last line without a newline is held to the limit too
        yield [], 1
    elif carry:
        yield [carry], 0
