"""Single images: get, create, update (properties and locations) and destroy."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.db import models
from glance_clone.db.base import (
    DELETED_LOCATION_STATUSES,
    IMAGE_CHILDREN,
    IMAGES,
    LOCATION_STATUSES,
    LOCATIONS,
    LOG,
    MAX_BIGINT,
    MAX_ID_LENGTH,
    MAX_INT,
    PROPERTIES,
    STATUSES,
    TAGS,
    VISIBILITIES,
    DatabaseBase,
    _chunks,
    _image,
    _in,
    _integer,
    _location,
    utcnow,
)

# Columns a caller may set; the timestamps and the deleted flag are ours.
WRITABLE_COLUMNS = ("name", "disk_format", "container_format", "size",
                    "virtual_size", "status", "visibility", "checksum",
                    "min_disk", "min_ram", "owner", "protected", "os_hidden",
                    "os_hash_algo", "os_hash_value")
TAG_LENGTH = 255


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
        elif name in ("protected", "os_hidden"):
            value = bool(value)
        elif name == "visibility" and value not in VISIBILITIES:
            raise exception.Invalid(f"Invalid visibility '{value}'")
        elif name == "owner":
            value = value or None
        row[name] = value
    return row


def _visibility(values: Mapping[str, Any], current: str | None) -> str | None:
    """The visibility to store from a v1 ``is_public`` (``visibility``
    itself wins when both are given), None to leave it alone.

    v1 knows public and "not public"; the latter is ``shared``, as any v1
    image can have members. Making a public image non-public through v1
    makes it shared; a private or community image stays as it is.
    """
    if "visibility" in values or "is_public" not in values:
        return None
    if values["is_public"]:
        return "public"
    if current is None or current == "public":
        return "shared"
    return None


def _tags(values: dict[str, Any]) -> list[str] | None:
    """Pop ``tags``: the set to store (first-seen order), None when absent;
    raises Invalid."""
    tags = values.pop("tags", None)
    if tags is None:
        return None
    if not isinstance(tags, (list, tuple)):
        raise exception.Invalid("'tags' must be a list")
    unique: dict[str, None] = {}
    for tag in tags:
        if not isinstance(tag, str) or not tag or len(tag) > TAG_LENGTH:
            raise exception.Invalid(
                f"Each tag must be a string of 1 to {TAG_LENGTH} characters")
        unique[tag] = None
    return list(unique)


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


# An id is taken while an image row has it or once ``db purge`` removed it.
_ID_TAKEN = sa.union_all(
    sa.select(IMAGES.c.id).where(IMAGES.c.id == sa.bindparam("id")),
    sa.select(models.purged_image_ids.c.id).where(
        models.purged_image_ids.c.id == sa.bindparam("id")))

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


_INSERT_TAG = sa.insert(TAGS)
_LIVE_TAGS_OF = (sa.select(TAGS.c.id, TAGS.c.value)
                 .where(TAGS.c.image_id == sa.bindparam("image_id"),
                        TAGS.c.deleted == sa.false())
                 .order_by(TAGS.c.id))
_DELETE_TAGS = (sa.update(TAGS)
                .where(TAGS.c.id.in_(_in("_ids")))
                .values(deleted=True, deleted_at=sa.bindparam("_now"),
                        updated_at=sa.bindparam("_now")))

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
            **({"status": sa.bindparam("_location_status")}
               if table is LOCATIONS else {}))
    for table in IMAGE_CHILDREN)
# What image_destroy may leave as the image's status: deleted, or
# pending_delete when the scrubber is to remove the data later.
DESTROYED_STATUSES = ("deleted", "pending_delete")


class ImageQueries(DatabaseBase):
    """Reads and writes of one image."""

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
        tags = _tags(values) or []
        image_id = values.get("id") or str(uuid.uuid4())
        if not isinstance(image_id, str) or len(image_id) > MAX_ID_LENGTH:
            raise exception.Invalid("Invalid image id format")
        row = _column_values(values)
        row.setdefault("status", "active")
        row.setdefault("visibility", _visibility(values, None) or "shared")
        for name, default in (("min_disk", 0), ("min_ram", 0),
                              ("protected", False), ("os_hidden", False)):
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
            self._set_tags(connection, image_id, tags, now, new_image=True)
            return self._one_image(connection, context, stored,
                                   properties=stored_properties,
                                   locations=stored_locations, tags=tags)

    def image_update(self, context: RequestContext, image_id: str,
                     values: Mapping[str, Any], purge_props: bool = False,
                     from_state: str | None = None,
                     properties_from: Mapping[str, str | None] | None = None,
                     remove_properties: Sequence[str] = ()) -> dict[str, Any]:
        """Change an image, its properties and locations, all or nothing.

        With ``from_state`` the row changes only while its status is that
        value, and with ``properties_from`` only while each property named
        there has that value (None: the image has no such property): a
        compare-and-swap on those properties alone, so that a writer
        removing some (``remove_properties``, by name) never undoes a
        concurrent change of the others, as a purge would. Raises
        ImageNotFound, Forbidden, StatusConflict, Invalid, NotFound
        (unknown location id), ReadOnly.
        """
        values = dict(values)
        properties = values.pop("properties", None) or {}
        locations = _requested_locations(values)
        tags = _tags(values)
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
                current = self._mutable_row(connection, context, image_id)
                visibility = _visibility(values, current["visibility"])
                if visibility is not None:
                    params["visibility"] = visibility
                row = self._update_image(connection, params)
                if row is None:
                    if from_state is not None:
                        raise exception.StatusConflict()
                    raise exception.ImageNotFound()
                # The row is this transaction's now (the update above locks
                # it): its properties cannot change until the commit.
                if properties_from and not self._properties_are(
                        connection, image_id, properties_from):
                    raise exception.StatusConflict()
                self._set_properties(connection, image_id, properties,
                                     purge_props, now, remove_properties)
                stored_locations = None
                if locations is not None:
                    stored_locations = self._set_locations(
                        connection, image_id, locations, now)
                if tags is not None:
                    self._set_tags(connection, image_id, tags, now)
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

    def _properties_are(self, connection: sa.engine.Connection, image_id: str,
                        expected: Mapping[str, str | None]) -> bool:
        """Whether each property in ``expected`` has that value (None: absent)."""
        live = {row.name: row.value for row in connection.execute(
            _PROPERTY_ROWS_OF, {"image_id": image_id}) if not row.deleted}
        return all(live.get(name) == value for name, value in expected.items())

    def _set_properties(self, connection: sa.engine.Connection, image_id: str,
                        properties: Mapping[str, Any], purge: bool,
                        now: datetime.datetime, remove: Sequence[str] = ()) -> None:
        """Upsert ``properties``, reviving soft-deleted rows of the same name;
        soft-delete the live ones named in ``remove``, or with ``purge``
        all the live ones not given."""
        if not properties and not purge and not remove:
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
                   if (name in remove or purge) and name not in properties
                   and not row.deleted]
        if inserts:
            connection.execute(_INSERT_PROPERTY, inserts)
        if updates:
            connection.execute(_UPDATE_PROPERTY, updates)
        for chunk in _chunks(removed):
            connection.execute(_DELETE_PROPERTIES, {"_ids": chunk, "_now": now})

    def _set_tags(self, connection: sa.engine.Connection, image_id: str,
                  tags: Sequence[str], now: datetime.datetime,
                  new_image: bool = False) -> None:
        """Make ``tags`` (distinct) the image's live tags."""
        existing: dict[str, int] = {}
        if not new_image:
            for tag_id, value in connection.execute(
                    _LIVE_TAGS_OF, {"image_id": image_id}):
                existing[value] = tag_id
        removed = [tag_id for value, tag_id in existing.items()
                   if value not in tags]
        for chunk in _chunks(removed):
            connection.execute(_DELETE_TAGS, {"_ids": chunk, "_now": now})
        added = [{"image_id": image_id, "value": tag, "created_at": now,
                  "updated_at": now, "deleted_at": None, "deleted": False}
                 for tag in tags if tag not in existing]
        if added:
            connection.execute(_INSERT_TAG, added)

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
                      from_state: str | None = None,
                      to_state: str = "deleted") -> dict[str, Any]:
        """Soft-delete an image and everything hanging off it.

        The status is left alone (glance-api sets it first), unless
        ``from_state`` is given: then the image is deleted only while its
        status is that value, and its status becomes ``to_state`` in the
        same transaction: ``deleted``, or ``pending_delete`` to leave the
        data to the scrubber (its live locations become ``pending_delete``
        too instead of ``deleted``). Raises ImageNotFound, Forbidden,
        ReadOnly, StatusConflict, Invalid (``to_state``).
        """
        if to_state not in DESTROYED_STATUSES or (
                to_state != "deleted" and from_state is None):
            raise exception.Invalid("A deleted image's status must be deleted, or "
                                    "pending_delete from a given status.")
        with self._writing(context) as connection:
            self._mutable_row(connection, context, image_id)
            now = utcnow()
            params = {"_id": image_id, "deleted": True, "deleted_at": now,
                      "updated_at": now}
            if from_state is not None:
                params.update(_from=from_state, status=to_state)
            row = self._update_image(connection, params)
            if row is None:
                if from_state is not None:
                    raise exception.StatusConflict()
                raise exception.ImageNotFound()
            for statement in _DELETE_CHILDREN:
                connection.execute(statement, {"_image_id": image_id, "_now": now,
                                               "_location_status": to_state})
            # No property or location is live any more: nothing to read.
            return _image(context, row, {}, [], [])

