"""Failing tasks whose worker died, and repairing what they left.

Every api node runs a reaper (the writes are compare-and-swaps, so
several are safe). Each round, every ``[task] task_stall_timeout / 2``
seconds:

1. each ``pending`` or ``processing`` task of any project not updated for
   ``task_stall_timeout`` seconds (a running task's lease renews it four
   times within that time, so its worker or node is gone) is failed, and
   the reverter of its type undoes its work;
2. the sweeps run: repairs of states a node dying between two writes can
   leave (an image importing under a finished task's lock, orphaned
   staged data).

So no task stays ``processing``, and no image ``importing``, for much
longer than the stall timeout after its node died.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import task_status
from glance_clone.domain.tasks import TaskRepository

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.IntOpt("task_stall_timeout", default=300, min=2,
               help="Seconds after which a pending or processing task that "
                    "nobody has updated is failed (its glance-api worker "
                    "or node died) and its work undone. A running task "
                    "renews its lease four times within this time."),
    cfg.FloatOpt("task_progress_interval", default=10.0, min=0.1,
                 help="Seconds between two progress reports of a running "
                      "task (its message, and the os_glance_import_* "
                      "properties of an image being imported); at most a "
                      "quarter of task_stall_timeout."),
]

Reverter = Callable[[RequestContext, dict, str], None]
Sweep = Callable[[RequestContext], None]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS, group="task")


def lease_interval(conf: cfg.ConfigOpts) -> float:
    """Seconds between two renewals of a running task's lease: often enough
    for progress, and four times within the stall timeout."""
    register_opts(conf)
    return float(min(conf.task.task_stall_timeout / 4, conf.task.task_progress_interval))


class TaskReaper:
    def __init__(self, conf: cfg.ConfigOpts, repository: TaskRepository,
                 reverters: dict[str, Reverter], context: Callable[[], RequestContext],
                 sweeps: Iterable[Sweep] = ()) -> None:
        register_opts(conf)
        self.conf = conf
        self.repository = repository
        self.reverters = reverters
        self.context = context
        self.sweeps = list(sweeps)

    def reap(self) -> int:
        """One round (see the module docstring); the number of tasks failed."""
        context = self.context()
        timeout = self.conf.task.task_stall_timeout
        cutoff = (datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
                  - datetime.timedelta(seconds=timeout))
        failed = 0
        for status in (task_status.PENDING, task_status.PROCESSING):
            for task in self.repository.list(context, status=status,
                                             updated_before=cutoff.isoformat(),
                                             limit=self.conf.api_limit_max):
                if self._fail(context, task, timeout):
                    failed += 1
        for sweep in self.sweeps:
            sweep(context)
        return failed

    def _fail(self, context: RequestContext, task: dict, timeout: int) -> bool:
        message = ("The task was interrupted: no glance-api worker ran it for %d "
                   "seconds (a worker or node stopped)" % timeout)
        try:
            self.repository.move(context, task, task_status.FAILURE, message=message)
        except exception.GlanceError as err:
            LOG.info("Stalled task %s not failed: %s", task["id"], err)
            return False
        LOG.warning("Task %s failed: %s", task["id"], message)
        revert = self.reverters.get(task["type"])
        if revert is not None:
            revert(context, task, message)
        return True

    def loop(self) -> None:
        """Reap now, then every half stall timeout, for ever."""
        while True:
            self.round()
            eventlet.sleep(self.conf.task.task_stall_timeout / 2)

    def round(self) -> None:
        """``reap``, logging what goes wrong (the next round tries again)."""
        try:
            self.reap()
        except exception.GlanceError as err:
            # E.g. the registry down, or Keystone admin credentials
            # missing (admin_user ...).
            LOG.warning("Looking for stalled tasks failed: %s", err)
        except Exception:
            LOG.exception("Looking for stalled tasks failed")


def never_raises(what: str, call: Callable[..., Any]) -> Callable[..., Any]:
    """``call``, its errors logged: one sweep failing must not stop the others."""
    def wrapped(*args: Any) -> Any:
        try:
            return call(*args)
        except exception.GlanceError as err:
            LOG.warning("%s failed: %s", what, err)
        except Exception:
            LOG.exception("%s failed", what)
        return None
    return wrapped
