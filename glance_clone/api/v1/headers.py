"""Image metadata in ``x-image-meta-*`` headers, both ways.

Requests: ``parse_image_meta`` turns the headers of a POST or PUT into an
image dict and validates every value (400 with the message Glance users
know). Responses: ``image_meta_headers`` renders an image as headers for
HEAD and GET.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any

from glance_clone.common import exception
from glance_clone.domain import reserved

META_PREFIX = "x-image-meta-"
PROPERTY_PREFIX = "x-image-meta-property-"

ALLOWED_FIELDS = frozenset((
    "location", "size", "is_public", "disk_format", "container_format", "name",
    "status", "copy_from", "uri", "checksum", "created_at", "updated_at",
    "deleted_at", "min_ram", "min_disk", "owner", "store", "id", "protected",
    "deleted", "virtual_size"))
INT_FIELDS = ("size", "min_disk", "min_ram")
BOOL_FIELDS = ("is_public", "protected", "deleted")
# Accepted for compatibility but never written: Glance passed them on with
# no useful effect, and timestamps as strings would corrupt the record.
IGNORED_FIELDS = frozenset(("copy_from", "uri", "created_at", "updated_at",
                            "deleted_at", "deleted"))
TRUE_WORDS = frozenset(("1", "t", "true", "on", "y", "yes"))
AMAZON_FORMATS = frozenset(("aki", "ari", "ami"))
INTEGER_RE = re.compile(r"[+-]?[0-9]+")

RESPONSE_FIELDS = ("id", "name", "status", "size", "virtual_size", "disk_format",
                   "container_format", "checksum", "min_disk", "min_ram",
                   "is_public", "protected", "owner", "created_at", "updated_at",
                   "deleted_at", "deleted")


def bool_from_string(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS


def _int_value(field: str, raw: str) -> int:
    # Python's int() also takes "1_000" and non-ASCII digits; clients mean
    # plain decimal numbers.
    if not INTEGER_RE.fullmatch(raw):
        raise exception.Invalid(
            "Invalid value '%s' for parameter '%s': Cannot convert image %s "
            "'%s' to an integer." % (raw, field, field, raw))
    value = int(raw)
    if value < 0:
        raise exception.Invalid(
            "Invalid value '%s' for parameter '%s': Cannot be a negative value."
            % (raw, field))
    return value


def _from_wire(value: str) -> str:
    """WSGI hands header bytes over as latin-1 text; clients send UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _to_wire(value: str) -> str:
    """The inverse of _from_wire: UTF-8 bytes as latin-1 text for WSGI."""
    return value.encode("utf-8").decode("latin-1")


def parse_image_meta(headers: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Image fields and ``properties`` from request headers; raises Invalid."""
    meta: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for name, value in headers:
        key = name.lower()
        if not key.startswith(META_PREFIX):
            continue
        value = _from_wire(value).strip()
        if key.startswith(PROPERTY_PREFIX):
            prop = key[len(PROPERTY_PREFIX):].replace("-", "_")
            properties[prop] = value or None
            continue
        field = key[len(META_PREFIX):].replace("-", "_")
        if field not in ALLOWED_FIELDS:
            raise exception.Invalid("Bad header: %s" % name)
        meta[field] = _field_value(field, value)
    for field in IGNORED_FIELDS:
        meta.pop(field, None)
    validate_image_meta(meta)
    meta["properties"] = properties
    return meta


def _field_value(field: str, value: str) -> Any:
    # Booleans first: an empty one is false like any other non-true word,
    # never a null the registry would refuse.
    if field in BOOL_FIELDS:
        return bool_from_string(value)
    if value == "":
        return None
    if field in INT_FIELDS:
        return _int_value(field, value)
    if field == "virtual_size":
        return None if value == "None" else _int_value(field, value)
    return value


def validate_image_meta(meta: dict[str, Any], formats: Any = None) -> None:
    """Length and format rules that need no configuration."""
    name = meta.get("name")
    if name is not None and len(name) > 255:
        raise exception.Invalid("Image name too long: %d" % len(name))
    checksum = meta.get("checksum")
    if checksum is not None and len(checksum) > 32:
        raise exception.Invalid(
            "Invalid checksum '%s': can't exceed 32 characters" % checksum)


def validate_formats(meta: dict[str, Any], disk_formats: Iterable[str],
                     container_formats: Iterable[str]) -> None:
    """Format rules of model.md section 2, applied to the headers given."""
    if "disk_format" in meta and meta["disk_format"] not in disk_formats:
        raise exception.Invalid(
            "Invalid disk format '%s' for image." % meta["disk_format"])
    if "container_format" in meta and meta["container_format"] not in container_formats:
        raise exception.Invalid(
            "Invalid container format '%s' for image." % meta["container_format"])
    disk, container = meta.get("disk_format"), meta.get("container_format")
    if disk in AMAZON_FORMATS or container in AMAZON_FORMATS:
        if "disk_format" not in meta:
            meta["disk_format"] = container
        elif "container_format" not in meta:
            meta["container_format"] = disk
        elif disk != container:
            raise exception.Invalid(
                "Invalid mix of disk and container formats. When setting a disk "
                "or container format to one of 'aki', 'ari', or 'ami', the "
                "container and disk formats must match.")


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return str(value)


def image_meta_headers(image: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Response headers for an image (non-null fields and properties)."""
    headers = []
    for field in RESPONSE_FIELDS:
        value = image.get(field)
        if value is not None:
            headers.append((META_PREFIX + field, _to_wire(_header_value(value))))
    for prop, value in reserved.shown(image.get("properties") or {}).items():
        if value is not None:
            headers.append((PROPERTY_PREFIX + prop.lower(), _to_wire(_header_value(value))))
    if image.get("checksum"):
        headers.append(("ETag", image["checksum"]))
    return headers
