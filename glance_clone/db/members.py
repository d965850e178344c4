"""Image memberships: who an image is shared with."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db.base import (
    _IMAGE_EXISTS,
    _IS_MEMBER,
    IMAGES,
    MEMBERS,
    DatabaseBase,
    Row,
    utcnow,
)

MEMBER_KEYS = ("id", "image_id", "member", "can_share", "status",
               "created_at", "updated_at", "deleted_at", "deleted")

_MEMBER = sa.select(MEMBERS).where(MEMBERS.c.id == sa.bindparam("id"))
_MEMBERS_OF = (sa.select(MEMBERS)
               .where(MEMBERS.c.image_id == sa.bindparam("image_id"))
               .order_by(MEMBERS.c.id))
_MEMBER_COUNT = sa.select(sa.func.count()).select_from(MEMBERS).where(
    MEMBERS.c.image_id == sa.bindparam("image_id"),
    MEMBERS.c.deleted == sa.false())
_INSERT_MEMBER = sa.insert(MEMBERS)
_UPDATE_MEMBER = sa.update(MEMBERS).where(MEMBERS.c.id == sa.bindparam("_id"))
_DELETE_LIVE_MEMBER = _UPDATE_MEMBER.where(MEMBERS.c.deleted == sa.false())


def _member_dict(row: sa.Row[Any]) -> dict[str, Any]:
    values = row._asdict()
    return {key: values[key] for key in MEMBER_KEYS}


@functools.cache
def _member_find_query(include_deleted: bool, is_admin: bool, by_image: bool,
                       by_member: bool) -> sa.Select[Any]:
    """image_member_find's statement; binds owner, image_id, member."""
    query = sa.select(MEMBERS).order_by(MEMBERS.c.id)
    if not include_deleted:
        query = query.where(MEMBERS.c.deleted == sa.false())
    if not is_admin:
        owner: sa.BindParameter[str] = sa.bindparam("owner")
        query = query.join(IMAGES, IMAGES.c.id == MEMBERS.c.image_id).where(
            sa.or_(IMAGES.c.owner == owner, MEMBERS.c.member == owner))
    if by_image:
        query = query.where(MEMBERS.c.image_id == sa.bindparam("image_id"))
    if by_member:
        query = query.where(MEMBERS.c.member == sa.bindparam("member"))
    return query


