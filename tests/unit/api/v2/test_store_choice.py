"""Choosing stores for an image's data: the X-Image-Meta-Store header of
an upload (both APIs) and the stores a v2 download prefers."""

from __future__ import annotations

import pathlib
from typing import Any

from tests.unit.api.v1.helpers import policy_file

from .conftest import ADMIN, V2
from .test_named_stores import copy, named_stores, uploaded, wait_copied

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


# -- GET /v2/images/<id>/file?prefer= ----------------------------------------------
def in_two_stores(v2: V2, tmp_path: pathlib.Path) -> str:
    """An image in fast and cheap whose copies differ, so that a download
    tells which store it came from."""
    image = uploaded(v2, b"F" * 4000)
    assert copy(v2, image["id"], stores=["cheap"]).status_int == 202
    assert wait_copied(v2, image["id"])["stores"] == "fast,cheap"
    (tmp_path / "cheap" / image["id"]).write_bytes(b"C" * 4000)
    return str(image["id"])


def download(v2: V2, image_id: str, query: str = "", **kw) -> Any:
    return v2.call("GET", "/images/%s/file%s" % (image_id, query), **kw)


def test_prefer_reads_the_preferred_store_first(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image_id = in_two_stores(v2, tmp_path)
    assert download(v2, image_id).body == b"F" * 4000
    assert download(v2, image_id, "?prefer=cheap").body == b"C" * 4000
    assert download(v2, image_id, "?prefer=cheap,fast").body == b"C" * 4000
    assert download(v2, image_id, "?prefer=fast,cheap").body == b"F" * 4000
    # Repeated, the values join up; blanks are skipped.
    assert download(v2, image_id, "?prefer=web,&prefer=cheap").body == b"C" * 4000
    # A part of the image comes from the preferred store too.
    part = download(v2, image_id, "?prefer=cheap", headers={"Range": "bytes=10-19"})
    assert part.status_int == 206 and part.body == b"C" * 10


def test_prefer_falls_back_to_the_other_stores(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image_id = in_two_stores(v2, tmp_path)
    (tmp_path / "cheap" / image_id).unlink()
    res = download(v2, image_id, "?prefer=cheap")
    assert res.status_int == 200 and res.body == b"F" * 4000
    # A store holding no copy is passed over as well.
    assert download(v2, image_id, "?prefer=web").body == b"F" * 4000
    # Without a preference a missing first copy gives way to the next one.
    (tmp_path / "cheap" / image_id).write_bytes(b"C" * 4000)
    (tmp_path / "fast" / image_id).unlink()
    assert download(v2, image_id).body == b"C" * 4000
    # No copy left: the store's answer.
    (tmp_path / "cheap" / image_id).unlink()
    assert download(v2, image_id, "?prefer=cheap").status_int == 404


def test_prefer_refusals(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image = uploaded(v2)
    for query in ("?prefer=tape", "?prefer=fast,tape", "?prefer=", "?prefer=,"):
        res = download(v2, image["id"], query)
        assert res.status_int == 400, query
    res = download(v2, image["id"], "?prefer=fast,tape")
    assert "Unknown store tape in 'prefer'; stores: fast, cheap, web" in res.text
    # The stores are checked before the image is looked for.
    missing = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    assert download(v2, missing, "?prefer=tape").status_int == 400
    assert download(v2, missing, "?prefer=fast").status_int == 404


def test_prefer_needs_named_stores(v2: V2) -> None:
    image = uploaded(v2)
    res = download(v2, image["id"], "?prefer=file")
    assert res.status_int == 400 and "enabled_backends" in res.text
    assert download(v2, image["id"]).status_int == 200


def test_download_from_store_policy(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path, **{
        "oslo_policy.policy_file": policy_file(tmp_path,
                                               {"download_from_store": "role:admin"})})
    image = uploaded(v2)
    assert download(v2, image["id"], "?prefer=fast").status_int == 403
    assert download(v2, image["id"]).status_int == 200
    assert download(v2, image["id"], "?prefer=fast", **ADMIN).status_int == 200
    # A bad store is a 400 before the policy is asked.
    assert download(v2, image["id"], "?prefer=tape").status_int == 400


def test_download_from_store_follows_download_image(v2_with,
                                                    tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path, **{
        "oslo_policy.policy_file": policy_file(tmp_path,
                                               {"download_image": "role:admin"})})
    image = uploaded(v2)
    assert download(v2, image["id"], "?prefer=fast").status_int == 403
    assert download(v2, image["id"], "?prefer=fast", **ADMIN).status_int == 200
