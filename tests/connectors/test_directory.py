from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from b2bd.config.model import Endpoint
from b2bd.connectors.directory import FILES, DirectorySource
from b2bd.connectors.source import ConnectorError, Manifest
from b2bd.connectors.table import open_source
from b2bd.records import Pupil, Rejection, SessionMark, tagged_line

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "schools"
MANIFEST = {
    "mis": "sims",
    "sims_version": "7.214",
    "services_manager": "running",
    "exported_at": "2026-11-27T18:00:00Z",
    "laestab": "8801200",
}
MARK = (
    b'{"upn":"B801200005001","date":"2026-11-02","session":"AM","code":"/",'
    b'"updated_at":"2026-11-02T09:10:11Z"}'
)


def export(tmp_path, manifest=MANIFEST, **files):
    folder = tmp_path / "school"
    folder.mkdir()
    if manifest is not None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (folder / "manifest.json").write_text(text)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def reason(source):
    with pytest.raises(ConnectorError) as caught:
        source.manifest()
    return caught.value.reason


def test_reads_manifest_and_streams_records_with_raw_lines(tmp_path):
    bad = MARK.replace(b"B801", b"A801")
    folder = export(tmp_path, **{"attendance.jsonl": MARK + b"\n\n" + bad + b"\r\n" + MARK})
    source = DirectorySource(folder, laestab="8801200")
    assert source.manifest() == Manifest(
        mis="sims",
        exported_at="2026-11-27T18:00:00Z",
        services_manager="running",
        sims_version="7.214",
        laestab="8801200",
    )
    got = list(source.read("mark"))
    assert [raw for raw, _ in got] == [MARK, bad, MARK]
    assert isinstance(got[0][1], SessionMark)
    assert got[1][1] == Rejection("upn-check-letter", "upn")
    assert json.loads(tagged_line("mark", got[0][0]))["kind"] == "mark"


def test_missing_data_files_are_bad_data_except_deletions(tmp_path):
    source = DirectorySource(export(tmp_path))
    assert list(source.read("deletion")) == []  # none deleted
    for kind in ("pupil", "mark", "result"):
        with pytest.raises(ConnectorError) as caught:
            list(source.read(kind))
        assert caught.value.reason == "bad-data"
        assert f"{FILES[kind]}: missing" in str(caught.value)


def test_missing_folder_is_unreachable(tmp_path):
    source = DirectorySource(tmp_path / "nowhere")
    assert reason(source) == "unreachable"
    with pytest.raises(ConnectorError) as caught:
        list(source.read("mark"))
    assert caught.value.reason == "unreachable"
    assert caught.value.transient


def test_a_file_where_the_folder_should_be_is_unreachable(tmp_path):
    (tmp_path / "school").write_text("not a folder")
    assert reason(DirectorySource(tmp_path / "school")) == "unreachable"


