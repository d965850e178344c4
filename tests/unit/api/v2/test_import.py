"""Interoperable import: discovery, staging and glance-direct imports."""

from __future__ import annotations

import hashlib
import io
import os

import eventlet
import webob

from glance_clone.common.context import admin_context

from .conftest import V2
from .test_tasks import DATA as SOURCE_DATA
from .test_tasks import source  # noqa: F401 (the local HTTP server fixture)

DATA = b"staged-bytes" * 10_000


def staged_files(v2: V2) -> list[str]:
    directory = v2.stack.conf.node_staging_uri[len("file://"):]
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def stage(v2: V2, image_id: str, data: bytes = DATA, **kw):
    return v2.call("PUT", "/images/%s/stage" % image_id, raw=data,
                   content_type=kw.pop("content_type", "application/octet-stream"), **kw)


def do_import(v2: V2, image_id: str, method: str = "glance-direct", uri: str = "",
              **kw):
    body = {"name": method, "uri": uri} if uri else {"name": method}
    return v2.call("POST", "/images/%s/import" % image_id, {"method": body}, **kw)


def wait_status(v2: V2, image_id: str, wanted: str) -> dict:
    for _ in range(500):
        shown = v2.call("GET", "/images/" + image_id).json
        if shown["status"] == wanted:
            return shown
        eventlet.sleep(0.01)
    raise AssertionError("image %s stayed %s" % (image_id, shown["status"]))


def new_image(v2: V2, **extra) -> dict:
    return v2.create(name="i", disk_format="raw", container_format="bare", **extra)


def test_info_import_and_stores(v2: V2) -> None:
    res = v2.call("GET", "/info/import")
    assert res.status_int == 200
    assert res.json == {"import-methods": {"description": "Import methods available.",
                                           "type": "array",
                                           "value": ["glance-direct", "web-download",
                                                     "copy-image"]}}
    # Stores by id are named stores' (enabled_backends): none here.
    res = v2.call("GET", "/info/stores")
    assert res.status_int == 404
    assert "Multi backend is not supported at this site." in res.text
    assert v2.call("GET", "/info/import", raw=b"{}",
                   content_type="application/json").status_int == 400
    assert v2.call("POST", "/info/stores").status_int == 405


