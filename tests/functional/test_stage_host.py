"""Staging on api nodes that do not share a staging directory: each node
has its own ``node_staging_uri`` and its own ``worker_self_reference_url``.
Data staged on node one is imported, or its image deleted, or a broken
stage on it continued, through node two: node two sends the request on to
node one, which holds the data.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(120)

OWNER = harness.identity("owner")
OTHER = harness.identity("other")
DATA = os.urandom(300_000)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[harness.Deployment]:
    dep = harness.Deployment(tmp_path, api_nodes=2)
    for number, api in enumerate(dep.apis):
        api.port = harness.free_port()
        api.sections["DEFAULT"].update(
            node_staging_uri="file://%s" % staging(tmp_path, number),
            worker_self_reference_url=api.url)
    try:
        yield dep.start()
    finally:
        dep.stop()


def staging(base: Path, number: int) -> Path:
    return base / ("staging-%d" % number)


def staged_files(nodes: harness.Deployment, number: int) -> list[str]:
    folder = staging(nodes.base, number)
    return sorted(os.listdir(folder)) if folder.exists() else []


def _staged_image(base: str) -> str:
    res = requests.post(base + "/v2/images", headers=OWNER, timeout=30, json={
        "name": "staged", "disk_format": "raw", "container_format": "bare"})
    assert res.status_code == 201, res.text
    image_id = res.json()["id"]
    res = requests.put(base + "/v2/images/%s/stage" % image_id, data=DATA, timeout=30,
                       headers=dict(OWNER, **{"Content-Type": "application/octet-stream"}))
    assert res.status_code == 204, res.text
    return image_id


def _show(base: str, image_id: str, headers: dict | None = None) -> requests.Response:
    return requests.get(base + "/v2/images/" + image_id, headers=headers or OWNER,
                        timeout=30)


def _import(base: str, image_id: str, headers: dict | None = None) -> requests.Response:
    return requests.post(base + "/v2/images/%s/import" % image_id, timeout=30,
                         headers=headers or OWNER,
                         json={"method": {"name": "glance-direct"}})


def test_data_staged_on_one_node_is_imported_through_another(nodes) -> None:
    one, two = nodes.urls
    image_id = _staged_image(one)
    assert staged_files(nodes, 0) == [image_id]
    shown = _show(two, image_id).json()
    assert shown["status"] == "uploading" and "os_glance_stage_host" not in shown
    # Nor in v1, whose views show every other property: it is an internal URL.
    head = requests.head(two + "/v1/images/" + image_id, headers=OWNER, timeout=30)
    assert head.headers["x-image-meta-status"] == "uploading"
    assert not [h for h in head.headers if "stage_host" in h.lower()]
    detail = requests.get(two + "/v1/images/detail?is_public=none", headers=OWNER,
                          timeout=30).json()["images"]
    [listed] = [image for image in detail if image["id"] == image_id]
    assert "os_glance_stage_host" not in listed["properties"]
    # Someone else's image: node two refuses before asking node one.
    assert _import(two, image_id, OTHER).status_code == 404
    res = _import(two, image_id)
    assert res.status_code == 202, res.text

    def active() -> dict | None:
        found = _show(two, image_id).json()
        return found if found["status"] == "active" else None

    done = harness.wait_until(active, 30, message="the image active")
    assert done["size"] == len(DATA)
    assert done["checksum"] == hashlib.md5(DATA).hexdigest()
    # The staged file goes just after the image is activated.
    harness.wait_until(lambda: staged_files(nodes, 0) == [], 30,
                       message="the staged file removed")
    assert staged_files(nodes, 1) == []
    data = requests.get(two + "/v2/images/%s/file" % image_id, headers=OWNER, timeout=30)
    assert data.content == DATA
    # Once imported, nothing is staged anywhere: a second import is node
    # two's own 409.
    assert _import(two, image_id).status_code == 409


def test_deleting_through_another_node_removes_the_staged_data(nodes) -> None:
    one, two = nodes.urls
    image_id = _staged_image(one)
    assert requests.delete(two + "/v2/images/" + image_id, headers=OTHER,
                           timeout=30).status_code == 404
    assert staged_files(nodes, 0) == [image_id]
    res = requests.delete(two + "/v2/images/" + image_id, headers=OWNER, timeout=30)
    assert res.status_code == 204, res.text
    assert staged_files(nodes, 0) == []
    assert _show(one, image_id).status_code == 404


def test_a_stage_host_that_is_down(nodes) -> None:
    """Import: 502 naming the cause, the image still staged; delete: done
    here, the staged data left to that node's staging sweep."""
    one, two = nodes.urls
    image_id = _staged_image(one)
    nodes.apis[0].stop()
    res = _import(two, image_id)
    assert res.status_code == 502, res.text
    assert "staged data cannot be reached" in res.text
    assert _show(two, image_id).json()["status"] == "uploading"
    tasks = requests.get(two + "/v2/images/%s/tasks" % image_id, headers=OWNER,
                         timeout=30).json()["tasks"]
    assert tasks == []
    res = requests.delete(two + "/v2/images/" + image_id, headers=OWNER, timeout=30)
    assert res.status_code == 204, res.text
    assert _show(two, image_id).status_code == 404