def read_as_unprivileged(folder):
    """Read the folder in a forked child. As root (where permissions do not bite) the child
    first drops to uid/gid 65534, so an unreadable folder really is unreadable; the code is
    already imported, so the child needs no access to the checkout or the venv."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            source = DirectorySource(folder)
            try:
                source.manifest()
                out = str(sum(1 for _ in source.read("mark")))
            except ConnectorError as error:
                out = error.reason
            os.write(write_end, out.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        out = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return out


@pytest.fixture
def open_tmp():
    # Under /tmp with 0755 parents, so the unprivileged child can reach it.
    root = Path(tempfile.mkdtemp(prefix="b2bd-dir-"))
    root.chmod(0o755)
    yield root
    for path in root.rglob("*"):
        path.chmod(0o755)
    shutil.rmtree(root)


def test_unreadable_folder_is_unreachable(open_tmp):
    folder = export(open_tmp, **{"attendance.jsonl": MARK})
    folder.chmod(0o755)
    assert read_as_unprivileged(folder) == "1"  # the probe itself works
    folder.chmod(0)
    assert read_as_unprivileged(folder) == "unreachable"


def test_unreadable_data_file_is_bad_data(open_tmp):
    folder = export(open_tmp, **{"attendance.jsonl": MARK})
    folder.chmod(0o755)
    (folder / "manifest.json").chmod(0o644)
    (folder / "attendance.jsonl").chmod(0)
    assert read_as_unprivileged(folder) == "bad-data"


def test_data_file_that_is_a_folder_is_bad_data(tmp_path):
    folder = export(tmp_path)
    (folder / "attendance.jsonl").mkdir()
    with pytest.raises(ConnectorError) as caught:
        list(DirectorySource(folder).read("mark"))
    assert caught.value.reason == "bad-data"
    assert "is a folder, not a regular file" in str(caught.value)


@pytest.mark.parametrize(
    "manifest",
    [
        None,  # missing
        "{not json",
        json.dumps({"mis": "sims"}),  # exported_at missing
        json.dumps({**MANIFEST, "exported_at": "yesterday"}),
        json.dumps({**MANIFEST, "services_manager": "paused"}),
        json.dumps([MANIFEST]),
        json.dumps({**MANIFEST, "laestab": "8809999"}),  # another school's export
        " " * 70_000,
    ],
)
def test_bad_manifest_is_bad_data(tmp_path, manifest):
    folder = export(tmp_path, manifest=manifest)
    assert reason(DirectorySource(folder, laestab="8801200")) == "bad-data"


def test_services_manager_stopped_is_a_prerequisite_failure(tmp_path):
    folder = export(tmp_path, manifest={**MANIFEST, "services_manager": "stopped"})
    with pytest.raises(ConnectorError) as caught:
        DirectorySource(folder).manifest()
    assert caught.value.reason == "prerequisite"
    assert not caught.value.transient
    assert "stopped" in str(caught.value)


def test_la_outbound_store_needs_no_services_manager(tmp_path):
    doc = {k: v for k, v in MANIFEST.items() if k != "services_manager"}
    folder = export(tmp_path, manifest=doc)
    assert reason(DirectorySource(folder)) == "prerequisite"
    manifest = DirectorySource(folder, require_services_manager=False).manifest()
    assert manifest.services_manager is None


def test_unknown_manifest_fields_are_ignored(tmp_path):
    folder = export(tmp_path, manifest={**MANIFEST, "tool": "exporter 2.1"})
    assert DirectorySource(folder).manifest().mis == "sims"


def test_error_messages_carry_no_pupil_data(tmp_path):
    folder = export(tmp_path, manifest={**MANIFEST, "services_manager": "stopped"})
    (folder / "pupils.jsonl").write_text('{"surname": "Secret"}\n')
    with pytest.raises(ConnectorError) as caught:
        DirectorySource(folder).manifest()
    assert "Secret" not in str(caught.value)
    (folder / "manifest.json").write_text(json.dumps(MANIFEST))
    [(_, rejection)] = DirectorySource(folder).read("pupil")
    assert "Secret" not in repr(rejection)


def test_reads_every_shipped_example(tmp_path):
    for folder in sorted(EXAMPLES.iterdir()):
        source = open_source(Endpoint(type="directory", path=folder), laestab=folder.name)
        assert source.manifest().laestab == folder.name
        for kind in FILES:
            records = [record for _, record in source.read(kind)]
            assert records, (folder.name, kind)
            assert not [r for r in records if isinstance(r, Rejection)]


def test_reading_is_streamed_not_loaded_whole(tmp_path):
    # Lines are read lazily (a chunk at a time): a line appended after the first record came
    # back is still seen, which a reader that loaded the file at the start would miss.
    folder = export(tmp_path)
    example = (EXAMPLES / "8814001" / "pupils.jsonl").read_bytes()
    (folder / "pupils.jsonl").write_bytes(example * (3 * 2**20 // len(example) + 1))
    original = (folder / "pupils.jsonl").read_bytes().splitlines()
    stream = DirectorySource(folder).read("pupil")
    first_line, first = next(stream)
    assert isinstance(first, Pupil)
    with (folder / "pupils.jsonl").open("ab") as handle:
        handle.write(first_line + b"\n")
    rest = [line for line, _ in stream]
    assert [first_line, *rest] == [*original, first_line]


def test_line_cutting_matches_a_plain_reference_whatever_the_chunking():
    """Lines around the 64 KiB limit, CRLF, blank lines and a BOM, fed in random chunk sizes up
    to the limit: the streaming cutter keeps exactly the lines a plain split keeps and counts
    every over-long one (hypothesis)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from b2bd.connectors.directory import _split
    from b2bd.connectors.source import LINE_LIMIT

    limit = LINE_LIMIT
    lengths = st.sampled_from([0, 1, 100, limit - 1, limit, limit + 1, 2 * limit + 1])

    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(st.tuples(lengths, st.booleans()), max_size=5),
        st.booleans(),
        st.one_of(st.none(), lengths),
        # mostly large chunks (cheap), now and then a tiny one (a boundary in a \r\n, a BOM)
        st.lists(
            st.one_of(st.integers(1, 3), st.integers(4096, LINE_LIMIT)), min_size=2, max_size=20
        ),
    )
    def check(shape, bom, tail, sizes):
        body = b"".join(b"x" * n + (b"\r\n" if crlf else b"\n") for n, crlf in shape)
        if tail is not None:  # a last line without a newline, short or over the limit
            body = body + b"t" * tail
        data = (b"\xef\xbb\xbf" if bom else b"") + body
        chunks, at, i = [], 0, 0
        while at < len(data):
            size = sizes[i % len(sizes)]
            chunks.append(data[at : at + size])
            at, i = at + size, i + 1
        kept, skipped = [], 0
        for lines, n in _split(iter(chunks), lambda: None, None):
            kept.extend(lines)
            skipped += n
        reference = [line.rstrip(b"\r") for line in body.split(b"\n")]
        reference = [line for line in reference if line]
        assert kept == [line for line in reference if len(line) <= LINE_LIMIT]
        assert skipped == sum(1 for line in reference if len(line) > LINE_LIMIT)

    check()


