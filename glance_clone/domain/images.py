"""The v1 image rules: who may do what to which image, in what status.

``ImageService`` is called by the v1 controllers with parsed metadata and
raises our exceptions; it talks to the registry for metadata and to the
store set for bytes. Checks run before anything is written, so a refused
request leaves no record behind (Glance created the record first and left
a queued image on several errors; see the README).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import eventlet

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, quota
from glance_clone.domain.upload import Uploader

LOG = logging.getLogger(__name__)

# Sources that never come from a client: reading them would expose the
# server's own files or configured credentials.
REFUSED_SCHEMES = frozenset(("file", "filesystem", "swift+config"))
IMMUTABLE_ON_ACTIVE = ("size", "checksum")


def policy_target(image: dict) -> dict:
    """The image fields and properties as an oslo.policy target."""
    target = {k: v for k, v in image.items()
              if k not in ("properties", "location", "location_data")}
    target.update(image.get("properties") or {})
    return target


class ImageService:
    def __init__(self, conf: Any, registry: Any, stores: Any, policy: Any,
                 property_rules: Any, source_check: Any) -> None:
        self.conf = conf
        self.registry = registry
        self.stores = stores
        self.policy = policy
        self.props = property_rules
        self.source_check = source_check
        self.uploader = Uploader(conf, registry, stores)

    # -- reads ---------------------------------------------------------------
    def list(self, context: RequestContext, detail: bool, params: dict) -> list[dict]:
        self.policy.enforce(context, "get_images", {})
        if detail:
            images = self.registry.get_images_detailed(context, **params)
            for image in images:
                image["properties"] = self.props.filter_readable(
                    context, image.get("properties") or {})
            return images
        return self.registry.get_images(context, **params)

    def get(self, context: RequestContext, image_id: str) -> dict:
        """Metadata of a visible image, read-protected properties removed."""
        self.policy.enforce(context, "get_image", {})
        image = self._fetch(context, image_id)
        image["properties"] = self.props.filter_readable(context, image["properties"])
        return image

    def _fetch(self, context: RequestContext, image_id: str) -> dict:
        try:
            return self.registry.get_image(context, image_id)
        except exception.NotFound:
            raise exception.ImageNotFound(
                "Image with identifier %s not found" % image_id)

    def open_download(self, context: RequestContext,
                      image_id: str) -> tuple[dict, Iterator[bytes] | None, int]:
        """The image and its data as chunks (None for an empty image)."""
        self.policy.enforce(context, "get_image", {})
        image = self._fetch(context, image_id)
        self.check_downloadable(context, image)
        if not image.get("size") or not image.get("location"):
            if image.get("size"):
                raise exception.NotFound("Image %s has no data" % image_id)
            return image, None, 0
        chunks, size = self.stores.get(image["location"])
        size = size or image["size"]
        image["size"] = size
        image["properties"] = self.props.filter_readable(context, image["properties"])
        return image, chunks, size

    def check_downloadable(self, context: RequestContext, image: dict) -> None:
        if image["status"] == image_status.DEACTIVATED:
            raise exception.Forbidden("Image %s is deactivated" % image["id"])
        self.policy.enforce(context, "download_image", policy_target(image))
        if image["status"] != image_status.ACTIVE:
            raise exception.NotFound("Image %s is not active" % image["id"])

    # -- create ----------------------------------------------------------------
    def check_new_image(self, context: RequestContext, meta: dict,
                        has_body: bool, copy_from: str | None) -> None:
        """Every check of a create that needs no record (api-v1.md section 9)."""
        self.policy.enforce(context, "add_image", {})
        self._check_write_policies(context, meta, has_body, copy_from)
        self.props.check_create(context, meta["properties"])
        quota.check_property_count(self.conf, len(meta["properties"]))
        if meta.get("location"):
            self.policy.enforce(context, "set_image_location", {})
        self._check_sources(meta, has_body, copy_from)

    def _check_write_policies(self, context: RequestContext, meta: dict,
                              has_body: bool, copy_from: str | None) -> None:
        if meta.get("is_public"):
            self.policy.enforce(context, "publicize_image", {})
        if copy_from is not None:
            self.policy.enforce(context, "copy_from", {})
        if has_body or copy_from is not None:
            self.policy.enforce(context, "upload_image", {})

    def _check_sources(self, meta: dict, has_body: bool, copy_from: str | None) -> None:
        sources = [s for s in (has_body, meta.get("location") is not None,
                               copy_from is not None) if s]
        if len(sources) > 1:
            raise exception.Invalid("It's invalid to provide multiple image sources.")
        external = meta.get("location") if "location" in meta else copy_from
        if "location" in meta or copy_from is not None:
            self.check_external_source(external)
        store = meta.get("store")
        if store is not None and store not in self.stores.known_schemes():
            raise exception.Invalid("Required store %s is invalid" % store)
        if sources and not (copy_from is not None):
            self._require_formats(meta)

    def check_external_source(self, url: str | None) -> None:
        if not url:
            raise exception.Invalid("External source should not be empty")
        scheme = url.split(":", 1)[0].lower()
        if scheme in REFUSED_SCHEMES or scheme not in self.stores.known_schemes():
            raise exception.ExternalSourceRefused(url=url)
        self.source_check(url)

    @staticmethod
    def _require_formats(meta: dict) -> None:
        if not meta.get("disk_format"):
            raise exception.Invalid("Disk format is not specified.")
        if not meta.get("container_format"):
            raise exception.Invalid("Container format is not specified.")

    def reserve(self, context: RequestContext, meta: dict) -> dict:
        """Create the record: active for a declared size of 0, else queued."""
        values = {k: v for k, v in meta.items()
                  if k not in ("location", "store", "status")}
        if not context.is_admin:
            values.pop("owner", None)
        values["status"] = (image_status.ACTIVE if meta.get("size") == 0
                            and meta.get("location") is None
                            else image_status.QUEUED)
        values.setdefault("size", 0)
        try:
            return self.registry.add_image(context, values)
        except exception.Duplicate:
            raise exception.Duplicate(
                "An image with identifier %s already exists" % meta.get("id"))
        except exception.Forbidden:
            raise exception.Forbidden("Forbidden to reserve image.")
        except exception.Invalid as err:
            raise exception.Invalid("Failed to reserve image. Got error: %s" % err)

    def external_size(self, meta: dict, url: str) -> int:
        """Size at an external location; 409 when it contradicts a declared one."""
        remote = self.stores.get_size(url)
        declared = meta.get("size") or 0
        if declared and remote and declared != remote:
            raise exception.Conflict(
                "Provided image size must match the stored image size. "
                "(provided size: %d, stored size: %d)" % (declared, remote))
        return remote or declared

    def attach_location(self, context: RequestContext, image: dict, url: str,
                        size: int) -> dict:
        return self.uploader.activate_location(context, image, url, size)

    def upload(self, context: RequestContext, image: dict, chunks: Iterator[bytes],
               size_hint: int, scheme: str | None) -> dict:
        return self.uploader.upload(context, image, chunks, size_hint, scheme)

    def start_copy(self, context: RequestContext, image: dict, url: str,
                   scheme: str | None) -> None:
        """Copy from ``url`` in the background; the image stays queued now."""
        eventlet.spawn_n(self.uploader.copy_from, context, image, url, scheme)

    # -- update ------------------------------------------------------------------
    def check_update(self, context: RequestContext, image_id: str, meta: dict,
                     has_body: bool, copy_from: str | None, purge: bool) -> tuple[dict, dict]:
        """Checks of api-v1.md section 10; returns (current image, values to write)."""
        self.policy.enforce(context, "modify_image", {})
        self._check_write_policies(context, meta, has_body, copy_from)
        current = self._fetch(context, image_id)
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
        if has_body and status != image_status.QUEUED:
            raise exception.Conflict("Cannot upload to an unqueued image")
        if (meta.get("location") is not None or copy_from is not None) \
                and status != image_status.QUEUED:
            raise exception.Invalid("Attempted to update Location field for an "
                                    "image not in queued status.")
        if meta.get("location") is not None:
            self.policy.enforce(context, "set_image_location", {})
        self._check_sources(self._merged_formats(current, meta), has_body, copy_from)
        properties = self.props.check_update(
            context, current.get("properties") or {}, meta["properties"], purge)
        count = len(properties) if purge else len(
            set(current.get("properties") or {}) | set(properties))
        quota.check_property_count(self.conf, count)
        values = {k: v for k, v in meta.items()
                  if k not in ("location", "store", "status", "id")}
        values["properties"] = properties
        if not context.is_admin:
            values.pop("owner", None)
        return current, values

    @staticmethod
    def _merged_formats(current: dict, meta: dict) -> dict:
        merged = dict(meta)
        for field in ("disk_format", "container_format"):
            if field not in merged:
                merged[field] = current.get(field)
        return merged

    def write_update(self, context: RequestContext, image_id: str, values: dict,
                     purge: bool) -> dict:
        try:
            return self.registry.update_image(context, image_id, values,
                                              purge_props=purge)
        except exception.StatusConflict:
            raise
        except exception.NotFound:
            raise exception.ImageNotFound(
                "Image with identifier %s not found" % image_id)
        except exception.Forbidden:
            raise exception.Forbidden("Forbidden to update image")
        except exception.Invalid as err:
            raise exception.Invalid("Failed to update image metadata. Got error: %s" % err)

    # -- delete --------------------------------------------------------------------
    def delete(self, context: RequestContext, image_id: str) -> None:
        """api-v1.md section 11; bytes removed now or left for the scrubber."""
        self.policy.enforce(context, "delete_image", {})
        image = self._fetch(context, image_id)
        if image.get("protected"):
            raise exception.Forbidden("Image is protected")
        if image["status"] == image_status.PENDING_DELETE:
            raise exception.Forbidden("Forbidden to delete a pending_delete image.")
        if image["status"] == image_status.DELETED:
            raise exception.NotFound("Image %s not found." % image_id)
        live = [loc for loc in image.get("location_data") or []
                if loc.get("status") == "active"]
        delayed = self.conf.delayed_delete and bool(live)
        new_status = image_status.PENDING_DELETE if delayed else image_status.DELETED
        location_status = "pending_delete" if delayed else "deleted"
        try:
            self.registry.update_image(context, image_id, {
                "status": new_status,
                "location_data": [dict(loc, status=location_status) for loc in live],
            })
        except exception.NotFound:
            raise exception.ImageNotFound("Image with identifier %s not found" % image_id)
        except exception.Forbidden:
            raise exception.Forbidden("Forbidden to delete image")
        if not delayed:
            for loc in live:
                self._delete_data(loc["url"], image_id)
        self.registry.delete_image(context, image_id)

    def _delete_data(self, url: str, image_id: str) -> None:
        try:
            self.stores.delete(url)
        except exception.NotFound:
            LOG.info("Data of image %s was already gone", image_id)
        except exception.InUseByStore:
            raise exception.InUseByStore(
                "Image %s could not be deleted because it is in use" % image_id)
