"""Range downloads on v1: one range per request, 206 with Content-Range,
416 past the end, Accept-Ranges on full downloads, no checksum on parts."""

from __future__ import annotations

import os

import pytest

from .helpers import ADMIN, create_image

pytestmark = pytest.mark.timeout(60)

DATA = os.urandom(3 * 1024 * 1024 + 11)


def get(stack, image_id, range_header=None):
    headers = {"Range": range_header} if range_header else {}
    return stack.request("/v1/images/" + image_id, "GET", headers=headers, **ADMIN)


@pytest.fixture
def image(stack):
    return create_image(stack, body=DATA)


def test_a_full_download_offers_ranges(stack, image):
    response = get(stack, image["id"])
    assert response.status_int == 200
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["x-image-meta-checksum"] == image["checksum"]
    assert response.body == DATA


@pytest.mark.parametrize("header, first, last", [
    ("bytes=0-0", 0, 0),
    ("bytes=1048570-2097160", 1048570, 2097160),
    ("bytes=3000000-", 3000000, len(DATA) - 1),
    ("bytes=-1048576", len(DATA) - 1048576, len(DATA) - 1),
    ("bytes=10-99999999", 10, len(DATA) - 1),
])
def test_one_range_is_a_206_with_just_those_bytes(stack, image, header, first, last):
    response = get(stack, image["id"], header)
    assert response.status_int == 206
    assert response.headers["Content-Range"] == "bytes %d-%d/%d" % (first, last, len(DATA))
    assert response.content_length == last - first + 1
    assert response.body == DATA[first:last + 1]
    assert "x-image-meta-checksum" not in response.headers
    assert "ETag" not in response.headers
    assert response.headers["x-image-meta-size"] == str(len(DATA))


@pytest.mark.parametrize("header", ["bytes=%d-" % len(DATA), "bytes=-0"])
def test_a_range_past_the_end_is_416(stack, image, header):
    response = get(stack, image["id"], header)
    assert response.status_int == 416
    assert response.headers["Content-Range"] == "bytes */%d" % len(DATA)


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "lines=1-2", "bytes=9-1"])
def test_ranges_not_served_get_the_whole_image(stack, image, header):
    response = get(stack, image["id"], header)
    assert response.status_int == 200 and response.body == DATA


def test_the_file_store_seeks_instead_of_reading_the_start(stack, image, monkeypatch):
    reads: list[tuple[int, int]] = []
    real_pread = os.pread

    def counting_pread(fd, n, offset):
        data = real_pread(fd, n, offset)
        reads.append((offset, len(data)))
        return data
    monkeypatch.setattr(os, "pread", counting_pread)
    response = get(stack, image["id"], "bytes=-100")
    assert response.body == DATA[-100:]
    assert reads == [(len(DATA) - 100, 100)]
