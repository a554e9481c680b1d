"""A fork pool for large config loads: one list of jobs, worked through in chunks by this
process and forked workers, answers in the jobs' order.

``b2bd validate`` and ``b2bd diff`` use it, for configs of hundreds of files (see
:data:`b2bd.config.load.POOL_MIN_FILES`); it forks, so only a process without other threads may
call it (the daemon never does). Workers inherit the work function through the fork (nothing is
pickled but the answers), so the function may be a closure.

The cyclic garbage collector is paused while the workers (and this process, which works chunks
too) parse: a parse allocates some hundred thousand objects (YAML nodes, documents, positions)
and keeps most of them to its end, so the collector would only walk them again and again (an
eighth of the work). The pause is safe here and nowhere else: a process that may fork has no
other threads whose collection it would hold up (a daemon's transfer threads, say), and a
worker lives only for the parse. Reference counting still frees everything as usual.
"""

from __future__ import annotations

import contextlib
import gc
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

Job = TypeVar("Job")
Answer = TypeVar("Answer")
CHUNK = 20  # jobs per piece of work handed to a worker process


def fork_map(
    work: Callable[[list[Job]], list[Answer]], jobs: list[Job], workers: int
) -> list[Answer]:
    """``work`` applied to every job (in chunks: ``work`` takes a list and answers each of its
    jobs, in order), the answers in the jobs' order, whichever process computed them.

    With ``workers`` > 1, ``workers - 1`` forked processes and this one take turns at claiming
    the next chunk, so the work balances itself. Workers send each chunk's answers as they go;
    this process takes them in between its own chunks. It then works any chunk a worker claimed
    but did not return (it died, or failed), so a failure surfaces exactly as without workers.
    With fewer than two workers, ``work(jobs)``.
    """
    if workers < 2:
        return work(jobs)
    # Imported here: only large loads use it, and it is a tenth of b2bd.config's import time.
    import multiprocessing

    with _cyclic_gc_paused():
        return _fork_map(multiprocessing.get_context("fork"), work, jobs, workers)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic collection in this process (and the workers it forks) until the end."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _fork_map(
    ctx: Any, work: Callable[[list[Job]], list[Answer]], jobs: list[Job], workers: int
) -> list[Answer]:
    chunks = _SharedChunks(
        work, [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)], ctx.Value("q")
    )
    done: dict[int, list[Answer]] = {}
    children: list[tuple[Any, Connection]] = []
    open_pipes: list[Connection] = []

    def take_answers(wait: bool) -> None:
        """What the workers have sent so far; with ``wait``, everything until they close."""
        for receive in list(open_pipes):
            try:
                while receive.poll(None if wait else 0):
                    n, answers = receive.recv()
                    done[n] = answers
            except (EOFError, OSError):  # the worker finished, or is gone
                open_pipes.remove(receive)

    def keep(n: int, answers: list[Answer]) -> None:
        done[n] = answers
        take_answers(wait=False)

    finished = False
    try:
        for _ in range(workers - 1):
            receive, send = ctx.Pipe(duplex=False)
            child = ctx.Process(target=_worker, args=(chunks, send), daemon=True)
            child.start()
            send.close()
            children.append((child, receive))
            open_pipes.append(receive)
        chunks.work_through(keep)
        take_answers(wait=True)
        finished = True
    finally:
        for child, receive in children:
            receive.close()
            if not finished:
                child.kill()
            child.join()
    for n, chunk in enumerate(chunks.chunks):
        if n not in done:
            done[n] = work(chunk)
    return [answer for n in range(len(chunks.chunks)) for answer in done[n]]


@dataclass(frozen=True)
class _SharedChunks(Generic[Job, Answer]):
    """Chunks of jobs that forked processes take turns at: each claims the next unclaimed one
    through a counter in shared memory (inherited by the fork)."""

    work: Callable[[list[Job]], list[Answer]]
    chunks: list[list[Job]]
    claimed: Any  # multiprocessing.Value: how many chunks have been claimed

    def work_through(self, deliver: Callable[[int, list[Answer]], None]) -> None:
        """Work chunks until none is left unclaimed, delivering each chunk's answers."""
        while True:
            with self.claimed.get_lock():
                n = self.claimed.value
                if n >= len(self.chunks):
                    return
                self.claimed.value = n + 1
            deliver(n, self.work(self.chunks[n]))


def _worker(chunks: _SharedChunks[Any, Any], send: Connection) -> None:
    """A forked worker: each chunk's answers go back through ``send`` as (number, answers)."""
    # Ctrl-C is the parent's to handle (it stops the workers); a worker would only print a
    # traceback. A failure is the parent's to raise: it works what the worker did not return.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(BaseException), send:
        chunks.work_through(lambda n, answers: send.send((n, answers)))
