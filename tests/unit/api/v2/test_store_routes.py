"""GET /v2/info/stores/detail and DELETE /v2/stores/{store_id}/{image_id}."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from glance_clone.common.context import admin_context
from glance_clone.store import details
from tests.unit.api.v1.helpers import policy_file

from .conftest import ADMIN, V2
from .test_named_stores import named_stores

MiB = 1024 * 1024


def test_detail_shows_type_weight_and_settings(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path, **{"cheap.weight": 5})
    res = v2.call("GET", "/info/stores/detail", **ADMIN)
    assert res.status_int == 200, res.text
    by_id = {store["id"]: store for store in res.json["stores"]}
    assert list(by_id) == ["fast", "cheap", "web"]
    assert by_id["fast"] == {
        "id": "fast", "description": "Local SSD", "default": "true", "type": "file",
        "weight": 0, "properties": {"data_dir": str(tmp_path / "fast"),
                                    "chunk_size": MiB, "thin_provisioning": False}}
    assert by_id["cheap"]["weight"] == 5
    assert by_id["web"] == {"id": "web", "read-only": "true", "type": "http",
                            "weight": 0, "properties": {}}


def test_detail_is_for_admins_and_services(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    assert v2.call("GET", "/info/stores/detail").status_int == 403
    assert v2.call("GET", "/info/stores/detail", roles="service").status_int == 200
    res = v2.call("GET", "/info/stores/detail", body={}, **ADMIN)
    assert res.status_int == 400


def test_detail_without_named_stores_is_not_found(v2: V2) -> None:
    # The policy first: a member learns nothing of the site's stores.
    assert v2.call("GET", "/info/stores/detail").status_int == 403
    res = v2.call("GET", "/info/stores/detail", **ADMIN)
    assert res.status_int == 404
    assert "Multi backend is not supported at this site." in res.text


def test_detail_of_the_other_drivers() -> None:
    class Opts:
        rbd_store_chunk_size, rbd_store_pool, rbd_thin_provisioning = 8, "images", True
        swift_store_container = "glance"
        swift_store_large_object_size, swift_store_large_object_chunk_size = 5120, 200
        s3_store_large_object_size, s3_store_large_object_chunk_size = 100, 10
        s3_store_thread_pools = 10

    class Driver:
        conf = type("Conf", (), {"glance_store": Opts})

    def shown(kind: str) -> dict:
        return details.store_properties(type("S", (), {"type": kind, "driver": Driver}))
    assert shown("rbd") == {"chunk_size": 8 * MiB, "pool": "images",
                            "thin_provisioning": True}
    assert shown("swift") == {"container": "glance", "large_object_size": 5120 * MiB,
                              "large_object_chunk_size": 200 * MiB}
    assert shown("s3") == {"s3_store_large_object_size": 100 * MiB,
                           "s3_store_large_object_chunk_size": 10 * MiB,
                           "s3_store_thread_pools": 10}


def two_stores(v2: V2, data: bytes = b"data") -> str:
    """An active image in store fast (uploaded) and store cheap (copied)."""
    image = v2.create(name="i", disk_format="raw", container_format="bare")
    assert v2.upload(image["id"], data).status_int == 204
    api = v2.stack.v2
    url, size, checksum, metadata = api.stores.add(image["id"], [data], len(data), "cheap")
    record = api.registry.get_image(admin_context(), image["id"])
    api.registry.update_image(admin_context(), image["id"], {"location_data": (
        record["location_data"] + [{"url": url, "metadata": metadata,
                                    "status": "active"}])})
    return image["id"]


def files(tmp_path: pathlib.Path, store: str) -> list[str]:
    return sorted(p.name for p in (tmp_path / store).iterdir())


def test_delete_from_one_store(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image_id = two_stores(v2)
    assert files(tmp_path, "cheap") == [image_id]
    res = v2.call("DELETE", "/stores/cheap/" + image_id, **ADMIN)
    assert res.status_int == 204, res.text
    assert files(tmp_path, "cheap") == []
    assert files(tmp_path, "fast") == [image_id]
    assert v2.call("GET", "/images/" + image_id).json["stores"] == "fast"
    assert v2.call("GET", "/images/%s/file" % image_id).body == b"data"
    # Not there any more; and the last location stays.
    assert v2.call("DELETE", "/stores/cheap/" + image_id, **ADMIN).status_int == 403
    res = v2.call("DELETE", "/stores/fast/" + image_id, **ADMIN)
    assert res.status_int == 403 and "last location" in res.text
    assert files(tmp_path, "fast") == [image_id]


@pytest.mark.parametrize("path, caller, code", [
    ("/stores/cheap/{id}", {}, 403),                       # delete_image_location
    ("/stores/nowhere/{id}", ADMIN, 409),                 # not a store here
    ("/stores/web/{id}", ADMIN, 404),                     # not in that store
    ("/stores/cheap/00000000-0000-0000-0000-000000000000", ADMIN, 404),
], ids=["policy", "unknown store", "not in store", "no image"])
def test_delete_from_store_refusals(v2_with, tmp_path: pathlib.Path, path: str,
                                    caller: dict, code: int) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image_id = two_stores(v2)
    res = v2.call("DELETE", path.format(id=image_id), **caller)
    assert res.status_int == code, res.text
    assert files(tmp_path, "cheap") == [image_id]
    assert sorted(v2.call("GET", "/images/" + image_id).json["stores"].split(",")) == [
        "cheap", "fast"]


def test_delete_from_store_needs_an_active_image(v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image_id = two_stores(v2)
    assert v2.call("POST", "/images/%s/actions/deactivate" % image_id,
                   **ADMIN).status_int == 204
    res = v2.call("DELETE", "/stores/cheap/" + image_id, **ADMIN)
    assert res.status_int == 409, res.text
    assert files(tmp_path, "cheap") == [image_id]


def test_delete_from_store_with_the_rule_opened(v2_with, tmp_path: pathlib.Path) -> None:
    rules = policy_file(tmp_path, {"get_image_location": "", "delete_image_location": ""})
    v2 = named_stores(v2_with, tmp_path, **{"oslo_policy.policy_file": rules})
    image_id = two_stores(v2)
    assert v2.call("DELETE", "/stores/cheap/" + image_id).status_int == 204


def test_delete_from_store_needs_named_stores(v2: V2) -> None:
    image = v2.create(name="i", disk_format="raw", container_format="bare")
    res = v2.call("DELETE", "/stores/file/" + image["id"], **ADMIN)
    assert res.status_int == 404
    assert "Multi backend" in res.text
    assert v2.call("GET", "/stores/file/" + image["id"], **ADMIN).status_int == 405


def test_delete_from_store_takes_no_body(v2_with: Callable[..., V2],
                                        tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    image_id = two_stores(v2)
    res = v2.call("DELETE", "/stores/cheap/" + image_id, body={}, **ADMIN)
    assert res.status_int == 400
    assert files(tmp_path, "cheap") == [image_id]
