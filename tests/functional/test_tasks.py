"""Import tasks through real glance-api and glance-registry processes, from
a local HTTP server (127.0.0.1 is allowed by the test configuration only:
the source filter refuses loopback otherwise).

- An import task creates the image, copies the URL's bytes, activates the
  image and names it in its result.
- glance-api killed (-9) mid-import and started again: the task does not
  stay processing; the restarted api fails it within the stall timeout.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(120)

DATA = bytes(range(256)) * 4096          # 1 MiB
STALL_TIMEOUT = 2                        # [task] task_stall_timeout, seconds


class Source(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.release = threading.Event()   # lets /slow finish
        self.slow_started = threading.Event()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Source

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(DATA)))
        self.end_headers()
        if self.path == "/slow":
            # Half the data, then nothing until released (or the reader
            # goes away).
            self.wfile.write(DATA[:len(DATA) // 2])
            self.wfile.flush()
            self.server.slow_started.set()
            self.server.release.wait(60)
            return
        self.wfile.write(DATA)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def source() -> Iterator[Source]:
    server = Source()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def dep(tmp_path) -> Iterator[harness.Deployment]:
    yield from harness.deployment(
        tmp_path, api_options={"task": {"task_stall_timeout": STALL_TIMEOUT}})


def _create(dep: harness.Deployment, url: str) -> dict:
    res = requests.post(dep.url + "/v2/tasks", headers=harness.admin(), timeout=30, json={
        "type": "import", "input": {
            "import_from": url, "import_from_format": "raw",
            "image_properties": {"name": "imported", "disk_format": "raw",
                                 "container_format": "bare"}}})
    assert res.status_code == 201, res.text
    # The Location header leads to the task.
    assert res.headers["Location"] == dep.url + "/v2/tasks/" + res.json()["id"]
    return res.json()


def _task(dep: harness.Deployment, task_id: str) -> dict:
    res = requests.get(dep.url + "/v2/tasks/" + task_id, headers=harness.admin(),
                       timeout=30)
    assert res.status_code == 200, res.text
    return res.json()


def _wait_for(dep: harness.Deployment, task_id: str, statuses: tuple[str, ...],
              within: float = 30.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        task = _task(dep, task_id)
        if task["status"] in statuses or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def test_import_task_imports_the_image(dep, source) -> None:
    task = _create(dep, source.url + "/image")
    done = _wait_for(dep, task["id"], ("success", "failure"))
    assert done["status"] == "success", done
    image_id = done["result"]["image_id"]
    image = requests.get(dep.url + "/v2/images/" + image_id, headers=harness.admin(),
                         timeout=30).json()
    assert (image["status"], image["size"]) == ("active", len(DATA))
    created = requests.post(dep.url + "/v2/images", json={"name": "located"},
                            headers=harness.admin(), timeout=30)
    assert created.status_code == 201, created.text
    shown = requests.get(created.headers["Location"], headers=harness.admin(), timeout=30)
    assert shown.status_code == 200 and shown.json()["name"] == "located"
    data = requests.get(dep.url + "/v2/images/%s/file" % image_id,
                        headers=harness.admin(), timeout=30)
    assert data.content == DATA


def test_a_task_never_stays_processing_when_the_api_dies(dep, source) -> None:
    task = _create(dep, source.url + "/slow")
    assert source.slow_started.wait(30)
    assert _wait_for(dep, task["id"], ("processing",))["status"] == "processing"
    port = dep.api.port
    dep.api.kill()
    source.release.set()
    dep.api.start(port)
    failed = _wait_for(dep, task["id"], ("success", "failure"),
                       within=STALL_TIMEOUT * 10)
    assert failed["status"] == "failure", failed
    assert "interrupted" in failed["message"]
    assert failed["result"] is None and failed["expires_at"]
