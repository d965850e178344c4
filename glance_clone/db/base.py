"""What every query of the registry database shares: the tables, the
image-row statements, transactions and the visibility rules.

The aggregates (``images``, ``listing``, ``members``, ``purge``) are mixins
of ``DatabaseBase``; ``db.api.Database`` combines them. Answers are plain
dicts (timestamps are naive UTC datetimes), never ORM objects. Visibility
and mutability follow Glance's rules: an image the caller may not see is
"not found", a public image it may not change is "forbidden". Each write is
one transaction; on SQLite it takes the write lock when it begins
(``session.writer``), so read-check-write sequences cannot interleave.

The statements of the hot paths are built once, with bind parameters, so a
call costs SQLAlchemy a cache lookup rather than building, keying and
compiling a statement. Writes that can (every database we run on has
RETURNING) take the new image row from the UPDATE or INSERT itself instead
of reading it back.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db import models, session

LOG = logging.getLogger(__name__)

STATUSES = ("queued", "saving", "active", "killed", "deleted",
            "pending_delete", "deactivated", "uploading", "importing")
VISIBILITIES = ("public", "private", "shared", "community")
# Readable by everyone; "community" images are just not listed by default.
OPEN_VISIBILITIES = ("public", "community")
MEMBER_STATUSES = ("pending", "accepted", "rejected")
LOCATION_STATUSES = ("active", "pending_delete", "deleted")
DELETED_LOCATION_STATUSES = ("pending_delete", "deleted")
MAX_INT = 2147483647
MAX_BIGINT = 2 ** 63 - 1
MAX_ID_LENGTH = 36
# Bind variables per IN list: SQLite builds before 3.32 allow only 999.
IN_CHUNK = 500

IMAGES = models.images
PROPERTIES = models.image_properties
MEMBERS = models.image_members
LOCATIONS = models.image_locations
TAGS = models.image_tags
IMAGE_CHILDREN = (PROPERTIES, MEMBERS, LOCATIONS, TAGS)

IMAGE_COLUMNS = tuple(column.name for column in IMAGES.columns)
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


def _metadata(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        LOG.warning("Ignoring unreadable location metadata %r", text)
        return {}
    return value if isinstance(value, dict) else {}


def _row_dict(row: sa.Row[Any]) -> dict[str, Any]:
    """An images row (of a statement selecting or returning all of its
    columns, in table order) as a dict."""
    return dict(zip(IMAGE_COLUMNS, row, strict=True))


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

# Properties (kind "p": name, value) and tags (kind "t": value, null) of
# images in one statement: one round trip fewer on every read.
def _properties_and_tags(where_properties: sa.ColumnElement[bool],
                         where_tags: sa.ColumnElement[bool]) -> sa.Select[Any]:
    properties = sa.select(
        PROPERTIES.c.image_id, sa.literal("p").label("kind"), PROPERTIES.c.id,
        PROPERTIES.c.name, PROPERTIES.c.value,
    ).where(where_properties, PROPERTIES.c.deleted == sa.false())
    tags = sa.select(
        TAGS.c.image_id, sa.literal("t").label("kind"), TAGS.c.id,
        TAGS.c.value.label("name"), sa.null().label("value"),
    ).where(where_tags, TAGS.c.deleted == sa.false())
    union = sa.union_all(properties, tags).subquery()
    return (sa.select(union.c.image_id, union.c.kind, union.c.name,
                      union.c.value)
            .order_by(union.c.kind, union.c.id))


_PROPERTIES_AND_TAGS_OF = _properties_and_tags(
    PROPERTIES.c.image_id == sa.bindparam("image_id"),
    TAGS.c.image_id == sa.bindparam("image_id"))
_PROPERTIES_AND_TAGS_OF_MANY = _properties_and_tags(
    PROPERTIES.c.image_id.in_(_in("ids")), TAGS.c.image_id.in_(_in("ids")))
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


def _location(loc_id: int, url: str, meta_data: str | None,
              status: str) -> dict[str, Any]:
    return {"id": loc_id, "url": url, "metadata": _metadata(meta_data),
            "status": status}


def _image(context: RequestContext, image: dict[str, Any],
           properties: dict[str, Any],
           location_data: list[dict[str, Any]],
           tags: list[str]) -> dict[str, Any]:
    """``image``, an images row from ``_row_dict``, completed with its
    properties, tags and locations (in place).

    ``is_public`` is v1's view of the visibility.
    """
    image["is_public"] = image["visibility"] == "public"
    image["properties"] = properties
    image["tags"] = tags
    if image["status"] == "deactivated" and not context.is_admin:
        location_data = []
    image["location"] = next((loc["url"] for loc in location_data
                              if loc["status"] == "active"), None)
    image["location_data"] = location_data
    return image


def _checkout(engine: sa.engine.Engine) -> sa.engine.Connection:
    """A pooled connection; DatabaseUnavailable (503) when the pool stays
    exhausted for ``pool_timeout`` seconds, as a busy server is not a bug."""
    try:
        return engine.connect()
    except sa_exc.TimeoutError as err:
        LOG.warning("No database connection free: %s", str(err).splitlines()[0])
        raise exception.DatabaseUnavailable()


class DatabaseBase:
    """The engine, transactions and single-row helpers of every aggregate."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        self._writer = session.writer(engine)
        dialect = engine.dialect
        self._returning = bool(dialect.insert_returning
                               and dialect.update_returning)
        self._list_queries: dict[tuple[Any, ...], sa.Select[Any]] = {}
        self._search_queries: dict[tuple[Any, ...], sa.Select[Any]] = {}

    @staticmethod
    def _statement(cache: dict[tuple[Any, ...], sa.Select[Any]], shape: tuple[Any, ...],
                   build: Callable[..., sa.Select[Any]], most: int) -> sa.Select[Any]:
        """The statement of ``shape`` from ``cache``, built by
        ``build(*shape)`` when missing; past ``most`` the cache starts over
        (say, lists filtered by ever new numbers of properties)."""
        query = cache.get(shape)
        if query is None:
            if len(cache) >= most:
                cache.clear()
            query = cache[shape] = build(*shape)
        return query

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
        if context.is_admin or image["owner"] is None or \
                image["visibility"] in OPEN_VISIBILITIES:
            return True
        if context.owner is None:
            return False
        if image["owner"] == context.owner:
            return True
        # Members read an image only while it is shared (whatever their
        # status): a private image is its owner's alone.
        if image["visibility"] != "shared":
            return False
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
        if row["visibility"] in OPEN_VISIBILITIES:
            raise exception.Forbidden(
                f"You are not permitted to modify image {row['id']}")
        raise exception.ImageNotFound()

    def _image_dicts(self, connection: sa.engine.Connection,
                     context: RequestContext, rows: Sequence[dict[str, Any]],
                     show_deleted_locations: bool = False) -> list[dict[str, Any]]:
        """Image dicts with properties, tags and locations: two queries per
        chunk."""
        ids = [row["id"] for row in rows]
        properties: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        tags: dict[str, list[str]] = collections.defaultdict(list)
        locations: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        location_query = (_ALL_LOCATIONS_OF_MANY if show_deleted_locations
                          else _LOCATIONS_OF_MANY)
        for chunk in _chunks(ids):
            for image_id, kind, name, value in connection.execute(
                    _PROPERTIES_AND_TAGS_OF_MANY, {"ids": chunk}):
                if kind == "p":
                    properties[image_id][name] = value
                else:
                    tags[image_id].append(name)
            for image_id, *location in connection.execute(
                    location_query, {"ids": chunk}):
                locations[image_id].append(_location(*location))
        return [_image(context, row, properties.get(row["id"], {}),
                       locations.get(row["id"], []), tags.get(row["id"], []))
                for row in rows]

    def _one_image(self, connection: sa.engine.Connection,
                   context: RequestContext, row: dict[str, Any],
                   show_deleted_locations: bool = False,
                   properties: dict[str, Any] | None = None,
                   locations: list[dict[str, Any]] | None = None,
                   tags: list[str] | None = None) -> dict[str, Any]:
        """The image dict of ``row`` (completed in place), reading the
        properties, locations and tags not given (given ones are exactly
        what a read would find)."""
        if properties is None or tags is None:
            read_properties: dict[str, Any] = {}
            read_tags: list[str] = []
            for _id, kind, name, value in connection.execute(
                    _PROPERTIES_AND_TAGS_OF, {"image_id": row["id"]}):
                if kind == "p":
                    read_properties[name] = value
                else:
                    read_tags.append(name)
            properties = read_properties if properties is None else properties
            tags = read_tags if tags is None else tags
        if locations is None:
            query = (_ALL_LOCATIONS_OF if show_deleted_locations
                     else _LOCATIONS_OF)
            locations = [_location(*location) for location in
                         connection.execute(query, {"image_id": row["id"]})]
        return _image(context, row, properties, locations, tags)

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
