"""The v2 image rules: create, read, list, change, delete, (de)activate,
tags, upload and download, over the image repository.

Controllers hand over parsed requests (JSON-patch operations already
checked against the schema) and get entities back. Everything a v2 caller
may or may not do is decided here; the byte paths are those of v1:
``Uploader`` streams uploads, ``downloads`` holds the download rules and
``ImageService.delete`` removes data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

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
from glance_clone.domain.locations import Locations
from glance_clone.domain.repository import ImageRepository

# Attributes a PATCH may set, besides additional properties.
MUTABLE = ("name", "visibility", "protected", "os_hidden", "min_disk", "min_ram",
           "container_format", "disk_format", "owner", "tags")
FORMATS = ("container_format", "disk_format")
# Policies that guard a visibility.
VISIBILITY_POLICIES = {"public": "publicize_image", "community": "communitize_image"}


@dataclasses.dataclass
class Change:
    """One JSON-patch operation: ``op`` add/replace/remove on ``name``."""

    op: str
    name: str
    value: Any = None
    # v2.0 media type: "add" of an existing property is a conflict.
    add_conflicts: bool = False
    # /locations/<n> (an int) or /locations/- ("-") of an add or remove.
    position: Any = None


class ImageCatalog:
    def __init__(self, conf: Any, repository: ImageRepository, policy: Any,
                 property_rules: Any, uploader: Any, deleter: Any,
                 locations: Locations) -> None:
        self.conf = conf
        self.images = repository
        self.policy = policy
        self.props = property_rules
        self.uploader = uploader
        self.deleter = deleter
        self.locations = locations

    # -- reads ---------------------------------------------------------------
    def get(self, context: RequestContext, image_id: str) -> Image:
        image = self.images.get(context, image_id)
        if not self.policy.check(context, "get_image", image.policy_target()):
            raise exception.ImageNotFound("No image found with ID %s" % image_id)
        return self._readable(context, image)

    def list(self, context: RequestContext, search: dict) -> list[Image]:
        """A page of images; raises PolicyNotAuthorized, Invalid."""
        self.policy.enforce(context, "get_images", {"project_id": context.owner})
        # Filtering on a property the caller may not read would tell its value.
        self.props.check_filterable(context, list(search.get("properties") or {}))
        return [self._readable(context, image) for image in
                self.images.search(context, search)]

    def _readable(self, context: RequestContext, image: Image) -> Image:
        image.record["properties"] = self.props.filter_readable(context, image.properties)
        self.locations.reveal(context, image)
        return image

    def owned(self, context: RequestContext, image_id: str, action: str) -> Image:
        """An image the caller may change with ``action``; raises
        ImageNotFound, PolicyNotAuthorized, Forbidden (not the owner)."""
        check_writable(context)
        image = self.get(context, image_id)
        self.check_owner(context, image, action)
        return image

    def check_owner(self, context: RequestContext, image: Image, action: str) -> None:
        """Raises PolicyNotAuthorized or Forbidden unless the caller may
        change the (readable) ``image`` with ``action`` as its owner."""
        self.policy.enforce(context, action, image.policy_target())
        if not image.is_owned_by(context):
            raise exception.Forbidden("You are not permitted to modify image %s."
                                      % image.id)

    # -- create ----------------------------------------------------------------
    def create(self, context: RequestContext, values: dict) -> Image:
        """Register a queued image from checked base attributes and
        ``properties``; raises PolicyNotAuthorized, Forbidden, Duplicate,
        LimitExceeded, Invalid."""
        check_writable(context)
        values = dict(values)
        owner = values.get("owner")
        if owner is not None and not context.is_admin and owner != context.owner:
            raise exception.Forbidden("You are not permitted to create images owned "
                                      "by '%s'." % owner)
        values.setdefault("owner", context.owner)
        if values.get("owner") is None and not context.is_admin:
            raise exception.Forbidden("You are not permitted to create images "
                                      "without a project.")
        values.setdefault("visibility", "shared")
        target = dict(values, project_id=values.get("owner"))
        self.policy.enforce(context, "add_image", target)
        self._check_visibility(context, values["visibility"], target)
        properties = values.get("properties") or {}
        self.props.check_create(context, properties)
        quota.check_property_count(self.conf, len(properties))
        values["tags"] = _unique(values.get("tags") or [])
        _check_tag_count(self.conf, len(values["tags"]))
        values.update(status=image_status.QUEUED, size=None)
        usage.enforce(self.conf, self.images.registry, context,
                      {unified_limits.IMAGE_COUNT_TOTAL: 1})
        try:
            return self._readable(context, self.images.add(context, values))
        except exception.StatusConflict:
            raise
        except exception.Conflict:
            raise exception.Duplicate("Image with identifier %s already exists!"
                                      % values.get("id"))

    def _check_visibility(self, context: RequestContext, visibility: str,
                          target: dict) -> None:
        rule = VISIBILITY_POLICIES.get(visibility)
        if rule is not None:
            self.policy.enforce(context, rule, target)

    # -- update ----------------------------------------------------------------
    def update(self, context: RequestContext, image_id: str,
               changes: list[Change]) -> Image:
        """Apply JSON-patch ``changes`` all or nothing, in one registry write.

        Raises Forbidden (read-only attribute, formats of a non-queued
        image, owner by a non-admin, protections), Conflict (missing or,
        with v2.0, existing property), LimitExceeded, ImageNotFound.
        """
        image = self.owned(context, image_id, "modify_image")
        record = image.record
        values: dict[str, Any] = {}
        old = dict(image.properties)
        properties = dict(old)
        location_changes = []
        for change in changes:
            if reserved.is_reserved(change.name):
                raise exception.ReservedProperty(property=change.name)
            if change.name in MUTABLE:
                values[change.name] = self._base_change(context, image, change, values)
            elif change.name == "locations":
                location_changes.append(change)
            else:
                _property_change(properties, change)
        if not changes:
            return image
        # Purging: a property left out of ``properties`` was removed.
        checked = self.props.check_update(context, old, properties, purge=True)
        if set(checked) - set(old):
            # As Glance: the quota bounds adding properties, not changing or
            # removing those an image has (say, above a quota lowered since),
            # and the service's own os_glance_* ones do not count.
            quota.check_property_count(self.conf, sum(
                1 for name in checked if not reserved.is_reserved(name)))
        if "tags" in values:
            values["tags"] = _unique(values["tags"])
            _check_tag_count(self.conf, len(values["tags"]))
        values["properties"], dropped = reserved.as_write(old, checked, purge=True)
        removed: list[str] = []
        if location_changes:
            location_values, removed = self.locations.apply(context, image,
                                                            location_changes)
            values.update(location_values)
        for name in list(values):
            if name not in ("properties", "tags") and values[name] == record.get(name):
                del values[name]
        if image.status == image_status.QUEUED and Image(values).live_locations():
            # The first location brings the image's data.
            image = self.images.move(context, image, image_status.ACTIVE,
                                     remove_properties=dropped, **values)
        else:
            image = self.images.save(context, image, values, remove_properties=dropped)
        self.locations.remove_data(removed)
        return self._readable(context, image)

    def delete_from_store(self, context: RequestContext, store_id: str,
                          image_id: str) -> None:
        """Remove the image's location in named store ``store_id`` and its
        data there, never the last location; raises NotFound (no named
        stores, image, no location there), Conflict (unknown store,
        status), Forbidden (policy, last location)."""
        check_writable(context)
        self.locations.check_store(store_id)
        image = self.get(context, image_id)
        position = self.locations.position_in_store(context, image, store_id)
        values, removed = self.locations.changed(
            context, image, [Change("remove", "locations", position=position)])
        self.images.save(context, image, values)
        self.locations.remove_data(removed)

    def image_locations(self, context: RequestContext, image_id: str) -> list[dict]:
        return self.locations.listed(context, self.get(context, image_id))

    def _base_change(self, context: RequestContext, image: Image, change: Change,
                     values: dict) -> Any:
        name = change.name
        if change.op == "remove":
            raise exception.Forbidden("Properties %s may not be removed." % name)
        if name == "visibility" and change.value != image.visibility:
            self._check_visibility(context, change.value, image.policy_target())
        if change.op == "add" and change.add_conflicts:
            # A base attribute always exists (null at worst), so the v2.0
            # patch's "add only what is absent" can never add one.
            raise exception.Conflict("Property %s already present." % name)
        if name in FORMATS and image.status != image_status.QUEUED:
            raise exception.Forbidden("Attribute %s can be only replaced for a "
                                      "queued image." % name)
        if name == "owner" and not context.is_admin:
            raise exception.Forbidden("Attribute owner can only be changed by an "
                                      "administrator.")
        if name == "tags":
            return list(change.value)
        return change.value

    # -- delete, deactivate, reactivate -------------------------------------------
    def delete(self, context: RequestContext, image_id: str) -> None:
        """Raises Forbidden (protected, not the owner), ImageNotFound,
        InvalidImageStatusTransition and the store's errors."""
        image = self.owned(context, image_id, "delete_image")
        if image.protected:
            raise exception.ProtectedImageDelete(image_id=image_id)
        if not any(image_status.allowed(image.status, to) for to in
                   (image_status.DELETED, image_status.PENDING_DELETE)):
            raise exception.InvalidImageStatusTransition(
                cur_status=image.status, new_status=image_status.DELETED)
        self.deleter.delete(context, image_id)

    def discard(self, context: RequestContext, image_id: str) -> bool:
        """Delete an image made by work that failed, whatever the rules of
        deleting (``ImageService.discard``); never raises."""
        return bool(self.deleter.discard(context, image_id))

    def deactivate(self, context: RequestContext, image_id: str) -> None:
        self._switch(context, image_id, "deactivate", image_status.ACTIVE,
                     image_status.DEACTIVATED)

    def reactivate(self, context: RequestContext, image_id: str) -> None:
        self._switch(context, image_id, "reactivate", image_status.DEACTIVATED,
                     image_status.ACTIVE)

    def _switch(self, context: RequestContext, image_id: str, action: str,
                source: str, target: str) -> None:
        image = self.owned(context, image_id, action)
        if image.status == target:
            return
        if image.status != source:
            raise exception.Forbidden("Not allowed to %s image in status '%s'"
                                      % (action, image.status))
        self.images.move(context, image, target)

    # -- tags ----------------------------------------------------------------------
    def add_tag(self, context: RequestContext, image_id: str, tag: str) -> None:
        """Raises Invalid (too long), LimitExceeded, Forbidden, ImageNotFound."""
        image = self.owned(context, image_id, "modify_image")
        if len(tag) > 255:
            raise exception.Invalid("Tag is longer than 255 characters")
        if tag not in image.tags:
            _check_tag_count(self.conf, len(image.tags) + 1)
        self.images.add_tag(context, image, tag)

    def remove_tag(self, context: RequestContext, image_id: str, tag: str) -> None:
        image = self.owned(context, image_id, "modify_image")
        try:
            self.images.remove_tag(context, image, tag)
        except exception.NotFound:
            raise exception.NotFound("Tag %s not found" % tag) from None

    # -- data ------------------------------------------------------------------------
    def upload(self, context: RequestContext, image_id: str, chunks: Iterator[bytes],
               size_hint: int, store: str | None = None) -> None:
        """queued -> saving -> active through the v1 upload path, into the
        named ``store`` (the X-Image-Meta-Store header; see upload_store);
        a failed upload puts the image back to queued.

        Raises Invalid (a store not enabled, formats unset), Conflict (not
        queued), and what the upload path raises (413 limits, 410 deleted
        meanwhile...).
        """
        # As Glance: a bad store is refused before the image is looked at.
        target = upload_store.target(self.uploader.stores, store, schemes=False)
        image = self.owned(context, image_id, "upload_image")
        if image.status != image_status.QUEUED:
            raise exception.Conflict("Image status transition from %s to saving is "
                                     "not allowed" % image.status)
        image_status.check(image.status, image_status.SAVING,
                           image.record.get("disk_format"),
                           image.record.get("container_format"))
        self.uploader.upload(context, image.record, chunks, size_hint, target,
                             failed_status=image_status.QUEUED)

    def download(self, context: RequestContext, image_id: str,
                 wanted: ByteRange | None = None, prefer: str | None = None
                 ) -> tuple[Image, Iterator[bytes] | None, int, tuple[int, int] | None]:
        """The image, its data (None when it has none: 204), their length
        and the (offset, length) part sent when ``wanted`` asks for a range;
        read from the stores ``prefer`` names first (see downloads).

        Raises Invalid (``prefer``), ImageNotFound, Forbidden (deactivated
        for non-admins, policy), RangeNotSatisfiable and the store's errors.
        """
        stores = self.deleter.stores
        preferred = downloads.preferred_stores(
            list(stores.stores) if stores.multi else [], prefer)
        image = self.get(context, image_id)
        downloads.check_downloadable(self.policy, context, image.record,
                                     admin_reads_deactivated=True,
                                     require_active=False, prefers=prefer is not None)
        if not image.has_data():
            return image, None, 0, None
        part = wanted.resolve(image.record.get("size") or 0) if wanted else None
        chunks, size = downloads.open_data(stores, image.record, part, preferred)
        return image, chunks, size, part


def check_writable(context: RequestContext) -> None:
    """Raises ReadOnly for read-only (anonymous) callers."""
    if context.read_only:
        raise exception.ReadOnly()


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def _check_tag_count(conf: Any, count: int) -> None:
    limit = conf.image_tag_quota
    if 0 <= limit < count:
        raise exception.ImageTagLimitExceeded(attempted=count, maximum=limit)


def _property_change(properties: dict, change: Change) -> None:
    name = change.name
    if change.op == "remove":
        if name not in properties:
            raise exception.Conflict("Property %s does not exist." % name)
        del properties[name]
    elif change.op == "replace":
        if name not in properties:
            raise exception.Conflict("Property %s does not exist." % name)
        properties[name] = change.value
    else:
        if change.add_conflicts and name in properties:
            raise exception.Conflict("Property %s already present." % name)
        properties[name] = change.value
