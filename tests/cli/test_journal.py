"""``b2bd journal verify|compact|cat`` on a real config dir and a real journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from b2bd.journal.reader import JOURNAL_DIR
from b2bd.journal.writer import Journal
from tests.support.journaled import (
    EXAMPLE,
    b2bd,
    journal_a_run,
    state_dir,
)


def test_verify_without_a_journal_is_fine(deployment, capsys):
    code, out, _ = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 0 and "no journal yet" in out


def test_cat_prints_json_lines_filtered_by_type(deployment, capsys):
    journal_a_run(deployment)
    code, out, _ = b2bd(deployment, "journal", "cat", "--type", "transfer-failed", capsys=capsys)
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(lines) == 1
    assert lines[0]["type"] == "transfer-failed" and lines[0]["seq"] == 4
    assert "crc" not in lines[0]
    code, out, _ = b2bd(deployment, "journal", "cat", capsys=capsys)
    assert [json.loads(x)["seq"] for x in out.splitlines()] == [1, 2, 3, 4, 5]


def test_verify_reports_damage_with_segment_and_offset_and_exit_1(deployment, capsys):
    journal_a_run(deployment)
    code, out, _ = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 0 and "journal intact: records 1..5" in out
    segment = next((state_dir(deployment) / JOURNAL_DIR).glob("*.log"))
    data = bytearray(segment.read_bytes())
    second = data.index(b"\n") + 1
    data[second + 30] ^= 0x04
    segment.write_bytes(bytes(data))
    # a real process, for the real exit code and the message on its streams
    env = dict(os.environ, PYTHONPATH=str(EXAMPLE.parent))
    proc = subprocess.run(
        [sys.executable, "-m", "b2bd", "--config", str(deployment / "config"), "journal", "verify"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"segment {segment.name}, byte {second}: checksum mismatch" in proc.stdout
    assert "Traceback" not in proc.stderr
    code, _, err = b2bd(deployment, "status", capsys=capsys)
    assert code == 1 and f"segment {segment.name}, byte {second}" in err
    code, _, err = b2bd(deployment, "journal", "compact", capsys=capsys)
    assert code == 1 and "damaged" in err


def test_compact_keeps_status_and_refuses_while_the_journal_is_in_use(deployment, capsys):
    journal_a_run(deployment)
    _, before, _ = b2bd(deployment, "status", "--format", "json", capsys=capsys)
    code, out, _ = b2bd(deployment, "journal", "compact", capsys=capsys)
    assert code == 0 and "checkpoint is record 6" in out
    _, after, _ = b2bd(deployment, "status", "--format", "json", capsys=capsys)
    strip = lambda s: {k: v for k, v in json.loads(s).items() if k != "now"}  # noqa: E731
    assert strip(after) == strip(before)
    with Journal.open(state_dir(deployment)):  # held, and no daemon answers: a usage error
        code, _, err = b2bd(deployment, "journal", "compact", capsys=capsys)
    assert code == 2 and "in use" in err


def test_unusable_settings_are_a_usage_error(deployment, capsys):
    (deployment / "config" / "b2bd.yaml").write_text("la: [\n")
    code, _, err = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 2 and "state dir is unknown" in err


def test_a_torn_last_record_is_reported_by_verify_and_skipped_by_readers(deployment, capsys):
    journal_a_run(deployment)
    segment = next((state_dir(deployment) / JOURNAL_DIR).glob("*.log"))
    data = segment.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    segment.write_bytes(data[: last + 20])  # as if the write of record 5 were in flight
    code, out, _ = b2bd(deployment, "journal", "verify", capsys=capsys)
    assert code == 1
    assert f"segment {segment.name}, byte {last}: incomplete record" in out
    assert "cuts it off and keeps its bytes in a .broken file" in out
    code, out, _ = b2bd(deployment, "journal", "cat", capsys=capsys)
    assert code == 0 and [json.loads(x)["seq"] for x in out.splitlines()] == [1, 2, 3, 4]
    code, out, _ = b2bd(deployment, "status", capsys=capsys)
    assert code == 1  # the config problem journal_a_run journaled
    assert "in progress or interrupted" in out  # run-finished was the torn one
    assert segment.read_bytes() == data[: last + 20]  # readers change nothing
