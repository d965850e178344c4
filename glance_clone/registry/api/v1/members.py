"""Registry v1 membership resource: who an image is shared with.

Writes need a caller with an owner value (or an admin), an image the caller
can see, and the right to share it: admin, image owner, or a member holding
``can_share``.

Our extensions for the v2 API: member entries also carry the v2 ``status``
(pending, accepted, rejected) and their timestamps, and
``PUT /images/{id}/members/{member}/status`` with ``{"status": ...}`` lets
the member itself (or an admin) give or refuse its consent. ``can_share``
is v1's alone and ``status`` v2's: each API leaves the other's field as
it is.
"""

from __future__ import annotations

from typing import Any

import webob

from glance_clone.common import exception, wsgi
from glance_clone.db.api import MEMBER_STATUSES, Database
from glance_clone.registry.api.v1 import images

MEMBER_LENGTH = 255


def _invalid_association(reason: str) -> exception.Invalid:
    return exception.Invalid("Invalid membership association: %s" % reason)


def _member_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid_association("%s must be a non-empty string" % where)
    if len(value) > MEMBER_LENGTH:
        raise _invalid_association("%s is longer than %d characters"
                                   % (where, MEMBER_LENGTH))
    try:
        images.check_text(where, value)
    except exception.Invalid as err:
        raise _invalid_association(str(err)) from None
    return value


def _can_share(value: Any) -> bool:
    # Glance converts with truthiness, so the string "false" meant true;
    # only JSON booleans are accepted here.
    if not isinstance(value, bool):
        raise _invalid_association("can_share must be true or false")
    return value


def _memberships(body: Any) -> list[dict[str, Any]]:
    """The validated ``memberships`` list of a replace body."""
    if not isinstance(body, dict) or not isinstance(body.get("memberships"),
                                                    list):
        raise _invalid_association('the body needs a "memberships" list')
    memberships: list[dict[str, Any]] = []
    seen = set()
    for entry in body["memberships"]:
        if not isinstance(entry, dict) or "member_id" not in entry:
            raise _invalid_association(
                'each membership needs a "member_id"')
        member = _member_name(entry["member_id"], "member_id")
        if member in seen:
            raise _invalid_association(
                "member %s is listed more than once" % member)
        seen.add(member)
        membership: dict[str, Any] = {"member_id": member}
        if "can_share" in entry:
            membership["can_share"] = _can_share(entry["can_share"])
        memberships.append(membership)
    return memberships


def _member_can_share(body: Any) -> bool | None:
    """``member.can_share`` of a single-member body, None without a body."""
    if body is None or body == {}:
        return None
    member = body.get("member") if isinstance(body, dict) else None
    if not isinstance(member, dict) or "can_share" not in member:
        raise _invalid_association('the body needs "member": {"can_share": ...}')
    return _can_share(member["can_share"])


class MembersSerializer(wsgi.JSONSerializer):
    """Writes answer 204 with no body."""

    @staticmethod
    def _no_content(response: webob.Response, result: Any) -> None:
        response.status_int = 204
        response.headers.pop("Content-Type", None)
        response.body = b""

    update_all = update = delete = _no_content


def member_view(row: dict[str, Any]) -> dict[str, Any]:
    """A membership as the registry shows it."""
    return {"member_id": row["member"], "can_share": row["can_share"],
            "image_id": row["image_id"], "status": row["status"],
            "created_at": images._timestamp(row["created_at"]),
            "updated_at": images._timestamp(row["updated_at"])}


