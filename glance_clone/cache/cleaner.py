"""glance-cache-cleaner's logic: re-verify cached files, remove invalid and
stalled ones.

Every complete file is hashed again and compared with the checksum it was
admitted with; one that no longer matches is moved to ``invalid/`` (hits
only check the file's identity, not its bytes). Then everything in
``invalid/`` goes. A file in ``incomplete/`` goes when its
mtime is older than ``image_cache_stall_time`` *and* nobody holds its lock:
a fill that is alive (however slow its client) keeps its file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time

from glance_clone.cache import layout
from glance_clone.cache.image_cache import ImageCache

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class CleanResult:
    verified: int = 0
    corrupt: int = 0
    invalid_removed: int = 0
    stalled_removed: int = 0
    busy_skipped: int = 0


def clean(cache: ImageCache, stall_time: int, now: float | None = None) -> CleanResult:
    result = CleanResult()
    result.verified, result.corrupt = cache.verify_cached()
    for name, _st in cache.layout.files_in("invalid"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(cache.layout.subdir("invalid"), name))
            result.invalid_removed += 1
    cutoff = (time.time() if now is None else now) - stall_time
    incomplete_dir = cache.layout.subdir("incomplete")
    for name, st in cache.layout.files_in("incomplete"):
        if st.st_mtime > cutoff:
            continue
        path = os.path.join(incomplete_dir, name)
        fd = layout.open_locked(path, create=False)
        if fd is None:
            if os.path.exists(path):
                result.busy_skipped += 1
                LOG.info("Incomplete image %s is old but still being written; kept", name)
            continue
        try:
            os.unlink(path)
            result.stalled_removed += 1
            LOG.info("Removed stalled incomplete image %s", name)
        finally:
            os.close(fd)
    LOG.info("Verified %d cached files (%d corrupt); removed %d invalid and %d "
             "stalled incomplete cache files", result.verified, result.corrupt,
             result.invalid_removed, result.stalled_removed)
    return result
