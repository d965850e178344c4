"""Fixtures for tests against a real Swift, its S3 API and Ceph (a pytest plugin).

Test modules load it with ``pytest_plugins = ["tests.unit.store.backends"]``.
The settings come from the environment, as ``tools/backends/start-swift.sh``
prints them: ``SWIFT_AUTH_URL SWIFT_USER SWIFT_KEY`` for Swift,
``S3_ENDPOINT_URL S3_ACCESS_KEY S3_SECRET_KEY S3_REGION`` for S3, and
``tools/backends/start-ceph.sh``'s ``CEPH_CONF CEPH_USER CEPH_POOL`` for RBD.

Tests are deselected, with a note, rather than failed or skipped when what
they need is missing, so a developer without the backends or the client
libraries still runs everything else:

- a test using ``swift_env`` / ``s3_env`` / ``rbd_env`` (directly or
  through another fixture) needs the variables above and the client
  library; it carries the ``requires_swift`` / ``requires_s3`` /
  ``requires_rbd`` marker for ``-m``;
- a test using ``swiftclient_lib`` / ``boto3_lib`` needs only the library.

It also holds what the Swift and S3 driver tests share: image data and
chunk iterators, ``read_all``, and the ``check_*`` helpers holding the
bodies of tests that are the same for both drivers.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from glance_clone.common import exception
from glance_clone.store.base import CHUNK_SIZE, Driver
from tests.support.cutting_relay import CuttingRelay, relay_to

MiB = 1024 * 1024
# listing(container or bucket) -> names in it
Listing = Callable[[str], list[str]]
SWIFT_VARS = ("SWIFT_AUTH_URL", "SWIFT_USER", "SWIFT_KEY")
S3_VARS = ("S3_ENDPOINT_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY")
CEPH_VARS = ("CEPH_CONF", "CEPH_USER", "CEPH_POOL")


def _env(names: tuple[str, ...]) -> dict[str, str] | None:
    values = {name: os.environ.get(name, "") for name in names}
    return values if all(values.values()) else None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _missing_backend(names: tuple[str, ...], module: str, package: str,
                     script: str = "start-swift.sh") -> str | None:
    if not _installed(module):
        return f"{package} is not installed"
    if _env(names) is None:
        return f"set {', '.join(names)} (tools/backends/{script})"
    return None


# fixture -> (marker or None, what it is, check returning why it is unusable)
REQUIREMENTS: dict[str, tuple[str | None, str, Callable[[], str | None]]] = {
    "swift_env": ("requires_swift", "a real Swift",
                  lambda: _missing_backend(SWIFT_VARS, "swiftclient", "python-swiftclient")),
    "s3_env": ("requires_s3", "a real S3 API",
               lambda: _missing_backend(S3_VARS, "boto3", "boto3")),
    "rbd_env": ("requires_rbd", "a real Ceph",
                lambda: _missing_backend(CEPH_VARS, "rbd", "python3-rbd (linked into the "
                                         "venv by tools/backends/link-ceph-python.sh)",
                                         "start-ceph.sh")),
    "swiftclient_lib": (None, "python-swiftclient",
                        lambda: None if _installed("swiftclient") else "not installed"),
    "boto3_lib": (None, "boto3", lambda: None if _installed("boto3") else "not installed"),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"requires_swift: needs a real Swift ({SWIFT_VARS})")
    config.addinivalue_line("markers", f"requires_s3: needs a real S3 API ({S3_VARS})")
    config.addinivalue_line("markers", f"requires_rbd: needs a real Ceph ({CEPH_VARS})")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = {fixture: check() for fixture, (_, _, check) in REQUIREMENTS.items()}
    kept: list[pytest.Item] = []
    dropped: dict[str, list[pytest.Item]] = {}
    for item in items:
        needs = [f for f in REQUIREMENTS if f in getattr(item, "fixturenames", ())]
        for fixture in needs:
            marker = REQUIREMENTS[fixture][0]
            if marker:
                item.add_marker(marker)
        unmet = [fixture for fixture in needs if reasons[fixture]]
        if unmet:
            dropped.setdefault(unmet[0], []).append(item)
        else:
            kept.append(item)
    if not dropped:
        return
    items[:] = kept
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for fixture, deselected in dropped.items():
        config.hook.pytest_deselected(items=deselected)
        if reporter is not None:
            reporter.write_line(f"deselected {len(deselected)} tests needing "
                                f"{REQUIREMENTS[fixture][1]}: {reasons[fixture]}")


@pytest.fixture
def swiftclient_lib() -> Any:
    return importlib.import_module("swiftclient.client")


@pytest.fixture
def boto3_lib() -> Any:
    return importlib.import_module("boto3")


def unique_name(prefix: str) -> str:
    """A container or bucket name of its own for one test (DNS-compliant)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- image data and what the driver tests share ------------------------------------
