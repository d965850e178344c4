"""The v1 image rules: who may do what to which image, in what status.

``ImageService`` is called by the v1 controllers with parsed metadata and
raises our exceptions; it talks to the registry for metadata and to the
store set for bytes. Every check of a create or update runs before anything
is written, so a refused request leaves no record behind and changes
nothing (Glance created the record first and left a queued or killed image
on several errors; see the README).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import eventlet

from glance_clone.common import exception
from glance_clone.common.byte_range import ByteRange
from glance_clone.common.context import RequestContext
from glance_clone.domain import (
    downloads,
    image_status,
    quota,
    reserved,
    unified_limits,
    upload_store,
    usage,
)
from glance_clone.domain.entity import Image
from glance_clone.domain.registry_writes import RegistryWrites, new_image_id
from glance_clone.domain.upload import Uploader

LOG = logging.getLogger(__name__)

# A delete re-reads the image when an upload changed its status meanwhile.
DELETE_ATTEMPTS = 3

# Sources that never come from a client: reading them would expose the
# server's own files or configured credentials.
REFUSED_SCHEMES = frozenset(("file", "filesystem", "swift+config"))
IMMUTABLE_ON_ACTIVE = ("size", "checksum")
UPLOAD_CONTENT_TYPE = "application/octet-stream"
# Never written from a request: set by the service or by the registry.
NOT_WRITTEN = ("location", "store", "status", "id")
# List parameters filtering on a property: property-<name>=<value>.
PROPERTY_FILTER = "property-"


@dataclasses.dataclass
class Download:
    """What a download sends: ``length`` bytes of ``chunks`` (None when the
    image is empty), the whole image or the (offset, length) ``part``."""

    image: dict
    chunks: Any
    length: int
    part: tuple[int, int] | None = None


@dataclasses.dataclass
class ImageData:
    """Image bytes sent with a request, not read yet.

    ``size_hint`` is the Content-Length (or the declared size), 0 when
    unknown; ``content_type`` is the request's media type.
    """

    chunks: Iterator[bytes]
    size_hint: int
    content_type: str | None


def policy_target(image: dict) -> dict:
    """The image fields and properties as an oslo.policy target."""
    return Image(image).policy_target()


def _create_target(context: RequestContext, meta: dict) -> dict:
    """The target of a create: the image as it will be registered (only an
    admin names another owner; v1's "not public" is ``shared``)."""
    owner = meta.get("owner") if context.is_admin and meta.get("owner") else context.owner
    visibility = "public" if meta.get("is_public") else "shared"
    return policy_target(dict(meta, owner=owner, visibility=visibility))


class ImageService:
    def __init__(self, conf: Any, registry: Any, stores: Any, policy: Any,
                 property_rules: Any, source_check: Any,
                 spawn: Callable[..., Any] = eventlet.spawn_n) -> None:
        self.conf = conf
        self.registry = registry
        self.stores = stores
        self.policy = policy
        self.props = property_rules
        self.source_check = source_check
        self.spawn = spawn
        self.writes = RegistryWrites(registry)
        self.uploader = Uploader(conf, registry, stores, self.writes)

    # -- reads ---------------------------------------------------------------
    def list_images(self, context: RequestContext, detail: bool,
                    params: dict) -> list[dict]:
        self.policy.enforce(context, "get_images", {"project_id": context.owner})
        self.props.check_filterable(context, [
            key[len(PROPERTY_FILTER):] for key in params if key.startswith(PROPERTY_FILTER)])
        if detail:
            images: list[dict] = self.registry.get_images_detailed(context, **params)
            for image in images:
                image["properties"] = self.props.filter_readable(
                    context, image.get("properties") or {})
            return images
        brief: list[dict] = self.registry.get_images(context, **params)
        return brief

    def get(self, context: RequestContext, image_id: str) -> dict:
        """Metadata of a visible image, read-protected properties removed."""
        image = self._fetch(context, image_id)
        self.policy.enforce(context, "get_image", policy_target(image))
        image["properties"] = self.props.filter_readable(context, image["properties"])
        return image

    def _fetch(self, context: RequestContext, image_id: str) -> dict:
        try:
            image: dict = self.registry.get_image(context, image_id)
        except exception.NotFound:
            raise exception.ImageNotFound(
                "Image with identifier %s not found" % image_id)
        return image

    def open_download(self, context: RequestContext, image_id: str,
                      wanted: ByteRange | None = None) -> Download:
        """The image and its data (all of it, or the ``wanted`` range).

        Raises PolicyNotAuthorized, ImageNotFound, Forbidden (deactivated),
        NotFound (not active, data missing), RangeNotSatisfiable and the
        store's errors.
        """
        image = self._fetch(context, image_id)
        self.policy.enforce(context, "get_image", policy_target(image))
        self.check_downloadable(context, image)
        image["properties"] = self.props.filter_readable(context, image["properties"])
        part = wanted.resolve(image.get("size") or 0) if wanted is not None else None
        if not image.get("size"):
            return Download(image, None, 0)
        chunks, length = downloads.open_data(self.stores, image, part)
        if part is None:
            image["size"] = length
        return Download(image, chunks, length, part)

    def check_downloadable(self, context: RequestContext, image: dict) -> None:
        """v1's download rules: deactivated images are nobody's to read."""
        downloads.check_downloadable(self.policy, context, image)

    # -- create ----------------------------------------------------------------
    def create(self, context: RequestContext, meta: dict, data: ImageData | None,
               copy_from: str | None) -> dict:
        """api-v1.md section 9: check everything, then reserve and fill the record."""
        _check_writable(context)
        if not context.is_admin and not context.owner:
            # Its record would have no owner: nobody could use or delete it,
            # and is_public images without an owner are everyone's.
            raise exception.Forbidden("Creating an image needs a tenant; "
                                      "the request has none.")
        target = _create_target(context, meta)
        self.policy.enforce(context, "add_image", target)
        self._check_write_policies(context, target, meta, data, copy_from)
        self.props.check_create(context, meta["properties"])
        quota.check_property_count(self.conf, len(meta["properties"]))
        if "location" in meta:
            self.policy.enforce(context, "set_image_location", target)
        self._check_sources(meta, data, copy_from)
        usage.enforce(self.conf, self.registry, context,
                      {unified_limits.IMAGE_COUNT_TOTAL: 1})
        declared = meta.get("size")
        size = self._external_size(declared, meta, copy_from)
        if size is not None:
            meta["size"] = size
        image = self._reserve(context, meta, data is not None or copy_from is not None)
        return self._fill(context, image, meta, data, copy_from,
                          declared if declared is not None else size)

    def _enforce_on_own(self, context: RequestContext, action: str, image: dict) -> None:
        """Policy ``action`` on an image the caller owns (or any, for an
        admin). Others are refused by the registry with v1's answers: 403
        for a public image, 404 for one shared with them."""
        if Image(image).is_owned_by(context):
            self.policy.enforce(context, action, policy_target(image))

    def _check_write_policies(self, context: RequestContext, target: dict, meta: dict,
                              data: ImageData | None, copy_from: str | None) -> None:
        """``target``: the image (or the one being created) for the rules."""
        if meta.get("is_public"):
            self.policy.enforce(context, "publicize_image", target)
        if copy_from is not None:
            self.policy.enforce(context, "copy_from", target)
        if data is not None or copy_from is not None:
            self.policy.enforce(context, "upload_image", target)

    def _check_sources(self, meta: dict, data: ImageData | None,
                       copy_from: str | None) -> None:
        """At most one source, a safe external URL, a known store, formats
        set before data arrives, the upload media type; raises Invalid."""
        has_location = "location" in meta
        if sum((data is not None, has_location, copy_from is not None)) > 1:
            raise exception.Invalid("It's invalid to provide multiple image sources.")
        if has_location or copy_from is not None:
            self.check_external_source(meta.get("location") if has_location else copy_from)
        upload_store.target(self.stores, meta.get("store"), schemes=True)
        if data is not None or has_location:
            if not meta.get("disk_format"):
                raise exception.Invalid("Disk format is not specified.")
            if not meta.get("container_format"):
                raise exception.Invalid("Container format is not specified.")
        if data is not None and data.content_type != UPLOAD_CONTENT_TYPE:
            raise exception.Invalid("Content-Type must be %s" % UPLOAD_CONTENT_TYPE)

    def check_external_source(self, url: str | None) -> None:
        """Raises Invalid for an empty URL, ExternalSourceRefused for one we
        must not read (local files, configured credentials, internal hosts)."""
        if not url:
            raise exception.Invalid("External source should not be empty")
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme in REFUSED_SCHEMES or scheme not in self.stores.known_schemes():
            raise exception.ExternalSourceRefused(url=url)
        self.source_check(url)

    def _external_size(self, declared: int | None, meta: dict,
                       copy_from: str | None) -> int | None:
        """The size of an external source (None without one, or unknown).

        A declared size wins, except that a location whose store reports
        another non-zero size is a Conflict (409). Raises the store's
        NotFound for a missing remote object.
        """
        if "location" in meta:
            remote = self.stores.get_size(meta["location"])
            if declared and remote and declared != remote:
                raise exception.Conflict(
                    "Provided image size must match the stored image size. "
                    "(provided size: %d, stored size: %d)" % (declared, remote))
            return declared or remote
        if copy_from is not None:
            # 0 from the store means "unknown": the copy finds out.
            return declared if declared is not None else (
                self.stores.get_size(copy_from) or None)
        return None

    def _reserve(self, context: RequestContext, meta: dict, has_data: bool) -> dict:
        """Create the record: active for a declared size of 0 and no data, else queued."""
        values = {k: v for k, v in meta.items() if k not in NOT_WRITTEN}
        if not context.is_admin:
            values.pop("owner", None)
        # Chosen here, not by the registry: a create whose answer is lost
        # is found again by this id.
        values["id"] = meta.get("id") or new_image_id()
        empty = meta.get("size") == 0 and not has_data and "location" not in meta
        values["status"] = image_status.ACTIVE if empty else image_status.QUEUED
        values["size"] = meta.get("size") or 0
        try:
            image: dict = self.writes.create(context, values)
        except exception.StatusConflict:
            raise
        except exception.Conflict:
            raise exception.Duplicate(
                "An image with identifier %s already exists" % values["id"])
        except exception.Forbidden:
            raise exception.Forbidden("Forbidden to reserve image.")
        except exception.Invalid as err:
            raise exception.Invalid("Failed to reserve image. Got error: %s" % err)
        return image

    def _fill(self, context: RequestContext, image: dict, meta: dict,
              data: ImageData | None, copy_from: str | None,
              declared_size: int | None) -> dict:
        """Attach the request's one source (if any) to a queued image."""
        scheme = meta.get("store")
        if "location" in meta:
            return self.uploader.activate_location(context, image, meta["location"],
                                                   meta.get("size") or 0)
        if copy_from is not None:
            self.spawn(self.uploader.copy_from, context, image, copy_from, scheme,
                       declared_size)
            return image
        if data is not None:
            return self.uploader.upload(context, image, data.chunks,
                                        data.size_hint or declared_size or 0,
                                        scheme, declared_size)
        return image

    # -- update ------------------------------------------------------------------
    def update(self, context: RequestContext, image_id: str, meta: dict,
               data: ImageData | None, copy_from: str | None, purge: bool) -> dict:
        """api-v1.md section 10; ``purge`` is ignored when data is sent."""
        purge = purge and data is None
        current, values = self._check_update(context, image_id, meta, data,
                                             copy_from, purge)
        declared = meta.get("size")
        if declared is None:
            declared = current.get("size") or None
        merged = dict(meta, size=declared)
        size = self._external_size(declared, merged, copy_from)
        if size is not None:
            values["size"] = merged["size"] = size
        image = self._write_update(context, current, values, purge)
        image = self._fill(context, image, merged, data, copy_from,
                           declared if declared is not None else size)
        image["properties"] = self.props.filter_readable(
            context, image.get("properties") or {})
        return image

    def _check_update(self, context: RequestContext, image_id: str, meta: dict,
                      data: ImageData | None, copy_from: str | None,
                      purge: bool) -> tuple[dict, dict]:
        """Every check of an update; returns (current image, values to write)."""
        _check_writable(context)
        current = self._fetch(context, image_id)
        target = policy_target(current)
        self._enforce_on_own(context, "modify_image", current)
        self._check_write_policies(context, target, meta, data, copy_from)
        status = current["status"]
        if status == image_status.DELETED:
            raise exception.Forbidden("Forbidden to update deleted image.")
        if not context.is_admin and status in (image_status.ACTIVE, image_status.DEACTIVATED):
            for field in IMMUTABLE_ON_ACTIVE:
                if field in meta and meta[field] != current.get(field):
                    raise exception.Forbidden(
                        "Forbidden to modify '%s' of %s image." % (field, status))
        for field in ("status", "id"):
            if field in meta and meta[field] != current.get(field):
                raise exception.Forbidden("Forbidden to modify '%s' of image." % field)
        if data is not None and status != image_status.QUEUED:
            raise exception.Conflict("Cannot upload to an unqueued image")
        if ("location" in meta or copy_from is not None) and status != image_status.QUEUED:
            raise exception.Invalid("Attempted to update Location field for an "
                                    "image not in queued status.")
        if "location" in meta:
            self.policy.enforce(context, "set_image_location", target)
        self._check_sources(_with_stored_formats(current, meta), data, copy_from)
        old = current.get("properties") or {}
        properties = self.props.check_update(context, old, meta["properties"], purge)
        count = len(properties) if purge else len(set(old) | set(properties))
        quota.check_property_count(self.conf, count)
        values = {k: v for k, v in meta.items() if k not in NOT_WRITTEN}
        values["properties"] = properties
        if not context.is_admin:
            values.pop("owner", None)
        return current, values

    def _write_update(self, context: RequestContext, current: dict, values: dict,
                      purge: bool) -> dict:
        image_id = current["id"]
        values = dict(values)
        values["properties"], removed = reserved.as_write(
            current.get("properties") or {}, values["properties"], purge)
        try:
            image: dict = self.writes.update(context, image_id, values,
                                             remove_properties=removed)
        except exception.StatusConflict:
            raise
        except exception.NotFound:
            # Also a member of a shared image: it may see it, not change it.
            raise exception.ImageNotFound(
                "Image with identifier %s not found" % image_id)
        except exception.Forbidden:
            raise exception.Forbidden("Forbidden to update image")
        except exception.Invalid as err:
            raise exception.Invalid("Failed to update image metadata. Got error: %s" % err)
        return image

    # -- delete --------------------------------------------------------------------
    def delete(self, context: RequestContext, image_id: str) -> None:
        """api-v1.md section 11; bytes removed now or left for the scrubber.

        A delete that was interrupted (its image left ``pending_delete``
        but not deleted, or ``deleted`` but not deleted) is finished.
        Raises ReadOnly, PolicyNotAuthorized, ImageNotFound, Forbidden,
        InUseByStore; a failed data removal restores the previous status.
        """
        _check_writable(context)
        for attempt in range(DELETE_ATTEMPTS):
            image = self._fetch(context, image_id)
            if attempt == 0:
                self._enforce_on_own(context, "delete_image", image)
            try:
                self._delete(context, image)
                return
            except exception.StatusConflict:
                # An upload or another delete changed the image since it was
                # read: read it again (an upload may have added data).
                continue
        raise exception.Conflict("Image %s kept changing; try the delete again." % image_id)

    def _delete(self, context: RequestContext, image: dict) -> None:
        """Delete ``image`` as read; StatusConflict when it changed since.

        With data and no delayed delete, the image is first set
        ``pending_delete`` (its row still live, its locations listed):
        the data is then removed, and only then is the row deleted. Bytes
        are never removed while the record could still be active, and an
        interruption leaves a record that says what is left to do.
        """
        image_id, status = image["id"], image["status"]
        unfinished = not image.get("deleted")
        if image.get("protected"):
            raise exception.Forbidden("Image is protected")
        if status == image_status.DELETED and not unfinished:
            raise exception.ImageNotFound("Image %s not found." % image_id)
        if status == image_status.PENDING_DELETE and not unfinished:
            raise exception.Forbidden("Forbidden to delete a pending_delete image.")
        with _deleting_errors(image_id):
            self._remove(context, image_id, status, _live_locations(image))

    def discard(self, context: RequestContext, image_id: str) -> bool:
        """Delete an image that work which then failed made for itself (a
        failed import task's), data and all. Unlike ``delete`` neither the
        ``delete_image`` rule nor ``protected`` applies: nobody chose to
        keep this image, its properties were only asked for. Never raises;
        True once the image is surely gone (what is left is logged)."""
        for _ in range(DELETE_ATTEMPTS):
            try:
                image = self._fetch(context, image_id)
            except exception.ImageNotFound:
                return True
            except exception.GlanceError as err:
                LOG.warning("Image %s of failed work not read, not deleted: %s",
                            image_id, err)
                return False
            if image.get("deleted"):
                return True
            try:
                self._remove(context, image_id, image["status"], _live_locations(image))
                return True
            except exception.StatusConflict:
                continue
            except exception.GlanceError as err:
                LOG.warning("Image %s of failed work not deleted: %s", image_id, err)
                return False
        LOG.warning("Image %s of failed work kept changing; not deleted", image_id)
        return False

    def _remove(self, context: RequestContext, image_id: str, status: str,
                live: list[dict]) -> None:
        """The registry writes and data removals of ``_delete``."""
        if status == image_status.DELETED:
            self.writes.destroy(context, image_id, from_state=status)
            return
        if status != image_status.PENDING_DELETE and not live:
            # No bytes to remove: one soft delete, conditional on the status
            # read (an upload finishing meanwhile would have added data).
            self.writes.destroy(context, image_id, from_state=status)
            return
        if self.conf.delayed_delete or not live:
            # One conditional write; the scrubber removes the data.
            self.writes.destroy(context, image_id, from_state=status,
                                to_state=image_status.PENDING_DELETE)
            return
        if status != image_status.PENDING_DELETE:
            self.writes.change(context, image_id, {"status": image_status.PENDING_DELETE},
                               from_state=status)
        try:
            for loc in live:
                self._delete_data(loc["url"], image_id)
        except exception.GlanceError:
            if status != image_status.PENDING_DELETE:
                self._restore(context, image_id, status)
            raise
        self.writes.destroy(context, image_id, from_state=image_status.PENDING_DELETE)

    def _restore(self, context: RequestContext, image_id: str, status: str) -> None:
        """Undo the start of a delete whose data could not be removed."""
        try:
            self.writes.change(context, image_id, {"status": status},
                               from_state=image_status.PENDING_DELETE)
        except exception.GlanceError as err:
            LOG.error("Image %s stays pending_delete after a failed delete: %s",
                      image_id, err)

    def _delete_data(self, url: str, image_id: str) -> None:
        try:
            self.stores.delete(url)
        except exception.NotFound:
            LOG.info("Data of image %s was already gone", image_id)
        except exception.InUseByStore:
            raise exception.InUseByStore(
                "Image %s could not be deleted because it is in use" % image_id)
        except exception.Forbidden:
            raise exception.Forbidden("Forbidden to delete image")


def _live_locations(image: dict) -> list[dict]:
    """The locations whose data a delete removes."""
    return [loc for loc in image.get("location_data") or []
            if loc.get("status") == "active"]


@contextlib.contextmanager
def _deleting_errors(image_id: str) -> Iterator[None]:
    """The registry's refusals of a delete step, as the API reports them."""
    try:
        yield
    except exception.StatusConflict:
        raise
    except exception.NotFound:
        raise exception.ImageNotFound("Image with identifier %s not found" % image_id)
    except exception.Forbidden:
        raise exception.Forbidden("Forbidden to delete image")


def _check_writable(context: RequestContext) -> None:
    if context.read_only:
        raise exception.ReadOnly()


def _with_stored_formats(current: dict, meta: dict) -> dict:
    merged = dict(meta)
    for field in ("disk_format", "container_format"):
        if field not in merged:
            merged[field] = current.get(field)
    return merged
