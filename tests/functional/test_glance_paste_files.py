"""An operator's Glance 11 paste files load unchanged (glance.* factory names)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(180)

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("flavor", [None, "trusted-auth"])
def test_glance11_paste_files_serve_v1_and_v2(tmp_path, flavor):
    dep = harness.Deployment(tmp_path, api_flavor=flavor, registry_flavor=flavor)
    dep.api.paste_source = DATA / "glance11-api-paste.ini"
    dep.registry.paste_source = DATA / "glance11-registry-paste.ini"
    try:
        dep.start()
        headers = harness.identity("t1") if flavor else {}
        created = requests.post(dep.url + "/v1/images", data=b"abc" * 1000, headers=dict(
            headers, **{"x-image-meta-name": "old-paste", "x-image-meta-disk_format": "raw",
                        "x-image-meta-container_format": "bare",
                        "Content-Type": "application/octet-stream"}))
        assert created.status_code == 201, created.text
        image_id = created.json()["image"]["id"]
        assert requests.get(dep.url + "/v1/images/" + image_id,
                            headers=headers).content == b"abc" * 1000
        # Its /v2 entry (glance.api.v2.router) serves v2; /v3 is neither
        # served nor advertised.
        versions = requests.get(dep.url + "/versions").json()["versions"]
        assert [v["id"] for v in versions] == [
            "v2.17", "v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2",
            "v2.1", "v2.0", "v1.1", "v1.0"]
        shown = requests.get(dep.url + "/v2/images/" + image_id, headers=headers)
        assert shown.status_code == 200, shown.text
        assert shown.json()["name"] == "old-paste" and shown.json()["status"] == "active"
        assert requests.get(dep.url + "/v2/images/%s/file" % image_id,
                            headers=headers).content == b"abc" * 1000
        assert requests.get(dep.url + "/v3/images").status_code == 300
        assert requests.get(dep.url + "/healthcheck").status_code == 200
    finally:
        dep.stop()
