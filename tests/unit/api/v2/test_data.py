"""v2 upload and download: the v1 byte paths, v2's statuses and codes."""

from __future__ import annotations

import hashlib
import io
import struct
from typing import Any

import webob

from tests.support import disk_images

from .conftest import ADMIN, V2


def test_upload_then_download(v2: V2, stack) -> None:
    image = v2.create(name="a", disk_format="raw", container_format="bare")
    data = b"x" * 300_000
    assert v2.call("GET", "/images/%s/file" % image["id"]).status_int == 204
    res = v2.upload(image["id"], data)
    assert res.status_int == 204, res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "active" and shown["size"] == len(data)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert shown["checksum"] == md5
    res = v2.call("GET", "/images/%s/file" % image["id"])
    assert res.status_int == 200 and res.body == data
    assert res.content_type == "application/octet-stream"
    assert res.headers["Content-MD5"] == md5
    assert res.content_length == len(data)
    # A second upload is refused; the data stays.
    assert v2.upload(image["id"], b"other").status_int == 409
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == data
    assert len(stack.stored_files()) == 1


def test_upload_refusals_keep_the_image_queued(v2_with) -> None:
    v2 = v2_with({"image_size_cap": 10})
    bare = v2.create(name="no-formats")
    assert v2.upload(bare["id"], b"data").status_int == 400
    image = v2.create(name="a", disk_format="raw", container_format="bare")
    res = v2.upload(image["id"], b"data", content_type="text/plain")
    assert res.status_int == 415 and "application/octet-stream" in res.text
    assert v2.upload(image["id"], b"x" * 11).status_int == 413
    assert v2.upload(image["id"], b"data", tenant="t2").status_int == 404
    public = v2.create(name="p", visibility="public", disk_format="raw",
                       container_format="bare", caller=ADMIN)
    assert v2.upload(public["id"], b"data", tenant="t2").status_int == 403
    for one in (bare, image):
        shown = v2.call("GET", "/images/" + one["id"]).json
        assert shown["status"] == "queued" and shown["size"] is None
    assert v2.stack.stored_files() == []
    assert v2.upload(image["id"], b"x" * 10).status_int == 204


def test_bad_size_header(v2: V2) -> None:
    image = v2.create(name="a", disk_format="raw", container_format="bare")
    res = v2.upload(image["id"], b"data", headers={"x-openstack-image-size": "big"})
    assert res.status_int == 400


def test_storage_quota(v2_with) -> None:
    v2 = v2_with({"user_storage_quota": "10B"})
    first = v2.create(name="a", disk_format="raw", container_format="bare")
    assert v2.upload(first["id"], b"x" * 8).status_int == 204
    second = v2.create(name="b", disk_format="raw", container_format="bare")
    assert v2.upload(second["id"], b"x" * 8).status_int == 413
    assert v2.call("GET", "/images/" + second["id"]).json["status"] == "queued"


def test_v1_and_v2_share_images(v2: V2, stack) -> None:
    v1 = stack.request("/v1/images", "POST", body=b"from v1", tenant="t1", headers={
        "x-image-meta-name": "one", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare", "x-image-meta-property-os": "linux"})
    assert v1.status_int == 201
    image_id = v1.json["image"]["id"]
    shown = v2.call("GET", "/images/" + image_id).json
    assert shown["status"] == "active" and shown["os"] == "linux"
    assert shown["visibility"] == "shared"
    assert v2.call("GET", "/images/%s/file" % image_id).body == b"from v1"
    made = v2.create(name="two", disk_format="raw", container_format="bare",
                     visibility="private", tags=["t"])
    v2.upload(made["id"], b"from v2")
    got = stack.request("/v1/images/" + made["id"], tenant="t1")
    assert got.body == b"from v2"
    assert got.headers["x-image-meta-is_public"] == "False"
    assert stack.request("/v1/images/" + made["id"], "DELETE", tenant="t1").status_int == 200
    assert v2.call("GET", "/images/" + made["id"]).status_int == 404


def test_an_unsafe_disk_image_is_415_and_the_image_stays_queued(v2: V2, tmp_path) -> None:
    image = v2.create(name="evil", disk_format="qcow2", container_format="bare")
    res = v2.upload(image["id"], disk_images.qcow2_with_backing_file(tmp_path))
    assert res.status_int == 415
    assert "safety checks (qcow2: backing_file)" in res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and shown["virtual_size"] is None
    assert v2.stack.stored_files() == []
    good = disk_images.qcow2(tmp_path, "3M")
    assert v2.upload(image["id"], good).status_int == 204
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["virtual_size"] == 3 * disk_images.MIB


def test_a_virtual_size_that_cannot_be_recorded_is_415(v2: V2, tmp_path) -> None:
    data = bytearray(disk_images.qcow2(tmp_path))
    struct.pack_into(">Q", data, 24, 2 ** 64 - 1)
    image = v2.create(name="huge", disk_format="qcow2", container_format="bare")
    res = v2.upload(image["id"], bytes(data))
    assert res.status_int == 415 and "a virtual size of" in res.text
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "queued"
    assert v2.stack.stored_files() == []


def test_a_vmdk_of_a_create_type_not_allowed_is_415(v2_with, tmp_path) -> None:
    v2 = v2_with({"image_format.vmdk_allowed_types": ["streamOptimized"]})
    image = v2.create(name="v", disk_format="vmdk", container_format="bare")
    res = v2.upload(image["id"], disk_images.vmdk_sparse(tmp_path))
    assert res.status_int == 415
    assert "createType 'monolithicsparse' is not in [image_format] vmdk_allowed_types" \
        in res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and v2.stack.stored_files() == []


class _DeletesMidway(io.RawIOBase):
    """Request data that deletes its image (through v2) once the upload has
    begun reading it."""

    def __init__(self, v2: V2, image_id: str) -> None:
        self.v2, self.image_id, self.reads = v2, image_id, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.reads += 1
        if self.reads == 2:
            assert self.v2.call("DELETE", "/images/" + self.image_id).status_int == 204
        if self.reads > 4:
            return 0
        buffer[:4] = b"data"
        return 4


def test_an_image_deleted_during_its_upload_is_410(v2: V2, stack) -> None:
    image = v2.create(name="a", disk_format="raw", container_format="bare")
    req = webob.Request.blank("/v2/images/%s/file" % image["id"], method="PUT")
    req.headers.update({"X-Identity-Status": "Confirmed", "X-Roles": "reader,member",
                        "X-Tenant-Id": "t1", "Content-Type": "application/octet-stream",
                        "Transfer-Encoding": "chunked"})
    req.environ["wsgi.input"] = io.BufferedReader(_DeletesMidway(v2, image["id"]))
    res = req.get_response(stack.api)
    assert res.status_int == 410, res.text
    assert "deleted during the upload" in res.text
    assert v2.call("GET", "/images/" + image["id"]).status_int == 404
    assert stack.stored_files() == []
