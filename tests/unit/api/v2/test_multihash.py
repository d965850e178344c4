"""The multihash (os_hash_algo, os_hash_value) of every path that brings
image data in, shown by v2 beside the md5 checksum; v1 keeps its headers."""

from __future__ import annotations

import hashlib

import pytest

from glance_clone.common import exception
from tests.support.stack import make_stack

from .conftest import ADMIN, V2
from .test_import import DATA as STAGED
from .test_import import do_import, new_image, stage, wait_status
from .test_tasks import DATA as SOURCE_DATA
from .test_tasks import _body, _finish, source  # noqa: F401 (the HTTP server fixture)

V1_FORMATS = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare"}


def hashes_of(data: bytes, algorithm: str = "sha512") -> dict:
    return {"checksum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            "os_hash_algo": algorithm,
            "os_hash_value": hashlib.new(algorithm, data).hexdigest()}


def shown_hashes(v2: V2, image_id: str) -> dict:
    shown = v2.call("GET", "/images/" + image_id, **ADMIN).json
    return {key: shown[key] for key in ("checksum", "os_hash_algo", "os_hash_value")}


def test_v2_upload(v2: V2) -> None:
    image = new_image(v2)
    assert shown_hashes(v2, image["id"]) == dict.fromkeys(
        ("checksum", "os_hash_algo", "os_hash_value"))
    data = b"multihash" * 50_000
    assert v2.upload(image["id"], data).status_int == 204
    assert shown_hashes(v2, image["id"]) == hashes_of(data)


def test_v1_create_and_update_with_data_keep_v1_headers(v2: V2, stack) -> None:
    data = b"v1 bytes" * 1000
    res = stack.request("/v1/images", "POST", body=data, tenant="t1",
                        headers=dict(V1_FORMATS, **{"x-image-meta-name": "one"}))
    assert res.status_int == 201
    created = res.json["image"]
    assert shown_hashes(v2, created["id"]) == hashes_of(data)
    # v1 shows what Glance's v1 showed: no multihash.
    assert "os_hash_value" not in created
    head = stack.request("/v1/images/" + created["id"], "HEAD", tenant="t1")
    assert not [name for name in head.headers if "os_hash" in name.lower()]
    res = stack.request("/v1/images", "POST", tenant="t1", headers=V1_FORMATS)
    queued = res.json["image"]
    res = stack.request("/v1/images/" + queued["id"], "PUT", body=data + b"!",
                        tenant="t1")
    assert res.status_int == 200, res.text
    assert shown_hashes(v2, queued["id"]) == hashes_of(data + b"!")


def test_copy_from(v2: V2, stack, source: str) -> None:  # noqa: F811
    res = stack.request("/v1/images", "POST", tenant="t1", headers=dict(
        V1_FORMATS, **{"x-glance-api-copy-from": source + "/image"}))
    assert res.status_int == 201, res.text
    image_id = res.json["image"]["id"]
    wait_status(v2, image_id, "active")
    assert shown_hashes(v2, image_id) == hashes_of(SOURCE_DATA)


def test_glance_direct_and_web_download_imports(v2: V2, source: str) -> None:  # noqa: F811
    staged = new_image(v2)
    assert stage(v2, staged["id"]).status_int == 204
    # Staging alone gives no hashes: they come with the import.
    assert shown_hashes(v2, staged["id"])["os_hash_value"] is None
    assert do_import(v2, staged["id"]).status_int == 202
    wait_status(v2, staged["id"], "active")
    assert shown_hashes(v2, staged["id"]) == hashes_of(STAGED)
    fetched = new_image(v2)
    assert do_import(v2, fetched["id"], "web-download", source + "/image").status_int == 202
    wait_status(v2, fetched["id"], "active")
    assert shown_hashes(v2, fetched["id"]) == hashes_of(SOURCE_DATA)


def test_import_task(v2: V2, source: str) -> None:  # noqa: F811
    res = v2.call("POST", "/tasks", _body(source + "/image"), **ADMIN)
    done = _finish(v2, res.json["id"])
    assert done["status"] == "success", done
    assert shown_hashes(v2, done["result"]["image_id"]) == hashes_of(SOURCE_DATA)


def test_a_refused_upload_forgets_its_hashes(v2_with) -> None:
    v2 = v2_with({"image_size_cap": 10})
    image = new_image(v2)
    assert v2.upload(image["id"], b"x" * 11).status_int == 413
    assert shown_hashes(v2, image["id"]) == dict.fromkeys(
        ("checksum", "os_hash_algo", "os_hash_value"))


def test_hashing_algorithm_is_configurable(v2_with) -> None:
    v2 = v2_with({"hashing_algorithm": "sha256"})
    image = new_image(v2)
    assert v2.upload(image["id"], b"data").status_int == 204
    assert shown_hashes(v2, image["id"]) == hashes_of(b"data", "sha256")


@pytest.mark.parametrize("algorithm", ["sha0", "shake_128"])
def test_an_unusable_hashing_algorithm_stops_the_api(tmp_path, algorithm: str) -> None:
    with pytest.raises(exception.ConfigError, match="hashing_algorithm = %s" % algorithm):
        make_stack(tmp_path, {"hashing_algorithm": algorithm})
