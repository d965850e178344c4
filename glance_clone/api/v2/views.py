"""Images and members as v2 shows them."""

from __future__ import annotations

import datetime
from typing import Any

from glance_clone.domain import reserved
from glance_clone.domain.entity import Image

BASE_FIELDS = ("id", "name", "status", "visibility", "protected", "os_hidden",
               "checksum", "os_hash_algo", "os_hash_value", "owner", "size",
               "virtual_size", "container_format", "disk_format", "min_ram",
               "min_disk")


def timestamp(value: Any) -> Any:
    """ISO 8601 UTC with a Z and no fraction, from the registry's text."""
    if not isinstance(value, str):
        return value
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", ""))
    except ValueError:
        return value
    # isoformat rather than strftime: the same text, faster (lists).
    return when.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def image_view(image: Image) -> dict[str, Any]:
    record = image.record
    view: dict[str, Any] = {}
    # Additional properties first, so a legacy property named like a base
    # attribute can never hide the attribute.
    for name, value in reserved.shown(record.get("properties") or {}).items():
        # v1 could store null values; v2 properties are strings.
        view[name] = "" if value is None else value
    for name in BASE_FIELDS:
        view[name] = record.get(name)
    view["visibility"] = image.visibility
    view["os_hidden"] = bool(record.get("os_hidden"))
    view["protected"] = bool(record.get("protected"))
    view["min_ram"] = record.get("min_ram") or 0
    view["min_disk"] = record.get("min_disk") or 0
    view["tags"] = image.tags
    stores = image.store_ids()
    if stores:
        view["stores"] = ",".join(stores)
    if image.shown_locations is not None:
        view["locations"] = image.shown_locations
    if image.shown_direct_url is not None:
        view["direct_url"] = image.shown_direct_url
    view["created_at"] = timestamp(record.get("created_at"))
    view["updated_at"] = timestamp(record.get("updated_at"))
    view["self"] = "/v2/images/%s" % image.id
    view["file"] = "/v2/images/%s/file" % image.id
    view["schema"] = "/v2/schemas/image"
    return view


def member_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"member_id": row["member_id"], "image_id": row["image_id"],
            "status": row["status"], "created_at": timestamp(row.get("created_at")),
            "updated_at": timestamp(row.get("updated_at")),
            "schema": "/v2/schemas/member"}
