"""Tests for the Swift store: locations and settings, then against a real
Swift (``SWIFT_AUTH_URL`` etc.; deselected without them)."""

from __future__ import annotations

import hashlib
import pathlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.redaction import redact_url
from glance_clone.store import backend
from glance_clone.store import swift as swift_store
from glance_clone.store.base import CHUNK_SIZE
from glance_clone.store.swift import SwiftDriver, location_url, parse_location
from tests.unit.store.backends import (
    CapExceeded,
    Listing,
    MiB,
    check_duplicate,
    check_interrupted_download,
    check_missing_object,
    check_read_back_and_delete,
    check_secret_never_logged,
    chunks_of,
    image,
    read_all,
    unused_port,
)
from tests.unit.store.conftest import make_conf

pytest_plugins = ["tests.unit.store.backends"]
pytestmark = pytest.mark.timeout(60)

SCHEMES = SwiftDriver.schemes


# --- locations ------------------------------------------------------------------
def test_location_round_trip_quotes_credentials() -> None:
    creds = swift_store.Credentials("http://swift.example.com:8080/auth/v1.0",
                                    "acct:user", "k/e@y:1")
    url = location_url(creds, "glance", "abc")
    assert url == ("swift+http://acct%3Auser:k%2Fe%40y%3A1@swift.example.com:8080"
                   "/auth/v1.0/glance/abc")
    loc = parse_location(url, SCHEMES)
    assert loc.credentials == creds
    assert (loc.container, loc.obj) == ("glance", "abc")


def test_https_and_bare_swift_scheme_mean_https() -> None:
    creds = swift_store.Credentials("https://ks.example.com/v3", "p:u", "k")
    assert location_url(creds, "c", "o").startswith("swift+https://p%3Au:k@ks.example.com/v3/")
    loc = parse_location("swift://u:k@ks.example.com/v2.0/c/o", SCHEMES)
    assert loc.credentials.auth_url == "https://ks.example.com/v2.0"


def test_glance_style_unquoted_slash_in_key_parses() -> None:
    loc = parse_location("swift+http://u:ab/cd@h:80/auth/v1.0/glance/img", SCHEMES)
    assert loc.credentials.key == "ab/cd"
    assert loc.credentials.auth_url == "http://h:80/auth/v1.0"


@pytest.mark.parametrize("url", [
    "swift+http://h/auth/c/o",                # no credentials
    "swift+http://u@h/auth/c/o",              # no key
    "swift+http://u:k@h/o",                   # no container
    "swift+http://u:k@h/auth/c/",             # no object
    "swift+http://u:k:x@h/auth/c/o",          # unquoted colon
    "s3://u:k@h/auth/c/o",                    # not ours
])
def test_bad_locations(url: str) -> None:
    with pytest.raises(exception.BadStoreUri) as err:
        parse_location(url, SCHEMES)
    assert ":k@" not in str(err.value)


def test_reprs_and_redaction_hide_the_key() -> None:
    creds = swift_store.Credentials("http://h/auth/v1.0", "u", "sekrit")
    loc = swift_store.Location(creds, "c", "o")
    assert "sekrit" not in repr(creds) and "sekrit" not in repr(loc)
    assert "sekrit" not in redact_url(location_url(creds, "c", "o"))


# --- configuration --------------------------------------------------------------------
def swift_conf(**values: Any) -> cfg.ConfigOpts:
    settings = {"swift_store_auth_address": "http://127.0.0.1:1/auth/v1.0",
                "swift_store_user": "a:u", "swift_store_key": "k",
                "swift_store_auth_version": "1"}
    settings.update(values)
    return make_conf(glance_store=settings)


@pytest.mark.parametrize("values", [
    {"swift_store_auth_address": None},
    {"swift_store_key": None},
    {"swift_store_auth_version": "4"},
    {"swift_store_container": "a/b"},
])
def test_bad_configuration(values: dict[str, Any]) -> None:
    with pytest.raises(exception.ConfigError):
        SwiftDriver(swift_conf(**values))


def test_option_defaults_follow_glance() -> None:
    opts = make_conf().glance_store
    assert opts.swift_store_auth_version == "2"
    assert opts.swift_store_container == "glance"
    assert opts.swift_store_create_container_on_put is False
    assert opts.swift_store_large_object_size == 5120
    assert opts.swift_store_large_object_chunk_size == 200
    assert opts.swift_store_retry_get_count == 0
    assert opts.swift_store_endpoint_type == "publicURL"
    assert opts.swift_store_service_type == "object-store"


