"""What a project uses against its quotas, as ``GET /v2/info/usage`` shows.

Newer Glance reports this only with Keystone unified limits; this project
has no unified limits, so the figures are counted from the images the
registry holds and the limits are the ones the deployer configured:

- ``image_size_total``: MiB kept in stores (an image's size once per live
  location, as ``user_storage_quota`` counts), limit ``user_storage_quota``
  in MiB;
- ``image_stage_total``: MiB of images with data staged or being copied
  (status uploading or importing, or an import still writing stores);
- ``image_count_total``: images that are neither killed nor deleted;
- ``image_count_uploading``: images receiving data (saving, uploading,
  importing, or an import still writing stores).

Sizes are whole MiB rounded down, as newer Glance counts them. A limit of
-1 means none: this project has no quota on image counts or staged bytes,
and ``user_storage_quota = 0`` means no storage quota.
"""

from __future__ import annotations

from typing import Any

from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, quota, reserved

MIB = 1024 ** 2
UNLIMITED = -1
RECEIVING = frozenset((image_status.SAVING, image_status.UPLOADING, image_status.IMPORTING))
STAGED = frozenset((image_status.UPLOADING, image_status.IMPORTING))


def _copying(image: dict[str, Any]) -> bool:
    """An import (copy-image among them) is still writing stores."""
    return bool((image.get("properties") or {}).get(reserved.IMPORTING_TO))


def project_usage(conf: Any, registry: Any, context: RequestContext) -> dict[str, Any]:
    """``{quota name: {"usage": n, "limit": n}}`` for the caller's project."""
    stored = staged = count = receiving = 0
    for image in quota.owned_images(registry, context):
        count += 1
        stored += quota.stored_bytes(image)
        if image["status"] in STAGED or _copying(image):
            staged += image.get("size") or 0
        if image["status"] in RECEIVING or _copying(image):
            receiving += 1
    storage_quota = quota.parse_storage_quota(conf.user_storage_quota)
    return {
        "image_size_total": {"usage": stored // MIB,
                             "limit": storage_quota // MIB if storage_quota else UNLIMITED},
        "image_stage_total": {"usage": staged // MIB, "limit": UNLIMITED},
        "image_count_total": {"usage": count, "limit": UNLIMITED},
        "image_count_uploading": {"usage": receiving, "limit": UNLIMITED},
    }
