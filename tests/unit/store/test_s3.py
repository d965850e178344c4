"""Tests for the S3 store: locations and settings, then against a real S3 API
(``S3_ENDPOINT_URL`` etc.; deselected without them)."""

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
from glance_clone.store import s3 as s3_store
from glance_clone.store.base import CHUNK_SIZE
from glance_clone.store.s3 import S3Driver, location_url, parse_location
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

SCHEMES = S3Driver.schemes


# --- locations and settings ---------------------------------------------------------
def test_location_round_trip_quotes_credentials() -> None:
    creds = s3_store.Credentials("http://s3.example.com:8080", "acct:user", "se/cr+et=")
    url = location_url(creds, "images", "abc")
    assert url == "s3://acct%3Auser:se%2Fcr%2Bet%3D@s3.example.com:8080/images/abc"
    loc = parse_location(url, SCHEMES)
    assert loc.credentials == creds and (loc.bucket, loc.key) == ("images", "abc")


def test_https_endpoint_and_glance_style_secret() -> None:
    creds = s3_store.Credentials("https://s3.example.com", "AK", "sk")
    assert location_url(creds, "b", "k") == "s3+https://AK:sk@s3.example.com/b/k"
    loc = parse_location("s3://AK:ab/cd@s3.example.com/b/k", SCHEMES)
    assert loc.credentials.secret_key == "ab/cd"
    assert loc.credentials.endpoint == "http://s3.example.com"


@pytest.mark.parametrize("url", [
    "s3://s3.example.com/b/k", "s3://AK@s3.example.com/b/k", "s3://AK:sk@host/k",
    "s3://AK:sk@host/b/", "swift://AK:sk@host/b/k",
])
def test_bad_locations(url: str) -> None:
    with pytest.raises(exception.BadStoreUri) as err:
        parse_location(url, SCHEMES)
    assert "sk" not in str(err.value)


def test_reprs_and_redaction_hide_the_secret() -> None:
    creds = s3_store.Credentials("http://h", "AK", "sekrit")
    assert "sekrit" not in repr(creds)
    assert "sekrit" not in repr(s3_store.Location(creds, "b", "k"))
    assert "sekrit" not in redact_url(location_url(creds, "b", "k"))


def s3_conf(**values: Any) -> cfg.ConfigOpts:
    settings = {"s3_store_host": "127.0.0.1:1", "s3_store_access_key": "AK",
                "s3_store_secret_key": "sk", "s3_store_bucket": "images"}
    settings.update(values)
    return make_conf(glance_store=settings)


@pytest.mark.parametrize("values", [
    {"s3_store_host": None}, {"s3_store_secret_key": None}, {"s3_store_bucket": None},
    {"s3_store_bucket": "Has_Capitals"}, {"s3_store_host": "ftp://h"},
])
def test_bad_configuration(values: dict[str, Any]) -> None:
    with pytest.raises(exception.ConfigError):
        S3Driver(s3_conf(**values))


def test_part_size_is_at_least_5_mib() -> None:
    with pytest.raises(ValueError):
        s3_conf(s3_store_large_object_chunk_size=4)
    opts = make_conf().glance_store
    assert (opts.s3_store_large_object_size, opts.s3_store_large_object_chunk_size,
            opts.s3_store_thread_pools, opts.s3_store_bucket_url_format,
            opts.s3_store_create_bucket_on_put) == (100, 10, 10, "auto", False)


def test_host_without_scheme_is_http(boto3_lib: Any) -> None:
    assert S3Driver(s3_conf()).credentials.endpoint == "http://127.0.0.1:1"


def test_error_mapping(boto3_lib: Any) -> None:
    import botocore.exceptions

    def client_error(code: str, status: int) -> Exception:
        return botocore.exceptions.ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")

    full = s3_store._write_error(client_error("EntityTooLarge", 400), "b")
    assert isinstance(full, exception.StorageFull)
    denied = s3_store._write_error(client_error("SignatureDoesNotMatch", 403), "b")
    assert isinstance(denied, exception.StorageWriteDenied) and "S3" in str(denied)
    assert isinstance(s3_store._write_error(client_error("InternalError", 500), "b"),
                      exception.ServiceUnavailable)
    assert isinstance(s3_store._read_error(client_error("NoSuchKey", 404)), exception.NotFound)


def test_unreachable_s3_is_a_503_naming_s3(boto3_lib: Any) -> None:
    driver = S3Driver(s3_conf(s3_store_host=f"127.0.0.1:{unused_port()}",
                              s3_store_secret_key="sekrit"))
    with pytest.raises(exception.ServiceUnavailable) as err:
        driver.add(str(uuid.uuid4()), iter([b"x"]), 1)
    assert "S3" in str(err.value) and "sekrit" not in str(err.value)
    with pytest.raises(exception.RemoteServiceUnavailable):
        driver.get(location_url(driver.credentials, "images", "img"))