def test_auth_address_without_scheme_means_https(swiftclient_lib: Any) -> None:
    driver = SwiftDriver(swift_conf(swift_store_auth_address="ks.example.com:5000/v3/"))
    assert driver.credentials.auth_url == "https://ks.example.com:5000/v3"


def test_error_mapping(swiftclient_lib: Any) -> None:
    def client_error(status: int) -> Exception:
        return swiftclient_lib.ClientException("failed", http_status=status)

    assert isinstance(swift_store._write_error(client_error(413), "c"), exception.StorageFull)
    assert isinstance(swift_store._write_error(client_error(507), "c"), exception.StorageFull)
    denied = swift_store._write_error(client_error(401), "c")
    assert isinstance(denied, exception.StorageWriteDenied) and "Swift" in str(denied)
    assert isinstance(swift_store._write_error(client_error(503), "c"),
                      exception.ServiceUnavailable)
    assert isinstance(swift_store._read_error(client_error(404)), exception.NotFound)
    assert isinstance(swift_store._read_error(client_error(502)),
                      exception.RemoteServiceUnavailable)


@pytest.mark.parametrize("written, expected", [("1.0", "1"), ("v2.0", "2"), ("3", "3")])
def test_auth_version_spellings(written: str, expected: str, swiftclient_lib: Any) -> None:
    assert SwiftDriver(swift_conf(swift_store_auth_version=written)).auth_version == expected


def test_keystone_session_splits_project_and_user(swiftclient_lib: Any) -> None:
    conf = swift_conf(swift_store_auth_version="3",
                      swift_store_auth_address="https://ks.example.com:5000/v3")
    try:
        import keystoneauth1  # noqa: F401
    except ImportError:
        with pytest.raises(exception.ConfigError, match="keystoneauth1"):
            SwiftDriver(conf)
        return
    driver = SwiftDriver(conf)
    session = driver._keystone_session(driver.credentials)
    method = session.auth.auth_methods[0]
    assert (session.auth.project_name, method.username, method.password) == ("a", "u", "k")
    assert session.auth.auth_url == "https://ks.example.com:5000/v3"
    assert driver._keystone_session(driver.credentials) is session


def test_unreachable_swift_is_a_503_naming_swift(swiftclient_lib: Any) -> None:
    driver = SwiftDriver(swift_conf(
        swift_store_auth_address=f"http://127.0.0.1:{unused_port()}/auth/v1.0",
        swift_store_key="sekrit"))
    with pytest.raises(exception.ServiceUnavailable) as err:
        driver.add(str(uuid.uuid4()), iter([b"x"]), 1)
    assert "Swift" in str(err.value) and "sekrit" not in str(err.value)
    url = location_url(driver.credentials, "glance", "img")
    with pytest.raises(exception.RemoteServiceUnavailable):
        driver.get(url)


# --- against a real Swift --------------------------------------------------------------
@pytest.fixture
def make_driver(swift_env: dict[str, str], swift_container: str
                ) -> Callable[..., SwiftDriver]:
    def make(**values: Any) -> SwiftDriver:
        settings = {"swift_store_auth_address": swift_env["SWIFT_AUTH_URL"],
                    "swift_store_user": swift_env["SWIFT_USER"],
                    "swift_store_key": swift_env["SWIFT_KEY"],
                    "swift_store_auth_version": "1",
                    "swift_store_container": swift_container,
                    "swift_store_create_container_on_put": True,
                    "swift_store_large_object_size": 2,
                    "swift_store_large_object_chunk_size": 1}
        settings.update(values)
        return SwiftDriver(make_conf(glance_store=settings))
    return make


@pytest.fixture
def driver(make_driver: Callable[..., SwiftDriver]) -> SwiftDriver:
    return make_driver()


def test_small_image_is_one_object(driver: SwiftDriver, swift_listing: Listing,
                                   swift_container: str, swift_env: dict[str, str]) -> None:
    data = image(MiB + 123)
    image_id = str(uuid.uuid4())
    url, size, checksum, meta = driver.add(image_id, chunks_of(data), len(data))
    address = swift_env["SWIFT_AUTH_URL"].partition("://")[2]
    assert url == (f"swift+http://{swift_env['SWIFT_USER'].replace(':', '%3A')}:"
                   f"{swift_env['SWIFT_KEY']}@{address}/{swift_container}/{image_id}")
    assert (size, checksum, meta) == (len(data), hashlib.md5(data).hexdigest(), {})
    assert swift_listing(swift_container) == [image_id]
    sizes = check_read_back_and_delete(driver, url, data, swift_listing, swift_container)
    assert sizes[:-1] == [CHUNK_SIZE] * (len(sizes) - 1)


