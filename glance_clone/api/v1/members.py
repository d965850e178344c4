"""v1 member routes and shared-images (api-v1.md section 12)."""

from __future__ import annotations

from typing import Any

import webob

from glance_clone.common import exception, wsgi
from glance_clone.domain import image_status


class MembersController:
    def __init__(self, conf: Any, registry: Any, policy: Any) -> None:
        self.conf = conf
        self.registry = registry
        self.policy = policy

    def _live_image(self, context: Any, image_id: str) -> dict:
        try:
            image = self.registry.get_image(context, image_id)
        except exception.NotFound:
            raise exception.ImageNotFound(
                "Image with identifier %s not found" % image_id)
        if image["status"] == image_status.DELETED:
            raise exception.NotFound(
                "Image with identifier %s has been deleted." % image_id)
        return image

    @staticmethod
    def _require_owner(context: Any) -> None:
        if context.owner is None and not context.is_admin:
            raise exception.NotAuthenticated("No authenticated user")
        if context.read_only:
            raise exception.ReadOnly()

    def _check_quota(self, count: int) -> None:
        limit = self.conf.image_member_quota
        if 0 <= limit < count:
            raise exception.ImageMemberLimitExceeded(attempted=count, maximum=limit)

    def index(self, req: wsgi.Request, image_id: str) -> dict:
        self.policy.enforce(req.context, "get_members", {})
        self._live_image(req.context, image_id)
        return {"members": self.registry.get_image_members(req.context, image_id)}

    def update_all(self, req: wsgi.Request, image_id: str, body: Any = None) -> webob.Response:
        context = req.context
        self._require_owner(context)
        self.policy.enforce(context, "modify_member", {})
        self._live_image(context, image_id)
        if not isinstance(body, dict) or not isinstance(body.get("memberships"), list):
            raise exception.Invalid("Invalid membership association: expected an "
                                    "object with a 'memberships' list")
        self._check_quota(len(body["memberships"]))
        self.registry.replace_members(context, image_id, body["memberships"])
        return webob.Response(request=req, status=204, content_type=None)

    def update(self, req: wsgi.Request, image_id: str, id: str,
               body: Any = None) -> webob.Response:
        context = req.context
        self._require_owner(context)
        self.policy.enforce(context, "modify_member", {})
        self._live_image(context, image_id)
        can_share = None
        if body is not None:
            member = body.get("member") if isinstance(body, dict) else None
            if not isinstance(member, dict) or "can_share" not in member:
                raise exception.Invalid("Invalid membership association: %s" % body)
            can_share = member["can_share"]
        members = self.registry.get_image_members(context, image_id)
        self._check_quota(len(members) + 1)
        self.registry.add_member(context, image_id, id, can_share)
        return webob.Response(request=req, status=204, content_type=None)

    def delete(self, req: wsgi.Request, image_id: str, id: str) -> webob.Response:
        context = req.context
        self._require_owner(context)
        self.policy.enforce(context, "delete_member", {})
        self._live_image(context, image_id)
        self.registry.delete_member(context, image_id, id)
        return webob.Response(request=req, status=204, content_type=None)

    def index_shared_images(self, req: wsgi.Request, id: str) -> dict:
        return {"shared_images": self.registry.get_member_images(req.context, id)}
