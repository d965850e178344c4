"""Context-first queries of the registry database.

``Database`` wraps an Engine and answers with plain dicts (timestamps are
naive UTC datetimes), never ORM objects. Visibility and mutability follow
Glance's rules (``model.md`` section 4): an image the caller may not see is
"not found", a public image it may not change is "forbidden". Each write is
one transaction; on SQLite it takes the write lock when it begins
(``session.writer``), so read-check-write sequences cannot interleave.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
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
# A result row (RowMapping) or any dict with the same keys.
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


def _member_dict(row: Row) -> dict[str, Any]:
    return {key: row[key] for key in MEMBER_KEYS}


class Database:
    """The registry's queries, context first; see the module docstring."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        self._writer = session.writer(engine)

    # --- transactions -------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.engine.Connection]:
        # One transaction, so a page and its properties are one snapshot;
        # closing the connection rolls it back.
        with self.engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def _writing(self, context: RequestContext | None
                 ) -> Iterator[sa.engine.Connection]:
        if context is not None and context.read_only:
            raise exception.ReadOnly()
        with self._writer.begin() as connection:
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
            sa.select(MEMBERS.c.id).where(
                MEMBERS.c.image_id == image["id"],
                MEMBERS.c.member == context.owner,
                MEMBERS.c.deleted == sa.false()).limit(1)).first()
        return member is not None

    def _visible_row(self, connection: sa.engine.Connection,
                     context: RequestContext, image_id: Any,
                     force_show_deleted: bool = False) -> Row:
        """The image row if the caller may see it; raises ImageNotFound."""
        if not isinstance(image_id, str) or len(image_id) > MAX_ID_LENGTH:
            raise exception.ImageNotFound()
        query = sa.select(IMAGES).where(IMAGES.c.id == image_id)
        if not force_show_deleted and not _can_see_deleted(context):
            query = query.where(IMAGES.c.deleted == sa.false())
        row = connection.execute(query).mappings().first()
        if row is None or not self._is_visible(connection, context, row):
            raise exception.ImageNotFound()
        return row

    def _mutable_row(self, connection: sa.engine.Connection,
                     context: RequestContext, image_id: Any) -> Row:
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
                     context: RequestContext, rows: Sequence[Row],
                     show_deleted_locations: bool = False) -> list[dict[str, Any]]:
        """Image dicts with properties and locations: two queries per chunk."""
        ids = [row["id"] for row in rows]
        properties: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        locations: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for chunk in _chunks(ids):
            for prop in connection.execute(
                    sa.select(PROPERTIES.c.image_id, PROPERTIES.c.name,
                              PROPERTIES.c.value)
                    .where(PROPERTIES.c.image_id.in_(chunk),
                           PROPERTIES.c.deleted == sa.false())
                    .order_by(PROPERTIES.c.id)):
                properties[prop.image_id][prop.name] = prop.value
            query = (sa.select(LOCATIONS.c.id, LOCATIONS.c.image_id,
                               LOCATIONS.c.value, LOCATIONS.c.meta_data,
                               LOCATIONS.c.status)
                     .where(LOCATIONS.c.image_id.in_(chunk))
                     .order_by(LOCATIONS.c.id))
            if not show_deleted_locations:
                query = query.where(LOCATIONS.c.deleted == sa.false())
            for loc in connection.execute(query):
                locations[loc.image_id].append({
                    "id": loc.id, "url": loc.value,
                    "metadata": _metadata(loc.meta_data), "status": loc.status})
        images = []
        for row in rows:
            image = {key: row[key] for key in IMAGE_COLUMNS}
            image["properties"] = properties.get(row["id"], {})
            location_data = locations.get(row["id"], [])
            if row["status"] == "deactivated" and not context.is_admin:
                location_data = []
            image["location"] = next((loc["url"] for loc in location_data
                                      if loc["status"] == "active"), None)
            image["location_data"] = location_data
            images.append(image)
        return images

    def _image_dict(self, connection: sa.engine.Connection,
                    context: RequestContext, image_id: str,
                    show_deleted_locations: bool = False) -> dict[str, Any]:
        row = connection.execute(
            sa.select(IMAGES).where(IMAGES.c.id == image_id)).mappings().one()
        return self._image_dicts(connection, context, [row],
                                 show_deleted_locations)[0]

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
            return self._image_dicts(connection, context, [row],
                                     force_show_deleted)[0]

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
            if self._id_taken(connection, image_id):
                raise duplicate
            try:
                connection.execute(sa.insert(IMAGES).values(**row))
            except sa_exc.IntegrityError:
                raise duplicate
            self._set_properties(connection, image_id, properties, False, now)
            if locations is not None:
                self._set_locations(connection, image_id, locations, now)
            return self._image_dict(connection, context, image_id)

    def _id_taken(self, connection: sa.engine.Connection, image_id: str) -> bool:
        for table in (IMAGES, models.purged_image_ids):
            if connection.execute(sa.select(table.c.id).where(
                    table.c.id == image_id)).first() is not None:
                return True
        return False

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
        try:
            with self._writing(context) as connection:
                self._mutable_row(connection, context, image_id)
                statement = sa.update(IMAGES).where(IMAGES.c.id == image_id)
                if from_state is not None:
                    statement = statement.where(IMAGES.c.status == from_state)
                result = connection.execute(statement.values(**changes))
                if result.rowcount != 1:
                    if from_state is not None:
                        raise exception.StatusConflict()
                    raise exception.ImageNotFound()
                self._set_properties(connection, image_id, properties,
                                     purge_props, now)
                if locations is not None:
                    self._set_locations(connection, image_id, locations, now)
                return self._image_dict(connection, context, image_id)
        except sa_exc.IntegrityError as err:
            # Only a concurrent writer on a database without whole-file
            # write locks (a property inserted twice) gets here.
            LOG.info("Concurrent update of image %s: %s", image_id, err)
            raise exception.Conflict(
                f"Image {image_id} was changed concurrently; try again.")

    def _set_properties(self, connection: sa.engine.Connection, image_id: str,
                        properties: Mapping[str, Any], purge: bool,
                        now: datetime.datetime) -> None:
        """Upsert ``properties``, reviving soft-deleted rows of the same name;
        with ``purge`` soft-delete the live ones not given."""
        if not properties and not purge:
            return
        existing = {
            row.name: row for row in connection.execute(
                sa.select(PROPERTIES.c.id, PROPERTIES.c.name,
                          PROPERTIES.c.value, PROPERTIES.c.deleted)
                .where(PROPERTIES.c.image_id == image_id))}
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
                updates.append({"_id": old.id, "value": value,
                                "deleted": False, "deleted_at": None})
        removed = [row.id for name, row in existing.items()
                   if purge and name not in properties and not row.deleted]
        if inserts:
            connection.execute(sa.insert(PROPERTIES), inserts)
        if updates:
            connection.execute(
                sa.update(PROPERTIES)
                .where(PROPERTIES.c.id == sa.bindparam("_id"))
                .values(value=sa.bindparam("value"),
                        deleted=sa.bindparam("deleted"),
                        deleted_at=sa.bindparam("deleted_at"), updated_at=now),
                updates)
        for chunk in _chunks(removed):
            connection.execute(
                sa.update(PROPERTIES).where(PROPERTIES.c.id.in_(chunk))
                .values(deleted=True, deleted_at=now, updated_at=now))

    def _set_locations(self, connection: sa.engine.Connection, image_id: str,
                       locations: Sequence[Mapping[str, Any]],
                       now: datetime.datetime) -> None:
        """Make ``locations`` the image's list; raises NotFound (unknown id)."""
        listed = [loc["id"] for loc in locations if loc["id"] is not None]
        connection.execute(
            sa.update(LOCATIONS)
            .where(LOCATIONS.c.image_id == image_id,
                   LOCATIONS.c.deleted == sa.false(),
                   LOCATIONS.c.id.not_in(listed))
            .values(status="deleted", deleted=True, deleted_at=now,
                    updated_at=now))
        for loc in locations:
            deleted = loc["status"] in DELETED_LOCATION_STATUSES
            row = {"value": loc["url"], "meta_data": json.dumps(loc["metadata"]),
                   "status": loc["status"], "deleted": deleted,
                   "deleted_at": now if deleted else None, "updated_at": now}
            if loc["id"] is None:
                connection.execute(sa.insert(LOCATIONS).values(
                    image_id=image_id, created_at=now, **row))
                continue
            result = connection.execute(
                sa.update(LOCATIONS)
                .where(LOCATIONS.c.id == loc["id"],
                       LOCATIONS.c.image_id == image_id)
                .values(**row))
            if result.rowcount != 1:
                raise exception.NotFound(
                    f"No location found with ID {loc['id']} from image {image_id}")

    def image_destroy(self, context: RequestContext,
                      image_id: str) -> dict[str, Any]:
        """Soft-delete an image and everything hanging off it.

        The status is left alone (glance-api sets it first). Raises
        ImageNotFound, Forbidden, ReadOnly.
        """
        with self._writing(context) as connection:
            self._mutable_row(connection, context, image_id)
            now = utcnow()
            gone = {"deleted": True, "deleted_at": now, "updated_at": now}
            connection.execute(sa.update(IMAGES)
                               .where(IMAGES.c.id == image_id).values(**gone))
            for table in IMAGE_CHILDREN:
                extra = {"status": "deleted"} if table is LOCATIONS else {}
                connection.execute(
                    sa.update(table)
                    .where(table.c.image_id == image_id,
                           table.c.deleted == sa.false())
                    .values(**gone, **extra))
            return self._image_dict(connection, context, image_id)

    # --- listing ----------------------------------------------------------------

    def _visibility(self, context: RequestContext,
                    filters: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
        if context.is_admin and "is_public" in filters:
            is_public = filters["is_public"]
            if is_public is None:
                return []
            if not is_public:
                return [IMAGES.c.is_public == sa.false()]
        # Everyone else, admins included by default, sees public images,
        # their own and those shared with them. Without an owner value
        # nothing is "theirs" or "shared with them".
        branches: list[sa.ColumnElement[bool]] = [IMAGES.c.is_public == sa.true()]
        if context.owner is not None:
            branches.append(IMAGES.c.owner == context.owner)
            branches.append(sa.exists().where(
                MEMBERS.c.image_id == IMAGES.c.id,
                MEMBERS.c.member == context.owner,
                MEMBERS.c.deleted == sa.false()))
        return [sa.or_(*branches)]

    def _filter_conditions(self, filters: Mapping[str, Any]
                           ) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        deleted = filters.get("deleted")
        if deleted is None and "changes-since" not in filters:
            deleted = False
        if deleted is not None:
            conditions.append(IMAGES.c.deleted == bool(deleted))
            if not deleted:
                conditions.append(IMAGES.c.status != "killed")
        for name, value in filters.items():
            if value is None or name in ("deleted", "is_public"):
                continue
            if name == "changes-since":
                conditions.append(IMAGES.c.updated_at > _changes_since(value))
            elif name in ("size_min", "size_max"):
                try:
                    size = int(value)
                except (TypeError, ValueError):
                    raise exception.InvalidFilterRangeValue(
                        f"Bad value passed to filter {name} got {value}")
                conditions.append(IMAGES.c.size >= size if name == "size_min"
                                  else IMAGES.c.size <= size)
            elif name == "protected":
                conditions.append(IMAGES.c.protected == bool(value))
            elif name in INTEGER_FILTERS:
                try:
                    number = int(value)
                except (TypeError, ValueError):
                    raise exception.InvalidParameterValue(
                        f"Bad value passed to filter {name} got {value}")
                conditions.append(IMAGES.c[name] == number)
            elif name in EQUALITY_FILTERS:
                conditions.append(IMAGES.c[name] == value)
            elif name == "properties":
                for prop, prop_value in value.items():
                    if prop_value is not None:
                        prop_value = str(prop_value)
                    conditions.append(sa.exists().where(
                        PROPERTIES.c.image_id == IMAGES.c.id,
                        PROPERTIES.c.name == prop,
                        PROPERTIES.c.value == prop_value,
                        PROPERTIES.c.deleted == sa.false()))
            else:
                raise exception.InvalidParameterValue(
                    f"Unsupported filter: {name}")
        return conditions

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
        conditions = (self._visibility(context, filters)
                      + self._filter_conditions(filters))
        keys = [sort_key] + [key for key in ("created_at", "id")
                             if key != sort_key]
        expressions = [_sort_expression(key) for key in keys]
        query = sa.select(IMAGES).where(*conditions)
        with self._reading() as connection:
            if marker is not None:
                marker_row = self._visible_row(connection, context, marker,
                                               force_show_deleted=showing_deleted)
                marker_values = connection.execute(
                    sa.select(*expressions)
                    .where(IMAGES.c.id == marker_row["id"])).one()
                query = query.where(
                    _after_marker(expressions, marker_values, sort_dir))
            query = query.order_by(*(e.desc() if sort_dir == "desc" else e.asc()
                                     for e in expressions))
            if limit is not None:
                query = query.limit(max(0, int(limit)))
            rows = connection.execute(query).mappings().all()
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
        query = sa.select(MEMBERS).order_by(MEMBERS.c.id)
        if not include_deleted:
            query = query.where(MEMBERS.c.deleted == sa.false())
        if not context.is_admin:
            if context.owner is None:
                return []
            query = query.join(IMAGES, IMAGES.c.id == MEMBERS.c.image_id).where(
                sa.or_(IMAGES.c.owner == context.owner,
                       MEMBERS.c.member == context.owner))
        if image_id is not None:
            query = query.where(MEMBERS.c.image_id == image_id)
        if member is not None:
            query = query.where(MEMBERS.c.member == member)
        with self._reading() as connection:
            return [_member_dict(row)
                    for row in connection.execute(query).mappings()]

    def _member(self, connection: sa.engine.Connection,
                member_id: int) -> dict[str, Any]:
        row = connection.execute(sa.select(MEMBERS).where(
            MEMBERS.c.id == member_id)).mappings().first()
        if row is None:
            raise exception.MemberNotFound()
        return _member_dict(row)

    def image_member_create(self, context: RequestContext,
                            values: Mapping[str, Any]) -> dict[str, Any]:
        """Add a membership row; raises ImageNotFound, Invalid, ReadOnly."""
        if not values.get("image_id") or not values.get("member"):
            raise exception.Invalid("A membership needs image_id and member.")
        now = utcnow()
        row = {"image_id": values["image_id"], "member": values["member"],
               "can_share": bool(values.get("can_share", False)),
               "status": values.get("status") or "pending",
               "created_at": now, "updated_at": now, "deleted_at": None,
               "deleted": False}
        with self._writing(context) as connection:
            exists = connection.execute(sa.select(IMAGES.c.id).where(
                IMAGES.c.id == row["image_id"])).first()
            if exists is None:
                raise exception.ImageNotFound()
            result = connection.execute(sa.insert(MEMBERS).values(**row))
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
            result = connection.execute(
                sa.update(MEMBERS).where(MEMBERS.c.id == member_row_id)
                .values(**changes))
            if result.rowcount != 1:
                raise exception.MemberNotFound()
            return self._member(connection, member_row_id)

    def image_member_delete(self, context: RequestContext,
                            member_row_id: int) -> None:
        """Soft-delete a live membership; raises MemberNotFound, ReadOnly."""
        now = utcnow()
        with self._writing(context) as connection:
            result = connection.execute(
                sa.update(MEMBERS)
                .where(MEMBERS.c.id == member_row_id,
                       MEMBERS.c.deleted == sa.false())
                .values(deleted=True, deleted_at=now, updated_at=now))
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
            rows = connection.execute(
                sa.select(MEMBERS).where(MEMBERS.c.image_id == image_id)
                .order_by(MEMBERS.c.id)).mappings().all()
            # Per member: its live row, else its most recently deleted one.
            chosen: dict[str, Row] = {}
            for row in rows:
                best = chosen.get(row["member"])
                if best is None or best["deleted"]:
                    chosen[row["member"]] = row
            keep = {chosen[m]["id"] for m in wanted if m in chosen}
            for row in rows:
                if not row["deleted"] and row["id"] not in keep:
                    connection.execute(
                        sa.update(MEMBERS).where(MEMBERS.c.id == row["id"])
                        .values(deleted=True, deleted_at=now, updated_at=now))
            for member, can_share in wanted.items():
                current = chosen.get(member)
                if current is None:
                    connection.execute(sa.insert(MEMBERS).values(
                        image_id=image_id, member=member,
                        can_share=bool(can_share), status="pending",
                        created_at=now, updated_at=now, deleted_at=None,
                        deleted=False))
                    continue
                share = current["can_share"] if can_share is None else can_share
                if current["deleted"] or share != current["can_share"]:
                    connection.execute(
                        sa.update(MEMBERS).where(MEMBERS.c.id == current["id"])
                        .values(can_share=share, deleted=False,
                                deleted_at=None, updated_at=now))

    def image_member_count(self, context: RequestContext, image_id: str) -> int:
        """Live memberships of an image."""
        with self._reading() as connection:
            return int(connection.execute(
                sa.select(sa.func.count()).select_from(MEMBERS).where(
                    MEMBERS.c.image_id == image_id,
                    MEMBERS.c.deleted == sa.false())).scalar_one())

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