@pytest.mark.parametrize("declared", [True, False], ids=["known-size", "unknown-size"])
def test_large_image_is_segmented(driver: SwiftDriver, swift_conn: Any, swift_listing: Listing,
                                  swift_container: str, declared: bool) -> None:
    data = image(3 * MiB + 5)
    image_id = str(uuid.uuid4())
    url, size, checksum, _ = driver.add(image_id, chunks_of(data, 1000 * 1000),
                                        len(data) if declared else 0)
    assert (size, checksum) == (len(data), hashlib.md5(data).hexdigest())
    assert swift_listing(swift_container) == [
        image_id, f"{image_id}-00001", f"{image_id}-00002", f"{image_id}-00003",
        f"{image_id}-00004"]
    headers = swift_conn.head_object(swift_container, image_id)
    assert headers["x-object-manifest"] == f"{swift_container}/{image_id}-"
    check_read_back_and_delete(driver, url, data, swift_listing, swift_container)


def test_unknown_size_on_a_segment_boundary_writes_no_empty_segment(
        driver: SwiftDriver, swift_listing: Listing, swift_container: str) -> None:
    data = image(2 * MiB)
    image_id = str(uuid.uuid4())
    url, size, _, _ = driver.add(image_id, chunks_of(data), 0)
    assert swift_listing(swift_container) == [
        image_id, f"{image_id}-00001", f"{image_id}-00002"]
    assert read_all(driver, url)[0] == data


def test_empty_image(driver: SwiftDriver, swift_listing: Listing, swift_container: str) -> None:
    image_id = str(uuid.uuid4())
    url, size, checksum, _ = driver.add(image_id, iter([]), 0)
    assert (size, checksum) == (0, hashlib.md5(b"").hexdigest())
    assert swift_listing(swift_container) == [image_id]
    assert read_all(driver, url)[:2] == (b"", 0)


@pytest.mark.parametrize("declared", [True, False], ids=["single", "segmented"])
def test_failure_mid_stream_removes_everything(driver: SwiftDriver, swift_listing: Listing,
                                               swift_container: str, declared: bool) -> None:
    data = image(int(1.5 * MiB) if declared else 4 * MiB)
    fail_after = len(data) - 300 * 1024
    with pytest.raises(CapExceeded):
        driver.add(str(uuid.uuid4()), chunks_of(data, 64 * 1024, fail_after=fail_after),
                   len(data) if declared else 0)
    assert swift_listing(swift_container) == []


def test_os_error_from_the_chunks_is_not_mistaken_for_swift(
        driver: SwiftDriver, swift_listing: Listing, swift_container: str) -> None:
    data = image(3 * MiB)
    with pytest.raises(ConnectionResetError):
        driver.add(str(uuid.uuid4()), chunks_of(data, fail_after=2 * MiB,
                                                error=ConnectionResetError("client gone")), 0)
    assert swift_listing(swift_container) == []


