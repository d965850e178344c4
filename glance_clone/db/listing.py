"""Image lists: visibility, filters, sorting and keyset paging.

Statements are cached per Database by the shape of the query, so a list
costs a cache lookup plus the binding of its values.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.common.timeutil import naive_utc
from glance_clone.db.base import (
    IMAGES,
    MEMBERS,
    PROPERTIES,
    DatabaseBase,
    _row_dict,
)

SORT_KEYS = ("name", "status", "container_format", "disk_format", "size",
             "virtual_size", "id", "created_at", "updated_at", "deleted_at",
             "checksum", "owner", "min_disk", "min_ram", "visibility",
             "protected", "os_hidden")
SORT_DIRS = ("asc", "desc")
EQUALITY_FILTERS = ("name", "status", "container_format", "disk_format",
                    "checksum", "owner", "id", "virtual_size")
INTEGER_FILTERS = ("min_ram", "min_disk")
_EPOCH_ZERO = datetime.datetime(1, 1, 1)

# Shapes of list statements cached per Database; past this many (say, lists
# filtered by ever new numbers of properties) the cache starts over.
MAX_CACHED_QUERIES = 256


def null_stand_in(column: sa.Column[Any]) -> Any:
    """What a null of ``column`` sorts as: the lowest value of its type."""
    if isinstance(column.type, sa.DateTime):
        return _EPOCH_ZERO
    if isinstance(column.type, sa.String):
        return ""
    return -1


def nulls_lowest(column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    """The ORDER BY expression of ``column``: nulls sort as the lowest
    value (``null_stand_in``), so keyset paging can compare them."""
    if not column.nullable:
        return column
    stand_in = null_stand_in(column)
    if isinstance(column.type, sa.DateTime):
        return sa.func.coalesce(column, sa.literal(stand_in, sa.DateTime()))
    return sa.func.coalesce(column, stand_in)


def _sort_expression(key: str) -> sa.ColumnElement[Any]:
    """The ORDER BY expression of the image column ``key``."""
    return nulls_lowest(IMAGES.c[key])


def rows_after(expressions: Sequence[sa.ColumnElement[Any]],
               directions: Sequence[str],
               marker: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after the marker's values in (k1, k2, ...) order, each
    key in its own direction.

    Written as (k1 beyond m1) OR (k1 = m1 AND k2 beyond m2) OR ... rather
    than a row value comparison, which not every database supports the same
    way (and which cannot mix directions).
    """
    clauses = []
    for i, (expression, direction) in enumerate(zip(expressions, directions,
                                                    strict=True)):
        beyond = (expression < marker[i] if direction == "desc"
                  else expression > marker[i])
        equal = [expressions[j] == marker[j] for j in range(i)]
        clauses.append(sa.and_(*equal, beyond))
    return sa.or_(*clauses)


def _changes_since(value: Any) -> datetime.datetime:
    if not isinstance(value, (str, datetime.datetime)):
        raise exception.Invalid("Unrecognized changes-since value")
    try:
        return naive_utc(value)
    except (ValueError, OverflowError):
        raise exception.Invalid("Unrecognized changes-since value") from None


@functools.cache
def _sort_expressions(sort_key: str) -> tuple[sa.ColumnElement[Any], ...]:
    """ORDER BY expressions of a list: ``sort_key``, created_at, id."""
    keys = [sort_key] + [key for key in ("created_at", "id") if key != sort_key]
    return tuple(_sort_expression(key) for key in keys)


@functools.cache
def _marker_query(sort_key: str) -> sa.Select[Any]:
    """The sort values of the marker image (bind ``id``)."""
    return sa.select(*_sort_expressions(sort_key)).where(
        IMAGES.c.id == sa.bindparam("id"))


def _list_query(shape: tuple[Any, ...], sort_key: str, sort_dir: str,
                with_marker: bool, with_limit: bool) -> sa.Select[Any]:
    """The statement of an image list of this shape (see ``_list_shape``).

    Binds the values ``_list_shape`` collected (``v_owner``, ``f_<filter>``,
    ``p<n>_name`` and ``p<n>_value``), ``m0``... (the marker's sort values)
    and ``limit``.
    """
    conditions: list[sa.ColumnElement[bool]] = []
    for token in shape:
        kind = token[0]
        if kind == "visible":
            # v1's "is_public" is visibility public; every other
            # visibility is "not public".
            if token[1] == "private":
                conditions.append(IMAGES.c.visibility != "public")
            elif token[1] != "all":
                # Everyone else, admins included by default, sees public
                # images, their own and those shared with them (members of
                # any status, as v1 has no consent).
                branches: list[sa.ColumnElement[bool]] = [
                    IMAGES.c.visibility == "public"]
                if token[1] == "owner":
                    owner: sa.BindParameter[str] = sa.bindparam("v_owner")
                    branches.append(IMAGES.c.owner == owner)
                    branches.append(sa.and_(
                        IMAGES.c.visibility == "shared",
                        sa.exists().where(
                            MEMBERS.c.image_id == IMAGES.c.id,
                            MEMBERS.c.member == owner,
                            MEMBERS.c.deleted == sa.false())))
                conditions.append(sa.or_(*branches))
        elif kind == "deleted":
            conditions.append(IMAGES.c.deleted
                              == (sa.true() if token[1] else sa.false()))
            if not token[1]:
                conditions.append(IMAGES.c.status != "killed")
        elif kind == "changes-since":
            conditions.append(
                IMAGES.c.updated_at > sa.bindparam("f_changes_since"))
        elif kind == "size_min":
            conditions.append(IMAGES.c.size >= sa.bindparam("f_size_min"))
        elif kind == "size_max":
            conditions.append(IMAGES.c.size <= sa.bindparam("f_size_max"))
        elif kind == "column":
            conditions.append(
                IMAGES.c[token[1]] == sa.bindparam("f_" + token[1]))
        elif kind == "property":
            index, is_null = token[1], token[2]
            conditions.append(sa.exists().where(
                PROPERTIES.c.image_id == IMAGES.c.id,
                PROPERTIES.c.name == sa.bindparam(f"p{index}_name"),
                PROPERTIES.c.value.is_(None) if is_null
                else PROPERTIES.c.value == sa.bindparam(f"p{index}_value"),
                PROPERTIES.c.deleted == sa.false()))
        else:  # pragma: no cover - _list_shape makes no other tokens
            raise AssertionError(token)
    expressions = _sort_expressions(sort_key)
    query = sa.select(IMAGES).where(*conditions)
    if with_marker:
        marker = [sa.bindparam(f"m{i}", type_=expression.type)
                  for i, expression in enumerate(expressions)]
        query = query.where(rows_after(expressions, [sort_dir] * len(expressions),
                                       marker))
    query = query.order_by(*(e.desc() if sort_dir == "desc" else e.asc()
                             for e in expressions))
    if with_limit:
        query = query.limit(sa.bindparam("limit", type_=sa.Integer()))
    return query


