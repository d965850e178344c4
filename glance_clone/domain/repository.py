"""Image records through the registry: the repository both APIs use.

``ImageRepository`` turns registry documents into ``Image`` entities,
gives the registry's refusals the meaning the domain needs (an image the
caller may not see is "not found"), and moves images between statuses
only along ``image_status.TRANSITIONS``, each move a compare-and-swap on
the status it leaves.

Every write goes through ``RegistryWrites``, so a registry answer lost on
the way is settled by reading the image (or its members) back.

``Registry`` is the contract of the registry client as the domain uses
it: the real ``RegistryClient`` and the test fakes both satisfy it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status
from glance_clone.domain.entity import Image
from glance_clone.domain.registry_writes import RegistryWrites, new_image_id


class Registry(Protocol):
    """The registry calls the domain makes (see registry/client/v1)."""

    def get_image(self, context: RequestContext, image_id: str) -> dict: ...

    def get_images_detailed(self, context: RequestContext, **params: Any) -> list[dict]: ...

    def search_images(self, context: RequestContext, search: dict) -> list[dict]: ...

    def add_image(self, context: RequestContext, image_meta: dict) -> dict: ...

    def update_image(self, context: RequestContext, image_id: str, image_meta: dict,
                     purge_props: bool = False, from_state: str | None = None,
                     properties_from: dict | None = None,
                     remove_properties: list[str] | None = None) -> dict: ...

    def delete_image(self, context: RequestContext, image_id: str,
                     from_state: str | None = None, to_state: str | None = None
                     ) -> dict: ...

    def add_tag(self, context: RequestContext, image_id: str, tag: str) -> None: ...

    def delete_tag(self, context: RequestContext, image_id: str, tag: str) -> None: ...

    def get_image_members(self, context: RequestContext, image_id: str) -> list[dict]: ...

    def add_member(self, context: RequestContext, image_id: str, member_id: str,
                   can_share: bool | None = None) -> None: ...

    def delete_member(self, context: RequestContext, image_id: str,
                      member_id: str) -> None: ...

    def set_member_status(self, context: RequestContext, image_id: str,
                          member_id: str, status: str) -> dict: ...


def not_found(image_id: str) -> exception.ImageNotFound:
    return exception.ImageNotFound("No image found with ID %s" % image_id)


class ImageRepository:
    def __init__(self, registry: Registry, writes: RegistryWrites | None = None) -> None:
        self.registry = registry
        self.writes = writes or RegistryWrites(registry)

    def get(self, context: RequestContext, image_id: str) -> Image:
        """A live image the caller may see; raises ImageNotFound."""
        try:
            record = self.registry.get_image(context, image_id)
        except exception.NotFound:
            raise not_found(image_id) from None
        if record.get("deleted") or record["status"] == image_status.DELETED:
            raise not_found(image_id)
        return Image(record)

    def search(self, context: RequestContext, search: dict) -> list[Image]:
        """A page of images (the registry's ``/images/search``); raises
        Invalid (bad search, unknown marker)."""
        return [Image(record) for record in self.registry.search_images(context, search)]

    def add(self, context: RequestContext, values: dict) -> Image:
        """Register a new image; raises Duplicate, Invalid, Forbidden."""
        values = dict(values)
        if not values.get("id"):
            values["id"] = new_image_id()
        return Image(self.writes.create(context, values))

    def save(self, context: RequestContext, image: Image, values: dict,
             purge_props: bool = False, remove_properties: list[str] | None = None
             ) -> Image:
        """Write ``values`` (no status change), removing the properties
        named in ``remove_properties``, while the image keeps the status it
        was read with; raises StatusConflict, ImageNotFound."""
        if "status" in values and values["status"] != image.status:
            raise ValueError("status changes go through move()")
        return Image(self._update(context, image.id, values, purge_props,
                                  from_state=image.status,
                                  remove_properties=remove_properties))

    def move(self, context: RequestContext, image: Image, to_status: str,
             purge_props: bool = False, remove_properties: list[str] | None = None,
             **values: Any) -> Image:
        """Change the status along the transition table, from the status
        the image was read with, writing ``values`` in the same step.

        Raises InvalidImageStatusTransition, Invalid (formats missing for
        data), StatusConflict (another writer moved it first), ImageNotFound.
        """
        merged = dict(image.record, **values)
        image_status.check(image.status, to_status, merged.get("disk_format"),
                           merged.get("container_format"))
        values["status"] = to_status
        try:
            return Image(self.writes.change(context, image.id, values,
                                            from_state=image.status,
                                            purge_props=purge_props,
                                            remove_properties=remove_properties))
        except exception.StatusConflict:
            raise
        except exception.NotFound:
            raise not_found(image.id) from None

    def _update(self, context: RequestContext, image_id: str, values: dict,
                purge_props: bool, from_state: str,
                remove_properties: list[str] | None = None) -> dict:
        try:
            return self.writes.update(context, image_id, values,
                                      purge_props=purge_props, from_state=from_state,
                                      remove_properties=remove_properties)
        except exception.StatusConflict:
            raise
        except exception.NotFound:
            raise not_found(image_id) from None

    def remove(self, context: RequestContext, image: Image) -> None:
        """Soft-delete an image without data, as it was read (status
        becomes deleted); raises StatusConflict, ImageNotFound."""
        image_status.check(image.status, image_status.DELETED)
        try:
            self.registry.delete_image(context, image.id, from_state=image.status)
        except exception.StatusConflict:
            raise
        except exception.NotFound:
            raise not_found(image.id) from None

    # -- tags and members: rows beside the image -----------------------------
    def add_tag(self, context: RequestContext, image: Image, tag: str) -> None:
        self.writes.add_tag(context, image.id, tag)

    def remove_tag(self, context: RequestContext, image: Image, tag: str) -> None:
        """Raises NotFound when the image has no such tag."""
        self.writes.remove_tag(context, image.id, tag)

    def members(self, context: RequestContext, image: Image) -> list[dict]:
        return self.registry.get_image_members(context, image.id)

    def add_member(self, context: RequestContext, image: Image, member: str) -> None:
        self.writes.add_member(context, image.id, member)

    def remove_member(self, context: RequestContext, image: Image, member: str) -> None:
        self.writes.remove_member(context, image.id, member)

    def set_member_status(self, context: RequestContext, image: Image, member: str,
                          status: str) -> dict:
        return self.writes.set_member_status(context, image.id, member, status)


def with_member(members: Iterable[dict], member: str) -> dict | None:
    return next((row for row in members if row["member_id"] == member), None)
