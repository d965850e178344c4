"""Who may download an image's data, and opening it: the one set of
download rules of the v1 and v2 APIs and the image cache filter.

A v2 download may prefer stores (``?prefer=fast,cheap``, newer Glance):
with named stores (``enabled_backends``) the image's copies in those
stores are read first, in that order, then the others. Without named
stores, or naming a store that is not configured, it is a 400; the
``download_from_store`` policy may refuse it (403). The checks come in
that order: stores first, before the image is read, the policy after
``download_image``.

Whatever the order, a copy whose store cannot be read (missing data,
store down) gives way to the next one; the last one's error is the
answer when none can be read.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from typing import Any

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status
from glance_clone.domain.entity import Image
from glance_clone.domain.store_copy import store_of

LOG = logging.getLogger(__name__)


def preferred_stores(store_ids: Collection[str], prefer: str | None) -> list[str]:
    """The stores a download's ``prefer`` value names, in order (empty when
    it is None); ``store_ids`` are the named stores (empty: none are
    configured). Raises Invalid."""
    if prefer is None:
        return []
    if not store_ids:
        raise exception.Invalid("'prefer' needs several stores (enabled_backends); "
                                "none are configured")
    named = list(dict.fromkeys(s.strip() for s in prefer.split(",") if s.strip()))
    if not named:
        raise exception.Invalid("'prefer' must name stores, separated by commas")
    unknown = [s for s in named if s not in store_ids]
    if unknown:
        raise exception.Invalid("Unknown store %s in 'prefer'; stores: %s"
                                % (", ".join(unknown), ", ".join(store_ids)))
    return named


def check_downloadable(policy: Any, context: RequestContext, record: dict,
                       admin_reads_deactivated: bool = False,
                       require_active: bool = True, prefers: bool = False) -> None:
    """Raises Forbidden (deactivated; v2 lets admins through), the
    ``download_image`` policy's refusal, then (a download that ``prefers``
    stores) ``download_from_store``'s, NotFound (not active, when required).

    The policy is asked before the status: a 403 wins over the 404.
    """
    if record["status"] == image_status.DEACTIVATED and not (
            admin_reads_deactivated and context.is_admin):
        raise exception.Forbidden("Image %s is deactivated: its data cannot be "
                                  "downloaded." % record["id"])
    target = Image(record).policy_target()
    policy.enforce(context, "download_image", target)
    if prefers:
        policy.enforce(context, "download_from_store", target)
    if require_active and record["status"] != image_status.ACTIVE:
        raise exception.NotFound("Image %s is not active" % record["id"])


def open_data(stores: Any, record: dict, part: tuple[int, int] | None = None,
              prefer: Collection[str] = ()) -> tuple[Iterator[bytes], int]:
    """The data of an image with data, all of it or the (offset, length)
    ``part``: chunks and their size, read from the first copy that opens
    (those in the ``prefer`` stores first). Raises NotFound (no location)
    and the last store's error. A part is asked of the store (a seek, a
    Range request)."""
    error: exception.GlanceError | None = None
    for location in _locations(stores, record, prefer):
        try:
            if part is not None:
                return stores.get_range(location, *part), part[1]
            chunks, size = stores.get(location)
        except exception.GlanceError as err:
            LOG.warning("Image %s could not be read at one of its locations: %s",
                        record["id"], err)
            error = err
            continue
        return chunks, size or record.get("size") or 0
    if error is not None:
        raise error
    raise exception.NotFound("Image %s has no data" % record["id"])


def _locations(stores: Any, record: dict, prefer: Collection[str]) -> list[str]:
    """The image's location URLs in the order to try them: those in the
    ``prefer`` stores (in that order), then the others as recorded."""
    live = Image(record).live_locations()
    if not live:
        return [record["location"]] if record.get("location") else []
    if not prefer:
        return [loc["url"] for loc in live]
    held = [(store_of(stores, loc), loc["url"]) for loc in live]
    rank = {store_id: position for position, store_id in enumerate(prefer)}
    # sorted() is stable: within a rank (and among the others) the
    # recorded order stays.
    held.sort(key=lambda pair: rank.get(pair[0] or "", len(rank)))
    return [url for _store, url in held]
