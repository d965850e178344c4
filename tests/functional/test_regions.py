"""Moving images between stores and deployments, with real processes.

- copy-image between named stores: the default one (file) and, on each
  backend set, a store of the set's kind (file, Swift, S3, RBD).
- export tasks to a real Swift TempURL and a real S3 presigned URL.
- glance-download and clone between two deployments (two registry + api
  pairs), the second configured as the first's region "east"; also on the
  keystone flavor with ``auth = token`` (the caller's token goes to the
  region), against the real Keystone both check tokens at.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional import harness, keystone_harness

pytestmark = pytest.mark.timeout(120)

DATA = os.urandom(1024 * 1024 + 17)
MD5 = hashlib.md5(DATA, usedforsecurity=False).hexdigest()
T1 = harness.identity("t1")


def call(dep: harness.Deployment, method: str, path: str, headers: dict | None = None,
         **kwargs: Any) -> requests.Response:
    return requests.request(method, dep.url + path, headers=headers or T1, timeout=60,
                            **kwargs)


def active_image(dep: harness.Deployment, **extra: Any) -> dict:
    image = call(dep, "POST", "/v2/images", json=dict(
        name="moved", disk_format="raw", container_format="bare", **extra)).json()
    res = call(dep, "PUT", "/v2/images/%s/file" % image["id"], data=DATA,
               headers=dict(T1, **{"Content-Type": "application/octet-stream"}))
    assert res.status_code == 204, res.text
    return image


def wait(predicate: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def finished_task(dep: harness.Deployment, task_id: str) -> dict:
    def done() -> dict | None:
        task = call(dep, "GET", "/v2/tasks/" + task_id, harness.admin()).json()
        return task if task["status"] in ("success", "failure") else None
    return wait(done, "task %s" % task_id)


def create_task(dep: harness.Deployment, kind: str, **task_input: Any) -> requests.Response:
    return call(dep, "POST", "/v2/tasks", harness.admin(),
                json={"type": kind, "input": task_input})


# -- copy-image --------------------------------------------------------------------
@pytest.fixture
def named(tmp_path: Path, backend: str) -> Iterator[harness.Deployment]:
    """A deployment with the stores local (file, the default) and far (the
    set's kind of store, where ``stored_files`` looks)."""
    dep = harness.Deployment(tmp_path, backend=backend)
    kind = dep.backend.store
    far = (dep.store.options() if kind != "file"
           else {"filesystem_store_datadir": str(dep.datadir)})
    sections = dep.api.sections
    sections["DEFAULT"]["enabled_backends"] = "local:file, far:%s" % kind
    sections["glance_store"]["default_backend"] = "local"
    sections["local"] = {"filesystem_store_datadir": str(tmp_path / "local"),
                         "store_description": "Local disk"}
    sections["far"] = far
    try:
        yield dep.start()
    finally:
        dep.stop()


def test_copy_image_to_another_store(named: harness.Deployment, tmp_path: Path) -> None:
    dep = named
    stores = call(dep, "GET", "/v2/info/stores").json()["stores"]
    assert stores == [{"id": "local", "description": "Local disk", "default": "true"},
                      {"id": "far"}]
    image = active_image(dep)
    assert call(dep, "GET", "/v2/images/" + image["id"]).json()["stores"] == "local"
    body = {"method": {"name": "copy-image"}, "stores": ["far"]}
    path = "/v2/images/%s/import" % image["id"]
    # Admin-only by default, even for the owner.
    assert call(dep, "POST", path, json=body).status_code == 403
    assert call(dep, "POST", path, harness.admin(), json=body).status_code == 202

    def copied() -> dict | None:
        shown = call(dep, "GET", "/v2/images/" + image["id"]).json()
        return None if "os_glance_import_task" in shown else shown
    shown = wait(copied, "the copy")
    assert shown["stores"] == "local,far" and shown["status"] == "active"
    assert "os_glance_failed_import" not in shown
    assert any(image["id"] in name for name in dep.stored_files())
    # Again: every store holds it, nothing to do.
    assert call(dep, "POST", path, harness.admin(),
                json={"method": {"name": "copy-image"}, "all_stores": True}
                ).status_code == 202
    assert call(dep, "POST", path, harness.admin(), json=body).status_code == 400
    # Deleting the image removes both copies.
    assert call(dep, "DELETE", "/v2/images/" + image["id"]).status_code == 204
    assert not any(image["id"] in name for name in dep.stored_files())
    assert list((tmp_path / "local").iterdir()) == []


def test_an_upload_chooses_its_store_and_a_download_prefers_one(
        named: harness.Deployment, tmp_path: Path) -> None:
    dep = named
    image = call(dep, "POST", "/v2/images", json=dict(
        name="chosen", disk_format="raw", container_format="bare")).json()
    path = "/v2/images/%s/file" % image["id"]

    def upload(store: str, data: bytes) -> requests.Response:
        return call(dep, "PUT", path, data=data, headers=dict(
            T1, **{"Content-Type": "application/octet-stream",
                   "X-Image-Meta-Store": store}))

    refused = upload("tape", b"x")
    assert refused.status_code == 400 and "tape" in refused.text
    assert call(dep, "GET", "/v2/images/" + image["id"]).json()["status"] == "queued"
    assert upload("far", DATA).status_code == 204
    assert call(dep, "GET", "/v2/images/" + image["id"]).json()["stores"] == "far"
    local = tmp_path / "local"
    assert not local.exists() or list(local.iterdir()) == []
    # A second copy in local, after the first in far.
    body = {"method": {"name": "copy-image"}, "stores": ["local"]}
    assert call(dep, "POST", "/v2/images/%s/import" % image["id"], harness.admin(),
                json=body).status_code == 202
    wait(lambda: call(dep, "GET", "/v2/images/" + image["id"]).json()["stores"]
         == "far,local", "the copy")
    [copy] = list(local.iterdir())
    # The local copy altered behind our back: a plain download reads far
    # (the first copy); one that prefers local reads the altered bytes
    # (which the checksum check cuts off at the end).
    copy.write_bytes(bytes(len(DATA)))
    assert call(dep, "GET", path).content == DATA
    try:
        served: bytes | None = call(dep, "GET", path + "?prefer=local").content
    except requests.exceptions.RequestException:
        served = None
    assert served != DATA
    # The local copy gone: preferring it gives way to far.
    copy.unlink()
    preferring = call(dep, "GET", path + "?prefer=local")
    assert preferring.status_code == 200 and preferring.content == DATA
    assert call(dep, "GET", path + "?prefer=tape").status_code == 400


# -- export ------------------------------------------------------------------------
@pytest.fixture
def plain(tmp_path: Path) -> Iterator[harness.Deployment]:
    yield from harness.deployment(tmp_path)


@pytest.mark.needs("swift", "swift-server")
def test_export_to_a_swift_tempurl(plain: harness.Deployment) -> None:
    from swiftclient import Connection
    from swiftclient.utils import generate_temp_url

    conn = Connection(authurl=os.environ["SWIFT_AUTH_URL"], user=os.environ["SWIFT_USER"],
                      key=os.environ["SWIFT_KEY"])
    key, container = uuid.uuid4().hex, "export-" + uuid.uuid4().hex[:12]
    conn.post_account({"X-Account-Meta-Temp-URL-Key-2": key})
    conn.put_container(container)
    storage = conn.get_auth()[0]
    base, _, account = storage.partition("/v1/")

    def signed(name: str, method: str = "PUT") -> str:
        path = "/v1/%s/%s/%s" % (account, container, name)
        return base + generate_temp_url(path, 600, key, method)
    try:
        image = active_image(plain)
        res = create_task(plain, "export", image_id=image["id"], export_to=signed("img"))
        assert res.status_code == 201, res.text
        task = finished_task(plain, res.json()["id"])
        assert task["status"] == "success", task["message"]
        assert task["result"]["etag"] == MD5 and task["result"]["size"] == len(DATA)
        assert "temp_url_sig" not in task["result"]["export_to"]
        assert conn.get_object(container, "img")[1] == DATA
        # A URL signed for GET only is refused there: a failed task, nothing stored.
        task = finished_task(plain, create_task(plain, "export", image_id=image["id"],
                                                export_to=signed("no", "GET")).json()["id"])
        assert task["status"] == "failure" and "answered 401" in task["message"]
        assert [o["name"] for o in conn.get_container(container)[1]] == ["img"]
    finally:
        for obj in conn.get_container(container)[1]:
            conn.delete_object(container, obj["name"])
        conn.delete_container(container)


@pytest.mark.needs("s3", "swift-server")
def test_export_to_an_s3_presigned_url(plain: harness.Deployment) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"],
                      aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                      aws_secret_access_key=os.environ["S3_SECRET_KEY"],
                      region_name=os.environ.get("S3_REGION") or "us-east-1")
    bucket = "export-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=bucket)
    try:
        image = active_image(plain)
        url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket,
                                                              "Key": "img"},
                                        ExpiresIn=600)
        task = finished_task(plain, create_task(plain, "export", image_id=image["id"],
                                                export_to=url).json()["id"])
        assert task["status"] == "success", task["message"]
        assert task["result"]["verified"] == "etag"
        assert s3.get_object(Bucket=bucket, Key="img")["Body"].read() == DATA
        # A presigned URL for another bucket's key that does not exist.
        bad = url.replace("/%s/img" % bucket, "/%s-none/img" % bucket)
        task = finished_task(plain, create_task(plain, "export", image_id=image["id"],
                                                export_to=bad).json()["id"])
        assert task["status"] == "failure" and "answered" in task["message"]
        keys = [o["Key"] for o in s3.list_objects(Bucket=bucket).get("Contents", [])]
        assert keys == ["img"]
    finally:
        for obj in s3.list_objects(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)