class Controller:
    """Handlers of /images/{id}/members[/{member}] and /shared-images/{member}."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _shareable_image(self, req: wsgi.Request, image_id: str) -> dict[str, Any]:
        """The image, if the caller may change its memberships.

        Raises NotAuthenticated, ReadOnly, ImageNotFound or Forbidden.
        """
        context = req.context
        if not context.is_admin and context.owner is None:
            raise exception.NotAuthenticated("No authenticated user")
        images.check_writable(context)
        image = images.get_visible_image(self.db, context,
                                         images.path_text(image_id))
        if not self.db.is_image_sharable(context, image):
            raise exception.Forbidden("No permission to share that image")
        return image

    def _live_membership(self, req: wsgi.Request, image_id: str,
                         member: str) -> dict[str, Any] | None:
        # Only after _shareable_image: a sharing member must find the other
        # members' rows, which its own view hides, or it would add a
        # second live row for a member that already has one.
        sharer = req.context.replace(is_admin=True)
        rows = self.db.image_member_find(sharer, image_id=image_id,
                                         member=member)
        return rows[0] if rows else None

    def index(self, req: wsgi.Request, image_id: str) -> dict[str, Any]:
        """Memberships of a visible image; raises ImageNotFound."""
        image = images.get_visible_image(self.db, req.context,
                                         images.path_text(image_id))
        rows = self.db.image_member_find(req.context, image_id=image["id"])
        return {"members": [member_view(row) for row in rows]}

    def update_status(self, req: wsgi.Request, image_id: str, member_id: str,
                      body: Any = None) -> dict[str, Any]:
        """The member's consent; only that member or an admin may give it.

        Raises ReadOnly, ImageNotFound, MemberNotFound, Forbidden, Invalid.
        """
        context = req.context
        images.check_writable(context)
        member = images.path_text(member_id)
        image = images.get_visible_image(self.db, context,
                                         images.path_text(image_id))
        status = body.get("status") if isinstance(body, dict) else None
        if status not in MEMBER_STATUSES:
            raise exception.Invalid("Status must be one of %s"
                                    % ", ".join(MEMBER_STATUSES))
        row = self._live_membership(req, image["id"], member)
        if row is None:
            raise exception.MemberNotFound()
        if not context.is_admin and context.owner != member:
            raise exception.Forbidden("Only the member may change its status")
        updated = self.db.image_member_update(context, row["id"], {"status": status})
        return {"member": member_view(updated)}

    def update_all(self, req: wsgi.Request, image_id: str,
                   body: Any = None) -> None:
        """Replace the membership list; raises as ``_shareable_image``, Invalid."""
        image = self._shareable_image(req, image_id)
        self.db.image_members_replace(req.context, image["id"],
                                      _memberships(body))

    def update(self, req: wsgi.Request, image_id: str, member_id: str,
               body: Any = None) -> None:
        """Add a member or change its can_share; raises as ``update_all``."""
        image = self._shareable_image(req, image_id)
        member = _member_name(images.path_text(member_id), "member")
        can_share = _member_can_share(body)
        row = self._live_membership(req, image["id"], member)
        if row is None:
            # Glance revived nothing here when only a soft-deleted row
            # existed; a fresh row makes re-adding a member work.
            self.db.image_member_create(req.context, {
                "image_id": image["id"], "member": member,
                "can_share": bool(can_share)})
        elif can_share is not None:
            self.db.image_member_update(req.context, row["id"],
                                        {"can_share": can_share})

    def delete(self, req: wsgi.Request, image_id: str, member_id: str) -> None:
        """Remove a member; raises as ``update_all``, MemberNotFound."""
        image = self._shareable_image(req, image_id)
        row = self._live_membership(req, image["id"],
                                    images.path_text(member_id))
        if row is None:
            raise exception.MemberNotFound()
        self.db.image_member_delete(req.context, row["id"])

    def index_shared_images(self, req: wsgi.Request,
                            member_id: str) -> dict[str, Any]:
        """Images shared with ``member_id`` that the caller may know about."""
        rows = self.db.image_member_find(req.context,
                                         member=images.path_text(member_id))
        return {"shared_images": [
            {"image_id": row["image_id"], "can_share": row["can_share"]}
            for row in rows if self._image_live(req, row["image_id"])]}

    def _image_live(self, req: wsgi.Request, image_id: str) -> bool:
        # Deleting an image deletes its memberships, but an admin can still
        # add members to a deleted image, which must not be listed.
        try:
            return not self.db.image_get(req.context, image_id)["deleted"]
        except exception.NotFound:
            return False


def create_resource(db: Database) -> wsgi.Resource:
    return wsgi.Resource(Controller(db), serializer=MembersSerializer())
