"""Benchmark: a year of slots for 2,000 generated tasks (what `b2bd plan --until +1y` computes).

Prints the median wall time of several runs, each with a cold calendar cache, and the ratio to
the one-second target. Run: .venv/bin/python bench/plan.py [--tasks N] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
from typing import Literal
from zoneinfo import ZoneInfo

from b2bd.schedule import Monthly, Once, Schedule, Weekly, _utc_midnight, merge_slots, slots

ZONES = ("Europe/London",) * 8 + ("America/New_York", "Australia/Sydney")
TARGET_SECONDS = 1.0


def generate(count: int, seed: int = 3) -> dict[str, Schedule]:
    """A seeded mix: 60 % weekly, 30 % monthly, 10 % once; 1..4 times each, some in DST gaps."""
    rng = random.Random(seed)
    schedules: dict[str, Schedule] = {}
    for n in range(count):
        zone = ZoneInfo(rng.choice(ZONES))
        times = tuple(
            dt.time(rng.randrange(24), rng.choice((0, 15, 30, 45)))
            for _ in range(rng.randint(1, 4))
        )
        kind = rng.random()
        rule: Weekly | Monthly | Once
        if kind < 0.6:
            rule = Weekly(frozenset(rng.sample(range(7), rng.randint(1, 7))), times)
        elif kind < 0.9:
            days: list[int | Literal["last"]] = rng.sample(range(1, 32), rng.randint(1, 4))
            if rng.random() < 0.3:
                days.append("last")
            months = (
                frozenset(range(1, 13))
                if rng.random() < 0.7
                else frozenset(rng.sample(range(1, 13), 4))
            )
            rule = Monthly(tuple(days), months, times)
        else:
            rule = Once(dt.datetime(2026, rng.randint(1, 12), rng.randint(1, 28), 6, 30))
        expires = dt.date(2026, 12, 31) if rng.random() < 0.1 else None
        schedules[f"task-{n:04d}"] = Schedule(rule, zone, expires)
    return schedules


def one_run(
    schedules: dict[str, Schedule], start: dt.datetime, end: dt.datetime
) -> tuple[float, int]:
    """Every task's slots, merged in slot order (what `b2bd plan --until` does)."""
    _utc_midnight.cache_clear()  # cold cache: each run pays for its zone lookups
    began = time.perf_counter()
    total = sum(1 for _ in merge_slots(schedules, start, end))
    return time.perf_counter() - began, total


def slots_only(schedules: dict[str, Schedule], start: dt.datetime, end: dt.datetime) -> float:
    """Every task's slots, task after task, not merged (what the daemon needs per task)."""
    _utc_midnight.cache_clear()
    began = time.perf_counter()
    for schedule in schedules.values():
        for _ in slots(schedule, start, end):
            pass
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    schedules = generate(args.tasks)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    merged: list[float] = []
    alone: list[float] = []
    total = 0
    for _ in range(args.runs):
        elapsed, total = one_run(schedules, start, end)
        merged.append(elapsed)
        alone.append(slots_only(schedules, start, end))
    median, median_alone = statistics.median(merged), statistics.median(alone)
    print(f"{args.tasks} tasks, one year (2026): {total} slots")
    print(f"merged in slot order, runs (s): {', '.join(f'{t:.3f}' for t in merged)}")
    print(f"  median {median:.3f} s, {median / max(total, 1) * 1e6:.2f} us per slot")
    print(f"  target {TARGET_SECONDS:.1f} s: ratio {median / TARGET_SECONDS:.2f}")
    print(f"slots alone (no merge), runs (s): {', '.join(f'{t:.3f}' for t in alone)}")
    print(f"  median {median_alone:.3f} s; merging costs {median / median_alone:.1f}x that")


if __name__ == "__main__":
    main()
