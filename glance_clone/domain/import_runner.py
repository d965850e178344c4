"""Running ``api_image_import`` tasks, and cleaning up after those whose
node died.

``run`` claims the task (pending -> processing, a compare-and-swap: no two
nodes ever run one task), keeps its lease alive (``task_lease``), and
streams the method's bytes into each target store (the task's
``backend``, chosen by ``import_targets``; the default store without named
stores) through the upload path (size, checksum, inspection, quotas,
``image_size_cap``). One store is written straight from the source; with
several, or with import plugins, the data is staged first and each store
is written from the staged copy. Each store done leaves
``os_glance_importing_to_stores``; the image turns active with the last
store's data, or, when ``all_stores_must_succeed`` is false, with the
first store that takes it, and a store that fails then is listed in
``os_glance_failed_import`` while the others go on (none taking it fails
the import). At the end the import lock is released and the staged copy
removed; the task succeeds with ``{"image_id": ...}``.

On any failure ``revert`` puts the image back as it was before the
import could have left a trace: no partial or finished data in any target
store (the locations written so far are removed with their data), no
staged data, status ``queued`` (size and checksum forgotten), the lock
and the importing list dropped and the target stores listed in
``os_glance_failed_import``; then the task fails with a message saying
why. ``revert`` acts only while the image is ``importing`` under this
task's lock, so a late or repeated revert never touches a later import of
the same image, and a retried import starts from clean stores (it never
finds data of the dead one under its id). An image the task activated
already (a store may fail) keeps its data; the stores it did not reach
are listed as failed and cleaned of partial data.

The reaper of any node (``task_reaper``) calls ``revert`` for the tasks
it fails as stalled, and ``sweep_images`` / ``sweep_staging`` repair what
a node dying between two writes can leave: an image ``importing`` under a
lock whose task is over, staged data of images no longer waiting for it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import (
    image_status,
    import_lock,
    import_targets,
    reserved,
    task_reaper,
    task_status,
    tasks,
)
from glance_clone.domain.image_import import METHODS
from glance_clone.domain.import_lock import ImportLock
from glance_clone.domain.import_plugins import Plugins, staged_through
from glance_clone.domain.region_download import restored
from glance_clone.domain.staging import StagingArea
from glance_clone.domain.store_copy import holding, settle
from glance_clone.domain.task_lease import Lease, LeaseLost
from glance_clone.domain.upload import Uploader

LOG = logging.getLogger(__name__)

# Staged data younger than this many seconds is never swept: its stage
# may have begun after the sweep read the image.
SWEEP_MIN_AGE = 60.0
PAGE = 200
# Puts an image back from importing under a task's lock: (context,
# image_id, task_id).
ImageReverter = Callable[[RequestContext, str, str], None]


class ImportRunner:
    def __init__(self, conf: cfg.ConfigOpts, repository: tasks.TaskRepository,
                 lock: ImportLock, uploader: Uploader, staging: StagingArea,
                 stores: Any, plugins: Plugins | None = None,
                 downloads: Any = None,
                 image_reverters: Mapping[str, ImageReverter] | None = None) -> None:
        self.conf = conf
        # The sweep's undo for an image locked by a task of another type
        # (by type; ``revert_image`` for the rest): a location import, for
        # one, wrote to no store and must not name one as failed.
        self.image_reverters = dict(image_reverters or {})
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
        """The method's bytes into each target store, one after the other."""
        image_id, task_id = task["input"]["image_id"], task["id"]
        record = self._held(context, image_id, task_id)
        if record["status"] != image_status.IMPORTING:
            raise exception.Conflict("Image %s is no longer being imported by this "
                                     "task" % image_id)
        targets: list[str | None] = task["input"].get("backend") or [None]
        must_succeed = task["input"].get("all_stores_must_succeed", True)
        method = METHODS[task["input"]["import_req"]["method"]["name"]]
        chunks, size = method.source(self, context, task["input"], record)
        if self.plugins or len(targets) > 1:
            # Every store is written from one staged copy.
            record, chunks, size = self._staged(context, record, chunks, size)
        failed: list[str] = []
        for index, target in enumerate(targets):
            if index:
                record = self._held(context, image_id, task_id)
                chunks = self.staging.read(image_id)
            # The image turns active with the last store's data, or with
            # the first store's when a store may fail.
            activate = not must_succeed or index == len(targets) - 1
            try:
                # Progress counts the bytes of every store.
                self._write(context, record,
                            lease.count(chunks, size * len(targets) if size else None),
                            size, target, activate)
            except (LeaseLost, exception.ImageDeletedDuringUpload):
                raise
            except Exception as err:
                if must_succeed:
                    raise
                LOG.warning("Image %s not imported into store %s: %s", image_id,
                            target or self.stores.default_id, err,
                            exc_info=not isinstance(err, exception.GlanceError))
                failed += import_targets.listed(self.stores, [target])
            if index + 1 < len(targets):
                # (After the last one the lock's release says it all.)
                self._done_with(context, image_id, task_id, targets[index + 1:], failed)
        record = self._held(context, image_id, task_id)
        if record["status"] != image_status.ACTIVE:
            raise exception.StoreError("None of the stores took the image's data "
                                       "(failed: %s)" % ", ".join(failed))
        try:
            self.lock.release(context, image_id, task_id, image_status.ACTIVE,
                              failed_stores=failed)
        except exception.GlanceError as err:
            # Active with its data: a stale lock is broken by the next import.
            LOG.warning("Image %s: import lock not released: %s", image_id, err)
        self.staging.remove(image_id)

    def _held(self, context: RequestContext, image_id: str, task_id: str) -> dict:
        """The image while this task holds its import lock; raises Conflict."""
        record = self.uploader.writes.read(context, image_id)
        if (record is None or record["status"] not in (image_status.IMPORTING,
                                                       image_status.ACTIVE)
                or import_lock.holder(record) != task_id):
            raise exception.Conflict("Image %s is no longer being imported by this "
                                     "task" % image_id)
        return record

    def _write(self, context: RequestContext, record: dict, chunks: Any,
               size: int | None, target: str | None, activate: bool) -> None:
        """The data into the store ``target`` (None: the default one),
        through the upload path (size, checksum, inspection, quotas,
        ``image_size_cap``), recorded beside the locations written before."""
        status = record["status"]
        try:
            self.uploader.upload(
                context, record, chunks, size or 0, target, declared_size=size,
                failed_status=None, start=status, working=status,
                done=image_status.ACTIVE if activate else status,
                kept=list(record.get("location_data") or []))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _done_with(self, context: RequestContext, image_id: str, task_id: str,
                   left: list[str | None], failed: list[str]) -> None:
        """The stores still to write listed as importing, the failed ones
        as failed."""
        record = self._held(context, image_id, task_id)
        add = {reserved.IMPORTING_TO: reserved.joined(import_targets.listed(self.stores,
                                                                            left))}
        if failed:
            old = reserved.store_list(
                (record.get("properties") or {}).get(reserved.FAILED_IMPORT))
            add[reserved.FAILED_IMPORT] = reserved.joined(old + failed)
        self.lock.rewrite(context, image_id, record["status"], add=add, lock=task_id)

    def _staged(self, context: RequestContext, record: dict, chunks: Any,
                size: int | None) -> tuple[dict, Any, int]:
        """The data staged (a glance-direct import's already is) and run
        through the import plugins; the image as they changed it, and its
        staged data."""
        return staged_through(self.plugins, self.staging, self.uploader.writes, context,
                              record, chunks, size, image_status.IMPORTING)

    def _show_progress(self, context: RequestContext, image_id: str, done: int,
                       total: int | None) -> None:
        """The byte counts into the image's os_glance_import_* properties."""
        self.lock.show_progress(context, image_id, image_status.IMPORTING, done, total)

    # -- undoing -------------------------------------------------------------
    def revert(self, context: RequestContext, task: dict, message: str) -> None:
        """Undo the task's import (see the module docstring), then fail the
        task unless it is over already; never raises."""
        self.revert_image(context, task["input"]["image_id"], task["id"],
                          task["input"].get("restore"))
        try:
            current = self.repository.get(context, task["id"])
            if current["status"] not in task_status.FINAL:
                self.repository.move(context, current, task_status.FAILURE,
                                     message=message)
        except exception.GlanceError as err:
            LOG.warning("Import task %s not failed: %s", task["id"], err)

    def revert_image(self, context: RequestContext, image_id: str,
                     task_id: str | None, restore: dict | None = None) -> None:
        """The image back to queued, cleaned, while it is importing under
        ``task_id``'s lock (None: under no lock); an image the task
        activated already (a store may fail) keeps what it got, and the
        stores not written are listed as failed. ``restore``: the formats
        and properties the request changed, as they were before (None: a
        property it added). Never raises."""
        try:
            record = self.uploader.writes.read(context, image_id)
            if record is None or import_lock.holder(record) != task_id:
                return
            if record["status"] == image_status.ACTIVE and task_id is not None:
                settle(self.stores, self.lock, context, record, task_id,
                       self._targets(record))
                return
            if record["status"] != image_status.IMPORTING:
                return
            # An importing image had no data before (imports start from
            # queued): every location it holds is this import's.
            # Data that cannot be removed now stops the revert: the image
            # stays importing and the reaper's sweep tries again.
            for loc in record.get("location_data") or []:
                if loc.get("url"):
                    with contextlib.suppress(exception.NotFound):
                        self.stores.delete(loc["url"])
            targets = self._targets(record)
            for store_id in targets:
                self.stores.remove_leftovers(image_id, (), store_id)
            self.staging.remove(image_id)
            old = reserved.store_list((record.get("properties") or {})
                                      .get(reserved.FAILED_IMPORT))
            add = {reserved.FAILED_IMPORT: reserved.joined(old + targets)}
            drop = list(import_lock.IMPORT_KEYS)
            values: dict[str, Any] = {"size": None, "virtual_size": None,
                                      "checksum": None, "location_data": []}
            put_back, properties, added = restored(restore)
            values.update(put_back)
            add.update(properties)
            drop += added
            self.lock.rewrite(
                context, image_id, image_status.IMPORTING, image_status.QUEUED,
                add=add, drop=drop, values=values, lock=task_id)
            LOG.warning("Image %s: its import was undone; it is queued again",
                        image_id)
        except exception.StatusConflict:
            LOG.info("Image %s moved on meanwhile; not reverted", image_id)
        except exception.GlanceError as err:
            LOG.warning("Image %s not reverted (the reaper tries again): %s",
                        image_id, err)

    def _targets(self, record: dict) -> list[str]:
        """The stores the image's import writes or wrote: those still
        listed as importing and those holding its data."""
        importing = reserved.store_list((record.get("properties") or {})
                                        .get(reserved.IMPORTING_TO))
        found = list(dict.fromkeys(importing + list(holding(self.stores, record))))
        return found or [str(self.stores.default_id)]

    # -- sweeps (the reaper's) -------------------------------------------------
    def sweep_images(self, context: RequestContext) -> None:
        """Revert every image importing under a lock whose task is over (or
        gone): its reverter died. The undo is that of the task's type
        (``image_reverters``), an import's by default. A stalled task is
        the reaper's to fail first (then it reverts the image)."""
        for record in self._importing(context):
            task_id = import_lock.holder(record)
            if task_id is None:
                self.revert_image(context, record["id"], None)
                continue
            over, kind = self.lock.ended(task_id)
            if over:
                revert = self.image_reverters.get(kind or "", self.revert_image)
                revert(context, record["id"], task_id)

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
