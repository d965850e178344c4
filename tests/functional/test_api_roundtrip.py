"""The v1 API end to end on every backend set: create, upload (declared
length and chunked), HEAD, download, update, members, delete; and a big
image streamed both ways through glance-api with flat memory.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(300)

IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "Content-Type": "application/octet-stream"}
OWNER = harness.identity("owner")
MiB = 1024 * 1024
# The big image: 2 GiB moves in about a minute each way on two cores
# (glance-api, the proxy and the object server share them).
BIG_SIZE = int(os.environ.get("GLANCE_TEST_BIG_IMAGE_MIB", "2048")) * MiB
# glance-api may hold a few chunks and one S3 part or Swift segment buffer;
# anything near the image size means it buffered the image.
FLAT_MEMORY = 160 * MiB


def url(dep: harness.Deployment, image_id: str = "", node: int = 0) -> str:
    return dep.urls[node] + "/v1/images" + ("/" + image_id if image_id else "")


def create(dep: harness.Deployment, data=None, headers=None, who=OWNER) -> dict:
    response = requests.post(url(dep), data=data,
                             headers=dict(who, **IMAGE, **(headers or {})), timeout=120)
    assert response.status_code == 201, response.text
    return response.json()["image"]


def test_upload_with_content_length_then_head_download_update_delete(glance):
    data = os.urandom(3 * MiB + 17)
    image = create(glance, data, {"x-image-meta-name": "sized",
                                  "x-image-meta-property-distro": "debian"})
    assert image["status"] == "active" and image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    image_url = url(glance, image["id"])

    head = requests.head(image_url, headers=OWNER, timeout=30)
    assert head.status_code == 200
    assert head.headers["x-image-meta-size"] == str(len(data))
    assert head.headers["x-image-meta-status"] == "active"
    assert head.headers["x-image-meta-property-distro"] == "debian"

    download = requests.get(image_url, headers=OWNER, timeout=60)
    assert download.status_code == 200
    assert download.headers["x-image-meta-checksum"] == hashlib.md5(data).hexdigest()
    assert download.content == data
    assert download.headers["Accept-Ranges"] == "bytes"
    # Ranges come from the store (a seek, a Swift, S3 or RBD range read).
    for spec, first, last in (("1048570-2097160", 1048570, 2097160),
                              ("-5", len(data) - 5, len(data) - 1)):
        part = requests.get(image_url, headers=dict(OWNER, Range="bytes=" + spec),
                            timeout=60)
        assert part.status_code == 206, part.text
        assert part.headers["Content-Range"] == "bytes %d-%d/%d" % (first, last, len(data))
        assert part.content == data[first:last + 1]
        assert "x-image-meta-checksum" not in part.headers
    past = requests.get(image_url, headers=dict(OWNER, Range="bytes=%d-" % len(data)),
                        timeout=30)
    assert past.status_code == 416
    assert past.headers["Content-Range"] == "bytes */%d" % len(data)

    updated = requests.put(image_url, headers=dict(OWNER, **{
        "x-image-meta-name": "renamed", "x-image-meta-property-arch": "x86_64",
        "x-glance-registry-purge-props": "false"}), timeout=30)
    assert updated.status_code == 200, updated.text
    meta = updated.json()["image"]
    assert meta["name"] == "renamed"
    assert meta["properties"] == {"distro": "debian", "arch": "x86_64"}
    for response in (updated, head, download):
        text = response.text if response is not download else ""
        text += repr(dict(response.headers))
        assert not [s for s in glance.revealing() if s in text]

    assert glance.stored_files() != []
    deleted = requests.delete(image_url, headers=OWNER, timeout=30)
    assert deleted.status_code == 200, deleted.text
    assert requests.head(image_url, headers=OWNER, timeout=30).status_code == 404
    assert requests.get(image_url, headers=OWNER, timeout=30).status_code == 404
    assert glance.stored_files() == []


def test_chunked_upload_and_queued_image_uploaded_by_put(glance):
    data = os.urandom(2 * MiB + 1)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 100_000):
            yield data[start:start + 100_000]

    image = create(glance, chunks(), {"x-image-meta-name": "chunked"})
    assert image["status"] == "active" and image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert requests.get(url(glance, image["id"]), headers=OWNER, timeout=60).content == data

    queued = create(glance, None, {"x-image-meta-name": "later"})
    assert queued["status"] == "queued"
    later = os.urandom(500_000)
    put = requests.put(url(glance, queued["id"]), data=later,
                       headers=dict(OWNER, **{"Content-Type": "application/octet-stream"}),
                       timeout=60)
    assert put.status_code == 200, put.text
    assert put.json()["image"]["status"] == "active"
    assert put.json()["image"]["size"] == len(later)
    assert requests.get(url(glance, queued["id"]), headers=OWNER, timeout=60).content == later

    again = requests.put(url(glance, queued["id"]), data=b"x" * 10,
                         headers=dict(OWNER, **{"Content-Type": "application/octet-stream"}),
                         timeout=60)
    assert again.status_code == 409
    for image_id in (image["id"], queued["id"]):
        assert requests.delete(url(glance, image_id), headers=OWNER,
                               timeout=30).status_code == 200
    assert glance.stored_files() == []


def test_members_share_a_private_image(glance):
    data = b"members only" * 1000
    image = create(glance, data, {"x-image-meta-name": "shared"})
    image_url = url(glance, image["id"])
    friend = harness.identity("friend")
    assert requests.get(image_url, headers=friend, timeout=30).status_code == 404

    assert requests.put(image_url + "/members/friend", headers=OWNER,
                        timeout=30).status_code == 204
    members = requests.get(image_url + "/members", headers=OWNER, timeout=30).json()
    assert [m["member_id"] for m in members["members"]] == ["friend"]
    shared = requests.get(glance.url + "/v1/shared-images/friend", headers=OWNER,
                          timeout=30).json()
    assert [s["image_id"] for s in shared["shared_images"]] == [image["id"]]
    assert requests.get(image_url, headers=friend, timeout=30).content == data

    replaced = requests.put(image_url + "/members", headers=OWNER, timeout=30, json={
        "memberships": [{"member_id": "other", "can_share": False}]})
    assert replaced.status_code == 204, replaced.text
    members = requests.get(image_url + "/members", headers=OWNER, timeout=30).json()
    assert [m["member_id"] for m in members["members"]] == ["other"]
    assert requests.get(image_url, headers=friend, timeout=30).status_code == 404

    assert requests.delete(image_url + "/members/other", headers=OWNER,
                           timeout=30).status_code == 204
    members = requests.get(image_url + "/members", headers=OWNER, timeout=30).json()
    assert members["members"] == []
    assert requests.delete(image_url, headers=OWNER, timeout=30).status_code == 200


class RssSampler:
    """Samples a process's resident set size until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = self.baseline = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open("/proc/%d/status" % self.pid) as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def pattern_stream(size: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """``size`` bytes in 1 MiB chunks, cheap to make, hashed as they go."""
    block = os.urandom(MiB)
    sent = 0
    while sent < size:
        chunk = block[:min(MiB, size - sent)]
        # A counter in every chunk, so a misplaced chunk changes the checksum.
        chunk = sent.to_bytes(8, "big") + chunk[8:]
        digest.update(chunk)
        sent += len(chunk)
        yield chunk


