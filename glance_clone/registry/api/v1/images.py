"""Registry v1 image resource: list, show, create, update, delete.

The controller parses and validates what arrives over HTTP, calls the
database layer and shapes the answer. Visibility and mutability rules live
in the database layer; errors are our exceptions, mapped to statuses by
``common/faults.py``.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Mapping
from typing import Any

from oslo_config import cfg

from glance_clone.common import exception, wsgi
from glance_clone.common.context import RequestContext
from glance_clone.common.timeutil import naive_utc
from glance_clone.db.api import (
    LOCATION_STATUSES,
    MAX_INT,
    STATUSES,
    VISIBILITIES,
    Database,
)

# The v1 sort keys: fewer than the database layer can sort by.
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size",
             "id", "created_at", "updated_at")
SORT_DIRS = ("asc", "desc")
BRIEF_KEYS = ("id", "name", "size", "disk_format", "container_format",
              "checksum")
FULL_KEYS = ("id", "name", "status", "size", "virtual_size", "disk_format",
             "container_format", "checksum", "min_disk", "min_ram",
             "is_public", "protected", "owner", "created_at", "updated_at",
             "deleted_at", "deleted", "properties",
             # Beyond Glance's v1 registry: what the v2 API needs.
             "visibility", "os_hidden", "os_hash_algo", "os_hash_value", "tags")
TIMESTAMP_KEYS = ("created_at", "updated_at", "deleted_at")
TAG_LENGTH = 255
EQUALITY_FILTERS = ("name", "status", "container_format", "disk_format")
INT_FILTERS = ("min_ram", "min_disk", "size_min", "size_max")
MAX_BIGINT = 2 ** 63 - 1    # BIGINT columns (size, virtual_size)
IMAGE_ID_LENGTH = 36
PURGE_HEADER = "X-Glance-Registry-Purge-Props"
# Our extension: a delete that applies only while the image still has this
# status, and sets it to deleted (one transaction instead of two calls).
FROM_STATE_HEADER = "X-Glance-Registry-From-State"
# With it, the status that image gets instead of deleted: pending_delete
# leaves its data, and its locations, to the scrubber.
TO_STATE_HEADER = "X-Glance-Registry-To-State"
_INTEGER = re.compile(r"[+-]?[0-9]+")


# --- request helpers --------------------------------------------------------

def path_text(value: str) -> str:
    """A routing variable as text: WSGI paths arrive latin-1 decoded."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise exception.Invalid("Request path is not valid UTF-8") from None


def query_params(req: wsgi.Request) -> dict[str, str]:
    """The query string as a dict (last value wins); raises Invalid."""
    try:
        return dict(req.GET.items())
    except UnicodeDecodeError:
        raise exception.Invalid("Query string is not valid UTF-8") from None


def get_visible_image(db: Database, context: RequestContext,
                      image_id: str) -> dict[str, Any]:
    """The image if the caller may see it; raises ImageNotFound."""
    if len(image_id) > IMAGE_ID_LENGTH:
        raise exception.ImageNotFound()
    try:
        return db.image_get(context, image_id)
    except exception.Forbidden:
        # The registry never tells an outsider that an image exists.
        raise exception.ImageNotFound() from None


def check_writable(context: RequestContext) -> None:
    """Raises ReadOnly for read-only (anonymous) callers."""
    if context.read_only:
        raise exception.ReadOnly()


# --- query parameters (listing) --------------------------------------------

def _bool_param(value: str, true: tuple[str, ...], false: tuple[str, ...],
                message: str) -> bool:
    lowered = value.strip().lower()
    if lowered in true:
        return True
    if lowered in false:
        return False
    raise exception.Invalid(message)


def _limit(params: Mapping[str, str], conf: cfg.ConfigOpts) -> int:
    raw = params.get("limit")
    if raw is None:
        limit = int(conf.limit_param_default)
    elif not _INTEGER.fullmatch(raw.strip()):
        raise exception.Invalid("limit param must be an integer")
    else:
        limit = int(raw)
    if limit < 0:
        raise exception.Invalid("limit param must be positive")
    return min(int(conf.api_limit_max), limit)


def _marker(params: Mapping[str, str]) -> str | None:
    marker = params.get("marker")
    if marker is None:
        return None
    try:
        uuid.UUID(marker)
    except ValueError:
        raise exception.Invalid("Invalid marker format") from None
    return marker