def _piece(base: str, image_id: str, start: int, data, total: int,
           length: int | None = None) -> requests.Response:
    """A piece of a resumable stage from byte ``start``; ``data`` bytes
    (sent with their length) or an iterator (sent chunked)."""
    end = start + (len(data) if length is None else length) - 1
    return requests.put(base + "/v2/images/%s/stage" % image_id, data=data, timeout=30,
                        headers=dict(OWNER, **{
                            "Content-Type": "application/octet-stream",
                            "Content-Range": "bytes %d-%d/%d" % (start, end, total)}))


def _staged_length(base: str, image_id: str, method: str = "HEAD",
                   headers: dict | None = None) -> requests.Response:
    return requests.request(method, base + "/v2/images/%s/stage" % image_id,
                            headers=headers or OWNER, timeout=30)


def test_a_broken_stage_is_continued_through_another_node(nodes) -> None:
    """The first piece reaches node one and breaks mid-body; node one is
    its stage host from its first byte. Reading the staged length and
    sending the rest through node two reach node one; the data is staged
    there alone and imports whole."""
    one, two = nodes.urls
    res = requests.post(one + "/v2/images", headers=OWNER, timeout=30, json={
        "name": "resumed", "disk_format": "raw", "container_format": "bare"})
    image_id = res.json()["id"]
    total = len(DATA)
    half = total // 2
    with socket.create_connection(("127.0.0.1", nodes.apis[0].port), timeout=30) as sock:
        head = ("PUT /v2/images/%s/stage HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n"
                "Content-Range: bytes 0-%d/%d\r\n" % (image_id, total, total - 1, total))
        head += "".join("%s: %s\r\n" % item for item in OWNER.items()) + "\r\n"
        sock.sendall(head.encode() + DATA[:half])
    harness.wait_until(lambda: _staged_length(one, image_id).headers.get(
        "OpenStack-image-staged-size") == str(half), 30, message="the first half staged")
    for method in ("HEAD", "GET"):
        res = _staged_length(two, image_id, method)
        assert res.status_code == 204, res.text
        assert res.headers["OpenStack-image-staged-size"] == str(half)
    # Node two checks the caller before asking node one.
    assert _staged_length(two, image_id, headers=OTHER).status_code == 404
    # A wrong start: node one's 416, with its staged length.
    wrong = _piece(two, image_id, 0, DATA[:10], total)
    assert wrong.status_code == 416, wrong.text
    assert wrong.headers["OpenStack-image-staged-size"] == str(half)
    # The rest through node two: a chunked piece, then one with a length.
    quarter = half + (total - half) // 2
    res = _piece(two, image_id, half, iter([DATA[half:quarter - 1000],
                                           DATA[quarter - 1000:quarter]]),
                 total, length=quarter - half)
    assert res.status_code == 204, res.text
    assert res.headers["OpenStack-image-staged-size"] == str(quarter)
    assert staged_files(nodes, 0) == [image_id + ".part"]
    res = _piece(two, image_id, quarter, DATA[quarter:], total)
    assert res.status_code == 204, res.text
    assert res.headers["OpenStack-image-staged-size"] == str(total)
    assert staged_files(nodes, 0) == [image_id] and staged_files(nodes, 1) == []
    assert _show(two, image_id).json()["size"] == total
    # Complete: node two sends nothing on any more (no piece is left).
    assert _piece(two, image_id, total - 1, DATA[-1:], total).status_code == 409
    res = _import(two, image_id)
    assert res.status_code == 202, res.text
    harness.wait_until(lambda: _show(two, image_id).json()["status"] == "active", 30,
                       message="the image active")
    data = requests.get(two + "/v2/images/%s/file" % image_id, headers=OWNER, timeout=30)
    assert data.content == DATA
    harness.wait_until(lambda: staged_files(nodes, 0) == [], 30,
                       message="the staged file removed")


def test_a_piece_through_another_node_while_the_stage_host_is_down(nodes) -> None:
    one, two = nodes.urls
    res = requests.post(one + "/v2/images", headers=OWNER, timeout=30, json={
        "name": "resumed", "disk_format": "raw", "container_format": "bare"})
    image_id = res.json()["id"]
    total = len(DATA)
    assert _piece(one, image_id, 0, DATA[:1000], total).status_code == 204
    nodes.apis[0].stop()
    res = _piece(two, image_id, 1000, DATA[1000:], total)
    assert res.status_code == 502, res.text
    assert "staged data cannot be reached" in res.text
    assert _staged_length(two, image_id).status_code == 502
    assert staged_files(nodes, 1) == []
    assert _show(two, image_id).json()["status"] == "uploading"
