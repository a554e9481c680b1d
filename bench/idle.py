"""Idle: CPU used by ``b2bd run`` with 500 tasks loaded and nothing due (DESIGN section 9).

Generates a deployment (bench/_deployment.py: 500 valid tasks, a mix of weekly and monthly
schedules whose times are all 2-3 hours away, over 20 bases with tiny exports), starts the
daemon as a subprocess with a real NOTIFY_SOCKET, waits for READY=1 and a short settle, then
measures ``--windows`` consecutive windows of ``--seconds`` each (default 3 x 60 s) of it idling:

- CPU: utime+stime of the whole process from /proc/<pid>/stat (clock ticks, every thread,
  including any that ended), and the sum of /proc/<pid>/task/*/schedstat run time (ns, live
  threads) as a finer cross-check; each as % of one CPU over the window's wall time.
- Wake-ups: voluntary context switches (a thread blocked and was woken) summed over all its
  threads from /proc/<pid>/task/*/status, before/after, per second; the main thread (the
  daemon loop) alone; and per thread, so a polling thread shows up by its tid.

A 60 s window includes whatever the daemon does on its own while idle: one safety rescan
(every config file read and hashed, b2bd.daemon.loop.RESCAN) and the config watcher's threads.
Prints each window, the median, and the ratio to the target (<= 0.5 % of one CPU), with
/proc/loadavg before and after since the machine is shared.

    .venv/bin/python bench/idle.py [--tasks 500] [--bases 20] [--seconds 60] [--windows 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _deployment import generated_daemon, loadavg

from b2bd.daemon.loop import RESCAN

TARGET_PERCENT = 0.5
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """What /proc says about the daemon at one moment."""

    at: float  # monotonic seconds
    ticks: int  # utime + stime of the whole process, clock ticks
    run_ns: dict[int, int]  # per live thread: time on CPU (schedstat), ns
    voluntary: dict[int, int]  # per live thread: voluntary context switches
    involuntary: dict[int, int]


def sample(pid: int) -> Sample:
    at = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the ")" closing the command name; utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    run_ns: dict[int, int] = {}
    voluntary: dict[int, int] = {}
    involuntary: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        try:
            run_ns[tid] = int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary[tid] = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary[tid] = int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between listing and reading
    return Sample(at, ticks, run_ns, voluntary, involuntary)


@dataclass(frozen=True)
class Window:
    seconds: float
    cpu_percent: float  # from utime+stime
    schedstat_percent: float  # from per-thread schedstat
    wakeups: int  # voluntary switches, all threads
    main_wakeups: int
    involuntary: int
    per_thread: dict[int, int]
    threads_before: int
    threads_after: int


def _delta(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    """Per thread growth; a thread born during the window counts from zero."""
    return {tid: after[tid] - before.get(tid, 0) for tid in after}


def measure(pid: int, seconds: float) -> Window:
    before = sample(pid)
    time.sleep(seconds)
    after = sample(pid)
    wall = after.at - before.at
    per_thread = _delta(before.voluntary, after.voluntary)
    return Window(
        seconds=wall,
        cpu_percent=100 * (after.ticks - before.ticks) / TICK / wall,
        schedstat_percent=100 * sum(_delta(before.run_ns, after.run_ns).values()) / 1e9 / wall,
        wakeups=sum(per_thread.values()),
        main_wakeups=per_thread.get(pid, 0),
        involuntary=sum(_delta(before.involuntary, after.involuntary).values()),
        per_thread=per_thread,
        threads_before=len(before.voluntary),
        threads_after=len(after.voluntary),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--bases", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of one window")
    parser.add_argument("--windows", type=int, default=3, help="consecutive windows (median)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after READY")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (path printed)")
    args = parser.parse_args()

    with generated_daemon(
        "b2bd-bench-idle-", tasks=args.tasks, bases=args.bases, keep=args.keep
    ) as (work, _, daemon):
        print(
            f"deployment: {args.tasks} task files (weekly/monthly, every slot 2-3 h away), "
            f"{args.bases} bases with tiny exports, in {work}"
        )
        startup = daemon.start()
        print(f"daemon pid {daemon.pid}: READY=1 {startup:.2f} s after process start")
        time.sleep(args.settle)
        print(
            f"measuring {args.windows} window(s) of {args.seconds:.0f} s idle "
            f"(loadavg before: {loadavg()}; {os.cpu_count()} CPUs)"
        )
        if args.seconds < RESCAN:
            print(
                f"  note: windows shorter than the daemon's {RESCAN:.0f} s safety rescan "
                "(b2bd.daemon.loop.RESCAN) can miss it, which is most of the idle cost: "
                "use the default 60 s for the figure"
            )
        windows: list[Window] = []
        for n in range(args.windows):
            if not daemon.alive():
                print(f"the daemon exited; its log:\n{daemon.log_tail()}", file=sys.stderr)
                return 1
            w = measure(daemon.pid, args.seconds)
            windows.append(w)
            busiest = sorted(w.per_thread.items(), key=lambda kv: -kv[1])
            threads = ", ".join(
                f"{'main' if tid == daemon.pid else tid}: {count}" for tid, count in busiest
            )
            print(
                f"  window {n + 1}: {w.seconds:.1f} s, CPU {w.cpu_percent:.3f} % of one CPU "
                f"(utime+stime; schedstat {w.schedstat_percent:.3f} %), "
                f"wake-ups {w.wakeups} ({w.wakeups / w.seconds:.2f}/s) of which main thread "
                f"{w.main_wakeups}, involuntary switches {w.involuntary}, "
                f"threads {w.threads_before}->{w.threads_after}"
            )
            print(f"    voluntary switches per thread: {threads}")
        print(f"loadavg after: {loadavg()}")

        cpu = statistics.median(w.cpu_percent for w in windows)
        fine = statistics.median(w.schedstat_percent for w in windows)
        rate = statistics.median(w.wakeups / w.seconds for w in windows)
        main_rate = statistics.median(w.main_wakeups / w.seconds for w in windows)
        print(
            f"median CPU: {cpu:.3f} % of one CPU (utime+stime), {fine:.3f} % (schedstat); "
            f"target <= {TARGET_PERCENT} %: {cpu / TARGET_PERCENT:.3f}x the target "
            f"({'met' if cpu <= TARGET_PERCENT else 'MISSED'})"
        )
        print(
            f"median wake-ups: {rate:.2f}/s all threads ({rate * 60:.0f} per minute), "
            f"main thread {main_rate:.3f}/s ({main_rate * 60:.1f} per minute)"
        )
        code = daemon.stop()
        print(f"daemon stopped by SIGTERM: exit {code}")
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
