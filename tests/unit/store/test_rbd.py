"""Tests for the RBD store: locations, settings and error mapping, then
against a real Ceph (``CEPH_CONF`` etc.; deselected without them)."""

from __future__ import annotations

import errno
import hashlib
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.store import backend
from glance_clone.store import rbd as rbd_store
from glance_clone.store.rbd import RbdDriver, location_url, parse_location
from tests.support import ceph
from tests.unit.store.backends import (
    CapExceeded,
    MiB,
    check_duplicate,
    chunks_of,
    image,
    read_all,
    unused_port,
)
from tests.unit.store.conftest import make_conf

pytest_plugins = ["tests.unit.store.backends"]
pytestmark = pytest.mark.timeout(60)

FSID = "6f2e8c1a-1b7e-4a43-9d61-0c5a2b6d7e90"


# --- locations ------------------------------------------------------------------
def test_location_is_glances_four_part_uri_with_quoted_parts() -> None:
    url = location_url(FSID, "my pool", "abc/def")
    assert url == f"rbd://{FSID}/my%20pool/abc%2Fdef/snap"
    assert parse_location(url, "images") == rbd_store.Location(FSID, "my pool", "abc/def",
                                                               "snap")


def test_old_one_part_location_means_the_configured_pool_and_no_snapshot() -> None:
    assert parse_location("rbd://some-image", "images") == rbd_store.Location(
        None, "images", "some-image", None)


@pytest.mark.parametrize("url", ["rbd://", "rbd://a/b", "rbd://a/b/c", "rbd://a//c/d",
                                 "rbd://a/b/c/d/e", "file:///x", "rbd:/x"])
def test_malformed_locations_are_bad_store_uris(url: str) -> None:
    with pytest.raises(exception.BadStoreUri):
        parse_location(url, "images")


# --- settings -------------------------------------------------------------------
def rbd_conf(ceph_conf: str, **options: Any) -> cfg.ConfigOpts:
    return make_conf(glance_store={"rbd_store_ceph_conf": ceph_conf, **options})


@pytest.fixture
def some_conf(tmp_path: Path) -> str:
    path = tmp_path / "ceph.conf"
    path.write_text("[global]\nmon_host = 127.0.0.1:1\n")
    return str(path)


@pytest.mark.parametrize("mib", [3, 6, 12])
def test_chunk_size_must_be_a_power_of_two(some_conf: str, mib: int) -> None:
    with pytest.raises(exception.ConfigError, match="rbd_store_chunk_size"):
        RbdDriver(rbd_conf(some_conf, rbd_store_chunk_size=mib))


def test_object_order_follows_the_chunk_size(some_conf: str) -> None:
    driver = RbdDriver(rbd_conf(some_conf, rbd_store_chunk_size=4))
    assert (driver.object_size, driver.order) == (4 * MiB, 22)


def test_an_unreadable_ceph_conf_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(exception.ConfigError, match="rbd_store_ceph_conf"):
        RbdDriver(rbd_conf(str(tmp_path / "missing.conf")))