# -- regions -----------------------------------------------------------------------
@contextlib.contextmanager
def started(east: harness.Deployment, here_for: Callable[[str], harness.Deployment]
            ) -> Iterator[tuple[harness.Deployment, harness.Deployment]]:
    """``east`` started, then the deployment ``here_for`` makes with east's URL."""
    east.start()
    try:
        here = here_for(east.url)
        here.start()
        try:
            yield here, east
        finally:
            here.stop()
    finally:
        east.stop()


def pair(tmp_path: Path, **east_options: Any
         ) -> contextlib.AbstractContextManager[tuple[harness.Deployment,
                                                      harness.Deployment]]:
    """``here`` and ``east``, east being here's region of that name."""
    return started(
        harness.Deployment(tmp_path / "east", api_options={"DEFAULT": east_options}),
        lambda url: harness.Deployment(tmp_path / "here", api_options={
            "DEFAULT": {"enabled_regions": "east",
                        "enabled_import_methods": "glance-direct,glance-download"},
            "region_east": {"api_url": url, "auth": "identity_headers"}}))


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[harness.Deployment, harness.Deployment]]:
    with pair(tmp_path) as deployments:
        yield deployments


def test_glance_download_and_clone_between_deployments(two: Any) -> None:
    here, east = two
    remote = active_image(east, os_distro="debian", hw_disk_bus="scsi")
    local = call(here, "POST", "/v2/images", json={
        "name": "pulled", "disk_format": "raw", "container_format": "bare",
        "visibility": "shared"}).json()
    path = "/v2/images/%s/import" % local["id"]
    method = {"name": "glance-download", "glance_region": "west",
              "glance_image_id": remote["id"]}
    res = call(here, "POST", path, json={"method": method})
    assert res.status_code == 400 and "Unknown region" in res.text
    method["glance_region"] = "east"
    assert call(here, "POST", path, json={"method": method}).status_code == 202

    def pulled() -> dict | None:
        shown = call(here, "GET", "/v2/images/" + local["id"]).json()
        return shown if shown["status"] == "active" else None
    shown = wait(pulled, "the download")
    assert shown["checksum"] == MD5 and shown["os_distro"] == "debian"
    assert call(here, "GET", "/v2/images/%s/file" % local["id"]).content == DATA

    # Clone it back to east, with a member; twice: one clone.
    assert call(here, "POST", "/v2/images/%s/members" % local["id"],
                json={"member": "t2"}).status_code == 200
    res = create_task(here, "clone", image_id=local["id"], region="nowhere")
    assert res.status_code == 400
    results = []
    for _ in range(2):
        task = finished_task(here, create_task(here, "clone", image_id=local["id"],
                                               region="east").json()["id"])
        assert task["status"] == "success", task["message"]
        results.append(task["result"])
    clone_id = results[0]["image_id"]
    assert results == [{"image_id": clone_id, "region": "east"}] * 2
    clone = call(east, "GET", "/v2/images/" + clone_id).json()
    assert clone["status"] == "active" and clone["checksum"] == MD5
    assert clone["owner"] == "t1" and clone["cloned_from_image"] == local["id"]
    members = call(east, "GET", "/v2/images/%s/members" % clone_id).json()["members"]
    assert [m["member_id"] for m in members] == ["t2"]
    listed = call(east, "GET", "/v2/images?cloned_from_image=" + local["id"]).json()
    assert [i["id"] for i in listed["images"]] == [clone_id]
    assert call(east, "GET", "/v2/images/%s/file" % clone_id).content == DATA