class CapExceeded(Exception):
    """Stands in for the caller's size-cap error raised mid-stream."""


def image(size: int) -> bytes:
    return os.urandom(size)


def chunks_of(data: bytes, size: int = CHUNK_SIZE, fail_after: int | None = None,
              error: BaseException | None = None) -> Iterator[bytes]:
    """``data`` in chunks of ``size``; raises ``error`` (CapExceeded) instead
    of the chunk starting at or after ``fail_after``."""
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise error or CapExceeded("too big")
        yield data[start:start + size]


def read_all(driver: Driver, url: str) -> tuple[bytes, int | None, list[int]]:
    """(data, size announced, chunk sizes) of a whole download, checked closed."""
    it, size = driver.get(url)
    chunks = list(it)
    assert it.closed
    return b"".join(chunks), size, [len(c) for c in chunks]


def check_read_back_and_delete(driver: Driver, url: str, data: bytes, listing: Listing,
                               place: str) -> list[int]:
    """``url`` reads back as ``data``, whose size get_size tells; deleting it
    empties ``place`` (container or bucket). Returns the download's chunk sizes."""
    got, got_size, sizes = read_all(driver, url)
    assert got == data and got_size == len(data)
    assert driver.get_size(url) == len(data)
    # Ranges are asked of the store, not cut from a whole download.
    for offset, length in ((3, 1000), (len(data) - 7, 7)):
        part = driver.get_range(url, offset, length)
        assert b"".join(part) == data[offset:offset + length]
        part.close()
    driver.delete(url)
    assert listing(place) == []
    return sizes


def check_duplicate(driver: Driver) -> None:
    image_id = str(uuid.uuid4())
    url, _, _, _ = driver.add(image_id, chunks_of(b"first"), 5)
    with pytest.raises(exception.Duplicate):
        driver.add(image_id, chunks_of(b"second"), 6)
    assert read_all(driver, url)[0] == b"first"


def check_missing_object(driver: Driver) -> None:
    url, _, _, _ = driver.add(str(uuid.uuid4()), chunks_of(b"x"), 1)
    missing = url.rsplit("/", 1)[0] + "/" + str(uuid.uuid4())
    for call in (driver.get, driver.get_size, driver.delete):
        with pytest.raises(exception.NotFound):
            call(missing)


def check_secret_never_logged(driver: Driver, secret: str, caplog: pytest.LogCaptureFixture,
                              size: int, fail_after: int) -> None:
    """Every operation, failures included, with ``size`` byte images (large
    ones: segments or parts); ``fail_after`` cuts the failing upload."""
    caplog.set_level(logging.DEBUG)
    url, _, _, _ = driver.add(str(uuid.uuid4()), chunks_of(image(size)), 0)
    read_all(driver, url)
    driver.get_size(url)
    driver.delete(url)
    for call in (driver.get, driver.delete):
        with pytest.raises(exception.NotFound):
            call(url)
    with pytest.raises(CapExceeded):
        driver.add(str(uuid.uuid4()), chunks_of(image(size), fail_after=fail_after), 0)
    assert caplog.records
    for record in caplog.records:
        assert secret not in record.getMessage(), record.getMessage()


def check_interrupted_download(driver: Driver, cutter: CuttingRelay, url: str,
                               data: bytes) -> None:
    """A download of ``url`` (``data``) that ``cutter`` cuts raises; the next succeeds."""
    cutter.cut_after(MiB)
    it, size = driver.get(url)
    assert size == len(data)
    received = 0
    with pytest.raises(exception.RemoteDataIncomplete):
        for chunk in it:
            received += len(chunk)
    assert cutter.cuts == 1 and received < len(data)
    assert it.closed
    assert read_all(driver, url)[0] == data


# --- Swift ---------------------------------------------------------------------
@pytest.fixture
def swift_env() -> dict[str, str]:
    env = _env(SWIFT_VARS)
    assert env is not None  # deselected otherwise
    return env


def swift_connection(env: dict[str, str]) -> Any:
    from swiftclient.client import Connection

    return Connection(authurl=env["SWIFT_AUTH_URL"], user=env["SWIFT_USER"],
                      key=env["SWIFT_KEY"], auth_version="1", retries=1)


