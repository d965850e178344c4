"""The two record drivers behind one interface, and the directory layout."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import sqlite3

import pytest

from glance_clone.cache import layout
from glance_clone.cache.image_cache import ImageCache
from glance_clone.cache.layout import CacheDirUnusable, CacheLayout
from glance_clone.common import exception
from tests.unit.cache.conftest import cache_conf

pytestmark = pytest.mark.timeout(30)


def _incomplete_file(cache: ImageCache, image_id: str, data: bytes) -> int:
    path = cache.layout.incomplete(image_id)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    os.write(fd, data)
    return fd


def test_record_then_read_back(cache: ImageCache) -> None:
    fd = _incomplete_file(cache, "img1", b"abc")
    st = os.fstat(fd)
    cache.driver.record_cached("img1", fd, 3, "900150983cd24fb0d6963f7d28e17f72",
                               st.st_mtime, 1000.5)
    os.rename(cache.layout.incomplete("img1"), cache.layout.complete("img1"))
    entry = cache.driver.get_entry("img1", fd)
    assert entry is not None
    assert (entry.size, entry.checksum, entry.hits) == (3, "900150983cd24fb0d6963f7d28e17f72", 0)
    assert entry.last_accessed == 1000.5
    assert entry.last_modified == st.st_mtime
    cache.driver.record_hit("img1", fd, 2000.0)
    cache.driver.record_hit("img1", fd, 3000.0)
    os.close(fd)
    entry = cache.driver.get_entry("img1")
    assert entry is not None and entry.hits == 2 and entry.last_accessed == 3000.0
    assert [e.image_id for e in cache.list_cached()] == ["img1"]
    assert cache.list_cached()[0].as_dict() == {
        "image_id": "img1", "hits": 2, "last_accessed": 3000.0,
        "last_modified": st.st_mtime, "size": 3}


def test_open_cached_validates_size_and_mtime(cache: ImageCache) -> None:
    fd = _incomplete_file(cache, "img2", b"12345")
    assert cache.admit("img2", fd, 5, "827ccb0eea8a706c4c34a16891f84e7b")
    os.close(fd)
    hit = cache.open_cached("img2")
    assert hit is not None and hit.size == 5
    hit.close()
    path = pathlib.Path(cache.layout.complete("img2"))
    path.write_bytes(b"123456")
    assert cache.open_cached("img2") is None
    assert not path.exists()
    assert os.listdir(cache.layout.subdir("invalid")) == ["img2"]


def test_file_without_record_is_not_served(cache: ImageCache) -> None:
    pathlib.Path(cache.layout.complete("stray")).write_bytes(b"data")
    assert cache.open_cached("stray") is None
    assert not cache.is_cached("stray")


def test_sqlite_db_is_not_an_image(cache_dir: pathlib.Path) -> None:
    cache = ImageCache(cache_conf(cache_dir))
    (cache_dir / ".pruner.lock").write_bytes(b"")
    assert cache.layout.complete_files() == []
    assert (cache_dir / "cache.db").exists()


def test_xattr_refuses_filesystem_without_user_xattrs(
        cache_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_xattrs(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", no_xattrs)
    with pytest.raises(exception.ConfigError) as err:
        ImageCache(cache_conf(cache_dir, image_cache_driver="xattr"))
    assert "does not support them" in str(err.value)
    assert "image_cache_driver = sqlite" in str(err.value)
    assert not isinstance(err.value, CacheDirUnusable)


def test_unknown_driver_falls_back_to_sqlite(cache_dir: pathlib.Path) -> None:
    cache = ImageCache(cache_conf(cache_dir, image_cache_driver="memcached"))
    assert cache.driver.name == "sqlite"


def test_missing_directory_is_not_created(tmp_path: pathlib.Path) -> None:
    with pytest.raises(CacheDirUnusable, match="does not exist"):
        ImageCache(cache_conf(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_unwritable_directory(cache_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: (
        False if str(path) == str(cache_dir) and mode & os.W_OK else real_access(path, mode)))
    with pytest.raises(CacheDirUnusable, match="not writable"):
        ImageCache(cache_conf(cache_dir))


def test_unset_directory() -> None:
    conf = cache_conf(pathlib.Path("unused"))
    conf.clear_override("image_cache_dir")
    with pytest.raises(CacheDirUnusable, match="image_cache_dir is not set"):
        ImageCache(conf)


@pytest.mark.parametrize("image_id", ["../etc", ".hidden", "a/b", "", "x" * 300])
def test_ids_that_cannot_be_file_names(image_id: str) -> None:
    assert not layout.valid_image_id(image_id)
    with pytest.raises(exception.Invalid):
        CacheLayout("/nonexistent").complete(image_id)


def test_queue_order_and_removal(cache: ImageCache) -> None:
    for index, image_id in enumerate(["b", "a", "c"]):
        assert cache.queue(image_id)
        os.utime(cache.layout.queued(image_id), (1000 + index, 1000 + index))
    assert not cache.queue("a")
    assert cache.list_queued() == ["b", "a", "c"]
    assert cache.delete_queued("a")
    assert not cache.delete_queued("a")
    assert cache.delete_all_queued() == 2
    assert cache.list_queued() == []


def test_cached_image_is_not_queued(cache: ImageCache) -> None:
    fd = _incomplete_file(cache, "done", b"x")
    assert cache.admit("done", fd, 1, "9dd4e461268c8034f5c8564e155c67a6")
    os.close(fd)
    assert not cache.queue("done")
    assert cache.list_queued() == []


def test_lock_is_exclusive_between_opens(cache: ImageCache) -> None:
    path = cache.layout.incomplete("locked")
    first = layout.open_locked(path)
    assert first is not None
    assert layout.open_locked(path) is None
    os.close(first)
    second = layout.open_locked(path)
    assert second is not None
    os.close(second)


def test_a_glance_cache_db_gets_our_columns(cache_dir: pathlib.Path) -> None:
    with contextlib.closing(sqlite3.connect(cache_dir / "cache.db")) as db:
        db.execute("CREATE TABLE cached_images (image_id TEXT PRIMARY KEY, "
                   "last_accessed REAL DEFAULT 0.0, last_modified REAL DEFAULT 0.0, "
                   "size INTEGER DEFAULT 0, hits INTEGER DEFAULT 0, checksum TEXT)")
        db.execute("INSERT INTO cached_images VALUES ('old', 1.0, 2.0, 3, 4, 'c')")
        db.commit()
    cache = ImageCache(cache_conf(cache_dir))
    old = cache.driver.get_entry("old")
    assert old is not None and (old.hits, old.inode, old.ctime, old.multihash) == (
        4, None, None, None)
    fd = _incomplete_file(cache, "new", b"abc")
    cache.driver.record_cached("new", fd, 3, "c", 5.0, 6.0, ("sha256", "ab" * 32))
    os.close(fd)
    new = cache.driver.get_entry("new")
    assert new is not None and new.multihash == ("sha256", "ab" * 32)
