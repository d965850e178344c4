"""Several glance-api nodes sharing one registry and one store: any node
serves any image, and what one node changes or deletes all of them see."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import subprocess
import sys

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(300)

OWNER = harness.identity("owner")
IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "Content-Type": "application/octet-stream"}


@pytest.fixture
def nodes(tmp_path, backend):
    dep = harness.Deployment(tmp_path, backend=backend, api_nodes=2)
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def upload(base: str, data, name: str) -> dict:
    response = requests.post(base + "/v1/images", data=data, timeout=120,
                             headers=dict(OWNER, **IMAGE, **{"x-image-meta-name": name}))
    assert response.status_code == 201, response.text
    return response.json()["image"]


def listed(base: str) -> set[str]:
    images = requests.get(base + "/v1/images/detail", headers=OWNER, timeout=30).json()
    return {i["id"] for i in images["images"]}


def test_any_node_serves_any_image_and_sees_deletes(nodes):
    one, two = nodes.urls
    data_one, data_two = os.urandom(700_000), os.urandom(900_000)
    # Both nodes upload at the same time into the one store.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(upload, one, data_one, "from-one")
        second = pool.submit(upload, two, iter([data_two[:400_000], data_two[400_000:]]),
                             "from-two")
        a, b = first.result(), second.result()
    assert a["status"] == b["status"] == "active"
    for base in (one, two):
        assert listed(base) == {a["id"], b["id"]}
        assert requests.get(base + "/v1/images/" + a["id"], headers=OWNER,
                            timeout=60).content == data_one
        got = requests.get(base + "/v1/images/" + b["id"], headers=OWNER, timeout=60)
        assert got.headers["x-image-meta-checksum"] == hashlib.md5(data_two).hexdigest()
        assert got.content == data_two

    renamed = requests.put(two + "/v1/images/" + a["id"], timeout=30,
                           headers=dict(OWNER, **{"x-image-meta-name": "renamed"}))
    assert renamed.status_code == 200
    assert requests.head(one + "/v1/images/" + a["id"], headers=OWNER,
                         timeout=30).headers["x-image-meta-name"] == "renamed"

    assert requests.delete(one + "/v1/images/" + b["id"], headers=OWNER,
                           timeout=30).status_code == 200
    for base in (one, two):
        assert requests.head(base + "/v1/images/" + b["id"], headers=OWNER,
                             timeout=30).status_code == 404
        assert requests.get(base + "/v1/images/" + b["id"], headers=OWNER,
                            timeout=30).status_code == 404
        assert listed(base) == {a["id"]}
    assert requests.delete(two + "/v1/images/" + b["id"], headers=OWNER,
                           timeout=30).status_code == 404
    assert not [n for n in nodes.stored_files() if n.startswith(b["id"])]
    assert [n for n in nodes.stored_files() if n.startswith(a["id"])]


def test_multi_node_tool_starts_and_stops_a_layout(tmp_path):
    tool = [sys.executable, str(harness.ROOT / "tools" / "multi_node.py")]
    state = tmp_path / "layout"
    started = subprocess.run(tool + ["start", str(state), "--api-nodes", "2",
                                     "--flavor", "trusted-auth",
                                     "--registry-port", "0", "--api-port", "0"],
                             capture_output=True, text=True, timeout=120,
                             env=harness.server_env())
    try:
        assert started.returncode == 0, started.stderr
        exports = harness._exports(started.stdout)
        one, two = exports["GLANCE_API_URLS"].split(",")
        assert requests.get(exports["GLANCE_REGISTRY_URL"] + "/healthcheck",
                            timeout=10).status_code == 200
        image = upload(one, b"shared" * 1000, "tool")
        image_path = "/v1/images/" + image["id"]
        assert requests.get(two + image_path, headers=OWNER,
                            timeout=30).content == b"shared" * 1000
        assert requests.delete(two + image_path, headers=OWNER, timeout=30).status_code == 200
        assert requests.head(one + image_path, headers=OWNER, timeout=30).status_code == 404
        assert list((state / "images").iterdir()) == []
    finally:
        stopped = subprocess.run(tool + ["stop", str(state)], capture_output=True,
                                 text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert list((state / "run").glob("*.pid")) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(one + "/healthcheck", timeout=5)
