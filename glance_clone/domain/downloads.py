"""Who may download an image's data, and opening it: the one set of
download rules of the v1 and v2 APIs and the image cache filter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status
from glance_clone.domain.entity import Image


def check_downloadable(policy: Any, context: RequestContext, record: dict,
                       admin_reads_deactivated: bool = False,
                       require_active: bool = True) -> None:
    """Raises Forbidden (deactivated; v2 lets admins through), the
    ``download_image`` policy's refusal, NotFound (not active, when
    required).

    The policy is asked before the status: a 403 wins over the 404.
    """
    if record["status"] == image_status.DEACTIVATED and not (
            admin_reads_deactivated and context.is_admin):
        raise exception.Forbidden("Image %s is deactivated: its data cannot be "
                                  "downloaded." % record["id"])
    policy.enforce(context, "download_image", Image(record).policy_target())
    if require_active and record["status"] != image_status.ACTIVE:
        raise exception.NotFound("Image %s is not active" % record["id"])


def open_data(stores: Any, record: dict,
              part: tuple[int, int] | None = None) -> tuple[Iterator[bytes], int]:
    """The data of an image with data, all of it or the (offset, length)
    ``part``: chunks and their size; raises NotFound (no location) and the
    store's errors. A part is asked of the store (a seek, a Range request)."""
    location = record.get("location") or next(
        (loc["url"] for loc in Image(record).live_locations()), None)
    if not location:
        raise exception.NotFound("Image %s has no data" % record["id"])
    if part is not None:
        return stores.get_range(location, *part), part[1]
    chunks, size = stores.get(location)
    return chunks, size or record.get("size") or 0
