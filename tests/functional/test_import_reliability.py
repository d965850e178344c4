"""Interoperable import survives the death of the api node running it:
two glance-api nodes share a registry, a store and a staging directory;
the node running a web-download import is killed (-9) mid-copy. The other
node's reaper fails the task within the stall timeout and undoes the
import: no task processing, no image importing, nothing of the image in
the store (a partial file, a half-written RBD image, segments or an
unfinished multipart upload), nothing staged; a retried import stores the
image once. That test runs on every backend set of the suite.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.functional import harness
from tests.functional.test_tasks import DATA, source  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(180)

STALL_TIMEOUT = 2
# Seconds after which Ceph drops the watch of a client that died
# (osd_client_watch_timeout, 30 by default).
CEPH_WATCH_TIMEOUT = 30
OWNER = harness.identity("owner")


def _two_nodes(tmp_path: Path, backend: str = "sqlite-file") -> Iterator[harness.Deployment]:
    staging = tmp_path / "staging"
    yield from harness.deployment(tmp_path, backend=backend, api_nodes=2, api_options={
        "task": {"task_stall_timeout": STALL_TIMEOUT},
        # A worker process each: the reaper must run in the forked worker.
        "DEFAULT": {"node_staging_uri": "file://%s" % staging, "workers": 1}})


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[harness.Deployment]:
    yield from _two_nodes(tmp_path)


@pytest.fixture
def nodes_on(tmp_path: Path, backend: str) -> Iterator[harness.Deployment]:
    """Two api nodes on each backend set of the suite."""
    yield from _two_nodes(tmp_path, backend)


def _image(base: str) -> dict:
    res = requests.post(base + "/v2/images", headers=OWNER, timeout=30, json={
        "name": "imported", "disk_format": "raw", "container_format": "bare"})
    assert res.status_code == 201, res.text
    return res.json()


def _show(base: str, image_id: str) -> dict:
    res = requests.get(base + "/v2/images/" + image_id, headers=OWNER, timeout=30)
    assert res.status_code == 200, res.text
    return res.json()


def _import(base: str, image_id: str, uri: str) -> None:
    res = requests.post(base + "/v2/images/%s/import" % image_id, headers=OWNER,
                        timeout=30, json={"method": {"name": "web-download",
                                                     "uri": uri}})
    assert res.status_code == 202, res.text


def _task(base: str, task_id: str) -> dict:
    res = requests.get(base + "/v2/tasks/" + task_id, headers=harness.admin(),
                       timeout=30)
    assert res.status_code == 200, res.text
    return res.json()


def test_an_import_whose_node_dies_is_undone_and_can_be_retried(
        nodes_on, source) -> None:  # noqa: F811
    nodes = nodes_on
    one, two = nodes.urls
    image = _image(one)
    _import(one, image["id"], source.url + "/slow")
    assert source.slow_started.wait(30)
    # Node one is writing the image into the store when it dies: a partial
    # file, the RBD image (Swift and S3 hold the first half in memory
    # until a segment or part is full).
    if nodes.backend.store in ("file", "rbd"):
        harness.wait_until(lambda: any(image["id"] in n for n in nodes.stored_files()),
                           30, message="the image in the store")
    shown = _show(two, image["id"])
    assert shown["status"] == "importing"
    task_id = shown["os_glance_import_task"]
    claimed = _task(two, task_id)
    assert claimed["status"] == "processing"
    # Its lease keeps the task alive past the stall timeout while node
    # one lives: the reapers of both nodes leave it alone.
    harness.wait_until(lambda: _task(two, task_id)["updated_at"] != claimed["updated_at"],
                       STALL_TIMEOUT * 5, message="a heartbeat")
    time.sleep(STALL_TIMEOUT * 1.5)
    assert _task(two, task_id)["status"] == "processing"
    shown = _show(two, image["id"])
    assert shown["status"] == "importing"
    # Progress: on the image, and in the task its owner sees.
    assert int(shown["os_glance_import_copied"]) >= len(DATA) // 2
    assert shown["os_glance_import_size"] == str(len(DATA))
    listed = requests.get(two + "/v2/images/%s/tasks" % image["id"], headers=OWNER,
                          timeout=30).json()["tasks"]
    assert [t["id"] for t in listed] == [task_id]
    assert "of %d bytes" % len(DATA) in listed[0]["message"]
    killed_at = time.monotonic()
    nodes.apis[0].kill()
    source.release.set()

    def undone() -> dict | None:
        found = _show(two, image["id"])
        return found if found["status"] == "queued" else None

    # Bounded: the stall timeout plus one reaper round, and some slack; on
    # RBD the dead node's watch on the half-written RBD image must lapse
    # first (Ceph's watch timeout): until then it cannot be removed, the
    # image stays importing and the reaper tries again each round.
    bound = STALL_TIMEOUT * 5 + (CEPH_WATCH_TIMEOUT if nodes.backend.store == "rbd" else 0)
    shown = harness.wait_until(undone, bound * 2, message="the image queued")
    repaired_in = time.monotonic() - killed_at
    task = _task(two, task_id)
    assert task["status"] == "failure" and "interrupted" in task["message"], task
    assert shown["size"] is None and "os_glance_import_task" not in shown
    assert shown["os_glance_failed_import"] == nodes.store.scheme
    assert nodes.stored_files() == []
    staging = nodes.base / "staging"
    assert not staging.exists() or os.listdir(staging) == []
    assert repaired_in < bound

    _import(two, image["id"], source.url + "/image")
    done = harness.wait_until(
        lambda: (lambda s: s if s["status"] == "active" else None)(_show(two, image["id"])),
        30, message="the retried import")
    assert done["size"] == len(DATA) and "os_glance_failed_import" not in done
    # Stored once (RBD lists the image's snapshot beside it, "<id>@snap").
    assert [n for n in nodes.stored_files() if "@" not in n] == [image["id"]]
    data = requests.get(two + "/v2/images/%s/file" % image["id"], headers=OWNER,
                        timeout=30)
    assert data.content == DATA


def _staged(base: str, image_id: str) -> int:
    res = requests.head(base + "/v2/images/%s/stage" % image_id, headers=OWNER, timeout=30)
    assert res.status_code == 204, res.text
    return int(res.headers["OpenStack-image-staged-size"])


def test_a_broken_stage_is_continued_on_another_node(nodes) -> None:
    """Resumable staging (ours): the connection breaks mid-body; the client
    reads how much is staged and sends the rest, to the other node (they
    share the staging directory)."""
    one, two = nodes.urls
    image = _image(one)
    data = os.urandom(3 * 1024 * 1024)
    half = len(data) // 2
    with socket.create_connection(("127.0.0.1", nodes.apis[0].port), timeout=30) as sock:
        head = ("PUT /v2/images/%s/stage HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n"
                "Content-Range: bytes 0-%d/%d\r\n" % (image["id"], len(data),
                                                      len(data) - 1, len(data)))
        head += "".join("%s: %s\r\n" % item for item in OWNER.items()) + "\r\n"
        sock.sendall(head.encode() + data[:half])
    staged = harness.wait_until(lambda: _staged(one, image["id"]) == half and half,
                                30, message="the first half staged")
    assert _show(two, image["id"])["status"] == "uploading"
    wrong = requests.put(two + "/v2/images/%s/stage" % image["id"], data=data[:10],
                         timeout=30, headers=dict(OWNER, **{
                             "Content-Type": "application/octet-stream",
                             "Content-Range": "bytes 0-9/%d" % len(data)}))
    assert wrong.status_code == 416
    assert wrong.headers["OpenStack-image-staged-size"] == str(half)
    rest = requests.put(two + "/v2/images/%s/stage" % image["id"], data=data[staged:],
                        timeout=30, headers=dict(OWNER, **{
                            "Content-Type": "application/octet-stream",
                            "Content-Range": "bytes %d-%d/%d" % (staged, len(data) - 1,
                                                                 len(data))}))
    assert rest.status_code == 204, rest.text
    assert _show(one, image["id"])["size"] == len(data)
    res = requests.post(one + "/v2/images/%s/import" % image["id"], headers=OWNER,
                        timeout=30, json={"method": {"name": "glance-direct"}})
    assert res.status_code == 202, res.text
    harness.wait_until(lambda: _show(two, image["id"])["status"] == "active", 30,
                       message="the import")
    got = requests.get(two + "/v2/images/%s/file" % image["id"], headers=OWNER, timeout=30)
    assert got.content == data
    # The staged file goes just after the image is activated.
    harness.wait_until(lambda: os.listdir(nodes.base / "staging") == [], 30,
                       message="the staged file removed")
