"""Blocks of a writer's work run strictly in order, on a thread of their own when a second core can run it.

The Parquet writer hands each block of orders (given as JSON lines) to ``InOrder.submit``: with
a second core it runs on one worker thread, at most ``ahead`` blocks behind the caller (who waits for the
oldest beyond that), so the event loop goes on fetching while pyarrow, which releases the GIL, parses and
encodes; on one core it runs in line, where a thread's GIL hand-offs would cost more than they save. The
worker alone touches the writer's state between a ``submit`` and the next ``settle``.

A block that fails makes the runner *broken*: the blocks after it are skipped (they would land after a
missing one), its error comes out of a later ``submit`` or ``settle``, and from then on ``submit`` and
``run`` refuse. A writer asked to commit when broken must not list what it holds: a block is missing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from exporter.errors import ExportError


def cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class InOrder:
    """Runs jobs one after another, in the order given; see the module docstring."""

    def __init__(self, name: str, *, ahead: int = 2, broken: str) -> None:
        self._name = name
        self._ahead = max(1, ahead)
        self._message = broken  # the refusal once a job has failed
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: deque[Future[None]] = deque()
        self.broken = False

    @property
    def pending(self) -> bool:
        """Whether jobs were submitted and not yet waited for."""
        return bool(self._jobs)

    def submit(self, job: Callable[[], None]) -> None:
        """``job`` on the worker thread (in line on one core), after every job submitted before it."""
        while self._jobs and (self.broken or len(self._jobs) >= self._ahead):
            self._jobs.popleft().result()  # the error of a failed job comes out here
        if self.broken:
            raise ExportError(self._message)
        if self._pool is None and cores() > 1:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        if self._pool is None:
            self._guarded(job)
        else:
            self._jobs.append(self._pool.submit(self._guarded, job))

    def run(self, job: Callable[[], None]) -> None:
        """``job`` here and now, once every job submitted has run."""
        self.settle()
        if self.broken:
            raise ExportError(self._message)
        self._guarded(job)

    def settle(self) -> None:
        """Wait for every job submitted; the first error of one of them is raised."""
        while self._jobs:
            self._jobs.popleft().result()

    def stop(self) -> None:
        """Wait for every job submitted, ignoring their errors, and end the worker thread."""
        while self._jobs:
            try:
                self._jobs.popleft().result()
            except Exception:  # the writer is being given up, and its first error was told
                continue
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _guarded(self, job: Callable[[], None]) -> None:
        if self.broken:
            return  # a job before this one failed: its error is on its way to the caller
        try:
            job()
        except BaseException:
            self.broken = True
            raise
