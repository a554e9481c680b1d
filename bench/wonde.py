"""Wonde connector throughput over loopback, and where its time goes.

A generated school (``b2bd.sample``) is served by the Wonde emulator in its own process
(``python -m tests.support.wonde_emulator``: the server's work does not share our GIL). Then, in
this process, each measured several times (medians printed):

- **pupils/s**: ``WondeSource.read("pupil")`` (students and leavers with their includes, mapped
  to our records, encoded and checked);
- **marks/s**: ``WondeSource.read("mark")`` (session attendance and leavers' attendance, after
  the pupil pass that maps student ids to UPNs);
- **bare**: the same pages fetched with a bare ``httpx.Client`` (same per_page, following
  ``next``) and decoded with ``msgspec.json.decode``: HTTP and JSON decoding and nothing else.

``ours = 1 - bare time / connector time`` is the share of the connector's time spent in our own
code (mapping, encoding, checking); the rest is HTTP and JSON decoding. Both per_page 200 (the
connector's default) and 1000 are measured.

Usage: ``python bench/wonde.py [--pupils 1000] [--runs 5]`` from the repository root. The
emulator and this process share the machine: on a loaded machine the server is part of what
"HTTP" waits for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import msgspec  # noqa: E402

from b2bd.config.model import Endpoint  # noqa: E402
from b2bd.connectors.credentials import Secret  # noqa: E402
from b2bd.connectors.wonde import RESOURCES, WondeSource  # noqa: E402
from b2bd.records.model import Pupil, RecordKind, SessionMark  # noqa: E402
from b2bd.sample import SchoolSpec, write_export  # noqa: E402

TOKEN = "bench-token"
LAESTAB = "8814001"


def start_emulator(export: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.wonde_emulator", "--export", str(export),
         "--port", "0", "--token", TOKEN, "--per-page-max", "5000"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("Wonde emulator on "):
        process.kill()
        raise SystemExit(f"emulator did not start: {first}")
    return process, first.split(" on ", 1)[1].strip()


def connector(url: str, per_page: int) -> WondeSource:
    endpoint = Endpoint(type="wonde", school_id=f"A{LAESTAB}", url=url)
    return WondeSource(endpoint, Secret(TOKEN), laestab=LAESTAB, per_page=per_page)


def timed_read(url: str, per_page: int, kind: RecordKind) -> tuple[float, int]:
    source = connector(url, per_page)
    try:
        source.manifest()  # as a transfer does first: the client (and its TLS context) exists
        if kind == "mark":
            for _ in source.read("pupil"):
                pass
        wanted = Pupil if kind == "pupil" else SessionMark
        start = time.perf_counter()
        count = sum(1 for _, record in source.read(kind) if isinstance(record, wanted))
        return time.perf_counter() - start, count
    finally:
        source.close()


def timed_bare(url: str, per_page: int, kind: RecordKind) -> tuple[float, int]:
    """The same pages with a bare client: GET, follow next, msgspec.json.decode."""
    school = f"{url}schools/A{LAESTAB}/"
    count = 0
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        start = time.perf_counter()
        for resource in RESOURCES[kind]:
            first: dict[str, str] = {"per_page": str(per_page)}
            if resource.include:
                first["include"] = resource.include
            params: dict[str, str] | None = first
            next_url: str | None = f"{school}{resource.path}/"
            while next_url:
                response = client.get(next_url, params=params)
                page = msgspec.json.decode(response.content)
                count += len(page["data"])
                pagination = (page.get("meta") or {}).get("pagination") or {}
                next_url = pagination.get("next") if pagination.get("more") else None
                params = None
        return time.perf_counter() - start, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=1000)
    parser.add_argument(
        "--from",
        dest="marks_from",
        type=dt.date.fromisoformat,
        default=dt.date(2026, 6, 1),
        help="first day of marks (default 2026-06-01: about 200 marks a pupil)",
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / LAESTAB
        spec = SchoolSpec(laestab=LAESTAB, pupils=args.pupils, seed=1, marks_from=args.marks_from)
        write_export(export, spec)
        process, url = start_emulator(export)
        try:
            print(f"school: {args.pupils} pupils generated; emulator in its own process, {url}")
            for per_page in (200, 1000):
                kinds: tuple[tuple[RecordKind, str], ...] = (("pupil", "pupils"), ("mark", "marks"))
                for kind, label in kinds:
                    ours, bare = [], []
                    for _ in range(args.runs):  # interleaved: both see the same load
                        ours.append(timed_read(url, per_page, kind))
                        bare.append(timed_bare(url, per_page, kind))
                    n = ours[0][1]
                    assert all(c == n for _, c in ours) and all(c == n for _, c in bare)
                    t_ours = statistics.median(t for t, _ in ours)
                    t_bare = statistics.median(t for t, _ in bare)
                    share = 1 - t_bare / t_ours
                    print(
                        f"per_page {per_page:>4} {label:>6}: {n:>7} records  "
                        f"connector {n / t_ours:>9,.0f}/s ({t_ours:.3f} s)  "
                        f"bare httpx+msgspec {n / t_bare:>9,.0f}/s ({t_bare:.3f} s)  "
                        f"ratio {t_bare / t_ours:.2f}  ours {share:.0%}, "
                        f"HTTP+JSON {1 - share:.0%}"
                    )
        finally:
            process.terminate()
            process.communicate(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