def test_enabled_in_the_store_set(tmp_path: pathlib.Path, boto3_lib: Any) -> None:
    conf = s3_conf(stores=["file", "s3"], default_store="s3",
                   filesystem_store_datadir=str(tmp_path))
    stores = backend.StoreSet(conf)
    assert stores.default_scheme == "s3"
    for scheme in ("s3", "s3+http", "s3+https"):
        assert isinstance(stores.driver_for_scheme(scheme), S3Driver)


# --- against a real S3 API ---------------------------------------------------------------
@pytest.fixture
def make_driver(s3_env: dict[str, str], s3_bucket: str) -> Callable[..., S3Driver]:
    def make(**values: Any) -> S3Driver:
        settings = {"s3_store_host": s3_env["S3_ENDPOINT_URL"],
                    "s3_store_access_key": s3_env["S3_ACCESS_KEY"],
                    "s3_store_secret_key": s3_env["S3_SECRET_KEY"],
                    "s3_store_region": s3_env["S3_REGION"],
                    "s3_store_bucket": s3_bucket,
                    "s3_store_create_bucket_on_put": True,
                    "s3_store_large_object_size": 6,
                    "s3_store_large_object_chunk_size": 5}
        settings.update(values)
        return S3Driver(make_conf(glance_store=settings))
    return make


@pytest.fixture
def driver(make_driver: Callable[..., S3Driver]) -> S3Driver:
    return make_driver()


def test_small_image_is_one_put(driver: S3Driver, s3: Any, s3_listing: Listing,
                                s3_bucket: str, s3_env: dict[str, str]) -> None:
    data = image(MiB + 77)
    image_id = str(uuid.uuid4())
    url, size, checksum, meta = driver.add(image_id, chunks_of(data), len(data))
    host = s3_env["S3_ENDPOINT_URL"].partition("://")[2]
    assert url == (f"s3://{s3_env['S3_ACCESS_KEY'].replace(':', '%3A')}:"
                   f"{s3_env['S3_SECRET_KEY']}@{host}/{s3_bucket}/{image_id}")
    assert (size, checksum, meta) == (len(data), hashlib.md5(data).hexdigest(), {})
    assert s3_listing(s3_bucket) == [image_id]
    assert s3.head_object(Bucket=s3_bucket, Key=image_id)["ETag"].strip('"') == checksum
    sizes = check_read_back_and_delete(driver, url, data, s3_listing, s3_bucket)
    assert sizes[:-1] == [CHUNK_SIZE] * (len(sizes) - 1)


@pytest.mark.parametrize("declared", [True, False], ids=["known-size", "unknown-size"])
def test_large_image_is_a_multipart_upload(driver: S3Driver, s3: Any, s3_listing: Listing,
                                           s3_bucket: str, swift_segments: Listing,
                                           declared: bool) -> None:
    data = image(11 * MiB + 3)
    image_id = str(uuid.uuid4())
    url, size, checksum, _ = driver.add(image_id, chunks_of(data, 1000 * 1000),
                                        len(data) if declared else 0)
    assert (size, checksum) == (len(data), hashlib.md5(data).hexdigest())
    assert s3_listing(s3_bucket) == [image_id]
    assert s3.head_object(Bucket=s3_bucket, Key=image_id)["ETag"].strip('"').endswith("-3")
    check_read_back_and_delete(driver, url, data, s3_listing, s3_bucket)
    assert swift_segments(s3_bucket) == []


def test_small_image_of_unknown_size_is_one_put(driver: S3Driver, s3: Any,
                                                s3_bucket: str) -> None:
    data = image(2 * MiB)
    image_id = str(uuid.uuid4())
    url, _, checksum, _ = driver.add(image_id, chunks_of(data), 0)
    assert s3.head_object(Bucket=s3_bucket, Key=image_id)["ETag"].strip('"') == checksum
    assert read_all(driver, url)[0] == data


def test_empty_image(driver: S3Driver) -> None:
    url, size, checksum, _ = driver.add(str(uuid.uuid4()), iter([]), 0)
    assert (size, checksum) == (0, hashlib.md5(b"").hexdigest())
    assert read_all(driver, url)[:2] == (b"", 0)


@pytest.mark.parametrize("declared", [True, False], ids=["single", "multipart"])
def test_failure_mid_stream_leaves_nothing(driver: S3Driver, s3_listing: Listing,
                                           s3_bucket: str, swift_segments: Listing,
                                           declared: bool) -> None:
    data = image(5 * MiB if declared else 12 * MiB)
    with pytest.raises(CapExceeded):
        driver.add(str(uuid.uuid4()), chunks_of(data, fail_after=len(data) - MiB),
                   len(data) if declared else 0)
    assert s3_listing(s3_bucket) == []
    assert swift_segments(s3_bucket) == []


