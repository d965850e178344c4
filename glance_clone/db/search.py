"""v2 image lists: visibility with consent, operators on columns, tags,
several sort keys each with its own direction, and keyset paging.

The registry hands over a search already parsed and checked (see
``registry/api/v1/search.py``); what is left here is building the one
SELECT that answers it. Visibility follows the v2 rules:

- an admin sees every image but the community images of other projects,
  unless it asks for ``community`` or ``all``;
- anyone else sees public images, its own (any visibility) and shared
  images of which it is a member with the requested ``member_status``
  (``accepted`` unless told otherwise); community images of others only
  when asking for ``community`` or ``all``;
- killed and deleted images never appear, nor, unless asked, hidden ones.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db.base import IMAGES, MEMBERS, PROPERTIES, TAGS, DatabaseBase, _row_dict
from glance_clone.db.listing import _sort_expression, rows_after

# Operators a column filter may use, as SQL.
COMPARISONS = {
    "eq": lambda column, value: column == value,
    "neq": lambda column, value: column != value,
    "gt": lambda column, value: column > value,
    "gte": lambda column, value: column >= value,
    "lt": lambda column, value: column < value,
    "lte": lambda column, value: column <= value,
    "in": lambda column, value: column.in_(value),
}
SEARCH_VISIBILITIES = ("public", "private", "shared", "community", "all")
SEARCH_MEMBER_STATUSES = ("pending", "accepted", "rejected", "all")


def _member_of(owner: str, member_status: str) -> sa.ColumnElement[bool]:
    """Shared images of which ``owner`` is a live member of that status."""
    conditions = [MEMBERS.c.image_id == IMAGES.c.id, MEMBERS.c.member == owner,
                  MEMBERS.c.deleted == sa.false()]
    if member_status != "all":
        conditions.append(MEMBERS.c.status == member_status)
    return sa.and_(IMAGES.c.visibility == "shared", sa.exists().where(*conditions))


def _visible(context: RequestContext, visibility: str | None,
             member_status: str) -> sa.ColumnElement[bool]:
    owner = context.owner
    column = IMAGES.c.visibility
    if context.is_admin:
        if visibility == "all":
            return sa.true()
        if visibility is not None:
            return column == visibility
        return sa.or_(column != "community",
                      IMAGES.c.owner == owner if owner is not None else sa.false())
    mine = IMAGES.c.owner == owner if owner is not None else sa.false()
    member = _member_of(owner, member_status) if owner is not None else sa.false()
    if visibility == "public":
        return column == "public"
    if visibility == "community":
        return column == "community"
    if visibility == "private":
        return sa.and_(column == "private", mine)
    if visibility == "shared":
        return sa.and_(column == "shared", sa.or_(mine, member))
    branches = [column == "public", mine, member]
    if visibility == "all":
        branches.append(column == "community")
    return sa.or_(*branches)


def _conditions(context: RequestContext, search: Mapping[str, Any]
                ) -> list[sa.ColumnElement[bool]]:
    conditions = [
        IMAGES.c.deleted == sa.false(), IMAGES.c.status != "killed",
        _visible(context, search.get("visibility"),
                 search.get("member_status") or "accepted"),
    ]
    hidden = search.get("os_hidden", False)
    if hidden is not None:
        conditions.append(IMAGES.c.os_hidden == (sa.true() if hidden else sa.false()))
    for name, (operator, value) in (search.get("columns") or {}).items():
        conditions.append(COMPARISONS[operator](IMAGES.c[name], value))
    if search.get("size_min") is not None:
        conditions.append(IMAGES.c.size >= search["size_min"])
    if search.get("size_max") is not None:
        conditions.append(IMAGES.c.size <= search["size_max"])
    for name, value in (search.get("properties") or {}).items():
        conditions.append(sa.exists().where(
            PROPERTIES.c.image_id == IMAGES.c.id, PROPERTIES.c.name == name,
            PROPERTIES.c.value == value, PROPERTIES.c.deleted == sa.false()))
    for tag in search.get("tags") or ():
        conditions.append(sa.exists().where(
            TAGS.c.image_id == IMAGES.c.id, TAGS.c.value == tag,
            TAGS.c.deleted == sa.false()))
    return conditions


def full_sort(sort: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """``sort`` ([key, dir] pairs) ending with ``id``, so that the order is
    total and a marker names one place in it."""
    keys = [(str(key), str(direction)) for key, direction in sort]
    if not any(key == "id" for key, _ in keys):
        keys.append(("id", keys[-1][1] if keys else "desc"))
    return keys


@functools.cache
def _marker_query(keys: tuple[str, ...]) -> sa.Select[Any]:
    return sa.select(*(_sort_expression(key) for key in keys)).where(
        IMAGES.c.id == sa.bindparam("id"))


class ImageSearch(DatabaseBase):
    """Pages of images as the v2 API lists them."""

    def image_search(self, context: RequestContext,
                     search: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A page of images matching ``search``.

        Keys (all optional): ``visibility``, ``member_status``,
        ``os_hidden`` (None: hidden or not), ``columns`` ({column: [op,
        value]}), ``size_min``, ``size_max``, ``properties``, ``tags``,
        ``sort`` ([[key, dir], ...]), ``marker``, ``limit``. Raises
        NotFound for a marker the caller cannot see.
        """
        sort = full_sort(search.get("sort") or [("created_at", "desc")])
        query = sa.select(IMAGES).where(*_conditions(context, search))
        with self._reading() as connection:
            if search.get("marker") is not None:
                marker = self._visible_row(connection, context, search["marker"])
                if marker["deleted"]:
                    raise exception.ImageNotFound()
                values = connection.execute(
                    _marker_query(tuple(key for key, _ in sort)),
                    {"id": marker["id"]}).one()
                query = query.where(rows_after(
                    [_sort_expression(key) for key, _ in sort],
                    [direction for _, direction in sort], values))
            query = query.order_by(*(
                _sort_expression(key).desc() if direction == "desc"
                else _sort_expression(key).asc() for key, direction in sort))
            if search.get("limit") is not None:
                query = query.limit(max(0, int(search["limit"])))
            rows = [_row_dict(row) for row in connection.execute(query)]
            return self._image_dicts(connection, context, rows)
