"""Options of the image cache, read by glance-api and the cache tools."""

from __future__ import annotations

from oslo_config import cfg

from glance_clone.common import config

OPTS = [
    cfg.StrOpt("image_cache_dir",
               help="Directory of the local image cache. It must exist: "
                    "glance-api serves uncached (and logs why) when it is "
                    "unset, missing or not writable."),
    cfg.StrOpt("image_cache_driver", default="sqlite",
               help="Where per-image cache records live: sqlite (a database "
                    "file in the cache directory) or xattr (extended "
                    "attributes of the cached files; needs user xattrs). An "
                    "unknown name falls back to sqlite."),
    cfg.StrOpt("image_cache_sqlite_db", default="cache.db",
               help="Database file of the sqlite driver, relative to "
                    "image_cache_dir."),
    cfg.IntOpt("image_cache_max_size", default=10737418240, min=0,
               help="Bytes glance-cache-pruner shrinks the cache to. The "
                    "cache may grow beyond this between pruner runs."),
    cfg.IntOpt("image_cache_stall_time", default=86400, min=0,
               help="Seconds after which glance-cache-cleaner removes an "
                    "incomplete file nobody is writing."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(None, list(OPTS))]
