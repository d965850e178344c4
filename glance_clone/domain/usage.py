"""What a project uses against its quotas, as ``GET /v2/info/usage`` shows.

The figures are counted from the images the registry holds. With
``use_keystone_limits`` the limits are Keystone's unified limits (see
``unified_limits``); without, they are the ones the deployer configured
(newer Glance then shows nothing; we show the usage all the same):

- ``image_size_total``: MiB kept in stores (an image's size once per live
  location, as ``user_storage_quota`` counts), limit ``user_storage_quota``
  in MiB;
- ``image_stage_total``: MiB of images with data staged or being copied
  (status uploading or importing, or an import still writing stores);
- ``image_count_total``: images that are neither killed nor deleted;
- ``image_count_uploading``: images receiving data (saving, uploading,
  importing, or an import still writing stores).

Sizes are whole MiB rounded down, as newer Glance counts them. A limit of
-1 means none: without Keystone's limits there is no quota on image counts
or staged bytes, and ``user_storage_quota = 0`` means no storage quota.
"""

from __future__ import annotations

from typing import Any

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, quota, reserved, unified_limits

MIB = 1024 ** 2
UNLIMITED = -1
RECEIVING = frozenset((image_status.SAVING, image_status.UPLOADING, image_status.IMPORTING))
STAGED = frozenset((image_status.UPLOADING, image_status.IMPORTING))


def mib_of(size: int) -> int:
    """A size about to be added, as a quota delta: whole MiB rounded up, so
    that data admitted by a check cannot take usage past its limit."""
    return -(-size // MIB)


def _copying(image: dict[str, Any]) -> bool:
    """An import (copy-image among them) is still writing stores."""
    return bool((image.get("properties") or {}).get(reserved.IMPORTING_TO))


def project_counts(registry: Any, context: RequestContext) -> dict[str, int]:
    """The caller's project's usage of each quota (sizes in whole MiB)."""
    stored = staged = count = receiving = 0
    for image in quota.owned_images(registry, context):
        count += 1
        stored += quota.stored_bytes(image)
        if image["status"] in STAGED or _copying(image):
            staged += image.get("size") or 0
        if image["status"] in RECEIVING or _copying(image):
            receiving += 1
    return {unified_limits.IMAGE_SIZE_TOTAL: stored // MIB,
            unified_limits.IMAGE_STAGE_TOTAL: staged // MIB,
            unified_limits.IMAGE_COUNT_TOTAL: count,
            unified_limits.IMAGE_COUNT_UPLOADING: receiving}


def configured_limits(conf: Any) -> dict[str, int]:
    """The limits without Keystone's: ``user_storage_quota`` for the
    stored size, none for the rest."""
    storage_quota = quota.parse_storage_quota(conf.user_storage_quota)
    limits = dict.fromkeys(unified_limits.QUOTAS, UNLIMITED)
    if storage_quota:
        limits[unified_limits.IMAGE_SIZE_TOTAL] = storage_quota // MIB
    return limits


def project_usage(conf: Any, registry: Any, context: RequestContext) -> dict[str, Any]:
    """``{quota name: {"usage": n, "limit": n}}`` for the caller's project."""
    limits = None
    if context.owner:
        limits = unified_limits.limits_for(conf, context.owner)
    if limits is None:
        limits = configured_limits(conf)
    counts = project_counts(registry, context)
    return {name: {"usage": counts[name], "limit": limits[name]}
            for name in unified_limits.QUOTAS}


def enforce(conf: Any, registry: Any, context: RequestContext,
            deltas: dict[str, int]) -> None:
    """Raises ProjectQuotaExceeded (413) when ``deltas`` would take the
    caller's project over one of its Keystone limits (see
    ``unified_limits`` for where each is checked); does nothing when the
    deployment does not use them."""
    if not context.owner:
        return   # the unauthenticated pipeline's operator has no project
    limits = unified_limits.limits_for(conf, context.owner)
    if limits is None:
        return
    counts = project_counts(registry, context)
    for name, delta in deltas.items():
        if counts[name] + delta > limits[name]:
            raise exception.ProjectQuotaExceeded(
                resource=name, limit=limits[name], usage=counts[name], delta=delta)