class MemberQueries(DatabaseBase):
    """Memberships of images."""

    def image_member_find(self, context: RequestContext,
                          image_id: str | None = None, member: str | None = None,
                          include_deleted: bool = False) -> list[dict[str, Any]]:
        """Memberships in creation order.

        Non-admins see only rows of images they own or where they are the
        member (none at all without an owner value).
        """
        if not context.is_admin and context.owner is None:
            return []
        query = _member_find_query(bool(include_deleted), bool(context.is_admin),
                                   image_id is not None, member is not None)
        params = {"owner": context.owner, "image_id": image_id,
                  "member": member}
        with self._reading() as connection:
            return [_member_dict(row)
                    for row in connection.execute(query, params)]

    def _member(self, connection: sa.engine.Connection,
                member_id: int) -> dict[str, Any]:
        row = connection.execute(_MEMBER, {"id": member_id}).first()
        if row is None:
            raise exception.MemberNotFound()
        return _member_dict(row)

    def image_member_create(self, context: RequestContext,
                            values: Mapping[str, Any]) -> dict[str, Any]:
        """Add a membership row, or answer the member's live row (its
        ``can_share`` set as asked) when it has one already; raises
        ImageNotFound, Invalid, ReadOnly."""
        if not values.get("image_id") or not values.get("member"):
            raise exception.Invalid("A membership needs image_id and member.")
        now = utcnow()
        row = {"image_id": values["image_id"], "member": values["member"],
               "can_share": bool(values.get("can_share", False)),
               "status": values.get("status") or "pending",
               "created_at": now, "updated_at": now, "deleted_at": None,
               "deleted": False}
        with self._writing(context) as connection:
            exists = connection.execute(
                _IMAGE_EXISTS, {"id": row["image_id"]}).first()
            if exists is None:
                raise exception.ImageNotFound()
            # Callers look for a live row first, in another transaction: two
            # requests adding one member at once would both find none. The
            # write lock makes this second look the one that counts.
            live = connection.execute(_IS_MEMBER, {
                "image_id": row["image_id"], "member": row["member"]}).first()
            if live is not None:
                connection.execute(_UPDATE_MEMBER, {
                    "_id": live.id, "can_share": row["can_share"], "updated_at": now})
                return self._member(connection, int(live.id))
            result = connection.execute(_INSERT_MEMBER, row)
            key = result.inserted_primary_key
            assert key is not None  # single-row INSERT
            return self._member(connection, int(key[0]))

    def image_member_update(self, context: RequestContext, member_row_id: int,
                            values: Mapping[str, Any]) -> dict[str, Any]:
        """Change ``can_share``/``status`` and revive the row if deleted.

        Raises MemberNotFound, ReadOnly.
        """
        changes: dict[str, Any] = {"deleted": False, "deleted_at": None,
                                   "updated_at": utcnow()}
        if "can_share" in values:
            changes["can_share"] = bool(values["can_share"])
        if values.get("status"):
            changes["status"] = values["status"]
        with self._writing(context) as connection:
            result = connection.execute(_UPDATE_MEMBER,
                                        dict(changes, _id=member_row_id))
            if result.rowcount != 1:
                raise exception.MemberNotFound()
            return self._member(connection, member_row_id)

    def image_member_delete(self, context: RequestContext,
                            member_row_id: int) -> None:
        """Soft-delete a live membership; raises MemberNotFound, ReadOnly."""
        now = utcnow()
        with self._writing(context) as connection:
            result = connection.execute(_DELETE_LIVE_MEMBER, {
                "_id": member_row_id, "deleted": True, "deleted_at": now,
                "updated_at": now})
            if result.rowcount != 1:
                raise exception.MemberNotFound()

    def image_members_replace(self, context: RequestContext, image_id: str,
                              memberships: Iterable[Mapping[str, Any]]) -> None:
        """Make ``memberships`` the image's member list, in one transaction.

        Listed members keep (or revive) their row, ``can_share`` changing
        only when given; new ones get a row; live rows not listed are
        soft-deleted. Raises Invalid, ReadOnly.
        """
        wanted: dict[str, bool | None] = {}
        for entry in memberships:
            member = entry.get("member_id") if isinstance(entry, Mapping) else None
            if not isinstance(member, str) or not member:
                raise exception.Invalid(
                    "Invalid membership association: each entry needs a "
                    "member_id")
            can_share = entry.get("can_share")
            wanted[member] = None if can_share is None else bool(can_share)
        now = utcnow()
        with self._writing(context) as connection:
            rows = [row._asdict() for row in connection.execute(
                _MEMBERS_OF, {"image_id": image_id})]
            # Per member: its live row, else its most recently deleted one.
            chosen: dict[str, Row] = {}
            for row in rows:
                best = chosen.get(row["member"])
                if best is None or best["deleted"]:
                    chosen[row["member"]] = row
            keep = {chosen[m]["id"] for m in wanted if m in chosen}
            for row in rows:
                if not row["deleted"] and row["id"] not in keep:
                    connection.execute(_UPDATE_MEMBER, {
                        "_id": row["id"], "deleted": True, "deleted_at": now,
                        "updated_at": now})
            for member, can_share in wanted.items():
                current = chosen.get(member)
                if current is None:
                    connection.execute(_INSERT_MEMBER, {
                        "image_id": image_id, "member": member,
                        "can_share": bool(can_share), "status": "pending",
                        "created_at": now, "updated_at": now,
                        "deleted_at": None, "deleted": False})
                    continue
                share = current["can_share"] if can_share is None else can_share
                if current["deleted"] or share != current["can_share"]:
                    connection.execute(_UPDATE_MEMBER, {
                        "_id": current["id"], "can_share": share,
                        "deleted": False, "deleted_at": None,
                        "updated_at": now})

    def image_member_count(self, context: RequestContext, image_id: str) -> int:
        """Live memberships of an image."""
        with self._reading() as connection:
            return int(connection.execute(
                _MEMBER_COUNT, {"image_id": image_id}).scalar_one())

    def is_image_sharable(self, context: RequestContext,
                          image: Mapping[str, Any]) -> bool:
        """Admin, the owner, or a live member holding ``can_share``."""
        if context.is_admin:
            return True
        if context.owner is None:
            return False
        if image.get("owner") == context.owner:
            return True
        rows = self.image_member_find(context, image_id=image["id"],
                                      member=context.owner)
        return bool(rows and rows[0]["can_share"])

