"""Running a task of the Tasks API off the request path.

``run`` claims the task (pending -> processing, a compare-and-swap: no two
nodes ever run one task), runs the type's work under the task's lease
(``task_lease``: heartbeats and progress; a lost lease stops the work at
its next chunk) and finishes the task: ``success`` with the work's result
or ``failure`` with a message saying why. A task whose node dies is
failed by any node's reaper once its lease expires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import task_status, tasks
from glance_clone.domain.task_lease import Lease
from glance_clone.domain.task_reaper import lease_interval
from glance_clone.domain.tasks import TaskRepository

LOG = logging.getLogger(__name__)

# (context, task, lease) -> the task's result; raises on failure.
Work = Callable[[RequestContext, dict, Lease], dict]


def claim(repository: TaskRepository, context: RequestContext, task: dict) -> dict | None:
    """The task moved to processing for this worker, or None when another
    worker claimed it or the reaper failed it first (the registry's
    compare-and-set decides; no local flag could across nodes)."""
    try:
        return repository.move(context, task, task_status.PROCESSING)
    except exception.GlanceError as err:
        LOG.info("Task %s not run: %s", task["id"], err)
        return None


class TaskRunner:
    """Claims a task and runs ``work(context, task, lease)`` under the
    task's lease: success with the result it returns, failure with the
    message of what it raised; never raises."""

    def __init__(self, conf: cfg.ConfigOpts, repository: TaskRepository,
                 work: Work, spawn: Callable[..., Any] = eventlet.spawn_n,
                 lease_factory: Callable[..., Lease] = Lease) -> None:
        self.conf = conf
        self.repository = repository
        self.work = work
        self.spawn = spawn
        self.lease_factory = lease_factory

    def start(self, context: RequestContext, task: dict) -> None:
        self.spawn(self.run, context, task)

    def run(self, context: RequestContext, task: dict) -> None:
        claimed = claim(self.repository, context, task)
        if claimed is None:
            return
        task = claimed
        lease = self.lease_factory(self.repository, context, task,
                                   lease_interval(self.conf))
        try:
            with lease:
                result = self.work(context, task, lease)
        except Exception as err:
            LOG.warning("%s task %s failed: %s", task["type"], task["id"], err,
                        exc_info=not isinstance(err, exception.GlanceError))
            self.fail(context, task, tasks.failure_message(err))
            return
        self._finish(context, lease.task, task_status.SUCCESS, result=result,
                     message="")

    def fail(self, context: RequestContext, task: dict, message: str) -> None:
        """Fail the task unless it is over already; never raises."""
        self._finish(context, task, task_status.FAILURE, message=message)

    def _finish(self, context: RequestContext, task: dict, status: str,
                **values: Any) -> None:
        try:
            current = self.repository.get(context, task["id"])
            if current["status"] not in task_status.FINAL and (
                    status == task_status.FAILURE
                    or current["status"] == task_status.PROCESSING):
                self.repository.move(context, current, status, **values)
        except exception.GlanceError as err:
            # Unfinished: the reaper fails it once its lease expires.
            LOG.warning("Task %s not marked %s: %s", task["id"], status, err)
