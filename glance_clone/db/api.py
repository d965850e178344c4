"""Context-first queries of the registry database.

``Database`` wraps an Engine and answers with plain dicts (timestamps are
naive UTC datetimes), never ORM objects. Visibility and mutability follow
Glance's rules (``model.md`` section 4): an image the caller may not see is
"not found", a public image it may not change is "forbidden". Each write is
one transaction; on SQLite it takes the write lock when it begins
(``session.writer``), so read-check-write sequences cannot interleave.

The statements of the hot paths are built once, with bind parameters, so a
call costs SQLAlchemy a cache lookup rather than building, keying and
compiling a statement; image lists cache theirs by the shape of the query.
Writes that can (every database we run on has RETURNING) take the new image
row from the UPDATE or INSERT itself instead of reading it back.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import functools
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db import models, session

LOG = logging.getLogger(__name__)

STATUSES = ("queued", "saving", "active", "killed", "deleted",
            "pending_delete", "deactivated")
LOCATION_STATUSES = ("active", "pending_delete", "deleted")
DELETED_LOCATION_STATUSES = ("pending_delete", "deleted")
MAX_INT = 2147483647
MAX_BIGINT = 2 ** 63 - 1
MAX_ID_LENGTH = 36
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size",
             "virtual_size", "id", "created_at", "updated_at", "deleted_at",
             "checksum", "owner", "min_disk", "min_ram", "is_public",
             "protected")
SORT_DIRS = ("asc", "desc")
EQUALITY_FILTERS = ("name", "status", "container_format", "disk_format",
                    "checksum", "owner", "id", "virtual_size")
INTEGER_FILTERS = ("min_ram", "min_disk")
# Bind variables per IN list: SQLite builds before 3.32 allow only 999.
IN_CHUNK = 500

IMAGES = models.images
PROPERTIES = models.image_properties
MEMBERS = models.image_members
LOCATIONS = models.image_locations
TAGS = models.image_tags
IMAGE_CHILDREN = (PROPERTIES, MEMBERS, LOCATIONS, TAGS)

IMAGE_COLUMNS = tuple(column.name for column in IMAGES.columns)
# Columns a caller may set; the timestamps and the deleted flag are ours.
WRITABLE_COLUMNS = ("name", "disk_format", "container_format", "size",
                    "virtual_size", "status", "is_public", "checksum",
                    "min_disk", "min_ram", "owner", "protected")
MEMBER_KEYS = ("id", "image_id", "member", "can_share", "status",
               "created_at", "updated_at", "deleted_at", "deleted")
_EPOCH_ZERO = datetime.datetime(1, 1, 1)
# An image or membership row as a dict, or any mapping with the same keys.
Row = Mapping[Any, Any]

utcnow = models.utcnow


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _can_see_deleted(context: RequestContext) -> bool:
    return bool(context.is_admin or context.show_deleted)


def _integer(name: str, value: Any, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise exception.Invalid(f"'{name}' must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise exception.Invalid(f"'{name}' must be an integer")
    if maximum is not None and number > maximum:
        raise exception.Invalid(
            f"'{name}' value out of range, must not exceed {maximum}")
    return number


def _status(value: Any) -> str:
    if not value:
        raise exception.Invalid("Image status is required.")
    if value not in STATUSES:
        raise exception.Invalid(f"Invalid image status '{value}' for image.")
    return str(value)


def _column_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The writable image columns of ``values``, normalized; raises Invalid."""
    row: dict[str, Any] = {}
    for name in WRITABLE_COLUMNS:
        if name not in values:
            continue
        value = values[name]
        if name == "status":
            value = _status(value)
        elif name in ("size", "virtual_size"):
            value = None if value is None else _integer(name, value, MAX_BIGINT)
        elif name in ("min_disk", "min_ram"):
            value = _integer(name, value or 0, MAX_INT)
        elif name in ("is_public", "protected"):
            value = bool(value)
        elif name == "owner":
            value = value or None
        row[name] = value
    return row