def test_a_last_line_one_byte_over_the_limit_without_a_newline_is_too_long(tmp_path):
    """The limit holds for the file's last line too (it used to keep a last line of exactly
    LINE_LIMIT + 1 bytes that had no newline)."""
    from b2bd.connectors.source import LINE_LIMIT, TOO_LONG

    for size, expected in ((LINE_LIMIT, "kept"), (LINE_LIMIT + 1, "too-long")):
        folder = tmp_path / str(size)
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(MANIFEST))
        (folder / "attendance.jsonl").write_bytes(MARK + b"\n" + b" " * (size - len(MARK)) + MARK)
        got = [rejection for _, rejection in DirectorySource(folder).read("mark")]
        assert len(got) == 2 and isinstance(got[0], SessionMark)
        assert (got[1] == TOO_LONG) == (expected == "too-long")


@pytest.mark.parametrize("where", ["unknown field", "files"])
def test_a_deeply_nested_manifest_is_bad_data_not_a_crash(tmp_path, where):
    """A manifest of nested arrays (small enough for the size limit) used to escape as a
    RecursionError (an `internal` failure, a traceback in preflight)."""
    deep = "[" * 20_000 + "]" * 20_000
    doc = json.dumps(MANIFEST)[:-1]
    extra = f', "x": {deep}}}' if where == "unknown field" else f', "files": {{"a": {deep}}}}}'
    folder = export(tmp_path, manifest=doc + extra)
    with pytest.raises(ConnectorError) as caught:
        DirectorySource(folder).manifest()
    assert caught.value.reason == "bad-data"
    assert "manifest.json" in caught.value.message


def test_a_folder_swapped_mid_transfer_is_read_as_one_export(tmp_path):
    """An export tool that swaps folders (export -> export.old, export.new -> export), or a
    school that swaps in another school's folder while a transfer runs: the transfer reads every
    file from the folder whose manifest it checked, never a mix of two exports."""
    root = tmp_path / "share"
    root.mkdir()
    ours = root / "export"
    ours.mkdir()
    (ours / "manifest.json").write_text(json.dumps(MANIFEST))
    (ours / "attendance.jsonl").write_bytes(MARK + b"\n")
    theirs = root / "export.new"
    theirs.mkdir()
    (theirs / "manifest.json").write_text(json.dumps({**MANIFEST, "laestab": "8809999"}))
    (theirs / "attendance.jsonl").write_bytes(MARK.replace(b"8012", b"9999") + b"\n" + MARK + b"\n")
    source = DirectorySource(ours, laestab="8801200")
    assert source.manifest().laestab == "8801200"
    ours.rename(root / "export.old")
    theirs.rename(ours)
    lines = [line for line, _ in source.read("mark")]
    assert lines == [MARK]
