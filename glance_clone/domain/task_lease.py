"""The lease of a running task: proof, written in the registry, that the
worker running it is alive.

While a worker runs a ``processing`` task, a greenthread beside it writes
the task's message (its progress) every ``interval`` seconds, whether
bytes flow or not; each write moves the task's ``updated_at``. The write
is a compare-and-swap on ``processing``: once another node has failed
the task (its lease looked expired), the write is refused, the lease is
lost, and the worker stops at its next chunk instead of finishing work
that is no longer its own. A task whose ``updated_at`` is older than
``[task] task_stall_timeout`` has lost its worker: any node's reaper
fails it (``task_reaper``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import eventlet

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import task_status

LOG = logging.getLogger(__name__)

MIB = 1024 * 1024


class LeaseLost(exception.Conflict):
    message = "The task was taken over: another node failed it as stalled"


def progress_message(done: int, total: int | None) -> str:
    """``Copied N MiB of M MiB (n of m bytes)``, without the totals when
    unknown."""
    if total:
        return "Copied %d MiB of %d MiB (%d of %d bytes)" % (
            done // MIB, total // MIB, done, total)
    return "Copied %d MiB (%d bytes)" % (done // MIB, done)


class Lease:
    """Heartbeats of one processing task, and the byte counts they report.

    Use as a context manager around the work; ``count`` wraps the data.
    """

    def __init__(self, repository: Any, context: RequestContext, task: dict,
                 interval: float, spawn: Callable[..., Any] = eventlet.spawn,
                 sleep: Callable[[float], Any] = eventlet.sleep,
                 report: Callable[[int, int | None], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.repository = repository
        self.context = context
        self.task = task
        self.interval = interval
        self.spawn = spawn
        self.sleep = sleep
        # Called with the byte counts after each renewal (the image's
        # progress properties); its errors are logged, never fatal.
        self.report = report
        self.clock = clock
        self.done = 0
        self.total: int | None = None
        self.lost = False
        self._beating: Any = None

    def __enter__(self) -> Lease:
        self._beating = self.spawn(self._beat)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._beating is not None:
            self._beating.kill()
            self._beating = None

    def _beat(self) -> None:
        while not self.lost:
            self.sleep(self.interval)
            self.renew()

    def renew(self) -> None:
        """Write the progress now; on refusal the lease is lost."""
        message = progress_message(self.done, self.total)
        try:
            self.task = self.repository.progress(self.context, self.task, message)
        except (exception.StatusConflict, exception.TaskNotFound):
            LOG.warning("Task %s is no longer processing: its work stops",
                        self.task["id"])
            self.lost = True
        except exception.GlanceError as err:
            # The registry away for a while: the next beat tries again;
            # a long outage lets the lease expire, as it should.
            LOG.warning("Heartbeat of task %s not written: %s", self.task["id"], err)
        else:
            if self.report is not None:
                self._show(self.report)

    def check(self) -> None:
        """Raises LeaseLost once another node failed the task."""
        if self.lost:
            raise LeaseLost()

    def confirm(self) -> None:
        """Read the task back: raises LeaseLost unless it is still processing
        (the last look before work becomes visible)."""
        self.check()
        try:
            current = self.repository.get(self.context, self.task["id"])
        except exception.TaskNotFound:
            current = None
        if current is None or current["status"] != task_status.PROCESSING:
            self.lost = True
            raise LeaseLost()

    def count(self, chunks: Iterable[bytes], total: int | None,
              show: Callable[[int, int | None], Any] | None = None) -> Iterator[bytes]:
        """``chunks``, counted for the progress; stops with LeaseLost once
        the lease is lost, and confirms the lease after the last chunk.

        ``show(done, total)`` is called between two chunks at most every
        ``interval`` seconds, in the data's own greenthread: for progress
        that must never be written after the work's last write (a copy's
        image stays active, so no status swap can refuse a late write from
        the heartbeat). Its errors are logged, never fatal.
        """
        self.total = total
        next_show = self.clock() + self.interval
        for chunk in chunks:
            self.check()
            self.done += len(chunk)
            if show is not None and self.clock() >= next_show:
                self._show(show)
                next_show = self.clock() + self.interval
            yield chunk
        self.confirm()

    def _show(self, show: Callable[[int, int | None], Any]) -> None:
        try:
            show(self.done, self.total)
        except exception.GlanceError as err:
            LOG.info("Progress of task %s not shown on its image: %s",
                     self.task["id"], err)
