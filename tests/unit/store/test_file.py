"""Tests for the filesystem store driver."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import stat
from collections.abc import Iterator

import pytest
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.data_out import FileRegion
from glance_clone.store import file as file_store
from glance_clone.store.base import CHUNK_SIZE
from glance_clone.store.file import FileDriver
from tests.unit.store.conftest import make_conf

pytestmark = pytest.mark.timeout(30)

IMAGE_ID = "0b3a8d56-6a4c-4a5e-9a4a-1d2e3f4a5b6c"


class CapExceeded(Exception):
    """Stands in for the caller's size-cap error raised mid-stream."""


def chunks_of(data: bytes, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def entries(datadir: pathlib.Path) -> list[str]:
    return sorted(os.listdir(datadir))


@pytest.fixture
def driver(conf: cfg.ConfigOpts) -> FileDriver:
    return FileDriver(conf)


# --- startup ------------------------------------------------------------------
def test_datadir_created_at_startup(driver: FileDriver, datadir: pathlib.Path) -> None:
    assert datadir.is_dir()
    assert driver.datadir == str(datadir)


def test_datadir_required() -> None:
    with pytest.raises(exception.ConfigError):
        FileDriver(make_conf())


def test_datadir_that_is_a_file_is_a_config_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    conf = make_conf(glance_store={"filesystem_store_datadir": str(tmp_path / "f")})
    with pytest.raises(exception.ConfigError):
        FileDriver(conf)


@pytest.mark.parametrize("perm", [648, 99999, -1])
def test_bad_file_perm_is_a_config_error(conf: cfg.ConfigOpts, perm: int) -> None:
    conf.set_override("filesystem_store_file_perm", perm, "glance_store")
    with pytest.raises(exception.ConfigError):
        FileDriver(conf)


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_bad_metadata_file_is_a_config_error(conf: cfg.ConfigOpts, tmp_path: pathlib.Path,
                                             content: str) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text(content)
    conf.set_override("filesystem_store_metadata_file", str(meta), "glance_store")
    with pytest.raises(exception.ConfigError):
        FileDriver(conf)


def test_missing_metadata_file_is_a_config_error(conf: cfg.ConfigOpts,
                                                 tmp_path: pathlib.Path) -> None:
    conf.set_override("filesystem_store_metadata_file", str(tmp_path / "nope"), "glance_store")
    with pytest.raises(exception.ConfigError):
        FileDriver(conf)


# --- add ----------------------------------------------------------------------
def test_add_streams_and_reports(driver: FileDriver, datadir: pathlib.Path) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 17)
    url, size, md5, meta = driver.add(IMAGE_ID, chunks_of(data, 4096), len(data))
    assert url == f"file://{datadir}/{IMAGE_ID}"
    assert size == len(data)
    assert md5 == hashlib.md5(data).hexdigest()
    assert meta == {}
    assert (datadir / IMAGE_ID).read_bytes() == data
    assert entries(datadir) == [IMAGE_ID]


def test_add_unknown_size_and_empty_image(driver: FileDriver, datadir: pathlib.Path) -> None:
    url, size, md5, _meta = driver.add(IMAGE_ID, iter([]), 0)
    assert size == 0
    assert md5 == hashlib.md5(b"").hexdigest()
    assert (datadir / IMAGE_ID).read_bytes() == b""


def test_add_returns_metadata_file_contents(conf: cfg.ConfigOpts, tmp_path: pathlib.Path) -> None:
    meta = {"id": "nfs1", "mountpoint": "/mnt/images"}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    conf.set_override("filesystem_store_metadata_file", str(tmp_path / "meta.json"),
                      "glance_store")
    driver = FileDriver(conf)
    returned = driver.add(IMAGE_ID, iter([b"x"]), 1)[3]
    assert returned == meta
    returned["id"] = "changed"  # callers may mutate their copy
    assert driver.add("other", iter([b"x"]), 1)[3] == meta


def test_add_applies_file_perm(conf: cfg.ConfigOpts, datadir: pathlib.Path) -> None:
    conf.set_override("filesystem_store_file_perm", 640, "glance_store")
    FileDriver(conf).add(IMAGE_ID, iter([b"data"]), 4)
    assert stat.S_IMODE(os.stat(datadir / IMAGE_ID).st_mode) == 0o640


def test_add_duplicate(driver: FileDriver, datadir: pathlib.Path) -> None:
    driver.add(IMAGE_ID, iter([b"first"]), 5)
    with pytest.raises(exception.Duplicate):
        driver.add(IMAGE_ID, iter([b"second"]), 6)
    assert (datadir / IMAGE_ID).read_bytes() == b"first"
    assert entries(datadir) == [IMAGE_ID]


