"""Decode-and-check throughput for session marks (the transfer hot path's first half).

Generates N marks with tests/support/exports.py (default 1,000,000) into a temporary export
folder, then times, over the same file, medians of --runs runs on one core:

  lines        DirectorySource.lines: read and split only (the I/O floor)
  json         stdlib json.loads per line (the reference the DESIGN quotes)
  msgspec      bare msgspec decode into the SessionMark Struct (no Python checks)
  read+check   DirectorySource.read: decode + UPN/date/code/time checks, with raw lines
  passthrough  read+check, then tagged_line() and a buffered write: a delivery's fast path

and prints each rate and its ratio to the bare msgspec decode.

    .venv/bin/python bench/decode.py [--marks N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support

import msgspec

from b2bd.connectors.directory import DirectorySource
from b2bd.records import Rejection, SessionMark, tagged_line
from tests.support.exports import write_bench_export


def bench_lines(source):
    n = 0
    for _ in source.lines("mark"):
        n += 1
    return n


def bench_json(source):
    loads = json.loads
    n = 0
    for line in source.lines("mark"):
        loads(line)
        n += 1
    return n


def bench_msgspec(source):
    decode = msgspec.json.Decoder(SessionMark).decode
    n = 0
    for line in source.lines("mark"):
        decode(line)
        n += 1
    return n


def bench_read_check(source):
    n = 0
    for _, record in source.read("mark"):
        if record.__class__ is not Rejection:
            n += 1
    return n


def bench_passthrough(source, out: Path):
    n = 0
    with out.open("wb", buffering=1 << 20) as handle:
        write = handle.write
        for line, record in source.read("mark"):
            if record.__class__ is not Rejection:
                write(tagged_line("mark", line) + b"\n")
                n += 1
    return n


def main():
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--marks", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        started = time.perf_counter()
        write_bench_export(folder, args.marks, seed=1)
        took = time.perf_counter() - started
        size = (folder / "attendance.jsonl").stat().st_size
        print(f"generated {args.marks:,} marks ({size / 1e6:.0f} MB) in {took:.1f} s")
        source = DirectorySource(folder)
        cases = {
            "lines": lambda: bench_lines(source),
            "json": lambda: bench_json(source),
            "msgspec": lambda: bench_msgspec(source),
            "read+check": lambda: bench_read_check(source),
            "passthrough": lambda: bench_passthrough(source, Path(tmp) / "out.jsonl"),
        }
        rates = {}
        for name, case in cases.items():
            samples = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                n = case()
                samples.append(n / (time.perf_counter() - t0))
            rates[name] = statistics.median(samples)
        base = rates["msgspec"]
        print(f"{'case':<12} {'marks/s':>12}  vs bare msgspec decode  (median of {args.runs})")
        for name, rate in rates.items():
            print(f"{name:<12} {rate:>12,.0f}  {rate / base:6.2f}x")
        print(f"cpu: {os.cpu_count()} logical, python {os.sys.version.split()[0]}")


if __name__ == "__main__":
    main()