def _requested_locations(values: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Pop ``location`` / ``location_data`` and merge them by URL.

    None means neither was given (locations stay as they are). The URL of
    ``location`` comes first; an entry of ``location_data`` with the same
    URL supplies its id, metadata and status. Raises Invalid.
    """
    url = values.pop("location", None)
    data = values.pop("location_data", None)
    if url is None and data is None:
        return None
    by_url: dict[str, dict[str, Any]] = {}
    order: list[str] = [url] if url is not None else []
    for entry in data or []:
        if not isinstance(entry, Mapping) or not entry.get("url"):
            raise exception.Invalid("Location entries need a 'url'.")
        status = entry.get("status") or "active"
        if status not in LOCATION_STATUSES:
            raise exception.Invalid(f"Invalid location status '{status}'")
        metadata = entry.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise exception.Invalid("Location metadata must be an object.")
        loc_id = entry.get("id")
        by_url[entry["url"]] = {
            "url": entry["url"],
            "metadata": dict(metadata),
            "status": status,
            "id": None if loc_id is None else _integer("location id", loc_id),
        }
        if entry["url"] not in order:
            order.append(entry["url"])
    return [by_url.get(u) or {"url": u, "metadata": {}, "status": "active",
                              "id": None}
            for u in order]


def _metadata(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        LOG.warning("Ignoring unreadable location metadata %r", text)
        return {}
    return value if isinstance(value, dict) else {}


def _sort_expression(key: str) -> sa.ColumnElement[Any]:
    """The ORDER BY expression of ``key``: nulls sort as the lowest value."""
    column = IMAGES.c[key]
    if not column.nullable:
        return column
    if isinstance(column.type, sa.DateTime):
        return sa.func.coalesce(column, sa.literal(_EPOCH_ZERO, sa.DateTime()))
    if isinstance(column.type, sa.String):
        return sa.func.coalesce(column, "")
    return sa.func.coalesce(column, -1)


def _after_marker(expressions: Sequence[sa.ColumnElement[Any]],
                  marker: Sequence[Any], sort_dir: str) -> sa.ColumnElement[bool]:
    """Rows strictly after the marker's values in (k1, k2, ...) order.

    Written as (k1 > m1) OR (k1 = m1 AND k2 > m2) OR ... rather than a row
    value comparison, which not every database supports the same way.
    """
    clauses = []
    for i, expression in enumerate(expressions):
        beyond = (expression < marker[i] if sort_dir == "desc"
                  else expression > marker[i])
        equal = [expressions[j] == marker[j] for j in range(i)]
        clauses.append(sa.and_(*equal, beyond))
    return sa.or_(*clauses)


def _changes_since(value: Any) -> datetime.datetime:
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise exception.Invalid("Unrecognized changes-since value")
    if not isinstance(value, datetime.datetime):
        raise exception.Invalid("Unrecognized changes-since value")
    when: datetime.datetime = value
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return when


def _row_dict(row: sa.Row[Any]) -> dict[str, Any]:
    """An images row (of a statement selecting or returning all of its
    columns, in table order) as a dict."""
    return dict(zip(IMAGE_COLUMNS, row, strict=True))


def _member_dict(row: sa.Row[Any]) -> dict[str, Any]:
    values = row._asdict()
    return {key: values[key] for key in MEMBER_KEYS}


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


# --- prebuilt statements -------------------------------------------------------
# Built once; each call only binds values. Bind names of UPDATE statements
# start with "_" because a column's own name is reserved there for its SET
# value: such statements take the SET columns from the keys of the
# parameters they are executed with (e.g. {"_id": ..., "status": ...}).


def _in(name: str) -> sa.BindParameter[Any]:
    """An IN list, one bind variable per item at execution."""
    return sa.bindparam(name, expanding=True)


_IMAGE = sa.select(IMAGES).where(IMAGES.c.id == sa.bindparam("id"))
_LIVE_IMAGE = _IMAGE.where(IMAGES.c.deleted == sa.false())
# An id is taken while an image row has it or once ``db purge`` removed it.
_ID_TAKEN = sa.union_all(
    sa.select(IMAGES.c.id).where(IMAGES.c.id == sa.bindparam("id")),
    sa.select(models.purged_image_ids.c.id).where(
        models.purged_image_ids.c.id == sa.bindparam("id")))
_IMAGE_EXISTS = sa.select(IMAGES.c.id).where(IMAGES.c.id == sa.bindparam("id"))
_INSERT_IMAGE = sa.insert(IMAGES)
_UPDATE_IMAGE = sa.update(IMAGES).where(IMAGES.c.id == sa.bindparam("_id"))
# Compare-and-swap: changes the row only while its status is "_from".
_UPDATE_IMAGE_FROM = _UPDATE_IMAGE.where(IMAGES.c.status == sa.bindparam("_from"))
# The same, answering with the row as written.
_INSERT_IMAGE_RETURNING = _INSERT_IMAGE.returning(*IMAGES.c)
_UPDATE_IMAGE_RETURNING = _UPDATE_IMAGE.returning(*IMAGES.c)
_UPDATE_IMAGE_FROM_RETURNING = _UPDATE_IMAGE_FROM.returning(*IMAGES.c)

_IS_MEMBER = sa.select(MEMBERS.c.id).where(
    MEMBERS.c.image_id == sa.bindparam("image_id"),
    MEMBERS.c.member == sa.bindparam("member"),
    MEMBERS.c.deleted == sa.false()).limit(1)

_PROPERTIES_OF = (sa.select(PROPERTIES.c.name, PROPERTIES.c.value)
                  .where(PROPERTIES.c.image_id == sa.bindparam("image_id"),
                         PROPERTIES.c.deleted == sa.false())
                  .order_by(PROPERTIES.c.id))
_PROPERTIES_OF_MANY = (sa.select(PROPERTIES.c.image_id, PROPERTIES.c.name,
                                 PROPERTIES.c.value)
                       .where(PROPERTIES.c.image_id.in_(_in("ids")),
                              PROPERTIES.c.deleted == sa.false())
                       .order_by(PROPERTIES.c.id))
_PROPERTY_ROWS_OF = (sa.select(PROPERTIES.c.id, PROPERTIES.c.name,
                               PROPERTIES.c.value, PROPERTIES.c.deleted)
                     .where(PROPERTIES.c.image_id == sa.bindparam("image_id")))
_INSERT_PROPERTY = sa.insert(PROPERTIES)
_UPDATE_PROPERTY = (sa.update(PROPERTIES)
                    .where(PROPERTIES.c.id == sa.bindparam("_id"))
                    .values(value=sa.bindparam("_value"),
                            deleted=sa.bindparam("_deleted"),
                            deleted_at=sa.bindparam("_deleted_at"),
                            updated_at=sa.bindparam("_now")))
_DELETE_PROPERTIES = (sa.update(PROPERTIES)
                      .where(PROPERTIES.c.id.in_(_in("_ids")))
                      .values(deleted=True, deleted_at=sa.bindparam("_now"),
                              updated_at=sa.bindparam("_now")))

_LOCATION_COLUMNS = (LOCATIONS.c.id, LOCATIONS.c.value, LOCATIONS.c.meta_data,
                     LOCATIONS.c.status)
_ALL_LOCATIONS_OF = (sa.select(*_LOCATION_COLUMNS)
                     .where(LOCATIONS.c.image_id == sa.bindparam("image_id"))
                     .order_by(LOCATIONS.c.id))
_LOCATIONS_OF = _ALL_LOCATIONS_OF.where(LOCATIONS.c.deleted == sa.false())
_ALL_LOCATIONS_OF_MANY = (sa.select(LOCATIONS.c.image_id, *_LOCATION_COLUMNS)
                          .where(LOCATIONS.c.image_id.in_(_in("ids")))
                          .order_by(LOCATIONS.c.id))
_LOCATIONS_OF_MANY = _ALL_LOCATIONS_OF_MANY.where(
    LOCATIONS.c.deleted == sa.false())
_INSERT_LOCATION = sa.insert(LOCATIONS)
_UPDATE_LOCATION = sa.update(LOCATIONS).where(
    LOCATIONS.c.id == sa.bindparam("_id"),
    LOCATIONS.c.image_id == sa.bindparam("_image_id"))
_DELETE_UNLISTED_LOCATIONS = (
    sa.update(LOCATIONS)
    .where(LOCATIONS.c.image_id == sa.bindparam("_image_id"),
           LOCATIONS.c.deleted == sa.false(),
           LOCATIONS.c.id.not_in(_in("_listed")))
    .values(status="deleted", deleted=True, deleted_at=sa.bindparam("_now"),
            updated_at=sa.bindparam("_now")))

# image_destroy: the live rows of every child table, soft-deleted.
_DELETE_CHILDREN = tuple(
    sa.update(table)
    .where(table.c.image_id == sa.bindparam("_image_id"),
           table.c.deleted == sa.false())
    .values(deleted=True, deleted_at=sa.bindparam("_now"),
            updated_at=sa.bindparam("_now"),
            **({"status": "deleted"} if table is LOCATIONS else {}))
    for table in IMAGE_CHILDREN)

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

# Shapes of list statements cached per Database; past this many (say, lists
# filtered by ever new numbers of properties) the cache starts over.
MAX_CACHED_QUERIES = 256


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


def _location(loc_id: int, url: str, meta_data: str | None,
              status: str) -> dict[str, Any]:
    return {"id": loc_id, "url": url, "metadata": _metadata(meta_data),
            "status": status}


def _image(context: RequestContext, image: dict[str, Any],
           properties: dict[str, Any],
           location_data: list[dict[str, Any]]) -> dict[str, Any]:
    """``image``, an images row from ``_row_dict``, completed with its
    properties and locations (in place)."""
    image["properties"] = properties
    if image["status"] == "deactivated" and not context.is_admin:
        location_data = []
    image["location"] = next((loc["url"] for loc in location_data
                              if loc["status"] == "active"), None)
    image["location_data"] = location_data
    return image


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
            if token[1] == "private":
                conditions.append(IMAGES.c.is_public == sa.false())
            elif token[1] != "all":
                # Everyone else, admins included by default, sees public
                # images, their own and those shared with them.
                branches: list[sa.ColumnElement[bool]] = [
                    IMAGES.c.is_public == sa.true()]
                if token[1] == "owner":
                    owner: sa.BindParameter[str] = sa.bindparam("v_owner")
                    branches.append(IMAGES.c.owner == owner)
                    branches.append(sa.exists().where(
                        MEMBERS.c.image_id == IMAGES.c.id,
                        MEMBERS.c.member == owner,
                        MEMBERS.c.deleted == sa.false()))
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
        query = query.where(_after_marker(expressions, marker, sort_dir))
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


def _checkout(engine: sa.engine.Engine) -> sa.engine.Connection:
    """A pooled connection; DatabaseUnavailable (503) when the pool stays
    exhausted for ``pool_timeout`` seconds, as a busy server is not a bug."""
    try:
        return engine.connect()
    except sa_exc.TimeoutError as err:
        LOG.warning("No database connection free: %s", str(err).splitlines()[0])
        raise exception.DatabaseUnavailable()


class Database:
    """The registry's queries, context first; see the module docstring."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        self._writer = session.writer(engine)
        dialect = engine.dialect
        self._returning = bool(dialect.insert_returning
                               and dialect.update_returning)
        self._list_queries: dict[tuple[Any, ...], sa.Select[Any]] = {}

    # --- transactions -------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.engine.Connection]:
        # One transaction, so a page and its properties are one snapshot;
        # closing the connection rolls it back.
        with _checkout(self.engine) as connection:
            yield connection

    @contextlib.contextmanager
    def _writing(self, context: RequestContext | None
                 ) -> Iterator[sa.engine.Connection]:
        if context is not None and context.read_only:
            raise exception.ReadOnly()
        with _checkout(self._writer) as connection, connection.begin():
            yield connection

    # --- single images --------------------------------------------------------

    def _is_visible(self, connection: sa.engine.Connection,
                    context: RequestContext, image: Row) -> bool:
        if context.is_admin or image["owner"] is None or image["is_public"]:
            return True
        if context.owner is None:
            return False
        if image["owner"] == context.owner:
            return True
        member = connection.execute(
            _IS_MEMBER, {"image_id": image["id"], "member": context.owner}
        ).first()
        return member is not None

    def _visible_row(self, connection: sa.engine.Connection,
                     context: RequestContext, image_id: Any,
                     force_show_deleted: bool = False) -> dict[str, Any]:
        """The image row if the caller may see it; raises ImageNotFound."""
        if not isinstance(image_id, str) or len(image_id) > MAX_ID_LENGTH:
            raise exception.ImageNotFound()
        query = (_IMAGE if force_show_deleted or _can_see_deleted(context)
                 else _LIVE_IMAGE)
        row = connection.execute(query, {"id": image_id}).first()
        if row is None:
            raise exception.ImageNotFound()
        image = _row_dict(row)
        if not self._is_visible(connection, context, image):
            raise exception.ImageNotFound()
        return image

    def _mutable_row(self, connection: sa.engine.Connection,
                     context: RequestContext, image_id: Any) -> dict[str, Any]:
        """The row if the caller may change it.

        Raises ImageNotFound (invisible, or private and not ours) or
        Forbidden (public and not ours).
        """
        row = self._visible_row(connection, context, image_id)
        if context.is_admin:
            return row
        if row["owner"] is not None and row["owner"] == context.owner:
            return row
        if row["is_public"]:
            raise exception.Forbidden(
                f"You are not permitted to modify image {row['id']}")
        raise exception.ImageNotFound()

    def _image_dicts(self, connection: sa.engine.Connection,
                     context: RequestContext, rows: Sequence[dict[str, Any]],
                     show_deleted_locations: bool = False) -> list[dict[str, Any]]:
        """Image dicts with properties and locations: two queries per chunk."""
        ids = [row["id"] for row in rows]
        properties: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        locations: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        location_query = (_ALL_LOCATIONS_OF_MANY if show_deleted_locations
                          else _LOCATIONS_OF_MANY)
        for chunk in _chunks(ids):
            for image_id, name, value in connection.execute(
                    _PROPERTIES_OF_MANY, {"ids": chunk}):
                properties[image_id][name] = value
            for image_id, *location in connection.execute(
                    location_query, {"ids": chunk}):
                locations[image_id].append(_location(*location))
        return [_image(context, row, properties.get(row["id"], {}),
                       locations.get(row["id"], []))
                for row in rows]

    def _one_image(self, connection: sa.engine.Connection,
                   context: RequestContext, row: dict[str, Any],
                   show_deleted_locations: bool = False,
                   properties: dict[str, Any] | None = None,
                   locations: list[dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
        """The image dict of ``row`` (completed in place), reading the
        properties and locations not given (given ones are exactly what a
        read would find)."""
        if properties is None:
            properties = {}
            for name, value in connection.execute(
                    _PROPERTIES_OF, {"image_id": row["id"]}):
                properties[name] = value
        if locations is None:
            query = (_ALL_LOCATIONS_OF if show_deleted_locations
                     else _LOCATIONS_OF)
            locations = [_location(*location) for location in
                         connection.execute(query, {"image_id": row["id"]})]
        return _image(context, row, properties, locations)

    def _image_row(self, connection: sa.engine.Connection,
                   image_id: str) -> dict[str, Any]:
        return _row_dict(connection.execute(_IMAGE, {"id": image_id}).one())

    def _insert_image(self, connection: sa.engine.Connection,
                      row: Mapping[str, Any]) -> dict[str, Any]:
        """INSERT an images row; the row as stored."""
        if self._returning:
            return _row_dict(
                connection.execute(_INSERT_IMAGE_RETURNING, row).one())
        connection.execute(_INSERT_IMAGE, row)
        return self._image_row(connection, row["id"])

    def _update_image(self, connection: sa.engine.Connection,
                      params: Mapping[str, Any]) -> dict[str, Any] | None:
        """UPDATE the image ``_id`` (while its status is ``_from``, when
        given) setting the other keys; the row as stored, None when no row
        matched."""
        swap = "_from" in params
        if self._returning:
            statement = (_UPDATE_IMAGE_FROM_RETURNING if swap
                         else _UPDATE_IMAGE_RETURNING)
            row = connection.execute(statement, params).first()
            return None if row is None else _row_dict(row)
        result = connection.execute(
            _UPDATE_IMAGE_FROM if swap else _UPDATE_IMAGE, params)
        if result.rowcount != 1:
            return None
        return self._image_row(connection, params["_id"])

    def image_get(self, context: RequestContext, image_id: str,
                  force_show_deleted: bool = False) -> dict[str, Any]:
        """One image the caller may see; raises ImageNotFound.

        Deleted rows are found for admins, ``show_deleted`` contexts and
        ``force_show_deleted``; the latter also lists deleted locations
        (e.g. those ``pending_delete``).
        """
        with self._reading() as connection:
            row = self._visible_row(connection, context, image_id,
                                    force_show_deleted)
            return self._one_image(connection, context, row,
                                   force_show_deleted)

    def image_create(self, context: RequestContext,
                     values: Mapping[str, Any]) -> dict[str, Any]:
        """Register an image; raises Duplicate, Invalid, ReadOnly."""
        values = dict(values)
        properties = values.pop("properties", None) or {}
        locations = _requested_locations(values)
        image_id = values.get("id") or str(uuid.uuid4())
        if not isinstance(image_id, str) or len(image_id) > MAX_ID_LENGTH:
            raise exception.Invalid("Invalid image id format")
        row = _column_values(values)
        row.setdefault("status", "active")
        for name, default in (("min_disk", 0), ("min_ram", 0),
                              ("is_public", False), ("protected", False)):
            row.setdefault(name, default)
        if not (context.is_admin and "owner" in values):
            row["owner"] = context.owner
        now = utcnow()
        row.update(id=image_id, created_at=now, updated_at=now,
                   deleted_at=None, deleted=False)
        duplicate = exception.Duplicate(
            f"Image with identifier {image_id} already exists!")
        with self._writing(context) as connection:
            taken = connection.execute(_ID_TAKEN, {"id": image_id}).first()
            if taken is not None:
                raise duplicate
            try:
                stored = self._insert_image(connection, row)
            except sa_exc.IntegrityError:
                raise duplicate
            stored_properties = self._add_properties(connection, image_id,
                                                     properties, now)
            stored_locations: list[dict[str, Any]] | None = []
            if locations is not None:
                stored_locations = self._set_locations(
                    connection, image_id, locations, now, new_image=True)
            return self._one_image(connection, context, stored,
                                   properties=stored_properties,
                                   locations=stored_locations)

    def image_update(self, context: RequestContext, image_id: str,
                     values: Mapping[str, Any], purge_props: bool = False,
                     from_state: str | None = None) -> dict[str, Any]:
        """Change an image, its properties and locations, all or nothing.

        With ``from_state`` the row changes only while its status is that
        value. Raises ImageNotFound, Forbidden, StatusConflict, Invalid,
        NotFound (unknown location id), ReadOnly.
        """
        values = dict(values)
        properties = values.pop("properties", None) or {}
        locations = _requested_locations(values)
        if not context.is_admin:
            values.pop("owner", None)
        changes = _column_values(values)
        now = utcnow()
        changes["updated_at"] = now
        params = dict(changes, _id=image_id)
        if from_state is not None:
            params["_from"] = from_state
        try:
            with self._writing(context) as connection:
                self._mutable_row(connection, context, image_id)
                row = self._update_image(connection, params)
                if row is None:
                    if from_state is not None:
                        raise exception.StatusConflict()
                    raise exception.ImageNotFound()
                self._set_properties(connection, image_id, properties,
                                     purge_props, now)
                stored_locations = None
                if locations is not None:
                    stored_locations = self._set_locations(
                        connection, image_id, locations, now)
                return self._one_image(connection, context, row,
                                       locations=stored_locations)
        except sa_exc.IntegrityError as err:
            # Only a concurrent writer on a database without whole-file
            # write locks (a property inserted twice) gets here.
            LOG.info("Concurrent update of image %s: %s", image_id, err)
            raise exception.Conflict(
                f"Image {image_id} was changed concurrently; try again.")

    def _add_properties(self, connection: sa.engine.Connection, image_id: str,
                        properties: Mapping[str, Any],
                        now: datetime.datetime) -> dict[str, Any] | None:
        """Insert the properties of a new image (which has no property rows:
        they reference an images row). Returns them as a read would, or None
        when only a read can tell (names that are not text)."""
        stored = {name: None if value is None else str(value)
                  for name, value in properties.items()}
        if stored:
            connection.execute(_INSERT_PROPERTY, [
                {"image_id": image_id, "name": name, "value": value,
                 "created_at": now, "updated_at": now, "deleted_at": None,
                 "deleted": False}
                for name, value in stored.items()])
        if not all(isinstance(name, str) for name in stored):
            return None
        return stored

    def _set_properties(self, connection: sa.engine.Connection, image_id: str,
                        properties: Mapping[str, Any], purge: bool,
                        now: datetime.datetime) -> None:
        """Upsert ``properties``, reviving soft-deleted rows of the same name;
        with ``purge`` soft-delete the live ones not given."""
        if not properties and not purge:
            return
        existing = {
            row.name: row for row in connection.execute(
                _PROPERTY_ROWS_OF, {"image_id": image_id})}
        inserts, updates = [], []
        for name, value in properties.items():
            value = None if value is None else str(value)
            old = existing.get(name)
            if old is None:
                inserts.append({"image_id": image_id, "name": name,
                                "value": value, "created_at": now,
                                "updated_at": now, "deleted_at": None,
                                "deleted": False})
            elif old.deleted or old.value != value:
                updates.append({"_id": old.id, "_value": value,
                                "_deleted": False, "_deleted_at": None,
                                "_now": now})
        removed = [row.id for name, row in existing.items()
                   if purge and name not in properties and not row.deleted]
        if inserts:
            connection.execute(_INSERT_PROPERTY, inserts)
        if updates:
            connection.execute(_UPDATE_PROPERTY, updates)
        for chunk in _chunks(removed):
            connection.execute(_DELETE_PROPERTIES, {"_ids": chunk, "_now": now})

    def _set_locations(self, connection: sa.engine.Connection, image_id: str,
                       locations: Sequence[Mapping[str, Any]],
                       now: datetime.datetime, new_image: bool = False
                       ) -> list[dict[str, Any]] | None:
        """Make ``locations`` the image's list; raises NotFound (unknown id).

        ``new_image``: the image was created in this transaction, so it has
        no location rows yet. Returns the live locations in id order as a
        read would find them, or None when only a read can tell (a URL that
        is not text).
        """
        listed = [loc["id"] for loc in locations if loc["id"] is not None]
        if not new_image:
            connection.execute(_DELETE_UNLISTED_LOCATIONS, {
                "_image_id": image_id, "_listed": listed, "_now": now})
        # Every live row of the image is one written below (the others were
        # just deleted), as last written: an id may be listed twice, or be
        # that of a row inserted for an earlier entry.
        written: dict[int, dict[str, Any] | None] = {}
        for loc in locations:
            deleted = loc["status"] in DELETED_LOCATION_STATUSES
            row = {"value": loc["url"], "meta_data": json.dumps(loc["metadata"]),
                   "status": loc["status"], "deleted": deleted,
                   "deleted_at": now if deleted else None, "updated_at": now}
            if loc["id"] is None:
                result = connection.execute(
                    _INSERT_LOCATION,
                    dict(row, image_id=image_id, created_at=now))
                key = result.inserted_primary_key
                assert key is not None  # single-row INSERT
                loc_id = int(key[0])
            else:
                result = connection.execute(
                    _UPDATE_LOCATION,
                    dict(row, _id=loc["id"], _image_id=image_id))
                if result.rowcount != 1:
                    raise exception.NotFound(
                        f"No location found with ID {loc['id']} from image "
                        f"{image_id}")
                loc_id = loc["id"]
            written[loc_id] = None if deleted else _location(
                loc_id, row["value"], row["meta_data"], row["status"])
        live = [location for _, location in sorted(written.items())
                if location is not None]
        if not all(isinstance(loc["url"], str) for loc in live):
            return None
        return live

    def image_destroy(self, context: RequestContext, image_id: str,
                      from_state: str | None = None) -> dict[str, Any]:
        """Soft-delete an image and everything hanging off it.

        The status is left alone (glance-api sets it first), unless
        ``from_state`` is given: then the image is deleted only while its
        status is that value, and its status becomes ``deleted`` in the
        same transaction. Raises ImageNotFound, Forbidden, ReadOnly,
        StatusConflict.
        """
        with self._writing(context) as connection:
            self._mutable_row(connection, context, image_id)
            now = utcnow()
            params = {"_id": image_id, "deleted": True, "deleted_at": now,
                      "updated_at": now}
            if from_state is not None:
                params.update(_from=from_state, status="deleted")
            row = self._update_image(connection, params)
            if row is None:
                if from_state is not None:
                    raise exception.StatusConflict()
                raise exception.ImageNotFound()
            for statement in _DELETE_CHILDREN:
                connection.execute(statement,
                                   {"_image_id": image_id, "_now": now})
            # No property or location is live any more: nothing to read.
            return _image(context, row, {}, [])

    # --- listing ----------------------------------------------------------------

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
            query = self._list_queries.get(key)
            if query is None:
                if len(self._list_queries) >= MAX_CACHED_QUERIES:
                    self._list_queries.clear()
                query = self._list_queries[key] = _list_query(*key)
            rows = [_row_dict(row) for row in connection.execute(query, params)]
            return self._image_dicts(connection, context, rows,
                                     show_deleted_locations=showing_deleted)

    # --- members ----------------------------------------------------------------

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

    # --- purge ------------------------------------------------------------------

    def purge_deleted_rows(self, age_in_days: int, max_rows: int) -> dict[str, int]:
        """Remove rows soft-deleted more than ``age_in_days`` ago.

        At most ``max_rows`` per table (-1: no limit), children before their
        image; an image that still has rows in a child table waits for a
        later run. Purged image ids are recorded so they are never handed
        out again. Returns rows removed per table; raises Invalid.
        """
        if isinstance(age_in_days, bool) or not isinstance(age_in_days, int) \
                or age_in_days < 0:
            raise exception.Invalid("age_in_days must be a non-negative integer")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) \
                or not (max_rows == -1 or 1 <= max_rows <= MAX_INT):
            raise exception.Invalid(
                f"max_rows must be -1 (no limit) or between 1 and {MAX_INT}")
        cutoff = utcnow() - datetime.timedelta(days=age_in_days)
        counts: dict[str, int] = {}
        for table in IMAGE_CHILDREN:
            counts[table.name] = self._purge(table, cutoff, max_rows)
        no_children = [~sa.exists().where(child.c.image_id == IMAGES.c.id)
                       for child in IMAGE_CHILDREN]
        counts[IMAGES.name] = self._purge(IMAGES, cutoff, max_rows, no_children,
                                          record=models.purged_image_ids)
        counts[models.tasks.name] = self._purge(
            models.tasks, cutoff, max_rows,
            dependents=[(models.task_info, models.task_info.c.task_id)])
        for name, count in counts.items():
            LOG.info("Purged %d deleted row(s) from table %s", count, name)
        return counts

    def _purge(self, table: sa.Table, cutoff: datetime.datetime, max_rows: int,
               conditions: Sequence[sa.ColumnElement[bool]] = (),
               record: sa.Table | None = None,
               dependents: Sequence[tuple[sa.Table, sa.Column[Any]]] = ()) -> int:
        query = (sa.select(table.c.id)
                 .where(table.c.deleted == sa.true(),
                        table.c.deleted_at < cutoff, *conditions)
                 .order_by(table.c.deleted_at, table.c.id))
        if max_rows != -1:
            query = query.limit(max_rows)
        with self._writer.begin() as connection:
            ids = list(connection.execute(query).scalars())
            for chunk in _chunks(ids):
                if record is not None:
                    connection.execute(sa.insert(record),
                                       [{"id": row_id} for row_id in chunk])
                for dependent, column in dependents:
                    connection.execute(sa.delete(dependent)
                                       .where(column.in_(chunk)))
                connection.execute(sa.delete(table).where(table.c.id.in_(chunk)))
        return len(ids)