@pytest.mark.parametrize("declared", [MiB + 1, MiB - 1], ids=["short", "long"])
def test_data_not_matching_the_declared_size_leaves_nothing(
        driver: S3Driver, s3_listing: Listing, s3_bucket: str, declared: int) -> None:
    with pytest.raises(exception.ImageDataMismatch):
        driver.add(str(uuid.uuid4()), chunks_of(image(MiB)), declared)
    assert s3_listing(s3_bucket) == []


def test_s3_error_mid_upload_aborts_the_upload(
        driver: S3Driver, s3_listing: Listing, s3_bucket: str, swift_segments: Listing,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.exceptions

    client = driver._client(driver.credentials)
    real_upload_part = client.upload_part

    def upload_part(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "QuotaExceeded"},
                 "ResponseMetadata": {"HTTPStatusCode": 413}}, "UploadPart")
        return real_upload_part(**kwargs)

    monkeypatch.setattr(client, "upload_part", upload_part)
    with pytest.raises(exception.StorageFull):
        driver.add(str(uuid.uuid4()), chunks_of(image(12 * MiB)), 0)
    assert s3_listing(s3_bucket) == []
    assert swift_segments(s3_bucket) == []


def test_duplicate(driver: S3Driver) -> None:
    check_duplicate(driver)


def test_missing_bucket_without_create_on_put(make_driver: Callable[..., S3Driver],
                                              s3_listing: Listing, s3_bucket: str) -> None:
    driver = make_driver(s3_store_create_bucket_on_put=False)
    with pytest.raises(exception.StoreError) as err:
        driver.add(str(uuid.uuid4()), chunks_of(b"data"), 4)
    assert s3_bucket in str(err.value) and "s3_store_create_bucket_on_put" in str(err.value)


def test_existing_bucket_without_create_on_put(make_driver: Callable[..., S3Driver],
                                               s3: Any, s3_bucket: str) -> None:
    s3.create_bucket(Bucket=s3_bucket)
    driver = make_driver(s3_store_create_bucket_on_put=False)
    url, _, _, _ = driver.add(str(uuid.uuid4()), chunks_of(b"data"), 4)
    assert read_all(driver, url)[0] == b"data"


def test_wrong_secret_is_a_5xx_naming_s3_not_the_secret(
        make_driver: Callable[..., S3Driver], s3: Any, s3_listing: Listing,
        s3_bucket: str) -> None:
    s3.create_bucket(Bucket=s3_bucket)
    secret = "not-the-secret-" + uuid.uuid4().hex
    driver = make_driver(s3_store_secret_key=secret)
    with pytest.raises(exception.StorageWriteDenied) as err:
        driver.add(str(uuid.uuid4()), chunks_of(image(1000)), 1000)
    assert isinstance(err.value, exception.ServiceUnavailable)
    assert "S3" in str(err.value) and secret not in str(err.value)
    assert s3_listing(s3_bucket) == []


def test_missing_object(driver: S3Driver) -> None:
    check_missing_object(driver)


def test_the_secret_is_never_logged(driver: S3Driver, s3_env: dict[str, str],
                                    caplog: pytest.LogCaptureFixture) -> None:
    check_secret_never_logged(driver, s3_env["S3_SECRET_KEY"], caplog,
                              size=11 * MiB, fail_after=7 * MiB)


def test_interrupted_download_raises(make_driver: Callable[..., S3Driver],
                                     s3_env: dict[str, str], relay: Any) -> None:
    cutter, endpoint = relay(s3_env["S3_ENDPOINT_URL"])
    driver = make_driver(s3_store_host=endpoint)
    data = image(3 * MiB)
    url, _, _, _ = driver.add(str(uuid.uuid4()), chunks_of(data), len(data))
    check_interrupted_download(driver, cutter, url, data)


def test_leftovers_of_a_dead_writer_are_removed(driver: S3Driver, s3: Any,
                                                s3_listing: Listing,
                                                s3_bucket: str) -> None:
    """A multipart upload a dead writer never finished, and a finished
    object the record never took, go; a kept location stays."""
    driver.remove_leftovers(str(uuid.uuid4()))       # no bucket yet
    image_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    driver.add(other, iter([b"x" * 10]), 10)
    s3.create_multipart_upload(Bucket=s3_bucket, Key=image_id)
    assert s3_listing(s3_bucket) == [other, "upload:" + image_id]
    driver.remove_leftovers(image_id)
    assert s3_listing(s3_bucket) == [other]
    driver.remove_leftovers(other, keep=[location_url(driver.credentials, s3_bucket, other)])
    assert s3_listing(s3_bucket) == [other]
    driver.remove_leftovers(other)
    assert s3_listing(s3_bucket) == []
