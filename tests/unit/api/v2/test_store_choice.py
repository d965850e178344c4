"""Choosing a store for an image's data: the X-Image-Meta-Store header of
an upload (both APIs)."""

from __future__ import annotations

import pathlib

from .conftest import V2
from .test_named_stores import named_stores

FORMATS = {"disk_format": "raw", "container_format": "bare"}


def files(tmp_path: pathlib.Path, store: str) -> list[str]:
    directory = tmp_path / store
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_upload_goes_to_the_store_the_header_names(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = v2.create(name="i", **FORMATS)
    res = v2.upload(image["id"], b"data", headers={"X-Image-Meta-Store": "cheap"})
    assert res.status_int == 204, res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["stores"] == "cheap" and shown["status"] == "active"
    assert files(tmp_path, "cheap") == [image["id"]]
    assert files(tmp_path, "fast") == []
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == b"data"


def test_upload_to_an_unknown_store_is_400(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = v2.create(name="i", **FORMATS)
    res = v2.upload(image["id"], b"data", headers={"X-Image-Meta-Store": "tape"})
    assert res.status_int == 400
    assert "Required store tape is invalid; enabled: fast, cheap, web" in res.text
    shown = v2.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and "stores" not in shown
    assert files(tmp_path, "fast") == files(tmp_path, "cheap") == []
    # The store is checked before the image: a missing image is still a 400.
    res = v2.upload("0" * 8 + "-0000-0000-0000-" + "0" * 12, b"data",
                    headers={"X-Image-Meta-Store": "tape"})
    assert res.status_int == 400
    # The image takes data afterwards.
    assert v2.upload(image["id"], b"data").status_int == 204


def test_upload_to_a_read_only_store_is_410(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = v2.create(name="i", **FORMATS)
    res = v2.upload(image["id"], b"data", headers={"X-Image-Meta-Store": "web"})
    assert res.status_int == 410
    assert v2.call("GET", "/images/" + image["id"]).json["status"] == "queued"


def test_without_named_stores_v2_ignores_the_header(v2: V2) -> None:
    image = v2.create(name="i", **FORMATS)
    res = v2.upload(image["id"], b"data", headers={"X-Image-Meta-Store": "tape"})
    assert res.status_int == 204
    assert v2.stack.stored_files() == [image["id"]]


def test_v1_takes_a_store_id_or_a_scheme(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    created = {}
    for name in ("cheap", "file", "tape"):
        res = v2.stack.request("/v1/images", "POST", body=name.encode(), tenant="t1",
                               headers={"x-image-meta-name": name,
                                        "x-image-meta-disk_format": "raw",
                                        "x-image-meta-container_format": "bare",
                                        "x-image-meta-store": name})
        created[name] = res
    assert created["tape"].status_int == 400
    assert "Required store tape is invalid" in created["tape"].text
    ids = {name: created[name].json["image"]["id"] for name in ("cheap", "file")}
    assert files(tmp_path, "cheap") == [ids["cheap"]]
    # A scheme: its first store, the default one first.
    assert files(tmp_path, "fast") == [ids["file"]]