@pytest.mark.stores("swift", "s3")
@pytest.mark.timeout(900)
def test_big_image_streams_both_ways_with_flat_api_memory(glance):
    assert glance.api.process is not None
    sent = hashlib.md5()
    with RssSampler(glance.api.process.pid) as upload_memory:
        image = create(glance, pattern_stream(BIG_SIZE, sent),
                       {"x-image-meta-name": "big", "x-image-meta-size": str(BIG_SIZE)})
    assert image["status"] == "active" and image["size"] == BIG_SIZE
    assert image["checksum"] == sent.hexdigest()

    received, size = hashlib.md5(), 0
    with RssSampler(glance.api.process.pid) as download_memory:
        with requests.get(url(glance, image["id"]), headers=OWNER, stream=True,
                          timeout=120) as response:
            assert response.status_code == 200
            for chunk in response.iter_content(MiB):
                received.update(chunk)
                size += len(chunk)
    assert size == BIG_SIZE and received.hexdigest() == sent.hexdigest()
    print("glance-api RSS growth: upload %.1f MiB, download %.1f MiB (image %d MiB)"
          % (upload_memory.growth / MiB, download_memory.growth / MiB, BIG_SIZE // MiB))
    assert upload_memory.growth < FLAT_MEMORY, upload_memory.growth
    assert download_memory.growth < FLAT_MEMORY, download_memory.growth

    assert requests.delete(url(glance, image["id"]), headers=OWNER,
                           timeout=120).status_code == 200
    assert glance.stored_files() == []