def _sort(params: Mapping[str, str]) -> tuple[str, str]:
    sort_key = params.get("sort_key", "created_at")
    if sort_key not in SORT_KEYS:
        raise exception.Invalid("Unsupported sort_key. Acceptable values: %s"
                                % ", ".join(SORT_KEYS))
    sort_dir = params.get("sort_dir", "desc")
    if sort_dir not in SORT_DIRS:
        raise exception.Invalid("Unsupported sort_dir. Acceptable values: %s"
                                % ", ".join(SORT_DIRS))
    return sort_key, sort_dir


def _changes_since(value: str) -> datetime.datetime:
    """ISO 8601 to naive UTC; a time without a zone is taken as UTC."""
    try:
        return naive_utc(value.strip())
    except (ValueError, OverflowError):
        raise exception.Invalid("Unrecognized changes-since value") from None


def _filters(params: Mapping[str, str], is_admin: bool) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    properties = {}
    for name, value in params.items():
        if name in EQUALITY_FILTERS:
            filters[name] = value
        elif name in INT_FILTERS:
            number = int(value) if _INTEGER.fullmatch(value.strip()) else -1
            if not 0 <= number <= MAX_BIGINT:
                raise exception.Invalid(
                    "Bad value passed to filter %s got %s" % (name, value))
            filters[name] = number
        elif name.startswith("property-"):
            properties[name[len("property-"):]] = value
    if properties:
        filters["properties"] = properties
    if "changes-since" in params:
        filters["changes-since"] = _changes_since(params["changes-since"])
    if "protected" in params:
        filters["protected"] = _bool_param(
            params["protected"], ("true", "1"), ("false", "0"),
            "protected must be True, or False")
    if is_admin and "is_public" in params:
        if params["is_public"].strip().lower() == "none":
            filters["is_public"] = None
        else:
            filters["is_public"] = _bool_param(
                params["is_public"], ("true", "1"), ("false", "0"),
                "is_public must be None, True, or False")
    if is_admin and "deleted" in params:
        filters["deleted"] = _bool_param(
            params["deleted"], ("1", "t", "true", "on", "y", "yes"),
            ("0", "f", "false", "off", "n", "no"),
            "deleted must be True, or False")
    elif "changes-since" not in filters:
        filters["deleted"] = False
    return filters


def list_params(req: wsgi.Request, conf: cfg.ConfigOpts) -> dict[str, Any]:
    """Keyword arguments of ``image_get_all`` from the query; raises Invalid."""
    params = query_params(req)
    sort_key, sort_dir = _sort(params)
    return {"filters": _filters(params, req.context.is_admin),
            "marker": _marker(params), "limit": _limit(params, conf),
            "sort_key": sort_key, "sort_dir": sort_dir}


# --- request bodies (create, update) ---------------------------------------