def _list_shape(context: RequestContext, filters: Mapping[str, Any]
                ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The shape of a list query (its cache key) and the values to bind.

    Raises Invalid, InvalidFilterRangeValue, InvalidParameterValue.
    """
    shape: list[tuple[Any, ...]] = []
    params: dict[str, Any] = {}
    # Visibility. Without an owner value nothing is "theirs" or "shared
    # with them".
    if context.is_admin and "is_public" in filters and \
            filters["is_public"] is None:
        shape.append(("visible", "all"))
    elif context.is_admin and "is_public" in filters and \
            not filters["is_public"]:
        shape.append(("visible", "private"))
    elif context.owner is not None:
        shape.append(("visible", "owner"))
        params["v_owner"] = context.owner
    else:
        shape.append(("visible", "public"))
    deleted = filters.get("deleted")
    if deleted is None and "changes-since" not in filters:
        deleted = False
    if deleted is not None:
        shape.append(("deleted", bool(deleted)))
    for name, value in filters.items():
        if value is None or name in ("deleted", "is_public"):
            continue
        if name == "changes-since":
            shape.append((name,))
            params["f_changes_since"] = _changes_since(value)
        elif name in ("size_min", "size_max"):
            try:
                size = int(value)
            except (TypeError, ValueError):
                raise exception.InvalidFilterRangeValue(
                    f"Bad value passed to filter {name} got {value}")
            shape.append((name,))
            params["f_" + name] = size
        elif name == "protected":
            shape.append(("column", name))
            params["f_protected"] = bool(value)
        elif name in INTEGER_FILTERS:
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise exception.InvalidParameterValue(
                    f"Bad value passed to filter {name} got {value}")
            shape.append(("column", name))
            params["f_" + name] = number
        elif name in EQUALITY_FILTERS:
            shape.append(("column", name))
            params["f_" + name] = value
        elif name == "properties":
            for index, (prop, prop_value) in enumerate(value.items()):
                shape.append(("property", index, prop_value is None))
                params[f"p{index}_name"] = prop
                if prop_value is not None:
                    params[f"p{index}_value"] = str(prop_value)
        else:
            raise exception.InvalidParameterValue(
                f"Unsupported filter: {name}")
    return tuple(shape), params


class ImageListing(DatabaseBase):
    """Pages of the images a caller may see."""

    def image_get_all(self, context: RequestContext,
                      filters: Mapping[str, Any] | None = None,
                      marker: str | None = None, limit: int | None = None,
                      sort_key: str = "created_at",
                      sort_dir: str = "desc") -> list[dict[str, Any]]:
        """A page of the images the caller may see.

        Ordered by ``sort_key``, then created_at, then id, all in
        ``sort_dir``; rows strictly after ``marker``. Raises NotFound
        (marker unknown or invisible), InvalidSortKey, InvalidSortDir,
        Invalid (filter values).
        """
        filters = dict(filters or {})
        if sort_key not in SORT_KEYS:
            raise exception.InvalidSortKey()
        if sort_dir not in SORT_DIRS:
            raise exception.InvalidSortDir()
        showing_deleted = ("changes-since" in filters
                           or bool(filters.get("deleted")))
        shape, params = _list_shape(context, filters)
        key = (shape, sort_key, sort_dir, marker is not None, limit is not None)
        with self._reading() as connection:
            if marker is not None:
                marker_row = self._visible_row(connection, context, marker,
                                               force_show_deleted=showing_deleted)
                marker_values = connection.execute(
                    _marker_query(sort_key), {"id": marker_row["id"]}).one()
                for i, value in enumerate(marker_values):
                    params[f"m{i}"] = value
            if limit is not None:
                params["limit"] = max(0, int(limit))
            query = self._statement(self._list_queries, key, _list_query,
                                    MAX_CACHED_QUERIES)
            rows = [_row_dict(row) for row in connection.execute(query, params)]
            return self._image_dicts(connection, context, rows,
                                     show_deleted_locations=showing_deleted)

