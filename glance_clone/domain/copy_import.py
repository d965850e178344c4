"""The ``copy-image`` import method: an active image's data copied to more
of the named stores, as an ``api_image_import`` task.

The request (``POST /v2/images/{id}/import`` with ``{"method": {"name":
"copy-image"}, "stores": [...]}`` or ``"all_stores": true``, and
``all_stores_must_succeed``, default true) is checked at once
(``store_copy.targets``: 400/409), and by the ``copy_image`` policy
(admin-only by default, as in Glance; the image must be readable). With
every store already holding the image the answer is 202 and nothing is
done. Otherwise a task is recorded and, in the write that takes the
import lock, the target stores are listed in
``os_glance_importing_to_stores``; the image stays ``active`` throughout.

The task copies store after store (``store_copy``: straight from a store
holding the data into the target, no temporary file), taking each store
off the importing list as it is done. A store that fails goes to
``os_glance_failed_import``: with ``all_stores_must_succeed`` the copies
already made by the task are taken back and the task fails; without it
the others go on and the task succeeds (``os_glance_failed_import`` says
which failed). While it copies, the image shows the bytes copied so far
and the total (the image's size once per target store) in
``os_glance_import_copied`` and ``os_glance_import_size``, written between
two chunks at most every ``[task] task_progress_interval`` seconds (and
the task's message says the same); the lock is released at the end, and
those properties with it.
If the node dies, the reaper fails the task and ``revert`` removes what a
copy left half written, takes the unfinished stores off the importing
list into the failed one, and releases the lock.

The work runs with an admin context (as Glance's does): a non-owner the
policy lets copy must still be able to write the image's locations.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, import_lock, import_targets, reserved, tasks
from glance_clone.domain.import_lock import ImportLock
from glance_clone.domain.store_copy import COPY_IMAGE, StoreCopier, settle, targets
from glance_clone.domain.task_lease import Lease
from glance_clone.domain.task_reaper import Reverter
from glance_clone.domain.task_runner import TaskRunner

LOG = logging.getLogger(__name__)


class CopyImport:
    def __init__(self, conf: cfg.ConfigOpts, catalog: Any, stores: Any,
                 repository: tasks.TaskRepository, lock: ImportLock,
                 admin: Callable[[], RequestContext],
                 spawn: Callable[..., Any] = eventlet.spawn_n) -> None:
        self.catalog = catalog
        self.stores = stores
        self.repository = repository
        self.lock = lock
        self.admin = admin
        self.spawn = spawn
        self.runner = TaskRunner(conf, repository, self._work)
        self.copier = StoreCopier(stores, catalog.images.writes, conf)

    # -- the request ---------------------------------------------------------
    def start(self, context: RequestContext, image: Any, body: dict,
              header: str | None = None) -> None:
        """Check the request for the active, readable ``image`` (``header``:
        the request's X-Image-Meta-Store) and start the copy; raises
        Invalid, Forbidden (policy), Conflict (lock, store). The lock is
        checked before the stores, as for every import method."""
        image_id = image.id
        self.catalog.policy.enforce(context, "copy_image", image.policy_target())
        self.lock.check_free(image.record)
        stores = targets(self.stores, image.record, body, header)
        must_succeed = import_targets.flags(body).must_succeed
        if not stores:
            LOG.info("Image %s is in every store already: nothing to copy", image_id)
            return
        admin = self.admin()
        task = self.repository.create(
            context, tasks.API_IMAGE_IMPORT,
            {"image_id": image_id, "import_req": body, "backend": stores,
             "all_stores_must_succeed": must_succeed}, image_id=image_id)
        try:
            self.lock.take(admin, image_id, image_status.ACTIVE, image_status.ACTIVE,
                           task["id"], stores)
        except BaseException as err:
            self.runner.fail(admin, task, "The copy did not start: %s" % err)
            if isinstance(err, exception.StatusConflict):
                raise exception.Conflict("Image %s changed meanwhile" % image_id) \
                    from None
            raise
        self.spawn(self.run, admin, task)

    # -- the task ------------------------------------------------------------
    def run(self, context: RequestContext, task: dict) -> None:
        """Claim the task and copy; never raises."""
        self.runner.run(context, task)

    def _work(self, context: RequestContext, task: dict, lease: Lease) -> dict:
        self._copy_all(context, task, lease)
        return {"image_id": task["input"]["image_id"]}

    def _copy_all(self, context: RequestContext, task: dict, lease: Lease) -> None:
        """Copy to each target; a store that fails is listed as failed.
        Raises after taking back this task's copies when all must succeed."""
        image_id, task_id = task["input"]["image_id"], task["id"]
        must_succeed = task["input"].get("all_stores_must_succeed", True)
        left = list(task["input"]["backend"])
        made: list[str] = []
        failed: list[str] = []
        show = functools.partial(self.lock.show_progress, context, image_id,
                                 image_status.ACTIVE)
        stores = len(left)

        def count(chunks: Iterable[bytes], size: int | None) -> Iterator[bytes]:
            # Progress of the whole task: every target's bytes.
            return lease.count(chunks, size * stores if size else None, show=show)

        while left:
            target = left.pop(0)
            try:
                made.append(self.copier.copy_to(context, image_id, target, count))
            except Exception as err:
                LOG.warning("Image %s not copied to store %s: %s", image_id, target, err)
                failed.append(target)
                if must_succeed:
                    for url in made:
                        self.copier.remove(context, image_id, url)
                    self._release(context, image_id, task_id, failed + left)
                    raise
            self.lock.rewrite(context, image_id, image_status.ACTIVE,
                              add={reserved.IMPORTING_TO: reserved.joined(left)},
                              lock=task_id)
        self._release(context, image_id, task_id, failed)

    def _release(self, context: RequestContext, image_id: str, task_id: str,
                 failed: list[str]) -> None:
        try:
            self.lock.release(context, image_id, task_id, image_status.ACTIVE,
                              failed_stores=failed)
        except exception.GlanceError as err:
            # A lock left behind is stale once the task is over: the next
            # import breaks it.
            LOG.warning("Image %s: import lock not released: %s", image_id, err)

    # -- after a dead node -----------------------------------------------------
    def revert(self, context: RequestContext, task: dict, message: str) -> None:
        """The reaper's undo of a copy task whose node died: half-written
        data removed, unfinished stores listed as failed, lock released.
        Copies that finished stay. Never raises."""
        image_id, task_id = task["input"]["image_id"], task["id"]
        try:
            record = self.catalog.images.writes.read(context, image_id)
            if record is None or import_lock.holder(record) != task_id:
                return
            settle(self.stores, self.lock, context, record, task_id,
                   task["input"]["backend"])
        except exception.GlanceError as err:
            LOG.warning("Image %s: copy task %s not undone: %s", image_id, task_id, err)


def by_method(copy_revert: Reverter, other: Reverter) -> Reverter:
    """The reaper's reverter of ``api_image_import`` tasks: copy-image
    tasks are undone by ``copy_revert``, the other methods' by ``other``."""
    def revert(context: RequestContext, task: dict, message: str) -> None:
        method = ((task.get("input") or {}).get("import_req") or {}).get("method") or {}
        if method.get("name") == COPY_IMAGE:
            copy_revert(context, task, message)
        else:
            other(context, task, message)
    return revert
