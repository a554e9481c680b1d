"""Benchmark: ``b2bd diff`` between two 2,000-task configs that differ in 20 task files, against
one ``b2bd validate`` of the same (new) config, both as the user runs them, in the same run.

The configs come from bench/validate.py's generator (2,000 tasks, 500 bases); the new one is a
copy of the old with 20 task files regenerated (same ids, other selectors, data and schedules),
so the diff has real work to show. Prints the median wall (and CPU) time of several runs of:
  1. ``python -m b2bd --config NEW validate --format json``;
  2. ``python -m b2bd diff OLD NEW --format json``;
and the ratio diff / validate against the 2x target (DESIGN section 9).

Run: .venv/bin/python bench/diff.py [--tasks N] [--bases N] [--changed N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository: b2bd without installing, tests.support

from validate import _fmt, generate, generate_bases, generate_task, timed  # noqa: E402

TARGET_RATIO = 2.0


def make_new(old: Path, new: Path, tasks: int, bases: int, changed: int, seed: int = 11) -> None:
    """A copy of ``old`` with ``changed`` task files regenerated under their own ids."""
    shutil.copytree(old, new)
    rng = random.Random(seed)
    _, registry = generate_bases(random.Random(7), bases)  # the same registry as generate()
    for n in sorted(rng.sample(range(tasks), changed)):
        path = new / "tasks" / f"task-{n:04d}.yaml"
        task_id = next(x for x in path.read_text("utf-8").splitlines() if x.startswith("id: "))
        lines = [
            task_id if line.startswith("id: ") else line
            for line in generate_task(rng, n, registry).splitlines()
        ]
        path.write_text("\n".join(lines) + "\n", "utf-8")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2bd", *args], capture_output=True, text=True, check=False, cwd=REPO
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--bases", type=int, default=500)
    parser.add_argument("--changed", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="b2bd-bench-diff-"))
    try:
        old, new = work / "old", work / "new"
        generate(old, args.tasks, args.bases)
        make_new(old, new, args.tasks, args.bases, args.changed)
        print(
            f"generated {args.tasks} task files and {args.bases} bases; the new config differs "
            f"in {args.changed} task files"
        )
        validate = ("--config", str(new), "validate", "--format", "json")
        diff = ("diff", str(old), str(new), "--format", "json")
        probe = cli(*diff)
        if probe.returncode != 1 or "Traceback" in probe.stderr:
            print(f"diff exited {probe.returncode}: {probe.stderr}", file=sys.stderr)
            return 1
        shown = json.loads(probe.stdout)
        print(
            f"b2bd diff: exit {probe.returncode}, tasks changed "
            f"{len(shown['tasks']['changed'])}, added {len(shown['tasks']['added'])}, removed "
            f"{len(shown['tasks']['removed'])}; problems introduced "
            f"{len(shown['problems']['introduced'])}, fixed {len(shown['problems']['fixed'])}"
        )
        walls_v: list[float] = []
        walls_d: list[float] = []
        cpus_v: list[float] = []
        cpus_d: list[float] = []
        for _ in range(args.runs):  # interleaved, so load on the machine hits both alike
            w, c = timed(1, lambda: cli(*validate))
            walls_v += w
            cpus_v += c
            w, c = timed(1, lambda: cli(*diff))
            walls_d += w
            cpus_d += c
        v, d = statistics.median(walls_v), statistics.median(walls_d)
        print(f"b2bd validate NEW (subprocess): wall median {v:.3f} s of {_fmt(walls_v)}")
        print(f"                                cpu  median {statistics.median(cpus_v):.3f} s")
        print(f"b2bd diff OLD NEW (subprocess): wall median {d:.3f} s of {_fmt(walls_d)}")
        print(f"                                cpu  median {statistics.median(cpus_d):.3f} s")
        ratio = d / v
        cpu_ratio = statistics.median(cpus_d) / statistics.median(cpus_v)
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(
            f"ratio diff / validate (wall) = {ratio:.2f} (target <= {TARGET_RATIO:.0f}: {verdict})"
        )
        print(f"ratio diff / validate (cpu)  = {cpu_ratio:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
