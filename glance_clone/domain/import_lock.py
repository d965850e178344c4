"""The import lock (``os_glance_import_task``) and the other ``os_glance_*``
properties an import writes on its image.

An import takes the lock in the write that moves its image to
``importing`` (a compare-and-swap on the status it leaves, so two imports
never both start) and releases it in the write that moves the image on
(active, or back to queued). A lock whose task is gone, finished, or has
not shown a sign of life for ``[task] task_stall_timeout`` seconds is
stale: a new import breaks it (failing that task) instead of waiting.

Each write here is a compare-and-swap on the status and on the
``os_glance_*`` properties it reads and rewrites (the lock, the store
lists), and removes properties by name: a user changing the image's
other properties meanwhile (a PATCH while it is importing) loses nothing,
and two writers of these properties never both succeed.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable
from typing import Any

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.common.timeutil import naive_utc
from glance_clone.domain import reserved, task_status
from glance_clone.domain.registry_writes import RegistryWrites
from glance_clone.domain.tasks import TaskRepository

LOG = logging.getLogger(__name__)

# What an import adds to its image and removes when done.
IMPORT_KEYS = (reserved.IMPORT_TASK, reserved.IMPORTING_TO, reserved.IMPORT_COPIED,
               reserved.IMPORT_SIZE)


# What a rewrite compares before it writes (with what it adds).
CHECKED = (reserved.IMPORT_TASK, reserved.IMPORTING_TO, reserved.FAILED_IMPORT)


def holder(record: dict | None) -> str | None:
    """The id of the task holding the image's import lock, if any."""
    if record is None:
        return None
    return (record.get("properties") or {}).get(reserved.IMPORT_TASK) or None


def _parse_time(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    return naive_utc(value)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class ImportLock:
    def __init__(self, writes: RegistryWrites, tasks: TaskRepository,
                 stall_timeout: Callable[[], int],
                 admin: Callable[[], RequestContext]) -> None:
        self.writes = writes
        # The lock's task may be another project's (an admin imported):
        # tasks are read as an admin.
        self.tasks = tasks
        self.admin = admin
        # A callable: the option is read at each use (reloads).
        self.stall_timeout = stall_timeout

    # -- reading -------------------------------------------------------------
    def ended(self, task_id: str) -> tuple[bool, str | None]:
        """Whether the task is finished or gone, and its type (None once
        the task is gone)."""
        try:
            task = self.tasks.get(self.admin(), task_id)
        except exception.TaskNotFound:
            return True, None
        return task["status"] in task_status.FINAL, task["type"]

    def alive(self, task: dict) -> bool:
        """Whether the task may still be running: not finished, and changed
        within the stall timeout."""
        if task["status"] in task_status.FINAL:
            return False
        updated = _parse_time(task.get("updated_at"))
        limit = datetime.timedelta(seconds=self.stall_timeout())
        return updated is None or _utcnow() - updated < limit

    def check_free(self, record: dict) -> None:
        """Raises Conflict while a live task holds the lock; a stale lock's
        task, if still pending or processing, is failed."""
        task_id = holder(record)
        if task_id is None:
            return
        try:
            task = self.tasks.get(self.admin(), task_id)
        except exception.TaskNotFound:
            return
        if self.alive(task):
            raise exception.Conflict("Image %s is being imported by task %s"
                                     % (record["id"], task_id))
        if task["status"] not in task_status.FINAL:
            try:
                self.tasks.move(self.admin(), task, task_status.FAILURE,
                                message="Expired lock preempted")
            except exception.GlanceError as err:
                LOG.info("Stale import task %s not failed: %s", task_id, err)

    # -- writing -------------------------------------------------------------
    def show_progress(self, context: RequestContext, image_id: str, status: str,
                      done: int, total: int | None) -> None:
        """The byte counts of a running import (``os_glance_import_copied``,
        and ``os_glance_import_size`` when known) on its image, while it has
        ``status``; the lock's release removes them. Raises
        StatusConflict, ImageNotFound."""
        shown = {reserved.IMPORT_COPIED: str(done)}
        if total:
            shown[reserved.IMPORT_SIZE] = str(total)
        self.writes.update(context, image_id, {"properties": shown}, from_state=status)

    def rewrite(self, context: RequestContext, image_id: str, from_state: str,
                to_state: str | None = None, add: dict | None = None,
                drop: Iterable[str] = (), values: dict | None = None,
                lock: str | None = None,
                adding: Callable[[dict], dict] | None = None) -> dict:
        """One status swap from ``from_state`` (to ``to_state`` when given)
        that also sets the properties in ``add`` (and those ``adding``
        makes of the properties read), removes those in ``drop`` and
        writes ``values``; with ``lock``, only while that task holds the
        import lock. Raises StatusConflict, ImageNotFound."""
        record = self.writes.read(context, image_id)
        if record is None or record.get("deleted"):
            raise exception.ImageNotFound("No image found with ID %s" % image_id)
        held = record.get("properties") or {}
        if record["status"] != from_state or (lock is not None and holder(record) != lock):
            raise exception.StatusConflict()
        add = dict(add or {}, **(adding(held) if adding else {}))
        removed = [name for name in drop if name not in add]
        changes = dict(values or {}, properties=add)
        target = to_state or from_state
        changes["status"] = target
        # The swap holds while the lock and the properties written from
        # what was read are still as read (progress counts are not).
        compared = {name: held.get(name) for name in (*CHECKED, *add)}

        def applied(found: dict) -> bool:
            mine = found.get("properties") or {}
            return found["status"] == target and all(
                mine.get(k) == v for k, v in add.items()) and not any(
                k in mine for k in removed)

        return self.writes.change(context, image_id, changes, from_state=from_state,
                                  applied=applied, properties_from=compared,
                                  remove_properties=removed)

    def take(self, context: RequestContext, image_id: str, from_state: str,
             to_state: str, task_id: str, stores: list[str]) -> dict:
        """Move the image to ``to_state`` holding the lock for ``task_id``,
        its target stores listed as importing and no longer as failed."""
        def still_failed(held: dict) -> dict:
            failed = reserved.store_list(held.get(reserved.FAILED_IMPORT))
            left = [s for s in failed if s not in stores]
            return {reserved.FAILED_IMPORT: reserved.joined(left)} if left else {}

        add = {reserved.IMPORT_TASK: task_id,
               reserved.IMPORTING_TO: reserved.joined(stores)}
        return self.rewrite(context, image_id, from_state, to_state, add=add,
                            drop=[reserved.STAGE_HOST, reserved.FAILED_IMPORT],
                            adding=still_failed)

    def release(self, context: RequestContext, image_id: str, task_id: str,
                from_state: str, to_state: str | None = None,
                failed_stores: Iterable[str] = (), values: dict | None = None) -> dict:
        """Drop ``task_id``'s lock (and the importing list) in a swap from
        ``from_state``; ``failed_stores`` are added to the failed list.
        Raises StatusConflict when the image is not ``from_state`` or the
        lock is not that task's."""
        failed = set(failed_stores)

        def now_failed(held: dict) -> dict:
            if not failed:
                return {}
            old = reserved.store_list(held.get(reserved.FAILED_IMPORT))
            return {reserved.FAILED_IMPORT: reserved.joined(failed | set(old))}

        return self.rewrite(context, image_id, from_state, to_state, drop=IMPORT_KEYS,
                            values=values, lock=task_id, adding=now_failed)
