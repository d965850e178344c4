"""A copy-from cancelled by a delete of its image, on every backend set.

The source sends slowly, so the copy is still running when the image is
deleted: the delete answers 200, the api stops reading the source, and
the bytes already written to the store (a partial file, Swift segments,
an S3 multipart upload, an RBD image) are removed.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(180)

PIECE = 64 * 1024
TOTAL = 512 * PIECE            # 32 MiB: about 25 s at the pace below
PAUSE = 0.05
IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "x-image-meta-name": "copied"}


class SlowSource:
    """An HTTP server on 127.0.0.1 sending TOTAL bytes a piece at a time;
    ``sent`` counts what went out, ``cut`` is set when the reader hung up."""

    def __init__(self) -> None:
        self.sent = 0
        self.cut = threading.Event()
        source = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Length", str(TOTAL))
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self.do_HEAD()
                piece = b"\0" * PIECE
                try:
                    for _ in range(TOTAL // PIECE):
                        self.wfile.write(piece)
                        source.sent += PIECE
                        time.sleep(PAUSE)
                except OSError:
                    source.cut.set()
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/image.raw" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def source() -> Iterator[SlowSource]:
    served = SlowSource()
    try:
        yield served
    finally:
        served.close()


def status(dep: harness.Deployment, image_id: str) -> dict[str, str]:
    response = requests.head(dep.url + "/v1/images/" + image_id, headers=harness.admin(),
                             timeout=30)
    assert response.status_code == 200, response.status_code
    return {name: response.headers.get("x-image-meta-" + name, "")
            for name in ("status", "deleted")}


def test_a_delete_cancels_the_copy_under_way_and_leaves_no_bytes(glance, source):
    owner = harness.identity("t1")
    created = requests.post(glance.url + "/v1/images", timeout=30,
                            headers=dict(owner, **IMAGE,
                                         **{"x-glance-api-copy-from": source.url}))
    assert created.status_code == 201, created.text
    image_id = created.json()["image"]["id"]
    image_url = glance.url + "/v1/images/" + image_id
    harness.wait_until(lambda: source.sent >= 2 * 1024 * 1024, 60,
                       message="the copy to be under way")
    assert status(glance, image_id)["status"] == "saving"

    deleted = requests.delete(image_url, headers=owner, timeout=60)
    assert deleted.status_code == 200, deleted.text
    # The api stops reading the source: the transfer does not run on.
    assert source.cut.wait(30), "the copy went on reading its source"
    assert source.sent < TOTAL
    harness.wait_until(lambda: glance.stored_files() == [], 30,
                       message="the copied bytes to be removed from the store")
    assert status(glance, image_id) == {"status": "deleted", "deleted": "True"}
    assert requests.get(image_url, headers=owner, timeout=30).status_code == 404
    assert requests.delete(image_url, headers=owner, timeout=30).status_code == 404
    log = glance.api.log_path.read_text()
    assert "Traceback" not in log and 'HTTP/1.1" 5' not in log   # no 5xx answered
