"""v2 members: sharing with consent.

The owner (or an admin) adds and removes members of a ``shared`` image;
each member alone (or an admin) accepts or rejects it. A member reads the
image whatever its status; the status only decides whether the image is
in the member's default list. Members see their own entry, owners all.
"""

from __future__ import annotations

from typing import Any

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain.catalog import ImageCatalog, check_writable
from glance_clone.domain.entity import Image
from glance_clone.domain.repository import ImageRepository, with_member

STATUSES = ("pending", "accepted", "rejected")


def _not_shared(image: Image) -> exception.Forbidden:
    return exception.Forbidden("Only shared images have members (image %s is %s)."
                               % (image.id, image.visibility))


class Sharing:
    def __init__(self, conf: Any, repository: ImageRepository, catalog: ImageCatalog,
                 policy: Any) -> None:
        self.conf = conf
        self.images = repository
        self.catalog = catalog
        self.policy = policy

    def _shared(self, context: RequestContext, image_id: str,
                action: str) -> tuple[Image, list[dict]]:
        """The shared image and its member rows, once policy ``action``
        allows the caller; ``member_id`` of the target is the caller's
        project when it is a member."""
        image = self.catalog.get(context, image_id)
        shared = image.visibility == "shared"
        rows = self.images.members(context, image) if shared else []
        target = image.policy_target()
        if context.owner is not None and with_member(rows, context.owner) is not None:
            target["member_id"] = context.owner
        self.policy.enforce(context, action, target)
        if not shared:
            raise _not_shared(image)
        return image, rows

    def members(self, context: RequestContext, image_id: str) -> list[dict]:
        """The owner's view: every member; a member's: its own entry."""
        image, rows = self._shared(context, image_id, "get_members")
        if not image.is_owned_by(context):
            rows = [row for row in rows if row["member_id"] == context.owner]
        return rows

    def member(self, context: RequestContext, image_id: str, member: str) -> dict:
        """Raises NotFound unless the caller is the owner, admin or that
        member, also where the others answer 403 (policy, an image that is
        not shared): one member's entry tells nothing about the image."""
        not_found = exception.MemberNotFound(
            "Member %s not found for image %s" % (member, image_id))
        try:
            image, rows = self._shared(context, image_id, "get_member")
        except exception.Forbidden:
            raise not_found from None
        row = with_member(rows, member)
        if row is None or not (image.is_owned_by(context) or member == context.owner):
            raise not_found
        return row

    def add(self, context: RequestContext, image_id: str, member: str) -> dict:
        """Raises Forbidden (not owner, not shared), Duplicate, LimitExceeded."""
        check_writable(context)
        image, rows = self._shared(context, image_id, "add_member")
        if not image.is_owned_by(context):
            raise exception.Forbidden("Only the owner may add members to image %s."
                                      % image_id)
        if with_member(rows, member) is not None:
            raise exception.Duplicate("Member %s is already a member of image %s."
                                      % (member, image_id))
        limit = self.conf.image_member_quota
        if 0 <= limit < len(rows) + 1:
            raise exception.ImageMemberLimitExceeded(attempted=len(rows) + 1,
                                                     maximum=limit)
        self.images.add_member(context, image, member)
        row = with_member(self.images.members(context, image), member)
        assert row is not None
        return row

    def set_status(self, context: RequestContext, image_id: str, member: str,
                   status: Any) -> dict:
        """Raises Forbidden (not shared, not that member), NotFound, then
        Invalid (status): who may answer is settled before what."""
        check_writable(context)
        image = self.catalog.get(context, image_id)
        if image.visibility != "shared":
            # Left over from when the image was shared: no longer answerable.
            raise _not_shared(image)
        self.policy.enforce(context, "modify_member",
                            dict(image.policy_target(), member_id=member))
        row = with_member(self.images.members(context, image), member)
        if row is None:
            raise exception.MemberNotFound(
                "Member %s not found for image %s" % (member, image_id))
        if not context.is_admin and member != context.owner:
            raise exception.Forbidden("Only the member may change its status.")
        if status not in STATUSES:
            raise exception.Invalid("Invalid status: %s; must be one of %s"
                                    % (status, ", ".join(STATUSES)))
        return self.images.set_member_status(context, image, member, status)

    def remove(self, context: RequestContext, image_id: str, member: str) -> None:
        """Raises Forbidden (not the owner, not shared), NotFound."""
        check_writable(context)
        image, _rows = self._shared(context, image_id, "delete_member")
        if not image.is_owned_by(context):
            raise exception.Forbidden("Only the owner may remove members of image %s."
                                      % image_id)
        try:
            self.images.remove_member(context, image, member)
        except exception.NotFound:
            raise exception.MemberNotFound(
                "Member %s not found for image %s" % (member, image_id)) from None
