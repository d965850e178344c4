"""The v2.17 location API through real glance-api and glance-registry
processes: a service gives a queued image the location of data it wrote
(served here by a local HTTP server on 127.0.0.1, which the test
configuration lets through the source filter, read by the http store).

- With the right hash the location_import task succeeds and the image is
  active with the location's size, checksum and multihash; its data is
  served from the location.
- With a hash that differs the task fails saying so, and the image is
  queued again without the import lock.
- glance-api killed mid-read and started again: the task does not stay
  processing, the image does not stay importing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
import requests

from tests.functional import harness
from tests.functional.test_tasks import (
    DATA,
    source,  # noqa: F401 (the HTTP server fixture)
)

pytestmark = pytest.mark.timeout(120)

STALL_TIMEOUT = 2                        # [task] task_stall_timeout, seconds
SERVICE = harness.identity("t1", roles="reader,member,service", user="cinder")
OWNER = harness.identity("t1")


@pytest.fixture
def dep(tmp_path) -> Iterator[harness.Deployment]:
    yield from harness.deployment(
        tmp_path, api_options={"task": {"task_stall_timeout": STALL_TIMEOUT}})


def _image(dep: harness.Deployment) -> dict:
    res = requests.post(dep.url + "/v2/images", headers=OWNER, timeout=30, json={
        "name": "from a service", "disk_format": "raw", "container_format": "bare"})
    assert res.status_code == 201, res.text
    return res.json()


def _show(dep: harness.Deployment, image_id: str) -> dict:
    res = requests.get(dep.url + "/v2/images/" + image_id, headers=OWNER, timeout=30)
    assert res.status_code == 200, res.text
    return res.json()


def _add_location(dep: harness.Deployment, image_id: str, url: str,
                  digest: str) -> None:
    res = requests.post(dep.url + "/v2/images/%s/locations" % image_id, headers=SERVICE,
                        timeout=30, json={"url": url, "validation_data": {
                            "os_hash_algo": "sha256", "os_hash_value": digest}})
    assert res.status_code == 202, res.text


def _task(dep: harness.Deployment, image_id: str, statuses: tuple[str, ...],
          within: float = 30.0) -> dict:
    """The image's one task once it has one of ``statuses`` (or the deadline)."""
    deadline = time.monotonic() + within
    while True:
        res = requests.get(dep.url + "/v2/images/%s/tasks" % image_id, headers=OWNER,
                           timeout=30)
        assert res.status_code == 200, res.text
        [task] = res.json()["tasks"]
        if task["status"] in statuses or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def _queued_again(dep: harness.Deployment, image_id: str) -> dict:
    shown = _show(dep, image_id)
    assert shown["status"] == "queued" and shown["size"] is None, shown
    assert "os_glance_import_task" not in shown
    res = requests.get(dep.url + "/v2/images/%s/locations" % image_id,
                       headers=harness.admin(), timeout=30)
    assert res.json() == []
    return shown


def test_a_location_with_the_right_hash_activates_the_image(dep, source) -> None:  # noqa: F811
    image = _image(dep)
    _add_location(dep, image["id"], source.url + "/image",
                  hashlib.sha256(DATA).hexdigest())
    done = _task(dep, image["id"], ("success", "failure"))
    assert (done["type"], done["status"]) == ("location_import", "success"), done
    shown = _show(dep, image["id"])
    assert (shown["status"], shown["size"], shown["os_hash_algo"],
            shown["os_hash_value"], shown["checksum"]) == (
        "active", len(DATA), "sha256", hashlib.sha256(DATA).hexdigest(),
        hashlib.md5(DATA, usedforsecurity=False).hexdigest())
    data = requests.get(dep.url + "/v2/images/%s/file" % image["id"], headers=OWNER,
                        timeout=30)
    assert data.status_code == 200 and data.content == DATA
    listed = requests.get(dep.url + "/v2/tasks", headers=harness.admin(), timeout=30)
    assert [t["id"] for t in listed.json()["tasks"]] == [done["id"]]


def test_a_hash_that_differs_fails_the_task(dep, source) -> None:  # noqa: F811
    image = _image(dep)
    _add_location(dep, image["id"], source.url + "/image", "0" * 64)
    failed = _task(dep, image["id"], ("success", "failure"))
    assert failed["status"] == "failure", failed
    assert "validation_data" in failed["message"]
    _queued_again(dep, image["id"])


def test_the_image_is_queued_again_when_the_api_dies(dep, source) -> None:  # noqa: F811
    image = _image(dep)
    _add_location(dep, image["id"], source.url + "/slow",
                  hashlib.sha256(DATA).hexdigest())
    assert source.slow_started.wait(30)
    assert _show(dep, image["id"])["status"] == "importing"
    port = dep.api.port
    dep.api.kill()
    source.release.set()
    dep.api.start(port)
    failed = _task(dep, image["id"], ("success", "failure"), within=STALL_TIMEOUT * 10)
    assert failed["status"] == "failure" and "interrupted" in failed["message"], failed
    harness.wait_until(lambda: _show(dep, image["id"])["status"] == "queued",
                       STALL_TIMEOUT * 10, message="the image queued again")
    _queued_again(dep, image["id"])