def test_add_duplicate_appearing_during_upload(driver: FileDriver,
                                               datadir: pathlib.Path) -> None:
    """A concurrent upload that finishes first wins; ours must not overwrite it."""

    def racing_chunks() -> Iterator[bytes]:
        yield b"ours"
        (datadir / IMAGE_ID).write_bytes(b"theirs")

    with pytest.raises(exception.Duplicate):
        driver.add(IMAGE_ID, racing_chunks(), 0)
    assert (datadir / IMAGE_ID).read_bytes() == b"theirs"
    assert entries(datadir) == [IMAGE_ID]


def test_partial_file_is_hidden_until_complete(driver: FileDriver,
                                               datadir: pathlib.Path) -> None:
    seen: list[list[str]] = []

    def watching_chunks() -> Iterator[bytes]:
        yield b"a" * CHUNK_SIZE
        seen.append(entries(datadir))
        yield b"b"

    driver.add(IMAGE_ID, watching_chunks(), 0)
    assert len(seen[0]) == 1
    assert seen[0][0].startswith(f".{IMAGE_ID}.") and seen[0][0].endswith(".partial")
    assert entries(datadir) == [IMAGE_ID]


@pytest.mark.parametrize("error", [CapExceeded("cap"), GeneratorExit(), KeyboardInterrupt()])
def test_add_removes_partial_when_chunks_raise(driver: FileDriver, datadir: pathlib.Path,
                                               error: BaseException) -> None:
    def failing_chunks() -> Iterator[bytes]:
        yield b"x" * CHUNK_SIZE
        yield b"y" * CHUNK_SIZE
        raise error

    with pytest.raises(type(error)):
        driver.add(IMAGE_ID, failing_chunks(), 0)
    assert entries(datadir) == []


def test_add_does_not_translate_callers_oserror(driver: FileDriver,
                                                datadir: pathlib.Path) -> None:
    """A client socket error while reading the body is not a storage error."""

    def disconnecting_chunks() -> Iterator[bytes]:
        yield b"x"
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    with pytest.raises(ConnectionResetError):
        driver.add(IMAGE_ID, disconnecting_chunks(), 0)
    assert entries(datadir) == []


@pytest.mark.parametrize("bad_id", ["", "../escape", "a/b", ".hidden", "x\0y"])
def test_add_refuses_unusable_ids(driver: FileDriver, datadir: pathlib.Path,
                                  bad_id: str) -> None:
    with pytest.raises(exception.Invalid):
        driver.add(bad_id, iter([b"x"]), 1)
    assert entries(datadir) == []


