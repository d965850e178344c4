"""The RBD store through glance-api: images with clones are in use (now
and for the scrubber), and RBD next to the other stores in one api."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from tests.functional import harness
from tests.functional.test_scrubber import run_scrubber, scrubber_conf, status
from tests.support import ceph

pytestmark = [pytest.mark.timeout(300), pytest.mark.stores("rbd")]

OWNER = harness.identity("owner")
IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "Content-Type": "application/octet-stream"}


def create(dep: harness.Deployment, data: bytes, **headers: str) -> dict:
    response = requests.post(dep.url + "/v1/images", data=data, timeout=60,
                             headers=dict(OWNER, **IMAGE, **headers))
    assert response.status_code == 201, response.text
    return response.json()["image"]


def image_url(dep: harness.Deployment, image_id: str) -> str:
    return "%s/v1/images/%s" % (dep.url, image_id)


@contextmanager
def pool() -> Iterator[Any]:
    """The store's pool, as Nova or Cinder would reach it."""
    with ceph.session(os.environ["CEPH_CONF"], os.environ["CEPH_USER"],
                      os.environ["CEPH_POOL"]) as (_, ioctx):
        yield ioctx


def clone(image_id: str) -> None:
    """Clone the image's snapshot, as Nova does to boot from it."""
    import rbd

    with pool() as ioctx:
        rbd.RBD().clone(ioctx, image_id, "snap", ioctx, image_id + "-clone",
                        features=rbd.RBD_FEATURE_LAYERING)


def remove_clone(image_id: str) -> None:
    import rbd

    with pool() as ioctx:
        rbd.RBD().remove(ioctx, image_id + "-clone")


def test_an_image_with_clones_is_in_use_until_they_are_gone(glance):
    data = os.urandom(3 * 1024 * 1024)
    image = create(glance, data)
    clone(image["id"])

    refused = requests.delete(image_url(glance, image["id"]), headers=OWNER, timeout=60)
    assert refused.status_code == 409, refused.text
    assert "in use" in refused.text
    head = requests.head(image_url(glance, image["id"]), headers=OWNER, timeout=30)
    assert head.headers["x-image-meta-status"] == "active"
    assert requests.get(image_url(glance, image["id"]), headers=OWNER,
                        timeout=60).content == data
    assert sorted(glance.stored_files()) == sorted(
        [image["id"], image["id"] + "@snap", image["id"] + "-clone"])

    remove_clone(image["id"])
    deleted = requests.delete(image_url(glance, image["id"]), headers=OWNER, timeout=60)
    assert deleted.status_code == 200, deleted.text
    assert glance.stored_files() == []


def test_the_scrubber_retries_an_image_in_use(tmp_path, backend):
    dep = harness.Deployment(tmp_path, backend=backend,
                             api_options={"DEFAULT": {"delayed_delete": True}})
    dep.start()
    try:
        image = create(dep, os.urandom(100_000))
        clone(image["id"])
        assert requests.delete(image_url(dep, image["id"]), headers=OWNER,
                               timeout=60).status_code == 200
        conf = scrubber_conf(dep)

        result = run_scrubber(conf)
        assert result.returncode == 3, result.stderr   # something left for a later run
        assert status(dep, image["id"]) == "pending_delete"
        assert image["id"] + "@snap" in dep.stored_files()

        remove_clone(image["id"])
        result = run_scrubber(conf)
        assert result.returncode == 0, result.stderr
        assert status(dep, image["id"]) == "deleted"
        assert dep.stored_files() == []
    finally:
        dep.stop()


@pytest.mark.needs("swift", "s3")
def test_file_swift_s3_and_rbd_in_one_api(tmp_path, backend):
    others = {"swift": harness.SwiftStore(os.environ, uuid.uuid4().hex[:12]),
              "s3": harness.S3Store(os.environ, uuid.uuid4().hex[:12])}
    options: dict[str, Any] = {"stores": ["file", "http", "swift", "s3", "rbd"],
                               "default_store": "rbd"}
    for store in others.values():
        options.update(store.options())
    dep = harness.Deployment(tmp_path, backend=backend,
                             api_options={"glance_store": options})
    dep.start()
    try:
        images = {}
        for store in ("file", "swift", "s3", "rbd", None):
            headers = {"x-image-meta-store": store} if store else {}
            data = os.urandom(200_000)
            images[store] = (create(dep, data, **headers)["id"], data)
        assert set(os.listdir(dep.datadir)) == {images["file"][0]}
        assert others["swift"].names() == [images["swift"][0]]
        assert others["s3"].names() == [images["s3"][0]]
        assert sorted(dep.stored_files()) == sorted(
            "%s%s" % (images[store][0], suffix) for store in ("rbd", None)
            for suffix in ("", "@snap"))
        for image_id, data in images.values():
            response = requests.get(image_url(dep, image_id), headers=OWNER, timeout=60)
            assert response.status_code == 200 and response.content == data
        for image_id, _ in images.values():
            assert requests.delete(image_url(dep, image_id), headers=OWNER,
                                   timeout=60).status_code == 200
        assert os.listdir(dep.datadir) == []
        assert others["swift"].names() == others["s3"].names() == dep.stored_files() == []
    finally:
        dep.stop()
        for store in others.values():
            store.cleanup()


def test_nova_reads_the_rbd_direct_url_as_admin_and_clones_it(tmp_path, backend):
    """With show_image_direct_url / show_multiple_locations on, an admin
    identity (Nova's RBD image backend) gets the rbd:// URL of the image's
    snapshot and clones it in place; the image's owner never sees it
    (get_image_location is for admins and services)."""
    options = {"DEFAULT": {"show_image_direct_url": True, "show_multiple_locations": True}}
    with contextmanager(harness.deployment)(tmp_path, backend=backend,
                                            api_options=options) as dep:
        image = create(dep, os.urandom(300_000))
        path = "%s/v2/images/%s" % (dep.url, image["id"])
        seen = requests.get(path, headers=harness.admin(), timeout=30).json()
        url = seen["direct_url"]
        assert [loc["url"] for loc in seen["locations"]] == [url]
        fsid, pool_name, name, snapshot = url[len("rbd://"):].split("/")
        assert (pool_name, name, snapshot) == (os.environ["CEPH_POOL"], image["id"], "snap")
        clone(name)
        remove_clone(name)
        for caller in (OWNER, harness.identity("other")):
            shown = requests.get(path, headers=caller, timeout=30)
            assert "direct_url" not in shown.text and "rbd://" not in shown.text
