"""Swift and S3 failures seen through glance-api: wrong credentials, the
object store restarted in the middle of a download, and a store connection
that drops in the middle of a body."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from tests.functional import harness
from tests.support.cutting_relay import CuttingRelay, relay_to
from tests.support.raw_http import read_to_end

pytestmark = [pytest.mark.timeout(300), pytest.mark.stores("swift", "s3")]

OWNER = harness.identity("owner")
IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "Content-Type": "application/octet-stream"}
STORE_NAMES = {"swift": "Swift", "s3": "S3"}
ENDPOINTS = {"swift": "SWIFT_AUTH_URL", "s3": "S3_ENDPOINT_URL"}
WRONG_SECRET = "not-the-key-4c7e1f"
MiB = 1024 * 1024


def test_wrong_credentials_fail_the_upload_naming_the_store(tmp_path, backend):
    store = harness.backend_set(backend).store
    secret = {"swift": "swift_store_key", "s3": "s3_store_secret_key"}[store]
    dep = harness.Deployment(tmp_path, backend=backend,
                             api_options={"glance_store": {secret: WRONG_SECRET}})
    dep.start()
    try:
        response = requests.post(dep.url + "/v1/images", data=os.urandom(300_000),
                                 headers=dict(OWNER, **IMAGE, **{"x-image-meta-name": "w"}),
                                 timeout=120)
        assert 500 <= response.status_code < 600, (response.status_code, response.text)
        assert STORE_NAMES[store] in response.text, response.text
        assert WRONG_SECRET not in response.text + repr(dict(response.headers))
        assert [i["name"] for i in harness.killed_images(dep)] == ["w"]
        assert dep.stored_files() == []
        assert WRONG_SECRET not in dep.api.log()
    finally:
        dep.stop()


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[harness.PrivateSwift]:
    """A Swift cluster (with S3) of this module's own, to restart."""
    cluster = harness.PrivateSwift().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.needs("swift-server")
def test_store_restarted_mid_download_aborts_it_then_serves_again(tmp_path, backend,
                                                                  private_cluster):
    dep = harness.Deployment(tmp_path, backend=backend,
                             environ=dict(os.environ, **private_cluster.env))
    dep.start()
    try:
        data = os.urandom(MiB) * 64
        created = requests.post(dep.url + "/v1/images", data=data,
                                headers=dict(OWNER, **IMAGE), timeout=120)
        assert created.status_code == 201, created.text
        image_url = dep.url + "/v1/images/" + created.json()["image"]["id"]

        received = 0
        with pytest.raises(requests.exceptions.RequestException):
            with requests.get(image_url, headers=OWNER, stream=True, timeout=60) as response:
                assert response.status_code == 200
                chunks = response.iter_content(MiB)
                for _ in range(4):
                    received += len(next(chunks))
                private_cluster.restart_proxy()
                for chunk in chunks:
                    received += len(chunk)
        # The client saw an error, never a complete-looking short image.
        assert received < len(data)

        again = requests.get(image_url, headers=OWNER, timeout=120)
        assert again.status_code == 200
        assert hashlib.md5(again.content).digest() == hashlib.md5(data).digest()
        assert dep.api.process is not None and dep.api.process.poll() is None
    finally:
        dep.stop()


@pytest.fixture
def relayed(backend) -> Iterator[tuple[CuttingRelay, dict[str, str]]]:
    """The set's object store reached through a CuttingRelay: the relay,
    and an environment whose endpoint goes through it."""
    variable = ENDPOINTS[harness.backend_set(backend).store]
    relay, url = relay_to(os.environ[variable])
    try:
        yield relay, dict(os.environ, **{variable: url})
    finally:
        relay.close()


def test_a_store_answer_cut_short_is_a_502_or_a_cut_connection(tmp_path, backend, relayed):
    """Before the first byte goes out, the status says the store failed
    (502, as for a short remote source; not 503, which asks to come back
    later); after it, the connection is closed mid-body, so the client
    never takes a short image for a whole one."""
    relay, environ = relayed
    store = harness.backend_set(backend).store
    dep = harness.Deployment(tmp_path, backend=backend, environ=environ).start()
    try:
        small, large = os.urandom(300_000), os.urandom(3 * MiB)
        urls = []
        for data in (small, large):
            created = requests.post(dep.url + "/v1/images", data=data,
                                    headers=dict(OWNER, **IMAGE), timeout=120)
            assert created.status_code == 201, created.text
            urls.append(dep.url + "/v1/images/" + created.json()["image"]["id"])

        relay.cut_after(100_000)     # inside the first piece read from the store
        response = requests.get(urls[0], headers=OWNER, timeout=60)
        assert response.status_code == 502, (response.status_code, response.text)
        assert STORE_NAMES[store] in response.text, response.text
        assert relay.cuts == 1

        relay.cut_after(2 * MiB)     # after the headers went out
        api = urlsplit(dep.url)
        with socket.create_connection((api.hostname, api.port), timeout=60) as sock:
            head = "".join("%s: %s\r\n" % item for item in OWNER.items())
            sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                          % (urlsplit(urls[1]).path, api.netloc, head)).encode())
            # A keep-alive connection: read_to_end returns only because the
            # api closed it (a socket timeout here would fail the test).
            answer = read_to_end(sock)
        status, _, body = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200"), status
        assert b"Content-Length: %d" % len(large) in status
        assert 0 < len(body) < len(large)
        assert relay.cuts == 2

        for url, data in zip(urls, (small, large), strict=True):
            again = requests.get(url, headers=OWNER, timeout=120)
            assert again.status_code == 200 and again.content == data
    finally:
        dep.stop()