def test_swift_error_mid_upload_removes_segments(
        driver: SwiftDriver, swift_listing: Listing, swift_container: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_put = swift_store.swift_client.Connection.put_object

    def put_object(self: Any, container: str, obj: str, *args: Any, **kwargs: Any) -> Any:
        if obj.endswith("-00003"):
            raise swift_store.swift_client.ClientException("full", http_status=507)
        return real_put(self, container, obj, *args, **kwargs)

    monkeypatch.setattr(swift_store.swift_client.Connection, "put_object", put_object)
    with pytest.raises(exception.StorageFull):
        driver.add(str(uuid.uuid4()), chunks_of(image(4 * MiB)), 0)
    assert swift_listing(swift_container) == []


def test_duplicate(driver: SwiftDriver) -> None:
    check_duplicate(driver)


def test_missing_container_without_create_on_put(
        make_driver: Callable[..., SwiftDriver], swift_conn: Any, swift_container: str) -> None:
    driver = make_driver(swift_store_create_container_on_put=False)
    with pytest.raises(exception.StoreError) as err:
        driver.add(str(uuid.uuid4()), chunks_of(b"data"), 4)
    assert swift_container in str(err.value)
    assert "swift_store_create_container_on_put" in str(err.value)
    with pytest.raises(swift_store.swift_client.ClientException):
        swift_conn.head_container(swift_container)


def test_existing_container_without_create_on_put(
        make_driver: Callable[..., SwiftDriver], swift_conn: Any, swift_container: str) -> None:
    swift_conn.put_container(swift_container)
    driver = make_driver(swift_store_create_container_on_put=False)
    url, _, _, _ = driver.add(str(uuid.uuid4()), chunks_of(b"data"), 4)
    assert read_all(driver, url)[0] == b"data"


def test_wrong_key_is_a_5xx_naming_swift_not_the_key(
        make_driver: Callable[..., SwiftDriver], swift_listing: Listing,
        swift_container: str) -> None:
    secret = "not-the-key-" + uuid.uuid4().hex
    driver = make_driver(swift_store_key=secret)
    with pytest.raises(exception.ServiceUnavailable) as err:
        driver.add(str(uuid.uuid4()), chunks_of(image(1000)), 1000)
    assert isinstance(err.value, exception.StorageWriteDenied)
    assert "Swift" in str(err.value) and secret not in str(err.value)
    assert swift_listing(swift_container) == []


def test_missing_object(driver: SwiftDriver) -> None:
    check_missing_object(driver)


def test_locations_keep_working_when_the_configuration_changes(
        driver: SwiftDriver, make_driver: Callable[..., SwiftDriver]) -> None:
    data = image(3 * MiB)
    url, _, _, _ = driver.add(str(uuid.uuid4()), chunks_of(data), 0)
    other = make_driver(swift_store_container="elsewhere", swift_store_key="rotated")
    assert read_all(other, url)[0] == data
    other.delete(url)
    with pytest.raises(exception.NotFound):
        driver.get_size(url)


def test_the_key_is_never_logged(driver: SwiftDriver, swift_env: dict[str, str],
                                 caplog: pytest.LogCaptureFixture) -> None:
    check_secret_never_logged(driver, swift_env["SWIFT_KEY"], caplog,
                              size=3 * MiB, fail_after=2 * MiB)


def test_interrupted_download_raises(make_driver: Callable[..., SwiftDriver],
                                     swift_env: dict[str, str], relay: Any) -> None:
    cutter, address = relay(swift_env["SWIFT_AUTH_URL"])
    driver = make_driver(swift_store_auth_address=address)
    data = image(3 * MiB)
    url, _, _, _ = driver.add(str(uuid.uuid4()), chunks_of(data), 0)
    check_interrupted_download(driver, cutter, url, data)


def test_interrupted_download_resumes_with_retry_get_count(
        make_driver: Callable[..., SwiftDriver], swift_env: dict[str, str], relay: Any) -> None:
    cutter, address = relay(swift_env["SWIFT_AUTH_URL"])
    driver = make_driver(swift_store_auth_address=address, swift_store_retry_get_count=2)
    data = image(3 * MiB)
    url, _, _, _ = driver.add(str(uuid.uuid4()), chunks_of(data), len(data))
    cutter.cut_after(MiB)
    assert read_all(driver, url)[0] == data
    assert cutter.cuts == 1


def test_through_the_store_set(swift_env: dict[str, str], swift_container: str,
                               tmp_path: pathlib.Path) -> None:
    conf = make_conf(glance_store={
        "stores": ["file", "http", "swift"], "default_store": "swift",
        "filesystem_store_datadir": str(tmp_path),
        "swift_store_auth_address": swift_env["SWIFT_AUTH_URL"],
        "swift_store_user": swift_env["SWIFT_USER"],
        "swift_store_key": swift_env["SWIFT_KEY"], "swift_store_auth_version": "1",
        "swift_store_container": swift_container,
        "swift_store_create_container_on_put": True})
    stores = backend.StoreSet(conf)
    assert {"swift", "swift+http", "swift+https"} <= set(stores.known_schemes())
    url, size, _, _ = stores.add(str(uuid.uuid4()), chunks_of(b"hello"), 5)
    assert url.startswith("swift+http://")
    it, got_size = stores.get(url)
    assert b"".join(it) == b"hello" and got_size == 5
    stores.delete(url)


def test_leftovers_of_a_dead_writer_are_removed(driver: SwiftDriver, swift_conn: Any,
                                                swift_listing: Listing,
                                                swift_container: str) -> None:
    """What a writer that died leaves: segments without their manifest, or a
    finished object the record never took; a kept location stays."""
    image_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    url, *_ = driver.add(image_id, chunks_of(image(3 * MiB)), 0)
    swift_conn.delete_object(swift_container, image_id)
    driver.add(other, chunks_of(image(10)), 10)
    assert len(swift_listing(swift_container)) == 4
    driver.remove_leftovers(image_id)
    assert swift_listing(swift_container) == [other]
    other_url = location_url(driver.credentials, swift_container, other)
    driver.remove_leftovers(other, keep=[other_url])
    assert swift_listing(swift_container) == [other]
    driver.remove_leftovers(other)
    assert swift_listing(swift_container) == []
    driver.remove_leftovers(str(uuid.uuid4()))