def test_a_clone_the_region_refuses_leaves_nothing_there(tmp_path: Path) -> None:
    with pair(tmp_path, image_size_cap=100_000) as (here, east):
        image = active_image(here)
        task = finished_task(here, create_task(here, "clone", image_id=image["id"],
                                               region="east").json()["id"])
        assert task["status"] == "failure"
        assert "Region east answered 413" in task["message"]
        assert "larger than 100000 bytes" in task["message"]
        assert call(east, "GET", "/v2/images", harness.admin()).json()["images"] == []
        assert east.stored_files() == []


# -- auth = token, on a real Keystone ------------------------------------------------
@pytest.fixture
def token_regions(tmp_path: Path, keystone: keystone_harness.Keystone
                  ) -> Iterator[tuple[harness.Deployment, harness.Deployment]]:
    """``here`` and its region ``east`` on the keystone flavor, sharing the
    Keystone; here speaks to east with the caller's token, and its reaper
    with a token of its admin credentials (an admin ``operator``)."""
    operator = keystone.user(roles=("admin",))
    with started(keystone_harness.deployment(tmp_path / "east", keystone),
                 lambda url: keystone_harness.deployment(tmp_path / "here", keystone,
                                                         api_options={
            "DEFAULT": {"enabled_regions": "east",
                        "enabled_import_methods": "glance-direct,glance-download",
                        "auth_url": keystone.url, "admin_user": operator.name,
                        "admin_password": operator.password,
                        "admin_tenant_name": operator.project_name,
                        "admin_user_domain_name": operator.domain_name,
                        "admin_project_domain_name": operator.domain_name},
            "region_east": {"api_url": url, "auth": "token"},
            "task": {"task_stall_timeout": 2}})) as deployments:
        yield deployments


