"""Running ``api_image_import`` tasks, and cleaning up after those whose
node died.

``run`` claims the task (pending -> processing, a compare-and-swap: no two
nodes ever run one task), keeps its lease alive (``task_lease``), streams
the method's bytes into the default store through the upload path (size,
checksum, inspection, quotas, ``image_size_cap``), activates the image,
releases the import lock and removes the staged copy; the task succeeds
with ``{"image_id": ...}``.

On any failure ``revert`` puts the image back as it was before the
import could have left a trace: no partial or finished data in the store
that the record does not hold, no staged data, status ``queued`` (size
and checksum forgotten), the lock and the importing list dropped and the
store listed in ``os_glance_failed_import``; then the task fails with a
message saying why. ``revert`` acts only while the image is ``importing``
under this task's lock, so a late or repeated revert never touches a
later import of the same image, and a retried import starts from a clean
store (it never finds data of the dead one under its id).

The reaper of any node (``task_reaper``) calls ``revert`` for the tasks
it fails as stalled, and ``sweep_images`` / ``sweep_staging`` repair what
a node dying between two writes can leave: an image ``importing`` under a
lock whose task is over, staged data of images no longer waiting for it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, import_lock, reserved, task_reaper, task_status, tasks
from glance_clone.domain.image_import import METHODS
from glance_clone.domain.import_lock import ImportLock
from glance_clone.domain.import_plugins import Plugins, Work
from glance_clone.domain.staging import StagingArea
from glance_clone.domain.task_lease import Lease
from glance_clone.domain.upload import Uploader

LOG = logging.getLogger(__name__)

# Staged data younger than this many seconds is never swept: its stage
# may have begun after the sweep read the image.
SWEEP_MIN_AGE = 60.0
PAGE = 200


class ImportRunner:
    def __init__(self, conf: cfg.ConfigOpts, repository: tasks.TaskRepository,
                 lock: ImportLock, uploader: Uploader, staging: StagingArea,
                 stores: Any, plugins: Plugins | None = None,
                 downloads: Any = None) -> None:
        self.conf = conf
        # Import plugins (glance-image-import.conf); none by default.
        self.plugins = plugins
        # glance-download's source (region_download.RegionDownload).
        self.downloads = downloads
        self.repository = repository
        self.lock = lock
        self.uploader = uploader
        self.staging = staging
        self.stores = stores

    @property
    def heartbeat(self) -> float:
        return task_reaper.lease_interval(self.conf)

    def store_id(self) -> str:
        """The store an import writes to: the default one."""
        return str(self.stores.default_id)

    # -- running -------------------------------------------------------------
    def run(self, context: RequestContext, task: dict,
            lease_factory: Callable[..., Lease] = Lease) -> None:
        """Claim and run the task; never raises."""
        try:
            task = self.repository.move(context, task, task_status.PROCESSING)
        except exception.GlanceError as err:
            LOG.info("Import task %s not run: %s", task["id"], err)
            return
        image_id = task["input"]["image_id"]
        lease = lease_factory(self.repository, context, task, self.heartbeat,
                              report=functools.partial(self._show_progress, context,
                                                       image_id))
        try:
            with lease:
                self._import(context, task, lease)
        except Exception as err:
            LOG.warning("Import task %s of image %s failed: %s", task["id"], image_id,
                        err, exc_info=not isinstance(err, exception.GlanceError))
            self.revert(context, task, tasks.failure_message(err))
            return
        try:
            self.repository.move(context, lease.task, task_status.SUCCESS,
                                 result={"image_id": image_id}, message="")
        except exception.GlanceError as err:
            LOG.warning("Import task %s not marked a success: %s", task["id"], err)

    def _import(self, context: RequestContext, task: dict, lease: Lease) -> None:
        image_id = task["input"]["image_id"]
        record = self.uploader.writes.read(context, image_id)
        if (record is None or record["status"] != image_status.IMPORTING
                or import_lock.holder(record) != task["id"]):
            raise exception.Conflict("Image %s is no longer being imported by this "
                                     "task" % image_id)
        method = METHODS[task["input"]["import_req"]["method"]["name"]]
        chunks, size = method.source(self, context, task["input"], record)
        if self.plugins:
            record, chunks, size = self._through_plugins(context, record, chunks, size)
        try:
            self.uploader.upload(context, record, lease.count(chunks, size), size or 0,
                                 declared_size=size, failed_status=None,
                                 start=image_status.IMPORTING,
                                 working=image_status.IMPORTING)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        try:
            self.lock.release(context, image_id, task["id"], image_status.ACTIVE)
        except exception.GlanceError as err:
            # Active with its data: a stale lock is broken by the next import.
            LOG.warning("Image %s: import lock not released: %s", image_id, err)
        self.staging.remove(image_id)

    def _through_plugins(self, context: RequestContext, record: dict, chunks: Any,
                         size: int | None) -> tuple[dict, Any, int]:
        """The import plugins on the data, staged first (a glance-direct
        import's already is); the image as they changed it, and its data."""
        image_id = record["id"]
        if not self.staging.holds(image_id):
            try:
                self.staging.write(image_id, chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        else:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        path = self.staging.path(image_id)
        changes = self.plugins.run(Work(context, dict(record), path,  # type: ignore[union-attr]
                                        self.staging.scratch(image_id)))
        # Size and virtual size are the upload's to record, from the data.
        values = {k: v for k, v in changes.items() if k not in ("size", "virtual_size")}
        if values:
            record = self.uploader.writes.change(
                context, image_id, values, from_state=image_status.IMPORTING,
                applied=lambda found: all(found.get(k) == v for k, v in values.items()
                                          if k != "properties"))
        return record, self.staging.read(image_id), os.path.getsize(path)

    def _show_progress(self, context: RequestContext, image_id: str, done: int,
                       total: int | None) -> None:
        """The byte counts into the image's os_glance_import_* properties."""
        shown = {reserved.IMPORT_COPIED: str(done)}
        if total:
            shown[reserved.IMPORT_SIZE] = str(total)
        self.uploader.writes.update(context, image_id, {"properties": shown},
                                    from_state=image_status.IMPORTING)

    # -- undoing -------------------------------------------------------------
    def revert(self, context: RequestContext, task: dict, message: str) -> None:
        """Undo the task's import (see the module docstring), then fail the
        task unless it is over already; never raises."""
        self.revert_image(context, task["input"]["image_id"], task["id"])
        try:
            current = self.repository.get(context, task["id"])
            if current["status"] not in task_status.FINAL:
                self.repository.move(context, current, task_status.FAILURE,
                                     message=message)
        except exception.GlanceError as err:
            LOG.warning("Import task %s not failed: %s", task["id"], err)

    def revert_image(self, context: RequestContext, image_id: str,
                     task_id: str | None) -> None:
        """The image back to queued, cleaned, while it is importing under
        ``task_id``'s lock (None: under no lock); never raises."""
        try:
            record = self.uploader.writes.read(context, image_id)
            if (record is None or record["status"] != image_status.IMPORTING
                    or import_lock.holder(record) != task_id):
                return
            held = [loc["url"] for loc in record.get("location_data") or []
                    if loc.get("url")]
            self.stores.remove_leftovers(image_id, held)
            self.staging.remove(image_id)
            self.lock.rewrite(
                context, image_id, image_status.IMPORTING, image_status.QUEUED,
                add=self._failed(record), drop=import_lock.IMPORT_KEYS,
                values={"size": None, "virtual_size": None, "checksum": None},
                lock=task_id)
            LOG.warning("Image %s: its import was undone; it is queued again",
                        image_id)
        except exception.StatusConflict:
            LOG.info("Image %s moved on meanwhile; not reverted", image_id)
        except exception.GlanceError as err:
            LOG.warning("Image %s not reverted (the reaper tries again): %s",
                        image_id, err)

    def _failed(self, record: dict) -> dict:
        old = reserved.store_list((record.get("properties") or {})
                                  .get(reserved.FAILED_IMPORT))
        return {reserved.FAILED_IMPORT: reserved.joined(old + [self.store_id()])}

    # -- sweeps (the reaper's) -------------------------------------------------
    def sweep_images(self, context: RequestContext) -> None:
        """Revert every image importing under a lock whose task is over (or
        gone): its reverter died. A stalled task is the reaper's to fail
        first (then it reverts the image)."""
        for record in self._importing(context):
            task_id = import_lock.holder(record)
            if task_id is None or self.lock.task_over(task_id):
                self.revert_image(context, record["id"], task_id)

    def _importing(self, context: RequestContext) -> list[dict]:
        found: list[dict] = []
        marker = None
        while True:
            params: dict[str, Any] = {"status": image_status.IMPORTING,
                                      "is_public": "none", "limit": PAGE,
                                      "sort_key": "created_at", "sort_dir": "asc"}
            if marker is not None:
                params["marker"] = marker
            page = self.uploader.registry.get_images_detailed(context, **params)
            found += page
            if len(page) < PAGE:
                return found
            marker = page[-1]["id"]

    def sweep_staging(self, context: RequestContext) -> None:
        """Remove staged data whose image no longer waits for it (gone,
        queued, active...: left by a node that died mid-import), and the
        data of images ``uploading`` that nobody added to or imported for
        ``staging_abandon_timeout`` seconds (then queued again)."""
        abandon = self.conf.staging_abandon_timeout
        for image_id, age in self.staging.idle(SWEEP_MIN_AGE).items():
            try:
                record = self.uploader.writes.read(context, image_id)
            except exception.GlanceError as err:
                LOG.info("Staged data of image %s kept: %s", image_id, err)
                continue
            if record is None or record.get("deleted") or record["status"] not in (
                    image_status.UPLOADING, image_status.IMPORTING):
                LOG.warning("Removing the staged data of image %s: nothing waits "
                            "for it", image_id)
                self.staging.remove(image_id)
            elif record["status"] == image_status.UPLOADING and abandon and age >= abandon:
                LOG.warning("Removing the staged data of image %s, untouched for %d "
                            "seconds; the image is queued again", image_id, age)
                self.staging.remove(image_id)
                self.uploader.kill(context, image_id, image_status.UPLOADING,
                                   image_status.QUEUED)
