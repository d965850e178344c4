"""Copying an image between named stores, store to store."""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import pytest

from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import store_copy
from tests.support import disk_images
from tests.support.stack import Stack, make_stack

ADMIN = RequestContext(user="root", tenant="admin-t", roles=("admin",), is_admin=True)
DATA = b"copied" * 100_000


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Stack:
    return make_stack(tmp_path, {
        "enabled_backends": {"fast": "file", "cheap": "file", "web": "http"},
        "glance_store.default_backend": "fast",
        "fast.filesystem_store_datadir": str(tmp_path / "fast"),
        "cheap.filesystem_store_datadir": str(tmp_path / "cheap"),
        "cheap.weight": 5})


def active_image(stack: Stack, data: bytes = DATA) -> dict:
    res = stack.request("/v2/images", "POST", tenant="t1",
                        headers={"Content-Type": "application/json"},
                        body=b'{"name": "i", "disk_format": "raw", '
                             b'"container_format": "bare"}')
    image = res.json
    res = stack.request("/v2/images/%s/file" % image["id"], "PUT", data, tenant="t1")
    assert res.status_int == 204, res.text
    return image


def record(stack: Stack, image_id: str) -> dict:
    return stack.v2.catalog.images.writes.read(ADMIN, image_id)


def copier(stack: Stack) -> store_copy.StoreCopier:
    return store_copy.StoreCopier(stack.v2.stores, stack.v2.catalog.images.writes,
                                  stack.v2.conf)


def files(tmp_path: pathlib.Path, store: str) -> list[str]:
    return sorted(p.name for p in (tmp_path / store).iterdir())


def test_copy_streams_into_the_target_and_adds_a_location(stack: Stack,
                                                           tmp_path: pathlib.Path) -> None:
    image = active_image(stack)
    counted: list[int] = []

    def count(chunks: Any, size: int | None) -> Any:
        for chunk in chunks:
            counted.append(len(chunk))
            yield chunk

    url = copier(stack).copy_to(ADMIN, image["id"], "cheap", count)
    assert url == "file://%s/%s" % (tmp_path / "cheap", image["id"])
    assert sum(counted) == len(DATA)
    assert files(tmp_path, "cheap") == [image["id"]]
    assert (tmp_path / "cheap" / image["id"]).read_bytes() == DATA
    found = record(stack, image["id"])
    assert store_copy.holding(stack.v2.stores, found) == {
        "fast": "file://%s/%s" % (tmp_path / "fast", image["id"]), "cheap": url}
    shown = stack.request("/v2/images/" + image["id"], tenant="t1").json
    assert shown["stores"] == "fast,cheap" and shown["status"] == "active"
    # Again: nothing more is written.
    assert copier(stack).copy_to(ADMIN, image["id"], "cheap") == url
    # Deleting the image removes both copies.
    assert stack.request("/v2/images/" + image["id"], "DELETE",
                         tenant="t1").status_int == 204
    assert files(tmp_path, "cheap") == [] and files(tmp_path, "fast") == []


def test_a_copy_that_does_not_match_leaves_nothing(stack: Stack,
                                                   tmp_path: pathlib.Path) -> None:
    image = active_image(stack)
    (tmp_path / "fast" / image["id"]).write_bytes(b"corrupt" + DATA[7:])
    with pytest.raises(exception.GlanceError, match="checksum"):
        copier(stack).copy_to(ADMIN, image["id"], "cheap")
    assert files(tmp_path, "cheap") == []
    assert list(store_copy.holding(stack.v2.stores, record(stack, image["id"]))) == ["fast"]


def test_a_copy_is_checked_against_the_multihash_too(stack: Stack,
                                                     tmp_path: pathlib.Path) -> None:
    image = active_image(stack)
    stack.v2.registry.update_image(ADMIN, image["id"], {"os_hash_value": "0" * 128})
    with pytest.raises(exception.ImageDataMismatch, match="recorded multihash"):
        copier(stack).copy_to(ADMIN, image["id"], "cheap")
    assert files(tmp_path, "cheap") == []


