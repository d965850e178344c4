"""glance-cache-prefetcher's logic: fetch the queued images into the cache.

Each id in ``queue/`` is looked up in the registry as admin (the identity
glance-cache.conf names with ``admin_user``, ``admin_tenant_name`` and
``admin_role``, sent with ``send_identity_headers`` to a trusted-auth
registry). Absent images
lose their queue marker (they will never arrive); images that are not
``active`` yet keep it for a later run. Data is read from the image's
location through the store drivers and written like an api miss: into
``incomplete/`` under its lock, verified against the image's checksum and
multihash,
then admitted (which removes the marker). An image some other process is
filling is skipped and stays queued until it is complete.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
from typing import Any

from glance_clone.cache.fill import Role
from glance_clone.cache.image_cache import ImageCache
from glance_clone.common import exception
from glance_clone.common.context import RequestContext, admin_context
from glance_clone.common.hashing import recorded_multihash

LOG = logging.getLogger(__name__)

DEFAULT_WORKERS = 4
ACTIVE = "active"


@dataclasses.dataclass
class PrefetchResult:
    fetched: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)


class Prefetcher:
    def __init__(self, cache: ImageCache, registry: Any, stores: Any,
                 context: RequestContext | None = None,
                 workers: int = DEFAULT_WORKERS) -> None:
        self.cache = cache
        self.registry = registry
        self.stores = stores
        self.context = context or admin_context()
        self.workers = max(1, workers)

    def run(self) -> PrefetchResult:
        """Fetch every queued image, a few at a time."""
        queued = self.cache.list_queued()
        result = PrefetchResult()
        if not queued:
            LOG.info("No images queued for prefetching")
            return result
        LOG.info("Prefetching %d queued images", len(queued))
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            outcomes = list(pool.map(self._fetch_logged, queued))
        for image_id, outcome in zip(queued, outcomes, strict=True):
            getattr(result, outcome).append(image_id)
        LOG.info("Prefetched %d images, skipped %d, failed %d",
                 len(result.fetched), len(result.skipped), len(result.failed))
        return result

    def _fetch_logged(self, image_id: str) -> str:
        try:
            return self.fetch(image_id)
        except Exception:
            LOG.exception("Prefetching image %s failed", image_id)
            return "failed"

    def fetch(self, image_id: str) -> str:
        """Cache one image; returns 'fetched', 'skipped' or 'failed'."""
        if self.cache.is_cached(image_id):
            self.cache.delete_queued(image_id)
            return "skipped"
        try:
            image = self.registry.get_image(self.context, image_id)
        except exception.NotFound:
            LOG.warning("Image %s is queued but does not exist; dequeued", image_id)
            self.cache.delete_queued(image_id)
            return "skipped"
        if image.get("status") != ACTIVE:
            LOG.warning("Image %s is %s, not active; left queued",
                        image_id, image.get("status"))
            return "skipped"
        size = image.get("size") or 0
        if not size or not image.get("location"):
            LOG.info("Image %s has no data to cache; dequeued", image_id)
            self.cache.delete_queued(image_id)
            return "skipped"
        fill, ours = self.cache.claim(image_id)
        if not ours or fill.acquire(follow=False) is not Role.WRITER:
            return "skipped"
        try:
            chunks, _store_size = self.stores.get(image["location"])
        except BaseException:
            fill.release()
            raise
        reader = fill.start(chunks, size, image.get("checksum"),
                            multihash=recorded_multihash(image))
        if reader is None:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            return "skipped"
        try:
            for _chunk in reader:
                pass
        except exception.GlanceError as err:
            LOG.warning("Prefetching image %s failed: %s", image_id, err)
            return "failed"
        finally:
            reader.close()
        if not self.cache.is_cached(image_id):
            return "failed"
        LOG.info("Prefetched image %s (%d bytes)", image_id, size)
        return "fetched"
