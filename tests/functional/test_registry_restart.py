"""glance-registry restarted, then killed -9, under concurrent creates,
uploads and deletes: no image is left half-done.

Clients keep creating images with data, creating empty images and then
uploading to them, and deleting their images, while the registry is
restarted (SIGTERM) and later killed with SIGKILL and started again on the
same port. Afterwards every image must be fully there (active, its data
downloadable with the checksum its record has and the client sent), fully
gone (deleted, its data removed) or killed (no data); the store must hold
exactly the data of the active images and no partial file.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import Counter

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(180)

CLIENTS = 8
TENANT = harness.identity("restart-tenant")
FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}
# How long a client keeps retrying one call that the api answered 503
# (reads are not retried by the api; a restart lasts a second or two).
RETRY_FOR = 30.0


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Client(threading.Thread):
    """Creates, uploads to and deletes its own images until told to stop."""

    def __init__(self, url: str, seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.random = random.Random(seed)
        self.stop = stop
        self.session = requests.Session()
        self.sent: dict[str, str] = {}       # image id -> md5 of the data sent
        self.deleted: set[str] = set()       # DELETE answered 200
        self.statuses: Counter[int] = Counter()
        self.error: BaseException | None = None

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """One call, sent again while the api answers 503 (for a while)."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            response = self.session.request(method, self.url + path, timeout=60, **kwargs)
            self.statuses[response.status_code] += 1
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
            time.sleep(0.05)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.one_round()
        except BaseException as err:  # reported by the test
            self.error = err

    def one_round(self) -> None:
        data = self.random.randbytes(self.random.randint(1, 256) * 1024)
        if self.random.random() < 0.5:
            created = self.call("POST", "/v1/images", data=data, headers=dict(
                TENANT, **FORMATS, **{"Content-Type": "application/octet-stream"}))
            if created.status_code == 201:
                self.sent[created.json()["image"]["id"]] = md5(data)
        else:
            created = self.call("POST", "/v1/images", headers=dict(TENANT, **FORMATS))
            if created.status_code == 201:
                image_id = created.json()["image"]["id"]
                self.sent[image_id] = md5(data)
                self.call("PUT", "/v1/images/" + image_id, data=data, headers=dict(
                    TENANT, **{"Content-Type": "application/octet-stream"}))
        mine = sorted(set(self.sent) - self.deleted)
        if mine and self.random.random() < 0.5:
            image_id = self.random.choice(mine)
            if self.call("DELETE", "/v1/images/" + image_id,
                         headers=TENANT).status_code == 200:
                self.deleted.add(image_id)


def every_image(dep: harness.Deployment) -> list[dict]:
    response = requests.get(
        dep.url + "/v1/images/detail", timeout=60, headers=harness.admin(),
        params={"is_public": "none", "changes-since": "2000-01-01T00:00:00",
                "limit": "10000"})
    assert response.status_code == 200, response.text
    return response.json()["images"]


def restart_registry(dep: harness.Deployment, kill: bool) -> float:
    """Stop (SIGTERM, or SIGKILL) and start the registry on its port; the
    seconds it took until it answered again."""
    began = time.monotonic()
    if kill:
        dep.registry.kill()
    else:
        dep.registry.stop()
    dep.registry.start(port=dep.registry.port)
    return time.monotonic() - began


def test_registry_restarted_and_killed_under_load_leaves_no_half_done_image(tmp_path):
    dep = harness.Deployment(tmp_path)
    dep.start()
    try:
        stop = threading.Event()
        clients = [Client(dep.url, seed, stop) for seed in range(CLIENTS)]
        for client in clients:
            client.start()
        # Let the load build up, restart the registry, let it run again,
        # then kill it outright.
        harness.wait_until(lambda: sum(len(c.sent) for c in clients) >= 20, 30,
                           message="the first images")
        restarted = restart_registry(dep, kill=False)
        mark = sum(len(c.sent) for c in clients)
        harness.wait_until(lambda: sum(len(c.sent) for c in clients) >= mark + 20, 60,
                           message="images after the restart")
        killed = restart_registry(dep, kill=True)
        mark = sum(len(c.sent) for c in clients)
        harness.wait_until(lambda: sum(len(c.sent) for c in clients) >= mark + 20, 60,
                           message="images after the kill")
        stop.set()
        for client in clients:
            client.join(90)
            assert not client.is_alive(), "a client did not finish"
            assert client.error is None, repr(client.error)
        print("registry back after a restart in %.1f s, after kill -9 in %.1f s"
              % (restarted, killed))
        check_every_image(dep, clients)
    finally:
        dep.stop()


def check_every_image(dep: harness.Deployment, clients: list[Client]) -> None:
    statuses = sum((c.statuses for c in clients), Counter())
    assert not [s for s in statuses if s >= 500 and s != 503], statuses
    sent = {image_id: digest for c in clients for image_id, digest in c.sent.items()}
    deleted = set().union(*(c.deleted for c in clients))
    images = every_image(dep)
    assert set(sent) <= {i["id"] for i in images}
    active = set()
    for image in images:
        image_id, status = image["id"], image["status"]
        assert status in ("active", "deleted", "killed"), image
        assert image["deleted"] == (status == "deleted"), image
        if status != "active":
            continue
        assert image_id not in deleted, image
        active.add(image_id)
        download = requests.get(dep.url + "/v1/images/" + image_id, timeout=60,
                                headers=TENANT)
        assert download.status_code == 200, (image, download.status_code)
        assert md5(download.content) == image["checksum"], image
        assert image_id not in sent or sent[image_id] == image["checksum"], image
    files = os.listdir(dep.datadir)
    assert [name for name in files if name.startswith(".")] == []
    assert sorted(files) == sorted(active)
    print("%d images: %s; answers %s" % (
        len(images), dict(Counter(i["status"] for i in images)), dict(statuses)))
