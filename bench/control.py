"""Reading a long control-socket answer line: the CLI's LineReader against a bare recv loop.

A ``history --format json`` of many runs, or the ``status`` of thousands of tasks, is one JSON
line that can run to tens of MiB. A writer thread sends a line of --mib MiB over a Unix
socketpair; the reader times, medians of --runs runs:

  recv         a bare ``recv`` loop into a list, joined at the end (the floor)
  LineReader   b2bd.daemon.protocol.LineReader.line() with the CLI's MAX_RESPONSE limit

and prints both, and LineReader's time as a multiple of the floor. (Before 2026-12-02 the
reader searched its whole buffer for the newline after every 64 KiB: 64 MiB took ~92 s.)

    .venv/bin/python bench/control.py [--mib N] [--runs R]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from collections.abc import Callable

from b2bd.daemon.protocol import MAX_RESPONSE, LineReader


def timed(read: Callable[[socket.socket], int], size: int) -> float:
    a, b = socket.socketpair()
    data = b"x" * size + b"\n"
    writer = threading.Thread(target=b.sendall, args=(data,))
    with a, b:
        start = time.perf_counter()
        writer.start()
        got = read(a)
        elapsed = time.perf_counter() - start
        writer.join()
    assert got == size, (got, size)
    return elapsed


def bare(sock: socket.socket) -> int:
    parts = []
    while True:
        chunk = sock.recv(65536)
        parts.append(chunk)
        if chunk.endswith(b"\n"):
            return len(b"".join(parts)) - 1


def line_reader(sock: socket.socket) -> int:
    line = LineReader(sock, MAX_RESPONSE).line()
    assert line is not None
    return len(line)


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    size = args.mib << 20
    floor, ours = [], []
    for _ in range(args.runs):  # interleaved, so load changes hit both alike
        floor.append(timed(bare, size))
        ours.append(timed(line_reader, size))
    f, o = statistics.median(floor), statistics.median(ours)
    print(f"one {args.mib} MiB answer line, median of {args.runs} runs")
    print(f"  recv loop   {f:.3f} s  ({args.mib / f:,.0f} MiB/s)")
    print(f"  LineReader  {o:.3f} s  ({args.mib / o:,.0f} MiB/s)")
    print(f"  LineReader / recv loop: {o / f:.2f}x")


if __name__ == "__main__":
    main()
