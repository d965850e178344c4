"""The v2.17 location API's work: a ``location_import`` task that reads the
data at a new location before the image is known by it.

``POST /v2/images/{id}/locations`` (``{"url": ..., "validation_data":
{"os_hash_algo": ..., "os_hash_value": ...}}``) is checked at once
(``Locations.check_api_request``: 400 for a malformed body or a hash
that is not a hex digest of its algorithm, 403 policy, 409 not queued;
then 409 while a live task holds the import lock, 400 for a URL the
source filter refuses, 400 for formats unset). Then a
``location_import`` task is recorded and, in one status swap, the image
moves ``queued -> importing`` holding the import lock
(``os_glance_import_task``) for it; the caller gets 202.

The task reads the whole location through the stores (the HTTP store
applies the source filter again on every redirect hop) and, as the bytes
pass, counts them (``image_size_cap``, the owner's storage quota), hashes
them (md5 and the multihash: the algorithm of ``validation_data``, else
``hashing_algorithm``) and inspects their disk format as every upload's;
the image shows how far it got (``os_glance_import_copied`` and
``os_glance_import_size``, at most every ``task_progress_interval``).
Only then, in one write that also drops the lock, does the image get its
location, size, checksum, multihash (and virtual size) and become
``active``. A hash that differs from ``validation_data``, a refused
source, a format mismatch or any other failure fails the task with a
message saying why and puts the image back to ``queued`` without the
lock; nothing was stored, so nothing is left behind. A task whose node
dies is failed by any node's reaper, whose ``revert`` does the same.

The task's registry writes are an admin's: the policy
(``add_image_location``) may let a service that does not own the image
add its location. The storage quota is the caller's, as for uploads, and
so are Keystone's unified limits when they are used: the request is
checked as an upload is (``image_size_total`` + 0,
``image_count_uploading`` + 1; 413 over either).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.common.data_in import Incoming
from glance_clone.domain import (
    image_status,
    import_lock,
    inspection,
    reserved,
    tasks,
    unified_limits,
    usage,
)
from glance_clone.domain.import_lock import ImportLock
from glance_clone.domain.locations import Locations
from glance_clone.domain.task_lease import Lease
from glance_clone.domain.task_runner import TaskRunner
from glance_clone.domain.upload import DATA_FIELDS, Uploader

LOG = logging.getLogger(__name__)


class LocationImport:
    def __init__(self, conf: cfg.ConfigOpts, catalog: Any, locations: Locations,
                 repository: tasks.TaskRepository, lock: ImportLock,
                 uploader: Uploader, stores: Any,
                 admin: Callable[[], RequestContext],
                 spawn: Callable[..., Any] = eventlet.spawn_n) -> None:
        self.conf = conf
        self.catalog = catalog
        self.locations = locations
        self.repository = repository
        self.lock = lock
        self.uploader = uploader
        self.stores = stores
        self.admin = admin
        self.spawn = spawn
        self.lease_factory: Callable[..., Lease] = Lease

    # -- the request -----------------------------------------------------------
    def start(self, context: RequestContext, image_id: str, url: Any,
              validation_data: Any = None) -> dict:
        """Check the request and start the task (the caller answers 202);
        the task. Raises ImageNotFound, Invalid, Forbidden, Conflict."""
        if context.read_only:
            raise exception.ReadOnly()
        image = self.catalog.get(context, image_id)
        self.locations.check_api_request(context, image, url, validation_data)
        self.lock.check_free(image.record)
        self.locations.source_check(url)
        image_status.check(image.status, image_status.IMPORTING,
                           image.record.get("disk_format"),
                           image.record.get("container_format"))
        # The image receives data as an upload would (the caller's project).
        usage.enforce(self.conf, self.catalog.images.registry, context,
                      {unified_limits.IMAGE_SIZE_TOTAL: 0,
                       unified_limits.IMAGE_COUNT_UPLOADING: 1})
        owner = context.owner or image.owner or self.conf.admin_role
        task = self.repository.create(
            context, tasks.LOCATION_IMPORT,
            {"image_id": image_id, "loc_url": url, "validation_data": validation_data},
            image_id=image_id, owner=owner)
        admin = self.admin()
        runner = self._runner(context)
        try:
            self.lock.rewrite(admin, image_id, image_status.QUEUED, image_status.IMPORTING,
                              add={reserved.IMPORT_TASK: task["id"]})
        except BaseException as err:
            runner.fail(admin, task, "The location import did not start: %s" % err)
            if isinstance(err, exception.StatusConflict):
                raise exception.Conflict("Image %s changed status meanwhile" % image_id) \
                    from None
            raise
        self.spawn(runner.run, admin, task)
        return task

    def _runner(self, caller: RequestContext) -> TaskRunner:
        return TaskRunner(self.conf, self.repository,
                          functools.partial(self._work, caller),
                          lease_factory=self.lease_factory)

    # -- the task --------------------------------------------------------------
    def _work(self, caller: RequestContext, context: RequestContext, task: dict,
              lease: Lease) -> dict:
        """Read, hash and inspect the location's data, then give the image
        its location; on failure the image is queued again (and the task
        runner fails the task)."""
        image_id = task["input"]["image_id"]
        try:
            self._import(caller, context, task, lease)
        except BaseException:
            self.revert_image(context, image_id, task["id"])
            raise
        return {"image_id": image_id}

    def _import(self, caller: RequestContext, context: RequestContext, task: dict,
                lease: Lease) -> None:
        image_id, url = task["input"]["image_id"], task["input"]["loc_url"]
        wanted = task["input"].get("validation_data") or None
        record = self.uploader.writes.read(context, image_id)
        if (record is None or record["status"] != image_status.IMPORTING
                or import_lock.holder(record) != task["id"]):
            raise exception.Conflict("Image %s is no longer being imported by this "
                                     "task" % image_id)
        # Checked again: a name may resolve elsewhere by now.
        self.locations.source_check(url)
        algorithm = wanted["os_hash_algo"] if wanted else self.conf.hashing_algorithm
        inspector = inspection.for_image(self.conf, record.get("disk_format"),
                                         record.get("container_format"))
        chunks, size = self.stores.get(url)
        show = functools.partial(self.lock.show_progress, context, image_id,
                                 image_status.IMPORTING)
        try:
            data = Incoming(
                lease.count(chunks, size, show=show),
                limits=self.uploader.limits(caller, image_id, size or 0),
                expected_size=size, multihash=algorithm, inspector=inspector)
            for _chunk in data:
                pass
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if wanted and data.multihash != wanted["os_hash_value"].lower():
            raise exception.ImageDataMismatch(
                "The data at the location has %s %s, not the %s of validation_data"
                % (algorithm, data.multihash, wanted["os_hash_value"]))
        values: dict[str, Any] = {
            "size": data.bytes_read, "checksum": data.checksum,
            "os_hash_algo": algorithm, "os_hash_value": data.multihash,
            "location_data": [{"url": url, "metadata": {}, "status": "active"}]}
        if inspector.virtual_size is not None:
            values["virtual_size"] = inspector.virtual_size
        self.lock.release(context, image_id, task["id"], image_status.IMPORTING,
                          image_status.ACTIVE, values=values)
        LOG.info("Image %s is active with its new location", image_id)

    # -- undoing ---------------------------------------------------------------
    def revert_image(self, context: RequestContext, image_id: str, task_id: str) -> None:
        """The image back to queued without its data fields and the lock,
        while it is importing under ``task_id``'s lock; never raises."""
        try:
            self.lock.rewrite(context, image_id, image_status.IMPORTING,
                              image_status.QUEUED, drop=import_lock.IMPORT_KEYS,
                              values=dict(dict.fromkeys(DATA_FIELDS), virtual_size=None),
                              lock=task_id)
            LOG.warning("Image %s: its location was not added; it is queued again",
                        image_id)
        except (exception.StatusConflict, exception.ImageNotFound):
            LOG.info("Image %s moved on meanwhile; not reverted", image_id)
        except exception.GlanceError as err:
            LOG.warning("Image %s not reverted (the reaper tries again): %s",
                        image_id, err)

    def revert(self, context: RequestContext, task: dict, message: str) -> None:
        """The reaper's undo of a task whose node died: the image queued
        again, then the task failed unless it is over; never raises."""
        self.revert_image(context, task["input"]["image_id"], task["id"])
        self._runner(context).fail(context, task, message)