def test_stage_then_import(v2: V2, stack) -> None:
    image = new_image(v2)
    assert stage(v2, image["id"]).status_int == 204
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "uploading" and shown["size"] == len(DATA)
    assert staged_files(v2) == [image["id"]]
    # Staged once only.
    assert stage(v2, image["id"], b"again").status_int == 409
    res = do_import(v2, image["id"])
    assert res.status_int == 202 and res.body == b""
    shown = wait_status(v2, image["id"], "active")
    assert shown["checksum"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == DATA
    assert staged_files(v2) == [] and len(stack.stored_files()) == 1
    # An active image is imported no more.
    assert do_import(v2, image["id"]).status_int == 409


def test_stage_refusals_leave_the_image_queued(v2_with) -> None:
    v2 = v2_with({"image_size_cap": 100})
    image = new_image(v2)
    assert stage(v2, image["id"], content_type="text/plain").status_int == 415
    assert stage(v2, image["id"], tenant="t2").status_int == 404
    assert stage(v2, image["id"], b"x" * 101).status_int == 413
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and shown["size"] is None
    assert staged_files(v2) == []
    assert v2.upload(image["id"], b"x" * 10).status_int == 204
    # Neither an active image...
    assert stage(v2, image["id"], b"x").status_int == 409
    # ...nor a staged one takes a normal upload.
    other = new_image(v2)
    assert stage(v2, other["id"], b"x").status_int == 204
    assert v2.upload(other["id"], b"x").status_int == 409


def stage_chunked(v2: V2, image_id: str, data: bytes, size: str) -> webob.Response:
    """A stage whose body has no Content-Length, declaring ``size``."""
    req = webob.Request.blank("/v2/images/%s/stage" % image_id, method="PUT")
    req.headers.update({"X-Identity-Status": "Confirmed", "X-Roles": "reader,member",
                        "X-User-Id": "user", "X-Tenant-Id": "t1",
                        "Content-Type": "application/octet-stream",
                        "Transfer-Encoding": "chunked", "x-openstack-image-size": size})
    req.environ["wsgi.input"] = io.BytesIO(data)
    req.environ.pop("CONTENT_LENGTH", None)
    return req.get_response(v2.stack.api)


def test_stage_holds_to_the_declared_size(v2_with) -> None:
    v2 = v2_with({"image_size_cap": 100})
    image = new_image(v2)
    for bad in ("big", "-5", "1.5", "", "٣"):
        res = stage(v2, image["id"], b"x" * 5, headers={"x-openstack-image-size": bad})
        assert res.status_int == 400, bad
        assert "x-openstack-image-size must be a non-negative integer" in res.text
    res = stage(v2, image["id"], b"x" * 5, headers={"x-openstack-image-size": "101"})
    assert res.status_int == 413, res.text
    res = stage(v2, image["id"], b"x" * 5, headers={"x-openstack-image-size": "6"})
    assert res.status_int == 400
    assert "x-openstack-image-size (6) is not the length of the request body (5)" in res.text
    # Without a Content-Length the data itself is held to it.
    res = stage_chunked(v2, image["id"], b"x" * 7, "6")
    assert res.status_int == 400 and "goes past the 6 bytes" in res.text, res.text
    res = stage_chunked(v2, image["id"], b"x" * 5, "6")
    assert res.status_int == 400 and "ended after 5 of the 6 bytes" in res.text, res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and shown["size"] is None
    assert staged_files(v2) == []
    assert stage_chunked(v2, image["id"], b"x" * 6, " 6 ").status_int == 204
    assert v2.call("GET", "/images/" + image["id"]).json["size"] == 6
    other = new_image(v2)
    res = stage(v2, other["id"], b"x" * 6, headers={"x-openstack-image-size": "6"})
    assert res.status_int == 204


def test_stage_needs_glance_direct(v2_with) -> None:
    v2 = v2_with({"enabled_import_methods": ["web-download"]})
    image = new_image(v2)
    assert stage(v2, image["id"]).status_int == 404
    # The route is not there: no 415 or 400 for what is sent to it.
    assert stage(v2, image["id"], content_type="text/plain").status_int == 404
    res = stage(v2, image["id"], headers={"x-openstack-image-size": "big"})
    assert res.status_int == 404
    assert v2.call("GET", "/info/import").json["import-methods"]["value"] == [
        "web-download"]
    assert do_import(v2, image["id"]).status_int == 400


def test_import_refusals(v2: V2) -> None:
    image = new_image(v2)
    path = "/images/%s/import" % image["id"]
    for body in (None, {}, {"method": "glance-direct"}, {"method": {}}):
        assert v2.call("POST", path, body).status_int == 400
    res = do_import(v2, image["id"], "glance-download")
    assert res.status_int == 400 and "Unknown import method" in res.text
    # Not staged yet.
    res = do_import(v2, image["id"])
    assert res.status_int == 409 and "staged" in res.text
    assert do_import(v2, "00000000-0000-0000-0000-000000000000").status_int == 404
    bare = v2.create(name="no-formats")
    assert stage(v2, bare["id"], b"x").status_int == 204
    res = do_import(v2, bare["id"])
    assert res.status_int == 409 and "container_format" in res.text
    assert do_import(v2, bare["id"], tenant="t2").status_int == 404
    assert v2.call("GET", "/images/" + bare["id"]).json["status"] == "uploading"


def test_failed_import_requeues_and_leaves_nothing(v2_with) -> None:
    v2 = v2_with({"user_storage_quota": "10B"})
    image = new_image(v2)
    assert stage(v2, image["id"], b"x" * 50).status_int == 204
    assert do_import(v2, image["id"]).status_int == 202
    shown = wait_status(v2, image["id"], "queued")
    assert shown["size"] is None
    assert staged_files(v2) == [] and v2.stack.stored_files() == []
    # It can be staged again.
    assert stage(v2, image["id"], b"x" * 5).status_int == 204


def test_delete_removes_staged_data(v2: V2) -> None:
    image = new_image(v2)
    assert stage(v2, image["id"]).status_int == 204
    assert v2.call("DELETE", "/images/" + image["id"]).status_int == 204
    assert staged_files(v2) == []


def test_web_download(v2: V2, source: str) -> None:  # noqa: F811
    image = new_image(v2)
    res = do_import(v2, image["id"], "web-download", source + "/image")
    assert res.status_int == 202, res.text
    shown = wait_status(v2, image["id"], "active")
    assert shown["size"] == len(SOURCE_DATA)
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == SOURCE_DATA
    assert staged_files(v2) == [] and len(v2.stack.stored_files()) == 1
    assert do_import(v2, image["id"], "web-download", source + "/image").status_int == 409


def test_web_download_refusals(v2: V2, source: str) -> None:  # noqa: F811
    image = new_image(v2)
    for uri in ("", "file:///etc/passwd", "http://169.254.169.254/latest"):
        res = do_import(v2, image["id"], "web-download", uri)
        assert res.status_int == 400, (uri, res.text)
    staged = new_image(v2)
    assert stage(v2, staged["id"], b"x").status_int == 204
    res = do_import(v2, staged["id"], "web-download", source + "/image")
    assert res.status_int == 409
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "queued"


def test_failed_web_download_requeues(v2: V2, source: str) -> None:  # noqa: F811
    # Not there, redirected where the filter refuses, cut short of its
    # Content-Length.
    for path in ("/missing", "/redirect", "/short"):
        image = new_image(v2)
        assert do_import(v2, image["id"], "web-download", source + path).status_int == 202
        wait_status(v2, image["id"], "queued")
    assert staged_files(v2) == [] and v2.stack.stored_files() == []


def test_glance_direct_needs_the_staged_file(v2: V2) -> None:
    image = new_image(v2)
    assert stage(v2, image["id"], b"x").status_int == 204
    directory = v2.stack.conf.node_staging_uri[len("file://"):]
    os.unlink(os.path.join(directory, image["id"]))
    res = do_import(v2, image["id"])
    assert res.status_int == 409 and "no staged data" in res.text
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "uploading"


def _stage_host_of(v2: V2, image_id: str) -> str | None:
    record = v2.stack.v2.registry.get_image(admin_context(), image_id)
    return (record.get("properties") or {}).get("os_glance_stage_host")


def test_the_stage_host_is_public_endpoint_without_a_self_reference(v2_with) -> None:
    v2 = v2_with({"public_endpoint": "http://glance.example:9292"})
    image = new_image(v2)
    assert stage(v2, image["id"]).status_int == 204
    assert _stage_host_of(v2, image["id"]) == "http://glance.example:9292"
    assert "os_glance_stage_host" not in v2.call("GET", "/images/" + image["id"]).json
    # This node is that host: the import runs here, and drops the record.
    assert do_import(v2, image["id"]).status_int == 202
    wait_status(v2, image["id"], "active")
    assert _stage_host_of(v2, image["id"]) is None
    # The node's own URL wins over the public one.
    v2 = v2_with({"public_endpoint": "http://glance.example:9292",
                  "worker_self_reference_url": "http://node1.example:9292"})
    image = new_image(v2)
    assert stage(v2, image["id"]).status_int == 204
    assert _stage_host_of(v2, image["id"]) == "http://node1.example:9292"
