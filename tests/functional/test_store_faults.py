"""Swift and S3 failures seen through glance-api: wrong credentials, and
the object store restarted in the middle of a download."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
import requests

from tests.functional import harness

pytestmark = [pytest.mark.timeout(300), pytest.mark.stores("swift", "s3")]

OWNER = harness.identity("owner")
IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "Content-Type": "application/octet-stream"}
STORE_NAMES = {"swift": "Swift", "s3": "S3"}
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