def check_text(label: str, value: str) -> None:
    """Raises Invalid for text no database column can hold.

    4-byte characters break MySQL's utf8 columns; lone surrogates (legal in
    JSON escapes) cannot be encoded at all. ``value`` is never echoed, so
    the error message itself stays encodable.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise exception.Invalid("%s is not valid UTF-8 text" % label) from None
    if any(ord(char) > 0xFFFF for char in value):
        raise exception.Invalid(
            "%s contains 4-byte UTF-8 characters, which are not supported"
            % label)


def _string(field: str, value: Any, max_length: int | None = None,
            label: str | None = None) -> str | None:
    label = label or "'%s'" % field
    if value is None:
        return None
    if not isinstance(value, str):
        raise exception.Invalid("%s must be a string or null" % label)
    check_text(label, value)
    if max_length is not None and len(value) > max_length:
        raise exception.Invalid("%s is too long: at most %d characters"
                                % (label, max_length))
    return value


def _integer(field: str, value: Any, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.Invalid("'%s' must be an integer" % field)
    if value < 0:
        raise exception.Invalid("'%s' must not be negative" % field)
    if value > maximum:
        raise exception.Invalid("'%s' value out of range, must not exceed %d"
                                % (field, maximum))
    return value


def _boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise exception.Invalid("'%s' must be true or false" % field)
    return value


def _choice(value: Any, choices: tuple[str, ...], message: str) -> str:
    if isinstance(value, str):
        check_text("the value", value)
    if value not in choices:
        raise exception.Invalid(message % (value,))
    return str(value)


def _status(field: str, value: Any) -> str:
    return _choice(value, STATUSES, "Invalid image status '%s' for image.")


def _tags(field: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise exception.Invalid("'tags' must be a list")
    for tag in value:
        if _string(field, tag, TAG_LENGTH, label="a tag") in (None, ""):
            raise exception.Invalid("a tag must be a non-empty string")
    return list(value)


def _properties(field: str, value: Any) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise exception.Invalid("'%s' must be an object" % field)
    for name, prop_value in value.items():
        _string(field, name, 255, label="a property name")
        _string(field, prop_value, label="property '%s'" % name)
    return dict(value)


def _property_names(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise exception.Invalid("'%s' must be a list of property names" % field)
    return [str(_string(field, name, 255, label="a property name")) for name in value]


def _location(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        raise exception.Invalid(
            "each 'location_data' entry must be an object with a 'url'")
    check_text("a location url", entry["url"])
    location: dict[str, Any] = {"url": entry["url"]}
    if entry.get("id") is not None:
        location["id"] = _integer("location id", entry["id"], MAX_BIGINT)
    metadata = entry.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise exception.Invalid("location 'metadata' must be an object")
    _check_nested_text("location metadata", metadata)
    location["metadata"] = metadata
    if "status" in entry:
        location["status"] = _choice(entry["status"], LOCATION_STATUSES,
                                     "Invalid location status '%s'")
    return location


def _location_data(field: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise exception.Invalid("'location_data' must be a list")
    return [_location(entry) for entry in value]


def _check_nested_text(label: str, value: Any) -> None:
    if isinstance(value, str):
        check_text(label, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_nested_text(label, key)
            _check_nested_text(label, item)
    elif isinstance(value, list):
        for item in value:
            _check_nested_text(label, item)


_FIELDS: dict[str, Any] = {
    "name": lambda f, v: _string(f, v, 255),
    "disk_format": lambda f, v: _string(f, v, 20),
    "container_format": lambda f, v: _string(f, v, 20),
    "checksum": lambda f, v: _string(f, v, 32),
    "owner": lambda f, v: _string(f, v, 255),
    "location": lambda f, v: _string(f, v),
    "status": _status,
    "size": lambda f, v: _integer(f, v, MAX_BIGINT),
    "virtual_size": lambda f, v: _integer(f, v, MAX_BIGINT),
    # null stands for the column default, 0
    "min_disk": lambda f, v: _integer(f, v, MAX_INT),
    "min_ram": lambda f, v: _integer(f, v, MAX_INT),
    "is_public": _boolean,
    "visibility": lambda f, v: _choice(v, VISIBILITIES,
                                       "Invalid visibility '%s' for image."),
    "protected": _boolean,
    "os_hidden": _boolean,
    "os_hash_algo": lambda f, v: _string(f, v, 64),
    "os_hash_value": lambda f, v: _string(f, v, 128),
    "tags": _tags,
    "properties": _properties,
    "location_data": _location_data,
}


def image_values(image: Mapping[str, Any]) -> dict[str, Any]:
    """The known, validated fields of an image body; raises Invalid.

    Anything else is dropped, including id (handled by create) and the
    timestamps and deleted flag, which only the database layer sets.
    """
    return {field: check(field, image[field])
            for field, check in _FIELDS.items() if field in image}


def image_object(body: Any) -> dict[str, Any]:
    """The ``image`` object of a request body; raises Invalid."""
    if not isinstance(body, dict) or not isinstance(body.get("image"), dict):
        raise exception.Invalid(
            'The request body must be a JSON object with an "image" object')
    image: dict[str, Any] = body["image"]
    return image


def _is_canonical_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


# --- responses ----------------------------------------------------------------

def _timestamp(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        # isoformat: the same text as "%Y-%m-%dT%H:%M:%S.%f" (naive UTC), in
        # a fraction of strftime's time (lists render three per image).
        return value.isoformat(timespec="microseconds")
    return value


def brief_view(image: Mapping[str, Any]) -> dict[str, Any]:
    return {key: image.get(key) for key in BRIEF_KEYS}


def full_view(image: Mapping[str, Any]) -> dict[str, Any]:
    """The registry's image object, timestamps as strings.

    The database layer already decided which locations the caller may see
    (none of a deactivated image for non-admins; deleted ones only when
    deleted rows were asked for).
    """
    view = {key: image.get(key) for key in FULL_KEYS}
    for key in TIMESTAMP_KEYS:
        view[key] = _timestamp(view[key])
    view["properties"] = dict(image.get("properties") or {})
    view["tags"] = list(image.get("tags") or [])
    view["location"] = image.get("location")
    view["location_data"] = [
        {"id": loc.get("id"), "url": loc.get("url"),
         "metadata": loc.get("metadata") or {}, "status": loc.get("status")}
        for loc in image.get("location_data") or []]
    return view


class Controller:
    """Handlers of /images and /images/{id}."""

    def __init__(self, conf: cfg.ConfigOpts, db: Database) -> None:
        self.conf = conf
        self.db = db

    def _images(self, req: wsgi.Request) -> list[dict[str, Any]]:
        params = list_params(req, self.conf)
        try:
            return self.db.image_get_all(req.context, **params)
        except exception.NotFound:
            raise exception.Invalid(
                "Invalid marker. Image could not be found.") from None

    def index(self, req: wsgi.Request) -> dict[str, Any]:
        """Brief list of the images the caller may see; raises Invalid."""
        return {"images": [brief_view(i) for i in self._images(req)]}

    def detail(self, req: wsgi.Request) -> dict[str, Any]:
        """Full list of the images the caller may see; raises Invalid."""
        return {"images": [full_view(i) for i in self._images(req)]}

    def show(self, req: wsgi.Request, id: str) -> dict[str, Any]:
        """One image; raises ImageNotFound."""
        image = get_visible_image(self.db, req.context, path_text(id))
        return {"image": full_view(image)}

    def create(self, req: wsgi.Request, body: Any = None) -> dict[str, Any]:
        """Register a new image; raises Invalid, Duplicate, Forbidden."""
        context = req.context
        check_writable(context)
        data = image_object(body)
        image_id = data.get("id")
        if image_id is not None and not _is_canonical_uuid(image_id):
            raise exception.Invalid("Invalid image id format")
        try:
            values = image_values(data)
            values.setdefault("status", "active")
            if not context.is_admin or "owner" not in values:
                values["owner"] = context.owner
            if image_id is not None:
                values["id"] = image_id
            image = self.db.image_create(context, values)
        except exception.Duplicate as err:
            if image_id is None:
                raise
            raise exception.Duplicate(
                "Image with identifier %s already exists!" % image_id) from err
        except exception.Invalid as err:
            raise exception.Invalid(
                "Failed to add image metadata. Got error: %s" % err) from None
        return {"image": full_view(image)}

    def update(self, req: wsgi.Request, id: str,
               body: Any = None) -> dict[str, Any]:
        """Change an image; raises Invalid, ImageNotFound, Forbidden,
        StatusConflict."""
        context = req.context
        check_writable(context)
        image_id = path_text(id)
        if len(image_id) > IMAGE_ID_LENGTH:
            raise exception.ImageNotFound()
        data = image_object(body)
        try:
            values = image_values(data)
            from_state = _string("from_state", body.get("from_state"))
            # Our extension: a compare-and-swap on named properties, and
            # properties removed by name (see the database layer).
            properties_from = (None if body.get("properties_from") is None
                               else _properties("properties_from",
                                                body["properties_from"]))
            remove = _property_names("remove_properties", body.get("remove_properties"))
        except exception.Invalid as err:
            raise exception.Invalid(
                "Failed to update image metadata. Got error: %s" % err) from None
        if not context.is_admin:
            values.pop("owner", None)
        purge = req.headers.get(PURGE_HEADER) == "true"
        try:
            image = self.db.image_update(context, image_id, values,
                                         purge_props=purge,
                                         from_state=from_state,
                                         properties_from=properties_from,
                                         remove_properties=remove)
        except exception.Invalid as err:
            raise exception.Invalid(
                "Failed to update image metadata. Got error: %s" % err) from None
        return {"image": full_view(image)}

    def delete(self, req: wsgi.Request, id: str) -> dict[str, Any]:
        """Soft-delete an image; raises ImageNotFound, Forbidden,
        StatusConflict (``X-Glance-Registry-From-State`` no longer true),
        Invalid (a ``X-Glance-Registry-To-State`` other than deleted or
        pending_delete, or without a from-state)."""
        context = req.context
        check_writable(context)
        image_id = path_text(id)
        if len(image_id) > IMAGE_ID_LENGTH:
            raise exception.ImageNotFound()
        from_state = req.headers.get(FROM_STATE_HEADER) or None
        to_state = req.headers.get(TO_STATE_HEADER) or "deleted"
        image = self.db.image_destroy(context, image_id, from_state=from_state,
                                      to_state=to_state)
        return {"image": full_view(image)}


def create_resource(conf: cfg.ConfigOpts, db: Database) -> wsgi.Resource:
    return wsgi.Resource(Controller(conf, db))
