"""Range downloads on v2, as the newest Glance: 206 with Content-Range, 416
for what cannot be served or parsed, 400 for several ranges, the legacy
request Content-Range; no checksum on parts."""

from __future__ import annotations

import hashlib
import os

import pytest

from .conftest import V2

pytestmark = pytest.mark.timeout(60)

DATA = os.urandom(3 * 1024 * 1024 + 11)
SIZE = len(DATA)


@pytest.fixture
def image_id(v2: V2) -> str:
    image = v2.create(name="r", disk_format="raw", container_format="bare")
    assert v2.upload(image["id"], DATA).status_int == 204
    return str(image["id"])


def get(v2: V2, image_id: str, **headers: str):
    return v2.call("GET", "/images/%s/file" % image_id, headers=headers)


def test_a_full_download_offers_ranges(v2: V2, image_id: str) -> None:
    response = get(v2, image_id)
    assert response.status_int == 200 and response.body == DATA
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-MD5"] == hashlib.md5(DATA).hexdigest()


@pytest.mark.parametrize("header, first, last", [
    ("bytes=3-10", 3, 10),
    ("bytes=0-0", 0, 0),
    ("bytes=1048570-2097160", 1048570, 2097160),
    ("bytes=3000000-", 3000000, SIZE - 1),
    ("bytes=-1048576", SIZE - 1048576, SIZE - 1),
    ("bytes=-99999999", 0, SIZE - 1),
    ("bytes=10-99999999", 10, SIZE - 1),
])
def test_one_range_is_a_206_with_just_those_bytes(v2: V2, image_id: str, header: str,
                                                 first: int, last: int) -> None:
    response = get(v2, image_id, Range=header)
    assert response.status_int == 206
    assert response.headers["Content-Range"] == "bytes %d-%d/%d" % (first, last, SIZE)
    assert response.content_length == last - first + 1
    assert response.body == DATA[first:last + 1]
    assert "Content-MD5" not in response.headers


@pytest.mark.parametrize("header", [
    "bytes=%d-" % SIZE, "bytes=10-5", "bytes=-0", "items=0-9", "bytes=a-b", "bytes="])
def test_unsatisfiable_or_unparsable_ranges_are_416(v2: V2, image_id: str,
                                                    header: str) -> None:
    response = get(v2, image_id, Range=header)
    assert response.status_int == 416, response.text
    assert response.headers["Content-Range"] == "bytes */%d" % SIZE


def test_several_ranges_are_400(v2: V2, image_id: str) -> None:
    response = get(v2, image_id, Range="bytes=0-1,5-6")
    assert response.status_int == 400
    assert "multiple ranges" in response.text


@pytest.mark.parametrize("header, first, last", [
    ("bytes 5-9/%d" % SIZE, 5, 9),
    ("bytes 5-9/*", 5, 9),
    ("bytes %d-%d/*" % (SIZE - 10, SIZE - 1), SIZE - 10, SIZE - 1),
])
def test_the_legacy_request_content_range(v2: V2, image_id: str, header: str,
                                          first: int, last: int) -> None:
    response = get(v2, image_id, **{"Content-Range": header})
    assert response.status_int == 206
    assert response.headers["Content-Range"] == "bytes %d-%d/%d" % (first, last, SIZE)
    assert response.body == DATA[first:last + 1]


@pytest.mark.parametrize("header", [
    "bytes %d-%d/*" % (SIZE - 10, SIZE), "bytes %d-%d/%d" % (SIZE, SIZE + 5, SIZE + 6),
    "bytes 9-5/*", "bytes=1-2", "junk"])
def test_a_legacy_content_range_that_cannot_be_served_is_416(v2: V2, image_id: str,
                                                             header: str) -> None:
    assert get(v2, image_id, **{"Content-Range": header}).status_int == 416


def test_range_wins_over_the_legacy_header(v2: V2, image_id: str) -> None:
    response = get(v2, image_id, Range="bytes=0-1", **{"Content-Range": "bytes 5-9/*"})
    assert response.status_int == 206 and response.body == DATA[:2]


def test_an_image_without_data_is_204_whatever_the_range(v2: V2) -> None:
    image = v2.create(name="empty", disk_format="raw", container_format="bare")
    assert get(v2, image["id"], Range="bytes=0-1").status_int == 204