def test_a_copy_refuses_what_an_upload_would(stack: Stack,
                                             tmp_path: pathlib.Path) -> None:
    # Data stored before it was inspected: a qcow2 naming a host file.
    image = active_image(stack)
    bad = disk_images.qcow2_with_backing_file(tmp_path)
    (tmp_path / "fast" / image["id"]).write_bytes(bad)
    stack.v2.registry.update_image(ADMIN, image["id"], {
        "size": len(bad), "checksum": hashlib.md5(bad).hexdigest(),
        "os_hash_value": hashlib.sha512(bad).hexdigest()})
    with pytest.raises(exception.ImageFormatRefused, match="qcow2: backing_file"):
        copier(stack).copy_to(ADMIN, image["id"], "cheap")
    assert files(tmp_path, "cheap") == []
    # Formats changed after the upload: the data must still be what is declared.
    other = active_image(stack)
    stack.v2.registry.update_image(ADMIN, other["id"], {"disk_format": "qcow2"})
    with pytest.raises(exception.ImageFormatRefused, match="does not match"):
        copier(stack).copy_to(ADMIN, other["id"], "cheap")
    assert files(tmp_path, "cheap") == []
    stack.v2.registry.update_image(ADMIN, other["id"], {"disk_format": "raw"})
    copier(stack).copy_to(ADMIN, other["id"], "cheap")
    assert files(tmp_path, "cheap") == [other["id"]]


def test_remove_takes_a_copy_back(stack: Stack, tmp_path: pathlib.Path) -> None:
    image = active_image(stack)
    url = copier(stack).copy_to(ADMIN, image["id"], "cheap")
    copier(stack).remove(ADMIN, image["id"], url)
    assert files(tmp_path, "cheap") == []
    assert list(store_copy.holding(stack.v2.stores, record(stack, image["id"]))) == ["fast"]


def test_only_active_images_are_copied(stack: Stack) -> None:
    res = stack.request("/v2/images", "POST", tenant="t1",
                        headers={"Content-Type": "application/json"}, body=b"{}")
    with pytest.raises(exception.Conflict, match="only an active image"):
        copier(stack).copy_to(ADMIN, res.json["id"], "cheap")


@pytest.mark.parametrize("request_body,header,error,message", [
    ({"stores": ["cheap"], "all_stores": True}, None, exception.Invalid,
     "'all_stores' cannot be given"),
    ({"all_stores": True}, "cheap", exception.Invalid, "'all_stores' cannot be given"),
    ({"stores": ["cheap"]}, "cheap", exception.Invalid, "'stores' cannot be given"),
    ({"all_stores": "yes"}, None, exception.Invalid, "'all_stores' must be"),
    ({"stores": ["cheap"], "all_stores_must_succeed": 1}, None, exception.Invalid,
     "must be"),
    # Neither stores nor the header: the default store, which has it.
    ({}, None, exception.Invalid, "already in store 'fast'"),
    ({"stores": "cheap"}, None, exception.Invalid, "must be a list"),
    ({"stores": []}, None, exception.Invalid, "must be a list"),
    ({"stores": ["fast"]}, None, exception.Invalid, "already in store 'fast'"),
    ({"stores": ["tape"]}, None, exception.Conflict, "Unknown store 'tape'"),
    ({}, "tape", exception.Conflict, "Unknown store 'tape'"),
    ({"stores": ["web"]}, None, exception.Conflict, "read-only"),
])
def test_request_refusals(stack: Stack, request_body: dict, header: str | None,
                          error: type, message: str) -> None:
    image = active_image(stack, b"x")
    with pytest.raises(error, match=message):
        store_copy.targets(stack.v2.stores, record(stack, image["id"]), request_body,
                           header)


def test_request_targets(stack: Stack) -> None:
    image = active_image(stack, b"x")
    found = record(stack, image["id"])
    stores = stack.v2.stores
    assert store_copy.targets(stores, found, {"all_stores": True}) == ["cheap"]
    assert store_copy.targets(stores, found, {"stores": ["cheap", "cheap"]}) == ["cheap"]
    assert store_copy.targets(stores, found, {}, "cheap") == ["cheap"]


def test_copy_image_needs_named_stores(tmp_path: pathlib.Path) -> None:
    stack = make_stack(tmp_path)
    with pytest.raises(exception.Invalid, match="enabled_backends"):
        store_copy.targets(stack.v2.stores, {"id": "x"}, {"all_stores": True})
