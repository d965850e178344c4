"""The ``clone`` task: an image, its metadata and its members copied to
another deployment (a region the operator configured by name).

Input: ``{"image_id": <id>, "region": <name>}``, nothing else. At create
time the region must be configured (else 400) and the image active and
the caller's own (or the caller an admin) with the right to download it.

The work runs off the request path under the task's lease, speaking to
the region's glance-api as the caller (``regions``): it looks for the
clone of this image there (the caller's image whose ``cloned_from_image``
property is this image's id) and creates it if there is none, with the
image's name, formats, visibility, min_disk/min_ram, tags and properties
(``os_glance_*`` left out); then streams the bytes from our store through
the two api nodes into the region's store (no temporary copy) with a
Content-Length, and checks that the region's checksum is ours. Members
of a shared image are added (each accepts on the region as here: they
start ``pending``), ``protected`` is set last. The task succeeds with
``{"image_id": <the clone's id>, "region": <name>}``.

Running it again finds the same clone: nothing is copied twice, changed
metadata is brought over and missing members added. A clone this run
created and could not fill is deleted again, so a failure leaves nothing
on the region; an active clone whose data differs is refused.

A node dying mid-clone cannot delete what it made, so while a clone is
unfinished it carries the id of the task filling it (``cloned_by_task``,
removed once it is active and synced). The reaper that fails the dead
task (``revert``) deletes the unfinished clones marked with its id; a
retry before that takes the clone over (marks it with its own id, so the
reaper leaves it) and fills it if it is ``queued``, or deletes it and
makes a new one if it is stuck in another status (``saving`` under a
dead upload, ``killed``). The reaper speaks to the region as the
deployment's admin: for an ``auth = token`` region with a token from the
admin credentials (``admin_user``...), without which the clone waits for
the next clone of the image to take it over.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from glance_clone.api.v2.tasks import check_input_keys
from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import downloads, image_status, reserved
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.regions import TOKEN, Regions
from glance_clone.domain.remote_glance import RemoteGlance
from glance_clone.domain.task_lease import Lease
from glance_clone.domain.task_runner import TaskRunner
from glance_clone.domain.tasks import TaskRepository

LOG = logging.getLogger(__name__)

INPUT_KEYS = frozenset(("image_id", "region"))
# The property naming, on a clone, the image it was cloned from.
SOURCE_PROPERTY = "cloned_from_image"
# The property naming, on an unfinished clone, the task filling it.
TASK_PROPERTY = "cloned_by_task"
MARKERS = (SOURCE_PROPERTY, TASK_PROPERTY)
# Base attributes a clone gets at creation.
COPIED = ("name", "disk_format", "container_format", "visibility", "min_disk",
          "min_ram", "os_hidden")


class CloneTask:
    """Checks and runs ``clone`` tasks."""

    def __init__(self, conf: cfg.ConfigOpts, repository: TaskRepository,
                 catalog: ImageCatalog, stores: Any, regions: Regions,
                 remote_factory: Any = RemoteGlance,
                 admin_token: Callable[[], str | None] = lambda: None,
                 **kwargs: Any) -> None:
        self.conf = conf
        self.catalog = catalog
        self.stores = stores
        self.regions = regions
        self.remote_factory = remote_factory
        # A token of the admin credentials (None without them): the
        # reaper's to speak to an auth = token region.
        self.admin_token = admin_token
        self.runner = TaskRunner(conf, repository, self.work, **kwargs)

    def check(self, context: RequestContext, task_input: dict) -> None:
        check_input_keys(task_input, INPUT_KEYS)
        self.regions.get(task_input["region"])
        self._source(context, task_input["image_id"])

    def start(self, context: RequestContext, task: dict) -> None:
        self.runner.start(context, task)

    def _source(self, context: RequestContext, image_id: Any) -> dict:
        """The caller's active image; raises Invalid, ImageNotFound,
        Forbidden (another project's, not downloadable), Conflict."""
        if not isinstance(image_id, str) or not image_id:
            raise exception.Invalid("'image_id' must be an image id")
        image = self.catalog.owned(context, image_id, "download_image")
        downloads.check_downloadable(self.catalog.policy, context, image.record,
                                     require_active=False)
        if image.status != image_status.ACTIVE:
            raise exception.Conflict("Image %s is %s: only an active image is cloned"
                                     % (image_id, image.status))
        return image.record

    # -- the work ------------------------------------------------------------
    def work(self, context: RequestContext, task: dict, lease: Lease) -> dict:
        record = self._source(context, task["input"]["image_id"])
        region = self.regions.get(task["input"]["region"])
        remote = self.remote_factory(region, context)
        try:
            clone_id = self._clone(context, remote, record, task["id"], lease)
        finally:
            remote.close()
        return {"image_id": clone_id, "region": region.name}

    def _clone(self, context: RequestContext, remote: RemoteGlance, record: dict,
               task_id: str, lease: Lease) -> str:
        clone = self._find(remote, record)
        if clone is not None and clone["status"] not in (image_status.QUEUED,
                                                         image_status.ACTIVE):
            LOG.warning("The clone %s of image %s in region %s is %s (its task "
                        "died); making it again", clone["id"], record["id"],
                        remote.region.name, clone["status"])
            remote.delete_image(clone["id"])
            clone = None
        if clone is None:
            clone = remote.create_image(self._create_body(context, record, task_id))
        elif clone["status"] == image_status.QUEUED and clone.get(TASK_PROPERTY) != task_id:
            # Taken over from a task that died: the reaper failing that
            # task must leave it to this one.
            clone = remote.patch_image(clone["id"], [
                {"op": "add", "path": "/" + TASK_PROPERTY, "value": task_id}])
        try:
            if clone["status"] == image_status.QUEUED:
                self._copy_data(remote, record, clone["id"], lease)
            clone = remote.get_image(clone["id"]) or {}
            if clone.get("status") != image_status.ACTIVE:
                raise exception.Conflict("The clone %s in region %s is %s, not active"
                                         % (clone.get("id"), remote.region.name,
                                            clone.get("status")))
            if clone.get("checksum") != record.get("checksum"):
                raise exception.Conflict(
                    "The clone %s in region %s holds other data (checksum %s, "
                    "ours %s)" % (clone["id"], remote.region.name,
                                  clone.get("checksum"), record.get("checksum")))
            lease.check()
        except BaseException:
            self._discard_unfinished(remote, clone["id"])
            raise
        self._sync(remote, record, clone)
        return str(clone["id"])

    def _find(self, remote: RemoteGlance, record: dict) -> dict | None:
        """The existing clone of ``record`` in the region (the same owner's)."""
        found = remote.find_images({SOURCE_PROPERTY: record["id"]})
        mine = [image for image in found if image.get("owner") == record.get("owner")]
        return mine[0] if mine else None

    def _create_body(self, context: RequestContext, record: dict, task_id: str) -> dict:
        body = self._properties(record)
        body.update({name: record.get(name) for name in COPIED
                     if record.get(name) is not None})
        body["tags"] = list(record.get("tags") or [])
        body[SOURCE_PROPERTY] = record["id"]
        body[TASK_PROPERTY] = task_id
        if record.get("owner") and record["owner"] != context.owner:
            # An admin cloning another project's image: the clone is theirs.
            body["owner"] = record["owner"]
        return body

    @staticmethod
    def _properties(record: dict) -> dict:
        return {name: value for name, value in (record.get("properties") or {}).items()
                if not reserved.is_reserved(name) and name not in MARKERS
                and value is not None}

    def _copy_data(self, remote: RemoteGlance, record: dict, clone_id: str,
                   lease: Lease) -> None:
        chunks, size = downloads.open_data(self.stores, record)
        try:
            remote.upload(clone_id, lease.count(chunks, size), size)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _sync(self, remote: RemoteGlance, record: dict, clone: dict) -> None:
        """Bring changed metadata and missing members over; protect last."""
        operations = [
            {"op": "add", "path": "/" + name, "value": value}
            for name, value in self._properties(record).items()
            if clone.get(name) != value]
        if TASK_PROPERTY in clone:
            # Finished: no reaper may take it for an unfinished one.
            operations.append({"op": "remove", "path": "/" + TASK_PROPERTY})
        tags = list(record.get("tags") or [])
        if sorted(set(clone.get("tags") or [])) != sorted(set(tags)):
            operations.append({"op": "replace", "path": "/tags", "value": tags})
        if operations:
            clone = remote.patch_image(clone["id"], operations)
        if record.get("visibility") == "shared":
            present = {m["member_id"] for m in remote.members(clone["id"])}
            image = self.catalog.get(remote.context, record["id"])
            for member in self.catalog.images.members(remote.context, image):
                if member["member_id"] not in present:
                    remote.add_member(clone["id"], member["member_id"])
        if record.get("protected") and not clone.get("protected"):
            remote.patch_image(clone["id"], [{"op": "replace", "path": "/protected",
                                              "value": True}])

    def _discard_unfinished(self, remote: RemoteGlance, clone_id: str) -> None:
        """Delete the clone unless it is active (then it may be in use
        there): this run's, or one a dead node left. Never raises."""
        try:
            current = remote.get_image(clone_id)
            if current is not None and current["status"] != image_status.ACTIVE:
                remote.delete_image(clone_id)
        except exception.GlanceError as err:
            LOG.error("The unfinished clone %s in region %s was not deleted: %s",
                      clone_id, remote.region.name, err)


    # -- the reaper's undo ---------------------------------------------------
    def revert(self, context: RequestContext, task: dict, message: str) -> None:
        """Delete the unfinished clones of a task whose node died (the
        reaper failed it), as the admin ``context``; never raises."""
        task_input = task.get("input") or {}
        try:
            region = self.regions.get(task_input.get("region"))
            if region.auth == TOKEN:
                token = self.admin_token()
                if token is None:
                    LOG.warning("Clone task %s died; its unfinished clone in region "
                                "%s stays until the image is cloned again: no admin "
                                "credentials (admin_user...) to ask the region with",
                                task["id"], region.name)
                    return
                context = dataclasses.replace(context, auth_token=token)
            remote = self.remote_factory(region, context)
            try:
                for clone in remote.find_images({SOURCE_PROPERTY: task_input.get("image_id"),
                                                 TASK_PROPERTY: task["id"]}):
                    self._discard_unfinished(remote, clone["id"])
            finally:
                remote.close()
        except exception.GlanceError as err:
            LOG.error("The unfinished clone of task %s was not looked for: %s",
                      task["id"], err)
