"""Ceph failures seen through glance-api: a wrong user or key, a missing
pool, unreachable monitors, a pool over its quota, an OSD stopped in the
middle of a download."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional import harness
from tests.support import ceph

pytestmark = [pytest.mark.timeout(300), pytest.mark.stores("rbd")]

OWNER = harness.identity("owner")
IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "Content-Type": "application/octet-stream"}
WRONG_KEY = "AQBcbm1nAAAAABAAo3ZdmW1Hy0hK0BXy1XWDIg=="
MiB = 1024 * 1024
# Operation timeout of the deployments on the private cluster: how long a
# write to a full pool or a read from a stopped OSD waits before failing.
OP_TIMEOUT = 5


def upload(dep: harness.Deployment, data: Any, name: str = "img") -> requests.Response:
    return requests.post(dep.url + "/v1/images", data=data, timeout=120,
                         headers=dict(OWNER, **IMAGE, **{"x-image-meta-name": name}))


def unknown_user(env: dict[str, str], folder: Path) -> dict[str, Any]:
    return {"rbd_store_user": "nobody"}


def wrong_key(env: dict[str, str], folder: Path) -> dict[str, Any]:
    keyring = folder / "wrong.keyring"
    keyring.write_text("[client.%s]\n\tkey = %s\n" % (env["CEPH_USER"], WRONG_KEY))
    return {"rbd_store_ceph_conf": ceph.conf_copy(
        env["CEPH_CONF"], folder, "keyring", str(keyring),
        section="client." + env["CEPH_USER"])}


def missing_pool(env: dict[str, str], folder: Path) -> dict[str, Any]:
    return {"rbd_store_pool": "no-such-pool"}


def unreachable_monitors(env: dict[str, str], folder: Path) -> dict[str, Any]:
    return {"rbd_store_ceph_conf": ceph.conf_copy(
        env["CEPH_CONF"], folder, "mon_host", "127.0.0.1:%d" % harness.free_port()),
        "rados_connect_timeout": 2}


FAULTS: dict[str, Callable[[dict[str, str], Path], dict[str, Any]]] = {
    "unknown-user": unknown_user, "wrong-key": wrong_key,
    "missing-pool": missing_pool, "unreachable-monitors": unreachable_monitors,
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_misconfigured_store_kills_the_upload_naming_the_store(tmp_path, backend,
                                                                 fault):
    folder = tmp_path / "ceph"
    folder.mkdir()
    options = FAULTS[fault](dict(os.environ), folder)
    dep = harness.Deployment(tmp_path, backend=backend,
                             api_options={"glance_store": options})
    dep.start()
    try:
        response = upload(dep, os.urandom(300_000), name=fault)
        assert 500 <= response.status_code < 600, (response.status_code, response.text)
        assert "RBD store" in response.text, response.text
        assert WRONG_KEY not in response.text + repr(dict(response.headers))
        assert WRONG_KEY not in dep.api.log()
        assert [i["name"] for i in harness.killed_images(dep)] == [fault]
        assert dep.stored_files() == []
    finally:
        dep.stop()


# --- on a cluster of the module's own ---------------------------------------------
@pytest.fixture(scope="module")
def private_ceph() -> Iterator[harness.PrivateCeph]:
    cluster = harness.PrivateCeph().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def on_private(tmp_path, backend, private_ceph) -> Iterator[harness.Deployment]:
    """A deployment on the private cluster whose OSD and monitor operations
    time out after ``OP_TIMEOUT`` seconds."""
    env = dict(os.environ, **private_ceph.env)
    conf = ceph.conf_with_client(env["CEPH_CONF"], tmp_path,
                                 rados_osd_op_timeout=str(OP_TIMEOUT),
                                 rados_mon_op_timeout=str(OP_TIMEOUT))
    yield from harness.deployment(
        tmp_path, backend=backend, environ=env,
        api_options={"glance_store": {"rbd_store_ceph_conf": conf}})


def wait_for_flag(cluster: harness.PrivateCeph, full: bool) -> None:
    """Until the monitor has marked the pool full (or no longer full): it
    learns the pool's usage from the manager every few seconds."""
    harness.wait_until(lambda: ("full" in cluster.pool_flags()) == full, 60, 0.2,
                       "the pool's full flag to be %s" % ("set" if full else "cleared"))


@pytest.mark.needs("ceph-server")
def test_a_pool_over_its_quota_is_413_and_leaves_nothing(on_private, private_ceph):
    pool = private_ceph.env["CEPH_POOL"]
    private_ceph.admin("osd", "pool", "set-quota", pool, "max_bytes", str(16 * MiB))
    try:
        def body() -> Iterator[bytes]:
            # 24 MiB go in before the monitor notices; the next write meets
            # the full pool (and would wait OP_TIMEOUT, then 503, if the
            # store let librados hold it until there is room).
            for _ in range(24):
                yield os.urandom(MiB)
            wait_for_flag(private_ceph, full=True)
            yield from (os.urandom(MiB) for _ in range(8))

        response = upload(on_private, body(), name="over-quota")
        assert response.status_code == 413, (response.status_code, response.text)
        assert "RBD store" in response.text and pool in response.text
        assert [i["name"] for i in harness.killed_images(on_private)] == ["over-quota"]
        assert on_private.stored_files() == []
    finally:
        private_ceph.admin("osd", "pool", "set-quota", pool, "max_bytes", "0")
        wait_for_flag(private_ceph, full=False)


@pytest.mark.needs("ceph-server")
def test_an_osd_stopped_mid_download_cuts_it_then_serves_again(on_private,
                                                               private_ceph):
    data = os.urandom(MiB) * 48
    created = upload(on_private, data)
    assert created.status_code == 201, created.text
    image_url = on_private.url + "/v1/images/" + created.json()["image"]["id"]

    received = 0
    failure: list[BaseException] = []

    def download() -> None:
        nonlocal received
        try:
            with requests.get(image_url, headers=OWNER, stream=True,
                              timeout=60) as response:
                assert response.status_code == 200
                for chunk in response.iter_content(MiB):
                    received += len(chunk)
                    if received >= 8 * MiB and not stopped.is_set():
                        private_ceph.stop_osd()
                        stopped.set()
        except requests.exceptions.RequestException as err:
            failure.append(err)

    stopped = threading.Event()
    reader = threading.Thread(target=download)
    reader.start()
    try:
        assert stopped.wait(60)
        # The download waits on librados: the api still answers at once.
        started = time.monotonic()
        head = requests.head(image_url, headers=OWNER, timeout=10)
        assert head.status_code == 200
        assert requests.get(on_private.url + "/healthcheck", timeout=10).status_code == 200
        assert time.monotonic() - started < 2
        assert reader.is_alive() and not failure   # still waiting meanwhile
    finally:
        reader.join(60)
    # The client saw an error, never a complete-looking short image.
    assert failure and received < len(data), (failure, received)

    private_ceph.start()
    again = requests.get(image_url, headers=OWNER, timeout=120)
    assert again.status_code == 200
    assert hashlib.md5(again.content).digest() == hashlib.md5(data).digest()
    assert on_private.api.process is not None and on_private.api.process.poll() is None
