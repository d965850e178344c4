"""Tasks: the rules of asynchronous work, whichever code runs it.

A task's record is in the registry; this module makes and changes it:
who owns a new task, which types exist, the status moves (checked against
``task_status.TRANSITIONS`` and written as a compare-and-swap on the
status left, so two api nodes never both claim or both finish one task),
and when a finished task expires (``[task] task_time_to_live`` hours
later). Writes whose answer is lost are settled by reading the task back
(``registry_writes``).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import registry_writes, task_status

LOG = logging.getLogger(__name__)

TASK_OPTS = [
    cfg.IntOpt("task_time_to_live", default=48, min=1,
               help="Hours a finished task (success or failure) stays "
                    "visible before it expires; glance-manage db purge "
                    "removes expired tasks."),
]

# The types the Tasks API creates: a task of any other type is refused
# there.
IMPORT = "import"
EXPORT = "export"
CLONE = "clone"
TYPES = (IMPORT, EXPORT, CLONE)
# Types glance-api creates itself: the work of POST /v2/images/{id}/import
# and of POST /v2/images/{id}/locations.
API_IMAGE_IMPORT = "api_image_import"
LOCATION_IMPORT = "location_import"
INTERNAL_TYPES = (API_IMAGE_IMPORT, LOCATION_IMPORT)
# Every type a task listed by /v2/tasks can have.
ALL_TYPES = TYPES + INTERNAL_TYPES

# What a task list filters on (by equality) and sorts by: the fields of a
# task's record, not its input, result or message (free-form; a list never
# shows them). Times given to a filter match within their second, the
# precision the API shows them with.
LIST_TIMES = ("created_at", "updated_at", "expires_at", "deleted_at")
LIST_FLAGS = ("deleted",)
LIST_FIELDS = ("id", "type", "status", "owner", "image_id", "request_id",
               "user_id") + LIST_TIMES + LIST_FLAGS


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, TASK_OPTS, group="task")


INTERNAL_ERROR = "Task failed due to Internal Error"


def failure_message(err: BaseException) -> str:
    """What a failed task's message says about ``err``: our errors speak
    for themselves, anything else is a bug whose details stay in the log."""
    if isinstance(err, exception.GlanceError):
        return str(err)
    return INTERNAL_ERROR


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class TaskRepository:
    """Task records through the registry client."""

    def __init__(self, conf: cfg.ConfigOpts, registry: Any,
                 writes: registry_writes.RegistryWrites | None = None) -> None:
        register_opts(conf)
        self.conf = conf
        self.registry = registry
        self.writes = writes or registry_writes.RegistryWrites(registry)

    # -- reads ---------------------------------------------------------------
    def get(self, context: RequestContext, task_id: str) -> dict:
        """The task; raises TaskNotFound (unknown, expired, another
        project's)."""
        try:
            task: dict = self.registry.get_task(context, task_id)
        except exception.NotFound:
            raise exception.TaskNotFound(task_id=task_id) from None
        return task

    def list(self, context: RequestContext, **params: Any) -> list[dict]:
        """A page of tasks (see the registry client's ``get_tasks``)."""
        return list(self.registry.get_tasks(context, **params))

    def _read(self, context: RequestContext, task_id: str) -> dict | None:
        try:
            return self.get(context, task_id)
        except exception.TaskNotFound:
            return None

    # -- writes --------------------------------------------------------------
    def create(self, context: RequestContext, task_type: str,
               task_input: dict, image_id: str | None = None,
               owner: str | None = None) -> dict:
        """A new ``pending`` task owned by ``owner`` (by default the caller's
        project), about ``image_id`` if given; raises Invalid (unknown
        type), Forbidden (no project), RegistryUnavailable."""
        if task_type not in ALL_TYPES:
            raise exception.Invalid("Task type must be one of %s" % ", ".join(TYPES))
        owner = owner or context.owner
        if owner is None:
            raise exception.Forbidden("Tasks belong to a project: the request has none.")
        values = {"id": str(uuid.uuid4()), "type": task_type,
                  "status": task_status.PENDING, "owner": owner,
                  "input": task_input, "request_id": context.request_id[:64],
                  "user_id": (context.user or "")[:64] or None,
                  "image_id": image_id}

        def verdict(task: dict | None) -> str:
            return registry_writes.NOT_YET if task is None else registry_writes.APPLIED

        return self._settle(context, values["id"],
                            lambda: self.registry.add_task(context, values), verdict)

    def move(self, context: RequestContext, task: dict, to_status: str,
             **values: Any) -> dict:
        """Move ``task`` (as last read) to ``to_status``, also writing
        ``values`` (result, message, image_id). A finished task gets its
        ``expires_at``. Raises InvalidTaskStatusTransition (a bug),
        StatusConflict (another writer moved it first), TaskNotFound."""
        from_status = task["status"]
        task_status.check(from_status, to_status)
        changes = dict(values, status=to_status)
        if to_status in task_status.FINAL:
            expires = _utcnow() + datetime.timedelta(
                hours=self.conf.task.task_time_to_live)
            changes["expires_at"] = expires.isoformat()
        return self._change(context, task["id"], changes, from_status,
                            lambda found: found["status"] == to_status)

    def progress(self, context: RequestContext, task: dict, message: str,
                 **values: Any) -> dict:
        """Write a ``processing`` task's message (which also marks it as
        alive), and ``values`` (image_id). Raises StatusConflict when the
        task is no longer processing: whoever runs it must stop."""
        return self._change(context, task["id"], dict(values, message=message),
                            task_status.PROCESSING,
                            lambda found: found["message"] == message)

    def _change(self, context: RequestContext, task_id: str, changes: dict,
                from_status: str, applied: Any) -> dict:
        def verdict(found: dict | None) -> str:
            if found is None:
                return registry_writes.GONE
            if applied(found):
                return registry_writes.APPLIED
            if found["status"] == from_status:
                return registry_writes.NOT_YET
            return registry_writes.CONFLICT

        return self._settle(
            context, task_id,
            lambda: self.registry.update_task(context, task_id, changes,
                                              from_state=from_status),
            verdict)

    def _settle(self, context: RequestContext, task_id: str, send: Any,
                verdict: Any) -> dict:
        task: dict = self.writes.settle(
            "task %s" % task_id, send, lambda: self._read(context, task_id),
            verdict, lambda: exception.TaskNotFound(task_id=task_id))
        return task