def as_user(token: str, **headers: str) -> dict[str, str]:
    return dict(headers, **{"X-Auth-Token": token})


@pytest.mark.needs("keystone")
def test_regions_with_the_callers_token(token_regions: Any,
                                        keystone: keystone_harness.Keystone) -> None:
    here, east = token_regions
    member, stranger = keystone.user(), keystone.user()
    admin = keystone.user(roles=("member", "admin"))   # the Tasks API is admin-only
    token, stranger_token, admin_token = (keystone.token(u) for u in (member, stranger, admin))
    # A private image of the member's project in east.
    remote = call(east, "POST", "/v2/images", as_user(token), json={
        "name": "far", "disk_format": "raw", "container_format": "bare"}).json()
    res = call(east, "PUT", "/v2/images/%s/file" % remote["id"], data=DATA,
               headers=as_user(token, **{"Content-Type": "application/octet-stream"}))
    assert res.status_code == 204, res.text

    def pull(user_token: str) -> tuple[dict, requests.Response]:
        local = call(here, "POST", "/v2/images", as_user(user_token), json={
            "name": "near", "disk_format": "raw", "container_format": "bare"}).json()
        return local, call(here, "POST", "/v2/images/%s/import" % local["id"],
                           as_user(user_token), json={"method": {
                               "name": "glance-download", "glance_region": "east",
                               "glance_image_id": remote["id"]}})

    # East reads the image as the caller: another project's token finds nothing.
    _local, res = pull(stranger_token)
    assert res.status_code == 404 and "has no image" in res.text, res.text
    local, res = pull(token)
    assert res.status_code == 202, res.text

    def pulled() -> dict | None:
        shown = call(here, "GET", "/v2/images/" + local["id"], as_user(token)).json()
        return shown if shown["status"] == "active" else None
    assert wait(pulled, "the download")["checksum"] == MD5
    assert call(here, "GET", "/v2/images/%s/file" % local["id"],
                as_user(token)).content == DATA

    # An admin clones the member's image to east: the clone is the member's.
    task = call(here, "POST", "/v2/tasks", as_user(admin_token), json={
        "type": "clone", "input": {"image_id": local["id"], "region": "east"}}).json()

    def finished(task_id: str) -> dict | None:
        found = call(here, "GET", "/v2/tasks/" + task_id, as_user(admin_token)).json()
        return found if found["status"] in ("success", "failure") else None
    done = wait(lambda: finished(task["id"]), "the clone")
    assert done["status"] == "success", done["message"]
    clone = call(east, "GET", "/v2/images/" + done["result"]["image_id"],
                 as_user(token)).json()
    assert clone["owner"] == member.project_id and clone["checksum"] == MD5
    assert clone["cloned_from_image"] == local["id"] and "cloned_by_task" not in clone

    # What a node dying mid-clone leaves: its task processing, and in east
    # a queued clone marked with it. Here's reaper fails the task once it
    # is 2 s old and deletes that clone, with a token of the admin
    # credentials (the caller's is not kept).
    dead_id = str(uuid.uuid4())
    res = requests.post("http://127.0.0.1:%d/tasks" % here.registry.port, timeout=30,
                        headers=harness.admin(), json={"task": {
                            "id": dead_id, "type": "clone", "status": "processing",
                            "owner": admin.project_id,
                            "input": {"image_id": local["id"], "region": "east"}}})
    assert res.status_code == 200, res.text
    left = call(east, "POST", "/v2/images", as_user(token), json={
        "name": "near", "disk_format": "raw", "container_format": "bare",
        "cloned_from_image": local["id"], "cloned_by_task": dead_id}).json()
    dead = wait(lambda: finished(dead_id), "the reaper", timeout=30)
    assert dead["status"] == "failure" and "interrupted" in dead["message"]
    wait(lambda: call(east, "GET", "/v2/images/" + left["id"],
                      as_user(token)).status_code == 404, "the unfinished clone deleted",
         timeout=30)
    # The finished clone stays.
    assert call(east, "GET", "/v2/images/" + clone["id"],
                as_user(token)).json()["status"] == "active"
