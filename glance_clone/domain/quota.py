"""Per-owner storage quota (``user_storage_quota``) and the property quota.

Usage is computed through the registry (glance-api never opens the
database): the owner's images that are neither killed nor deleted, each
counted as size x number of live locations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, unified_limits

UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}
QUOTA_RE = re.compile(r"^(\d+)(B|KB|MB|GB|TB)?$")
PAGE = 500


def parse_storage_quota(raw: str) -> int:
    """Bytes of a quota such as ``0``, ``500MB``; raises ConfigError."""
    match = QUOTA_RE.match(raw.strip())
    if not match:
        raise exception.ConfigError(
            "Invalid user_storage_quota %r: use digits with an optional "
            "B, KB, MB, GB or TB suffix." % raw)
    return int(match.group(1)) * UNITS[match.group(2) or "B"]


def owned_images(registry: Any, context: RequestContext) -> Iterator[dict[str, Any]]:
    """The caller's owner's images that are neither killed nor deleted,
    read page by page through the registry."""
    owner = context.owner
    marker = None
    params: dict[str, Any] = {"limit": PAGE}
    if context.is_admin:
        params["is_public"] = "none"
    while True:
        if marker:
            params["marker"] = marker
        page = registry.get_images_detailed(context, **params)
        if not page:
            return
        for image in page:
            if image.get("owner") != owner:
                continue
            if image["status"] in (image_status.KILLED, image_status.DELETED):
                continue
            yield image
        marker = page[-1]["id"]


def stored_bytes(image: dict[str, Any]) -> int:
    """What an image takes in stores: its size once per live location."""
    live = [loc for loc in image.get("location_data") or []
            if loc.get("status") == "active"]
    return (image.get("size") or 0) * len(live)


def storage_used(registry: Any, context: RequestContext, exclude_id: str | None) -> int:
    """Bytes the caller's owner already keeps in stores."""
    return sum(stored_bytes(image) for image in owned_images(registry, context)
               if image["id"] != exclude_id)


def remaining_storage(conf: Any, registry: Any, context: RequestContext,
                      image_id: str) -> int | None:
    """Bytes the caller may still store, or None when there is no quota."""
    unified_limits.register_opts(conf)
    quota = parse_storage_quota(conf.user_storage_quota)
    if quota == 0 or conf.use_keystone_limits:
        # With Keystone's limits, user_storage_quota is not used.
        return None
    return max(0, quota - storage_used(registry, context, image_id))


def check_property_count(conf: Any, count: int) -> None:
    """Raises ImagePropertyLimitExceeded past ``image_property_quota``."""
    limit = conf.image_property_quota
    if limit >= 0 and count > limit:
        raise exception.ImagePropertyLimitExceeded(attempted=count, maximum=limit)
