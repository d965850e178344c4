"""Imports into chosen stores, with real processes: on each backend set the
api has the stores local (file, the default) and far (the set's kind of
store: file, Swift, S3 or RBD).

- glance-direct into every store (``all_stores``): the staged data is
  written to both, the image is active in both, the staged copy is gone.
- web-download into the store the ``X-Image-Meta-Store`` header names,
  and only there.
- Refusals: an unknown store (409), stores named two ways (400).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.functional import harness
from tests.functional.test_regions import (
    DATA,
    MD5,
    T1,
    call,
    named,  # noqa: F401 (the local + far stores fixture)
    wait,
)
from tests.functional.test_tasks import DATA as SOURCE_DATA
from tests.functional.test_tasks import (
    source,  # noqa: F401 (the local HTTP server fixture)
)

pytestmark = pytest.mark.timeout(120)


def new_image(dep: harness.Deployment) -> dict:
    res = call(dep, "POST", "/v2/images", json={
        "name": "chosen", "disk_format": "raw", "container_format": "bare"})
    assert res.status_code == 201, res.text
    return res.json()


def start(dep: harness.Deployment, image_id: str, method: dict,
          headers: dict | None = None, **body: Any) -> Any:
    return call(dep, "POST", "/v2/images/%s/import" % image_id,
                dict(T1, **(headers or {})), json=dict(body, method=method))


def settled(dep: harness.Deployment, image_id: str) -> dict:
    def done() -> dict | None:
        shown = call(dep, "GET", "/v2/images/" + image_id).json()
        return None if "os_glance_import_task" in shown else shown
    return wait(done, "the import of %s" % image_id)


def in_far(dep: harness.Deployment, image_id: str) -> bool:
    return any(image_id in name for name in dep.stored_files())


def test_imports_into_chosen_stores(named: harness.Deployment,  # noqa: F811
                                    source: Any, tmp_path: Path) -> None:  # noqa: F811
    dep = named
    local = tmp_path / "local"
    # glance-direct into every store.
    image = new_image(dep)
    res = call(dep, "PUT", "/v2/images/%s/stage" % image["id"], data=DATA,
               headers=dict(T1, **{"Content-Type": "application/octet-stream"}))
    assert res.status_code == 204, res.text
    assert start(dep, image["id"], {"name": "glance-direct"},
                 all_stores=True).status_code == 202
    shown = settled(dep, image["id"])
    assert shown["status"] == "active" and shown["stores"] == "local,far"
    assert shown["checksum"] == MD5 and shown["size"] == len(DATA)
    assert "os_glance_failed_import" not in shown
    assert "os_glance_importing_to_stores" not in shown
    assert (local / image["id"]).read_bytes() == DATA and in_far(dep, image["id"])
    assert call(dep, "GET", "/v2/images/%s/file" % image["id"]).content == DATA
    # web-download into the store the header names.
    web = new_image(dep)
    res = start(dep, web["id"], {"name": "web-download", "uri": source.url + "/image"},
                {"X-Image-Meta-Store": "far"})
    assert res.status_code == 202, res.text
    shown = settled(dep, web["id"])
    assert shown["status"] == "active" and shown["stores"] == "far"
    assert not (local / web["id"]).exists() and in_far(dep, web["id"])
    assert call(dep, "GET", "/v2/images/%s/file" % web["id"]).content == SOURCE_DATA
    # Refusals leave the image queued.
    refused = new_image(dep)
    uri = {"name": "web-download", "uri": source.url + "/image"}
    assert start(dep, refused["id"], uri, stores=["tape"]).status_code == 409
    assert start(dep, refused["id"], uri, {"X-Image-Meta-Store": "far"},
                 all_stores=True).status_code == 400
    assert start(dep, refused["id"], uri, {"X-Image-Meta-Store": "far"},
                 stores=["local"]).status_code == 400
    assert call(dep, "GET", "/v2/images/" + refused["id"]).json()["status"] == "queued"
    # Deleting the images removes every copy.
    for image_id in (image["id"], web["id"]):
        assert call(dep, "DELETE", "/v2/images/" + image_id).status_code == 204
        assert not in_far(dep, image_id)
    assert list(local.iterdir()) == []
