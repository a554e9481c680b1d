"""The fork pool of large config loads: answers in job order from real forked workers, a worker
that dies loses nothing, and a failure is raised here as it would be without workers."""

from __future__ import annotations

import gc
import os

import pytest

from b2bd.config.parallel import CHUNK, fork_map

JOBS = list(range(10 * CHUNK + 7))


def test_answers_come_in_the_jobs_order_whichever_process_worked_them() -> None:
    answers = fork_map(lambda chunk: [(job * job, os.getpid()) for job in chunk], JOBS, 3)
    assert [square for square, _ in answers] == [job * job for job in JOBS]
    # Chunks go to whoever is free first, so which processes did the work varies; each chunk's
    # answers come from one process.
    for start in range(0, len(JOBS), CHUNK):
        assert len({pid for _, pid in answers[start : start + CHUNK]}) == 1


def test_a_worker_that_dies_loses_no_answer() -> None:
    parent = os.getpid()

    def work(chunk: list[int]) -> list[int]:
        if os.getpid() != parent:
            os._exit(3)  # killed mid-chunk: its claimed chunk is redone here
        return [job + 1 for job in chunk]

    assert fork_map(work, JOBS, 3) == [job + 1 for job in JOBS]


def test_a_failure_is_raised_here_as_without_workers() -> None:
    def work(chunk: list[int]) -> list[int]:
        if 42 in chunk:
            raise ValueError("job 42 is broken")
        return chunk

    for workers in (1, 3):
        with pytest.raises(ValueError, match="job 42"):
            fork_map(work, JOBS, workers)


def test_one_worker_is_this_process_alone() -> None:
    parent = os.getpid()
    assert fork_map(lambda chunk: [os.getpid() for _ in chunk], JOBS, 1) == [parent] * len(JOBS)


def test_workers_parse_with_the_cyclic_collector_paused_and_it_comes_back() -> None:
    answers = fork_map(lambda chunk: [gc.isenabled() for _ in chunk], JOBS, 3)
    assert answers == [False] * len(JOBS)  # in the forked workers and in this process alike
    assert gc.isenabled()

    def work(chunk: list[int]) -> list[int]:
        raise ValueError("broken")

    with pytest.raises(ValueError):
        fork_map(work, JOBS, 3)
    assert gc.isenabled()


def test_a_load_without_workers_leaves_the_collector_on() -> None:
    """The daemon loads in its own process, beside its transfer threads: a pause there would
    hold up their collection too."""
    assert fork_map(lambda chunk: [gc.isenabled() for _ in chunk], JOBS, 1) == [True] * len(JOBS)
