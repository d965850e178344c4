"""glance-cache-pruner's logic: shrink the cache to image_cache_max_size.

Least recently accessed images go first (never-hit ones by admission
time). Safe to run from cron while the api serves: a download in progress
keeps its open file after the name is removed, and fills in progress live
in ``incomplete/``, which the pruner never touches. A second pruner started
while one runs (``.pruner.lock``) does nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from glance_clone.cache import layout
from glance_clone.cache.image_cache import ImageCache

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class PruneResult:
    ran: bool = True
    size_before: int = 0
    size_after: int = 0
    removed: int = 0
    bytes_removed: int = 0


def prune(cache: ImageCache, max_size: int) -> PruneResult:
    """Remove LRU images until the cache holds at most ``max_size`` bytes."""
    lock_path = os.path.join(cache.layout.base, layout.PRUNER_LOCK)
    with layout.held_lock(lock_path) as held:
        if not held:
            LOG.info("Another glance-cache-pruner is running; leaving it the work")
            return PruneResult(ran=False)
        return _prune_locked(cache, max_size)


def _prune_locked(cache: ImageCache, max_size: int) -> PruneResult:
    cache.forget_orphan_records()
    total = cache.cache_size()
    result = PruneResult(size_before=total, size_after=total)
    if total <= max_size:
        LOG.info("Image cache holds %d bytes of %d allowed; nothing to prune",
                 total, max_size)
        return result
    files = dict(cache.layout.complete_files())
    entries = sorted(cache.list_cached(),
                     key=lambda e: (e.last_accessed, e.last_modified, e.image_id))
    for entry in entries:
        if total <= max_size:
            break
        st = files.get(entry.image_id)
        if st is None:
            continue
        if cache.delete_cached(entry.image_id, expected=st):
            total -= st.st_size
            result.removed += 1
            result.bytes_removed += st.st_size
            LOG.info("Pruned image %s (%d bytes, last accessed %s)",
                     entry.image_id, st.st_size, entry.last_accessed or "never")
    result.size_after = cache.cache_size()
    LOG.info("Pruned %d images; image cache now holds %d bytes of %d allowed",
             result.removed, result.size_after, max_size)
    return result
