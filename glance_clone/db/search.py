"""v2 image lists: visibility with consent, operators on columns, tags,
several sort keys each with its own direction, and keyset paging.

The registry hands over a search already parsed and checked (see
``registry/api/v1/search.py``); what is left here is building the one
SELECT that answers it: built once per shape of search (which filters,
operators and sort keys, not their values) and kept, like v1's lists, so
a list costs a lookup and the binding of its values. Visibility follows
the v2 rules:

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

# Operators a column filter may use, as SQL; the value is a bound parameter
# (a list for "in").
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
# Inclusive ranges on the integer columns: "<column>_min" and "<column>_max".
RANGE_COLUMNS = ("size", "virtual_size", "min_ram", "min_disk")
RANGES = tuple(column + end for column in RANGE_COLUMNS for end in ("_min", "_max"))
# Shapes of search statements cached per Database (see _search_shape); past
# this many the cache starts over.
MAX_CACHED_SEARCHES = 256
OWNER = sa.bindparam("v_owner")
MEMBER_STATUS = sa.bindparam("v_member_status")


def _member_of(any_status: bool) -> sa.ColumnElement[bool]:
    """Shared images of which the owner bound is a live member of the
    member status bound (any, with ``any_status``)."""
    conditions = [MEMBERS.c.image_id == IMAGES.c.id, MEMBERS.c.member == OWNER,
                  MEMBERS.c.deleted == sa.false()]
    if not any_status:
        conditions.append(MEMBERS.c.status == MEMBER_STATUS)
    return sa.and_(IMAGES.c.visibility == "shared", sa.exists().where(*conditions))


def _visible(is_admin: bool, has_owner: bool, visibility: str | None,
             any_status: bool) -> sa.ColumnElement[bool]:
    column = IMAGES.c.visibility
    mine = IMAGES.c.owner == OWNER if has_owner else sa.false()
    if is_admin:
        if visibility == "all":
            return sa.true()
        if visibility is not None:
            return column == visibility
        return sa.or_(column != "community", mine)
    member = _member_of(any_status) if has_owner else sa.false()
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


def _search_shape(context: RequestContext, search: Mapping[str, Any]
                  ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The shape of a search statement (its cache key: everything but the
    values) and the values to bind."""
    member_status = search.get("member_status") or "accepted"
    params: dict[str, Any] = {"v_owner": context.owner,
                              "v_member_status": member_status}
    columns = []
    for name, (operator, value) in (search.get("columns") or {}).items():
        columns.append((name, operator))
        params["c_" + name] = value
    ranges = tuple(name for name in RANGES if search.get(name) is not None)
    for name in ranges:
        params[name] = search[name]
    for index, (name, value) in enumerate((search.get("properties") or {}).items()):
        params["p%d_name" % index], params["p%d_value" % index] = name, value
    for index, tag in enumerate(search.get("tags") or ()):
        params["t%d" % index] = tag
    if search.get("limit") is not None:
        params["limit"] = max(0, int(search["limit"]))
    shape = (bool(context.is_admin), context.owner is not None,
             search.get("visibility"), member_status == "all",
             search.get("os_hidden", False), tuple(columns), ranges,
             len(search.get("properties") or {}), len(search.get("tags") or ()),
             tuple(full_sort(search.get("sort") or [("created_at", "desc")])),
             search.get("marker") is not None, "limit" in params)
    return shape, params


def _search_query(is_admin: bool, has_owner: bool, visibility: str | None,
                  any_status: bool, hidden: bool | None,
                  columns: tuple[tuple[str, str], ...], ranges: tuple[str, ...],
                  properties: int, tags: int, sort: tuple[tuple[str, str], ...],
                  with_marker: bool, with_limit: bool) -> sa.Select[Any]:
    """The statement of a search of this shape (see ``_search_shape``);
    binds its values and ``m0``... (the marker's sort values)."""
    conditions = [IMAGES.c.deleted == sa.false(), IMAGES.c.status != "killed",
                  _visible(is_admin, has_owner, visibility, any_status)]
    if hidden is not None:
        conditions.append(IMAGES.c.os_hidden == (sa.true() if hidden else sa.false()))
    for name, operator in columns:
        value = sa.bindparam("c_" + name, expanding=operator == "in")
        conditions.append(COMPARISONS[operator](IMAGES.c[name], value))
    for name in ranges:
        column, end = IMAGES.c[name[:-4]], sa.bindparam(name)
        conditions.append(column >= end if name.endswith("_min") else column <= end)
    for index in range(properties):
        conditions.append(sa.exists().where(
            PROPERTIES.c.image_id == IMAGES.c.id,
            PROPERTIES.c.name == sa.bindparam("p%d_name" % index),
            PROPERTIES.c.value == sa.bindparam("p%d_value" % index),
            PROPERTIES.c.deleted == sa.false()))
    for index in range(tags):
        conditions.append(sa.exists().where(
            TAGS.c.image_id == IMAGES.c.id, TAGS.c.value == sa.bindparam("t%d" % index),
            TAGS.c.deleted == sa.false()))
    query = sa.select(IMAGES).where(*conditions)
    expressions = [_sort_expression(key) for key, _ in sort]
    if with_marker:
        marker = [sa.bindparam("m%d" % i, type_=expression.type)
                  for i, expression in enumerate(expressions)]
        query = query.where(rows_after(expressions, [d for _, d in sort], marker))
    query = query.order_by(*(expression.desc() if direction == "desc" else
                             expression.asc()
                             for expression, (_, direction) in zip(expressions, sort,
                                                                   strict=True)))
    if with_limit:
        query = query.limit(sa.bindparam("limit", type_=sa.Integer()))
    return query


class ImageSearch(DatabaseBase):
    """Pages of images as the v2 API lists them."""

    def image_search(self, context: RequestContext,
                     search: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A page of images matching ``search``.

        Keys (all optional): ``visibility``, ``member_status``,
        ``os_hidden`` (None: hidden or not), ``columns`` ({column: [op,
        value]}), the inclusive ranges of ``RANGES`` (``size_min``,
        ``min_ram_max``...), ``properties``, ``tags``,
        ``sort`` ([[key, dir], ...]), ``marker``, ``limit``. Raises
        NotFound for a marker the caller cannot see.
        """
        shape, params = _search_shape(context, search)
        with self._reading() as connection:
            if search.get("marker") is not None:
                marker = self._visible_row(connection, context, search["marker"])
                if marker["deleted"]:
                    raise exception.ImageNotFound()
                sort = shape[-3]
                values = connection.execute(
                    _marker_query(tuple(key for key, _ in sort)),
                    {"id": marker["id"]}).one()
                params.update(("m%d" % i, value) for i, value in enumerate(values))
            query = self._statement(self._search_queries, shape, _search_query,
                                    MAX_CACHED_SEARCHES)
            rows = [_row_dict(row) for row in connection.execute(query, params)]
            return self._image_dicts(connection, context, rows)
