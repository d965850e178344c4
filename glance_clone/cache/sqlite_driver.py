"""Cache records in a sqlite database inside the cache directory.

The table is Glance's, so an existing ``cache.db`` keeps working::

    cached_images(image_id TEXT PRIMARY KEY, last_accessed REAL,
                  last_modified REAL, size INTEGER, hits INTEGER, checksum TEXT)

plus ``inode``, ``ctime``, ``hash_algo`` and ``hash_value`` (the
multihash) columns, added to an existing table on first use (Glance
ignores them).

Each call opens its own short-lived connection: api workers, the pruner and
the prefetcher use the file at the same time, and sqlite's busy timeout
serialises their (tiny) transactions.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

from glance_clone.cache.driver import CacheDriver, CacheEntry
from glance_clone.cache.layout import CacheDirUnusable
from glance_clone.common.hashing import Multihash

BUSY_TIMEOUT = 30.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS cached_images (
    image_id TEXT PRIMARY KEY,
    last_accessed REAL DEFAULT 0.0,
    last_modified REAL DEFAULT 0.0,
    size INTEGER DEFAULT 0,
    hits INTEGER DEFAULT 0,
    checksum TEXT,
    inode INTEGER,
    ctime REAL,
    hash_algo TEXT,
    hash_value TEXT
)
"""
COLUMNS = ("image_id, size, checksum, last_accessed, last_modified, hits, inode, ctime, "
           "hash_algo, hash_value")
ADDED_COLUMNS = (("inode", "INTEGER"), ("ctime", "REAL"), ("hash_algo", "TEXT"),
                 ("hash_value", "TEXT"))


class SqliteDriver(CacheDriver):
    name = "sqlite"

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.layout.db_path, timeout=BUSY_TIMEOUT,
                               isolation_level=None, check_same_thread=False)
        try:
            yield conn
        finally:
            conn.close()

    def check(self) -> None:
        try:
            with self._db() as db:
                db.execute(SCHEMA)
                columns = [row[1] for row in db.execute("PRAGMA table_info(cached_images)")]
                for name, kind in ADDED_COLUMNS:
                    if name not in columns:
                        db.execute("ALTER TABLE cached_images ADD COLUMN %s %s"
                                   % (name, kind))
        except sqlite3.Error as err:
            raise CacheDirUnusable("cannot use the cache database %s: %s"
                                   % (self.layout.db_path, err))

    def record_cached(self, image_id: str, fd: int, size: int, checksum: str,
                      mtime: float, now: float, multihash: Multihash | None = None) -> None:
        algorithm, value = multihash or (None, None)
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO cached_images (image_id, last_accessed, "
                       "last_modified, size, hits, checksum, inode, ctime, hash_algo, "
                       "hash_value) VALUES (?, ?, ?, ?, 0, ?, ?, NULL, ?, ?)",
                       (image_id, now, mtime, size, checksum, os.fstat(fd).st_ino,
                        algorithm, value))

    def record_identity(self, image_id: str, fd: int) -> None:
        st = os.fstat(fd)
        with self._db() as db:
            db.execute("UPDATE cached_images SET ctime = ? WHERE image_id = ? AND inode = ?",
                       (st.st_ctime, image_id, st.st_ino))

    def get_entry(self, image_id: str, fd: int | None = None) -> CacheEntry | None:
        with self._db() as db:
            row = db.execute("SELECT %s FROM cached_images WHERE image_id = ?" % COLUMNS,
                             (image_id,)).fetchone()
        return _entry(row) if row else None

    def entries(self) -> dict[str, CacheEntry]:
        with self._db() as db:
            rows = db.execute("SELECT %s FROM cached_images" % COLUMNS).fetchall()
        return {row[0]: _entry(row) for row in rows}

    def record_hit(self, image_id: str, fd: int, now: float) -> None:
        with self._db() as db:
            db.execute("UPDATE cached_images SET hits = hits + 1, last_accessed = ? "
                       "WHERE image_id = ?", (now, image_id))

    def forget(self, image_id: str, last_modified: float | None = None) -> None:
        with self._db() as db:
            if last_modified is None:
                db.execute("DELETE FROM cached_images WHERE image_id = ?", (image_id,))
            else:
                db.execute("DELETE FROM cached_images WHERE image_id = ? AND "
                           "last_modified = ?", (image_id, last_modified))

    def known_ids(self) -> list[str]:
        with self._db() as db:
            return [row[0] for row in db.execute("SELECT image_id FROM cached_images")]


def _entry(row: tuple[Any, ...]) -> CacheEntry:
    (image_id, size, checksum, last_accessed, last_modified, hits, inode, ctime,
     hash_algo, hash_value) = row
    return CacheEntry(image_id=image_id, size=int(size or 0), checksum=checksum or None,
                      last_accessed=float(last_accessed or 0.0),
                      last_modified=float(last_modified or 0.0), hits=int(hits or 0),
                      inode=int(inode) if inode is not None else None,
                      ctime=float(ctime) if ctime is not None else None,
                      multihash=(hash_algo, hash_value) if hash_algo and hash_value
                      else None)
