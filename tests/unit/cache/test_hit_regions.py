"""Cache hits handed to the WSGI server as file regions (sent by sendfile):
the identity check still comes before the last chunk."""

from __future__ import annotations

import os
import pathlib

import pytest

from glance_clone.cache.fill import CacheFillError
from glance_clone.cache.image_cache import CachedFile, ImageCache
from glance_clone.common.data_out import FileRegion
from tests.unit.cache.conftest import CHUNK, DATA, Upstream, cache_conf, read_all, start

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def driver_name() -> str:
    """Regions need a recorded ctime: the sqlite driver's."""
    return "sqlite"


def cached(cache: ImageCache) -> CachedFile:
    read_all(start(cache, Upstream()))
    hit = cache.open_cached("img")
    assert hit is not None
    return hit


def test_all_but_the_last_chunk_go_as_one_region(cache: ImageCache) -> None:
    reader = cached(cache).reader()
    assert reader.allow_regions()
    region, last = list(reader)
    assert isinstance(region, FileRegion)
    assert (region.offset, region.length) == (0, len(DATA) - CHUNK)
    assert os.pread(region.fd, region.length, 0) + last == DATA
    reader.close()
    assert cache.list_cached()[0].hits == 1


def test_a_part_goes_as_a_region_and_its_last_chunk(cache: ImageCache) -> None:
    reader = cached(cache).reader((10, 3 * CHUNK))
    assert reader.allow_regions()
    region, last = list(reader)
    assert (region.offset, region.length) == (10, 2 * CHUNK)
    assert last == DATA[10 + 2 * CHUNK:10 + 3 * CHUNK]
    reader.close()


def test_a_hashed_hit_passes_bytes_only(cache_dir: pathlib.Path) -> None:
    # Without a ctime (xattr) the hit is hashed as it streams.
    cache = ImageCache(cache_conf(cache_dir, image_cache_driver="xattr"))
    reader = cached(cache).reader()
    assert not reader.allow_regions()
    assert b"".join(reader) == DATA
    reader.close()


def test_a_file_altered_while_its_region_goes_out_never_completes(cache: ImageCache) -> None:
    path = pathlib.Path(cache.layout.complete("img"))
    reader = cached(cache).reader()
    assert reader.allow_regions()
    assert isinstance(next(reader), FileRegion)
    st = path.stat()
    with open(path, "r+b") as handle:
        handle.write(b"X" * 10)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CacheFillError, match="altered"):
        next(reader)
    reader.close()
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]


def test_a_region_cut_short_by_truncation_invalidates_the_file(cache: ImageCache) -> None:
    reader = cached(cache).reader()
    assert reader.allow_regions()
    region = next(reader)
    assert isinstance(region, FileRegion)
    os.truncate(cache.layout.complete("img"), CHUNK)
    error = region.short(CHUNK)     # what the server raises
    assert isinstance(error, CacheFillError) and "altered" in str(error)
    reader.close()
    assert not cache.is_cached("img")
    assert os.listdir(cache.layout.subdir("invalid")) == ["img"]