def test_without_cephs_python_modules_the_error_names_the_fix(
        some_conf: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rados", None)   # import rados -> ImportError
    with pytest.raises(exception.ConfigError) as caught:
        RbdDriver(rbd_conf(some_conf))
    message = str(caught.value)
    assert "python3-rados" in message and "link-ceph-python.sh" in message
    assert "\n" not in message


def test_rbd_is_one_of_the_stores(some_conf: str) -> None:
    stores = backend.StoreSet(rbd_conf(some_conf, stores=["file", "rbd"],
                                       default_store="rbd",
                                       filesystem_store_datadir=str(Path(some_conf).parent)))
    assert isinstance(stores.driver_for_uri(f"rbd://{FSID}/images/x/snap"), RbdDriver)


def test_blocking_calls_leave_the_event_loop_only_under_eventlet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    here = threading.get_ident()
    assert rbd_store.blocking(threading.get_ident) == here
    monkeypatch.setattr(rbd_store.patcher, "is_monkey_patched", lambda module: True)
    assert rbd_store.blocking(threading.get_ident) != here


@pytest.mark.parametrize("code, expected", [
    (errno.EDQUOT, exception.StorageFull),
    (errno.ENOSPC, exception.StorageFull),
    (errno.ETIMEDOUT, exception.ServiceUnavailable),
    (errno.EACCES, exception.StorageWriteDenied),
    (errno.EIO, exception.StoreError),
])
def test_write_errors_map_to_statuses(some_conf: str, code: int, expected: type) -> None:
    upload = rbd_store._Upload(RbdDriver(rbd_conf(some_conf)), "x")
    error = upload.error(OSError(code, "boom"))
    assert type(error) is expected and "RBD" in str(error)


# --- against a real Ceph ------------------------------------------------------------
@pytest.fixture
def ioctx(rbd_env: dict[str, str]) -> Iterator[Any]:
    """An I/O context on the pool, as the store's user."""
    with ceph.session(rbd_env["CEPH_CONF"], rbd_env["CEPH_USER"],
                      rbd_env["CEPH_POOL"]) as (_, io):
        yield io


@pytest.fixture
def fsid(rbd_env: dict[str, str]) -> str:
    with ceph.session(rbd_env["CEPH_CONF"], rbd_env["CEPH_USER"],
                      rbd_env["CEPH_POOL"]) as (cluster, _):
        return cluster.get_fsid()


@pytest.fixture
def names(ioctx: Any) -> Iterator[Callable[[], str]]:
    """``new()``: a fresh image name. Every RBD image that appears in the
    pool during the test is removed after it, clones first."""
    import rbd

    before = set(rbd.RBD().list(ioctx))
    yield lambda: "glance-t-" + uuid.uuid4().hex
    made = set(rbd.RBD().list(ioctx)) - before
    for name in sorted(made, key=lambda n: not n.endswith("-clone")):
        ceph.remove_image(ioctx, name)


def in_pool(ioctx: Any, name: str) -> list[str]:
    """``name`` and its snapshots ("name@snap") as the pool holds them."""
    import rbd

    if name not in rbd.RBD().list(ioctx):
        return []
    return [name] + [f"{name}@{snap}" for snap in ceph.snapshots(ioctx, name)]


def objects_of(ioctx: Any, name: str) -> int:
    """How many RADOS objects hold the data of RBD image ``name``."""
    import rbd

    with rbd.Image(ioctx, name, read_only=True) as img:
        prefix = img.stat()["block_name_prefix"]
    return sum(1 for obj in ioctx.list_objects() if obj.key.startswith(prefix + "."))


def make_driver(env: dict[str, str], **options: Any) -> RbdDriver:
    settings = {"rbd_store_user": env["CEPH_USER"], "rbd_store_pool": env["CEPH_POOL"],
                "rbd_store_chunk_size": 1}   # small objects: small tests
    return RbdDriver(rbd_conf(env["CEPH_CONF"], **dict(settings, **options)))


@pytest.fixture
def driver(rbd_env: dict[str, str]) -> RbdDriver:
    return make_driver(rbd_env)


@pytest.mark.parametrize("size_known", [True, False])
def test_upload_writes_an_image_with_a_protected_snapshot(
        driver: RbdDriver, ioctx: Any, names: Callable[[], str], fsid: str,
        size_known: bool) -> None:
    data = image(5 * MiB + 12345)
    name = names()
    url, size, md5, meta = driver.add(name, chunks_of(data, 100_000),
                                      len(data) if size_known else 0)
    assert url == f"rbd://{fsid}/{ioctx.get_pool_name()}/{name}/snap"
    assert (size, md5, meta) == (len(data), hashlib.md5(data).hexdigest(), {})
    assert ceph.snapshots(ioctx, name) == {"snap": True}
    import rbd

    with rbd.Image(ioctx, name, read_only=True) as img:
        assert img.size() == len(data)
        assert img.stat()["obj_size"] == MiB
    got, got_size, chunk_sizes = read_all(driver, url)
    assert got == data and got_size == len(data)
    assert max(chunk_sizes) == MiB   # pieces never straddle objects
    assert driver.get_size(url) == len(data)
    driver.delete(url)
    assert in_pool(ioctx, name) == []


def test_an_image_of_unknown_size_grows_in_steps_and_is_trimmed(
        driver: RbdDriver, ioctx: Any, names: Callable[[], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rbd_store, "FIRST_SIZE", MiB)
    resizes: list[int] = []
    real_grow = rbd_store._Upload._grow

    def grow(upload: rbd_store._Upload, needed: int) -> None:
        real_grow(upload, needed)
        resizes.append(upload.size)

    monkeypatch.setattr(rbd_store._Upload, "_grow", grow)
    data = image(9 * MiB + 7)
    url, size, _, _ = driver.add(names(), chunks_of(data, 300_000), 0)
    assert resizes == [MiB, 2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB]
    assert size == len(data) and driver.get_size(url) == len(data)
    assert read_all(driver, url)[0] == data


@pytest.mark.parametrize("hint", [MiB, 6 * MiB])
def test_the_size_given_is_only_a_hint(driver: RbdDriver, names: Callable[[], str],
                                       hint: int) -> None:
    data = image(3 * MiB + 1)
    url, size, _, _ = driver.add(names(), chunks_of(data), hint)
    assert size == len(data) and driver.get_size(url) == len(data)
    assert read_all(driver, url)[0] == data


def test_get_reads_a_range(driver: RbdDriver, names: Callable[[], str]) -> None:
    data = image(3 * MiB)
    url, _, _, _ = driver.add(names(), chunks_of(data), len(data))
    for offset, length in [(0, 10), (MiB - 5, 2 * MiB), (3 * MiB - 3, 100), (4 * MiB, 10)]:
        it, size = driver.get(url, offset=offset, length=length)
        expected = data[offset:offset + length]
        assert b"".join(it) == expected and size == len(expected)
    it, size = driver.get(url, offset=2 * MiB)
    assert b"".join(it) == data[2 * MiB:] and size == MiB


def test_objects_larger_than_the_pieces_moved(rbd_env: dict[str, str], ioctx: Any,
                                              names: Callable[[], str]) -> None:
    driver = make_driver(rbd_env, rbd_store_chunk_size=8, rbd_thin_provisioning=True)
    assert (driver.write_size, driver.read_size) == (rbd_store.WRITE_SIZE,
                                                     rbd_store.READ_SIZE)
    data = image(4 * MiB) + bytes(4 * MiB) + image(3 * MiB + 5)
    name = names()
    url, size, md5, _ = driver.add(name, chunks_of(data, 300_000), 0)
    assert (size, md5) == (len(data), hashlib.md5(data).hexdigest())
    got, _, chunk_sizes = read_all(driver, url)
    assert got == data and max(chunk_sizes) == rbd_store.READ_SIZE
    it, _ = driver.get(url, offset=2 * MiB - 1, length=5 * MiB)
    assert b"".join(it) == data[2 * MiB - 1:7 * MiB - 1]
    assert objects_of(ioctx, name) == 2


def test_a_failed_upload_removes_the_image(driver: RbdDriver, ioctx: Any,
                                           names: Callable[[], str]) -> None:
    name = names()
    with pytest.raises(CapExceeded):
        driver.add(name, chunks_of(image(4 * MiB), fail_after=3 * MiB), 0)
    assert in_pool(ioctx, name) == []


def test_an_upload_to_an_existing_name_is_a_duplicate(driver: RbdDriver,
                                                      names: Callable[[], str]) -> None:
    check_duplicate(driver)


def test_thin_provisioning_skips_zero_objects(rbd_env: dict[str, str], ioctx: Any,
                                              names: Callable[[], str]) -> None:
    data = image(MiB) + bytes(3 * MiB) + image(MiB) + bytes(100)
    stored = {}
    for thin in (True, False):
        name = names()
        url, _, md5, _ = make_driver(rbd_env, rbd_thin_provisioning=thin).add(
            name, chunks_of(data), 0)
        assert md5 == hashlib.md5(data).hexdigest()
        assert read_all(make_driver(rbd_env), url)[0] == data
        stored[thin] = objects_of(ioctx, name)
    assert stored == {True: 2, False: 6}


def test_an_image_with_a_clone_is_in_use_and_stays_whole(
        driver: RbdDriver, ioctx: Any, names: Callable[[], str]) -> None:
    import rbd

    data = image(2 * MiB)
    name = names()
    url, _, _, _ = driver.add(name, chunks_of(data), len(data))
    rbd.RBD().clone(ioctx, name, "snap", ioctx, name + "-clone",
                    features=rbd.RBD_FEATURE_LAYERING)
    with pytest.raises(exception.InUseByStore):
        driver.delete(url)
    assert ceph.snapshots(ioctx, name) == {"snap": True}
    assert read_all(driver, url)[0] == data
    rbd.RBD().remove(ioctx, name + "-clone")
    driver.delete(url)
    assert in_pool(ioctx, name) == []


def test_an_image_open_elsewhere_is_in_use_and_keeps_its_snapshot(
        driver: RbdDriver, ioctx: Any, names: Callable[[], str]) -> None:
    import rbd

    data = image(MiB)
    name = names()
    url, _, _, _ = driver.add(name, chunks_of(data), len(data))
    with rbd.Image(ioctx, name):   # another client: a watcher on the image
        with pytest.raises(exception.InUseByStore):
            driver.delete(url)
    assert ceph.snapshots(ioctx, name) == {"snap": True}
    assert read_all(driver, url)[0] == data
    driver.delete(url)
    assert in_pool(ioctx, name) == []


def test_missing_data_and_other_clusters_are_not_found(
        driver: RbdDriver, ioctx: Any, names: Callable[[], str], fsid: str) -> None:
    name = names()
    url, _, _, _ = driver.add(name, chunks_of(b"x"), 1)
    pool = ioctx.get_pool_name()
    for missing in (location_url(fsid, pool, names()), f"rbd://{names()}",
                    location_url(FSID, pool, name), location_url(fsid, "no-pool", name)):
        for call in (driver.get, driver.get_size, driver.delete):
            with pytest.raises(exception.NotFound):
                call(missing)
    assert read_all(driver, url)[0] == b"x"


def test_a_location_in_the_old_form_reads_and_deletes_the_image(
        driver: RbdDriver, ioctx: Any, names: Callable[[], str]) -> None:
    import rbd

    name = names()
    rbd.RBD().create(ioctx, name, 3, old_format=False)
    with rbd.Image(ioctx, name) as img:
        img.write(b"old", 0)
    assert read_all(driver, f"rbd://{name}")[0] == b"old"
    driver.delete(f"rbd://{name}")
    assert in_pool(ioctx, name) == []


def write_fails(driver: RbdDriver, ioctx: Any, name: str, expected: type,
                *words: str) -> str:
    """An upload through ``driver`` raises ``expected`` naming the store and
    ``words``, and leaves nothing; returns the message."""
    with pytest.raises(expected) as caught:
        driver.add(name, chunks_of(image(MiB)), MiB)
    message = str(caught.value)
    for word in ("RBD", *words):
        assert word in message, message
    assert in_pool(ioctx, name) == []
    return message


def test_an_unknown_user_is_refused_naming_the_setting(
        rbd_env: dict[str, str], ioctx: Any, names: Callable[[], str]) -> None:
    driver = make_driver(rbd_env, rbd_store_user="nobody-" + uuid.uuid4().hex[:6])
    write_fails(driver, ioctx, names(), exception.StorageWriteDenied, "rbd_store_user")
    with pytest.raises(exception.RemoteServiceUnavailable, match="rbd_store_user"):
        driver.get(location_url("x", ioctx.get_pool_name(), "y"))


def test_a_wrong_key_is_refused_and_never_shown(
        rbd_env: dict[str, str], ioctx: Any, names: Callable[[], str],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = "AQBcbm1nAAAAABAAo3ZdmW1Hy0hK0BXy1XWDIg=="
    keyring = tmp_path / "wrong.keyring"
    keyring.write_text(f"[client.{rbd_env['CEPH_USER']}]\n\tkey = {key}\n")
    conf = ceph.conf_copy(rbd_env["CEPH_CONF"], tmp_path, "keyring", str(keyring),
                          section=f"client.{rbd_env['CEPH_USER']}")
    driver = make_driver(dict(rbd_env, CEPH_CONF=conf))
    message = write_fails(driver, ioctx, names(), exception.StorageWriteDenied,
                          "keyring")
    assert key not in message
    assert all(key not in record.getMessage() for record in caplog.records)


def test_a_missing_pool_is_named(rbd_env: dict[str, str], ioctx: Any,
                                 names: Callable[[], str]) -> None:
    driver = make_driver(rbd_env, rbd_store_pool="no-such-pool")
    write_fails(driver, ioctx, names(), exception.ServiceUnavailable, "no-such-pool",
                "rbd_store_pool")


def test_unreachable_monitors_fail_within_the_connect_timeout(
        rbd_env: dict[str, str], ioctx: Any, names: Callable[[], str],
        tmp_path: Path) -> None:
    conf = ceph.conf_copy(rbd_env["CEPH_CONF"], tmp_path, "mon_host",
                          f"127.0.0.1:{unused_port()}")
    driver = make_driver(dict(rbd_env, CEPH_CONF=conf), rados_connect_timeout=1)
    started = time.monotonic()
    write_fails(driver, ioctx, names(), exception.ServiceUnavailable, "monitors")
    assert time.monotonic() - started < 10


def test_leftovers_of_a_dead_writer_are_removed(driver: RbdDriver, ioctx: Any,
                                                names: Callable[[], str], fsid: str) -> None:
    """What a writer that died leaves: an image without its snapshot (killed
    mid-write), or a finished one the record never took; a kept location
    stays, and an image another client holds open is in use until it lets go."""
    import rbd

    half, finished = names(), names()
    rbd.RBD().create(ioctx, half, 3 * MiB, old_format=False)
    with rbd.Image(ioctx, half) as img:
        img.write(image(MiB), 0)
    url, *_ = driver.add(finished, chunks_of(image(2 * MiB)), 0)
    driver.remove_leftovers(half)
    assert in_pool(ioctx, half) == []
    driver.remove_leftovers(finished, keep=[url])
    assert in_pool(ioctx, finished) == [finished, f"{finished}@snap"]
    with rbd.Image(ioctx, finished):
        with pytest.raises(exception.InUseByStore):
            driver.remove_leftovers(finished, keep=["rbd://elsewhere", "file:///x"])
    assert in_pool(ioctx, finished) == [finished]
    driver.remove_leftovers(finished)
    assert in_pool(ioctx, finished) == []
    driver.remove_leftovers(names())