def _fail_open_in(datadir: pathlib.Path, err: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def fake_open(path: str, flags: int, mode: int = 0o777, **kw: object) -> int:
        if os.path.dirname(path) == str(datadir):
            raise OSError(err, os.strerror(err), path)
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("err", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_add_permission_denied(driver: FileDriver, datadir: pathlib.Path,
                               monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    # Tests may run as root, who ignores directory modes: fake the refusal.
    _fail_open_in(datadir, err, monkeypatch)
    with pytest.raises(exception.StorageWriteDenied):
        driver.add(IMAGE_ID, iter([b"x"]), 1)
    assert entries(datadir) == []


def test_add_storage_full_removes_partial(driver: FileDriver, datadir: pathlib.Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes go to /dev/full, which fails every write with ENOSPC."""
    real_open = os.open
    created: list[str] = []

    def full_open(path: str, flags: int, mode: int = 0o777, **kw: object) -> int:
        if os.path.dirname(path) == str(datadir):
            created.append(path)
            real_open(path, flags, mode)  # the partial exists, as it would
            return real_open("/dev/full", os.O_WRONLY)
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]

    assert os.path.exists("/dev/full"), "Linux's /dev/full simulates a full disk"
    monkeypatch.setattr(os, "open", full_open)
    with pytest.raises(exception.StorageFull):
        driver.add(IMAGE_ID, chunks_of(b"z" * (3 * 1024 * 1024)), 0)
    assert created and entries(datadir) == []


@pytest.mark.parametrize(("err", "expected"), [
    (errno.ENOSPC, exception.StorageFull),
    (errno.EDQUOT, exception.StorageFull),
    (errno.EACCES, exception.StorageWriteDenied),
    (errno.EPERM, exception.StorageWriteDenied),
    (errno.EIO, exception.StoreError),
])
def test_storage_error_mapping(err: int, expected: type[Exception]) -> None:
    assert type(file_store.storage_error(OSError(err, "x"))) is expected


# --- get / get_size / delete ----------------------------------------------------
def test_get_streams_chunks_and_closes(driver: FileDriver) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    url = driver.add(IMAGE_ID, chunks_of(data), len(data))[0]
    it, size = driver.get(url)
    assert size == len(data)
    received = list(it)
    assert [len(c) for c in received] == [CHUNK_SIZE, CHUNK_SIZE, 5]
    assert b"".join(received) == data
    assert it.closed


def test_get_close_midway_releases_file(driver: FileDriver) -> None:
    url = driver.add(IMAGE_ID, iter([b"q" * (3 * CHUNK_SIZE)]), 0)[0]
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    it, _size = driver.get(url)
    assert len(next(it)) == CHUNK_SIZE
    it.close()
    it.close()  # idempotent
    assert list(it) == []
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


def test_get_passes_the_rest_as_one_region_once_allowed(driver: FileDriver,
                                                       datadir: pathlib.Path) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 5)
    url = driver.add(IMAGE_ID, chunks_of(data), len(data))[0]
    it, _size = driver.get(url)
    first = next(it)
    assert it.allow_regions()
    region = next(it)
    assert isinstance(region, FileRegion)
    assert (region.offset, region.length) == (CHUNK_SIZE, len(data) - CHUNK_SIZE)
    assert first + os.pread(region.fd, region.length, region.offset) == data
    assert isinstance(region.short(7), exception.StoreError)
    # A file that grew since it was opened still shows past the region.
    with open(datadir / IMAGE_ID, "ab") as grown:
        grown.write(b"more")
    assert list(it) == [b"more"] and it.closed


def test_get_range_passes_its_region(driver: FileDriver) -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    url = driver.add(IMAGE_ID, chunks_of(data), len(data))[0]
    it = driver.get_range(url, 100, 2 * CHUNK_SIZE)
    assert it.allow_regions()
    region = next(it)
    assert (region.offset, region.length) == (100, 2 * CHUNK_SIZE)
    assert list(it) == [] and it.closed


def test_get_size(driver: FileDriver) -> None:
    url = driver.add(IMAGE_ID, iter([b"12345"]), 5)[0]
    assert driver.get_size(url) == 5


def test_filesystem_scheme_accepted(driver: FileDriver, datadir: pathlib.Path) -> None:
    driver.add(IMAGE_ID, iter([b"12345"]), 5)
    assert driver.get_size(f"filesystem://{datadir}/{IMAGE_ID}") == 5


def test_delete(driver: FileDriver, datadir: pathlib.Path) -> None:
    url = driver.add(IMAGE_ID, iter([b"x"]), 1)[0]
    driver.delete(url)
    assert entries(datadir) == []
    with pytest.raises(exception.NotFound):
        driver.delete(url)


def test_missing_image(driver: FileDriver, datadir: pathlib.Path) -> None:
    url = f"file://{datadir}/{IMAGE_ID}"
    with pytest.raises(exception.NotFound):
        driver.get(url)
    with pytest.raises(exception.NotFound):
        driver.get_size(url)
    with pytest.raises(exception.NotFound):
        driver.delete(url)


def test_urls_outside_datadir_refused(driver: FileDriver, datadir: pathlib.Path,
                                      tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    (datadir / "sub").mkdir()
    (datadir / "sub" / "x").write_bytes(b"nested")
    (datadir / f".{IMAGE_ID}.abc.partial").write_bytes(b"partial")
    bad_urls = [
        f"file://{secret}",
        "file:///etc/passwd",
        f"file://{datadir}/../secret",
        f"file://{datadir}/./x",
        f"file://{datadir}//x",
        f"file://{datadir}/sub/x",
        f"file://{datadir}",
        f"file://{datadir}/",
        f"file://{datadir}/.{IMAGE_ID}.abc.partial",
        f"file://otherhost{datadir}/x",
        f"file://{datadir}/x?query",
        f"file:{datadir}/../secret",
        f"http://{datadir}/x",
    ]
    for url in bad_urls:
        for call in (driver.get, driver.get_size, driver.delete):
            with pytest.raises(exception.BadStoreUri):
                call(url)
    assert secret.read_bytes() == b"do not read"


def test_symlink_in_datadir_not_followed(driver: FileDriver, datadir: pathlib.Path,
                                         tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    (datadir / "link").symlink_to(secret)
    with pytest.raises(exception.BadStoreUri):
        driver.get(f"file://{datadir}/link")
    with pytest.raises(exception.NotFound):
        driver.get_size(f"file://{datadir}/link")


def test_datadir_through_symlink(tmp_path: pathlib.Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    conf = make_conf(glance_store={"filesystem_store_datadir": str(tmp_path / "alias")})
    driver = FileDriver(conf)
    url = driver.add(IMAGE_ID, iter([b"abc"]), 3)[0]
    assert driver.get_size(url) == 3
    assert driver.get_size(f"file://{real}/{IMAGE_ID}") == 3