@pytest.fixture
def swift_conn(swift_env: dict[str, str]) -> Iterator[Any]:
    """A swiftclient connection for looking behind the driver's back."""
    conn = swift_connection(swift_env)
    yield conn
    conn.close()


def swift_names(conn: Any, container: str) -> list[str]:
    """Object names in ``container`` ([] when it does not exist)."""
    from swiftclient.client import ClientException

    try:
        return [o["name"] for o in conn.get_container(container, full_listing=True)[1]]
    except ClientException as err:
        if err.http_status == 404:
            return []
        raise


@pytest.fixture
def swift_listing(swift_conn: Any) -> Listing:
    """``listing(container)``: its object names, [] when it does not exist."""
    return functools.partial(swift_names, swift_conn)


@pytest.fixture
def swift_container(swift_conn: Any) -> Iterator[str]:
    """A fresh container name (not created); emptied and removed afterwards."""
    name = unique_name("glance-t")
    yield name
    for container in (name, name + "+segments"):
        for obj in swift_names(swift_conn, container):
            with contextlib.suppress(Exception):
                swift_conn.delete_object(container, obj)
        with contextlib.suppress(Exception):
            swift_conn.delete_container(container)


# --- Ceph ----------------------------------------------------------------------
@pytest.fixture
def rbd_env() -> dict[str, str]:
    env = _env(CEPH_VARS)
    assert env is not None  # deselected otherwise
    return env


# --- S3 ------------------------------------------------------------------------
@pytest.fixture
def s3_env() -> dict[str, str]:
    env = _env(S3_VARS)
    assert env is not None  # deselected otherwise
    env["S3_REGION"] = os.environ.get("S3_REGION") or "us-east-1"
    return env


def s3_client(endpoint: str, access: str, secret: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"},
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"))


@pytest.fixture
def s3(s3_env: dict[str, str]) -> Any:
    """A boto3 client for looking behind the driver's back."""
    return s3_client(s3_env["S3_ENDPOINT_URL"], s3_env["S3_ACCESS_KEY"],
                     s3_env["S3_SECRET_KEY"], s3_env["S3_REGION"])


def s3_keys(client: Any, bucket: str) -> list[str]:
    """Object keys in ``bucket`` ([] when it does not exist)."""
    try:
        response = client.list_objects_v2(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        return []
    return [o["Key"] for o in response.get("Contents", [])]


def s3_uploads(client: Any, bucket: str) -> list[str]:
    """Keys of unfinished multipart uploads in ``bucket``."""
    try:
        response = client.list_multipart_uploads(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        return []
    return [u["Key"] for u in response.get("Uploads", [])]


@pytest.fixture
def s3_listing(s3: Any) -> Listing:
    """``listing(bucket)``: its keys plus unfinished multipart uploads (marked)."""
    def listing(bucket: str) -> list[str]:
        return s3_keys(s3, bucket) + [f"upload:{key}" for key in s3_uploads(s3, bucket)]
    return listing


@pytest.fixture
def s3_bucket(s3: Any) -> Iterator[str]:
    """A fresh bucket name (not created); emptied and removed afterwards."""
    name = unique_name("glance-t")
    yield name
    with contextlib.suppress(Exception):
        for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"],
                                      UploadId=upload["UploadId"])
    with contextlib.suppress(Exception):
        for key in s3_keys(s3, name):
            s3.delete_object(Bucket=name, Key=key)
    with contextlib.suppress(Exception):
        s3.delete_bucket(Bucket=name)


@pytest.fixture
def swift_segments() -> Iterator[Listing]:
    """``segments(bucket)``: the parts of S3 multipart uploads, which Swift's
    S3 API keeps in a ``<bucket>+segments`` container it does not show; []
    without Swift's settings."""
    env = _env(SWIFT_VARS)
    if env is None:
        yield lambda bucket: []
        return
    conn = swift_connection(env)
    yield lambda bucket: swift_names(conn, bucket + "+segments")
    conn.close()


# --- a relay that can cut a download ------------------------------------------------
@pytest.fixture
def relay() -> Iterator[Callable[[str], tuple[CuttingRelay, str]]]:
    """``relay(url)``: a CuttingRelay to ``url``'s host and port, and ``url``
    rewritten to go through it. Relays are closed after the test."""
    relays: list[CuttingRelay] = []

    def make(url: str) -> tuple[CuttingRelay, str]:
        relay, relayed = relay_to(url)
        relays.append(relay)
        return relay, relayed

    yield make
    for relay in relays:
        relay.close()
