"""Membership rules of the v1 API (api-v1.md section 12, model.md section 4).

``MemberService`` checks who may read or change the members of an image and
the member quota, then asks the registry. The registry decides whether the
caller may share the image; its "forbidden" becomes "not found" here, so a
caller who may not share learns nothing it could not already see.
"""

from __future__ import annotations

from typing import Any

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status
from glance_clone.domain.entity import Image
from glance_clone.domain.registry_writes import RegistryWrites


class MemberService:
    def __init__(self, conf: Any, registry: Any, policy: Any,
                 writes: RegistryWrites | None = None) -> None:
        self.conf = conf
        self.registry = registry
        self.policy = policy
        # Member writes whose answer is lost are settled by reading back.
        self.writes = writes or RegistryWrites(registry)

    # -- checks ------------------------------------------------------------
    @staticmethod
    def _check_writer(context: RequestContext) -> None:
        """Raises ReadOnly, or NotAuthenticated for a caller without an owner value."""
        if context.read_only:
            raise exception.ReadOnly()
        if context.owner is None and not context.is_admin:
            raise exception.NotAuthenticated("No authenticated user")

    def _checked_image(self, context: RequestContext, image_id: str, action: str) -> dict:
        """The live image, once policy ``action`` allows the caller.

        v1 has no member status: its member routes are open to the owner
        and to members (those holding ``can_share`` to change them), and
        the registry decides which. So the rules judge the caller's roles
        in its own project: ``project_id`` and ``member_id`` are the
        caller's (``owner`` stays the image's).
        """
        image = self._live_image(context, image_id)
        target = dict(Image(image).policy_target(), project_id=context.owner,
                      member_id=context.owner)
        self.policy.enforce(context, action, target)
        return image

    def _live_image(self, context: RequestContext, image_id: str) -> dict:
        """The image unless absent, invisible or deleted; raises NotFound."""
        try:
            image: dict = self.registry.get_image(context, image_id)
        except exception.NotFound:
            raise exception.ImageNotFound(
                "Image with identifier %s not found" % image_id)
        if image["status"] == image_status.DELETED:
            raise exception.ImageNotFound(
                "Image with identifier %s has been deleted." % image_id)
        return image

    def _check_quota(self, count: int) -> None:
        limit = self.conf.image_member_quota
        if 0 <= limit < count:
            raise exception.ImageMemberLimitExceeded(attempted=count, maximum=limit)

    @staticmethod
    def _not_shareable(image_id: str) -> exception.NotFound:
        return exception.ImageNotFound(
            "Not allowed to update members for image %s." % image_id)

    # -- operations ----------------------------------------------------------
    def members(self, context: RequestContext, image_id: str) -> list[dict]:
        self._checked_image(context, image_id, "get_members")
        # v1 shows who and can_share; the v2 status is not its business.
        return [{"member_id": row["member_id"], "can_share": row["can_share"]}
                for row in self.registry.get_image_members(context, image_id)]

    def replace(self, context: RequestContext, image_id: str, body: Any) -> None:
        """Make ``body['memberships']`` the member list; raises Invalid,
        NotAuthenticated, ReadOnly, NotFound, ImageMemberLimitExceeded."""
        self._check_writer(context)
        self._checked_image(context, image_id, "modify_member")
        if not isinstance(body, dict) or not isinstance(body.get("memberships"), list):
            raise exception.Invalid("Invalid membership association: expected an "
                                    "object with a 'memberships' list")
        self._check_quota(len(body["memberships"]))
        try:
            self.writes.replace_members(context, image_id, body["memberships"])
        except exception.Forbidden:
            raise self._not_shareable(image_id)

    def add(self, context: RequestContext, image_id: str, member: str,
            body: Any) -> None:
        """Add ``member`` or change its can_share; raises as ``replace``."""
        self._check_writer(context)
        self._checked_image(context, image_id, "modify_member")
        can_share = None
        # Glance read an empty body as "no body".
        if body:
            entry = body.get("member") if isinstance(body, dict) else None
            if not isinstance(entry, dict) or "can_share" not in entry:
                raise exception.Invalid(
                    'Invalid membership association: expected {"member": '
                    '{"can_share": true or false}}')
            can_share = entry["can_share"]
        members = self.registry.get_image_members(context, image_id)
        self._check_quota(len(members) + 1)
        try:
            self.writes.add_member(context, image_id, member, can_share)
        except exception.Forbidden:
            raise self._not_shareable(image_id)

    def remove(self, context: RequestContext, image_id: str, member: str) -> None:
        """Remove ``member``; raises NotFound also when the caller may not share."""
        self._check_writer(context)
        self._checked_image(context, image_id, "delete_member")
        try:
            self.writes.remove_member(context, image_id, member)
        except exception.Forbidden:
            raise self._not_shareable(image_id)

    def shared_with(self, context: RequestContext, member: str) -> list[dict]:
        """Images shared with ``member``; no policy applies (as in Glance)."""
        images: list[dict] = self.registry.get_member_images(context, member)
        return images
