"""Import plugins configured as Glance operators do, in
glance-image-import.conf beside glance-api.conf, through real api and
registry processes: a gzipped qcow2 is decompressed, converted to raw by
qemu-img and stored."""

from __future__ import annotations

import gzip

import pytest
import requests

from tests.functional import harness
from tests.support import disk_images

pytestmark = pytest.mark.timeout(120)

OWNER = harness.identity("owner")
IMPORT_CONF = """[image_import_opts]
image_import_plugins = image_decompression, image_conversion

[image_conversion]
output_format = raw
"""


def test_plugins_from_glance_image_import_conf(tmp_path) -> None:
    dep = harness.Deployment(tmp_path)
    dep.api.workdir.mkdir(parents=True, exist_ok=True)
    (dep.api.workdir / "glance-image-import.conf").write_text(IMPORT_CONF)
    qcow2 = disk_images.qcow2(tmp_path, "3M")
    dep.start()
    try:
        made = requests.post(dep.url + "/v2/images", headers=OWNER, timeout=30, json={
            "name": "packed", "disk_format": "qcow2", "container_format": "bare"}).json()
        staged = requests.put(dep.url + "/v2/images/%s/stage" % made["id"],
                              data=gzip.compress(qcow2), timeout=30, headers=dict(
                                  OWNER, **{"Content-Type": "application/octet-stream"}))
        assert staged.status_code == 204, staged.text
        res = requests.post(dep.url + "/v2/images/%s/import" % made["id"], headers=OWNER,
                            timeout=30, json={"method": {"name": "glance-direct"}})
        assert res.status_code == 202, res.text

        def active() -> dict | None:
            shown = requests.get(dep.url + "/v2/images/" + made["id"], headers=OWNER,
                                 timeout=30).json()
            return shown if shown["status"] in ("active", "queued") else None

        shown = harness.wait_until(active, 60, message="the import")
        assert (shown["status"], shown["disk_format"], shown["size"]) == (
            "active", "raw", 3 * 1024 * 1024)
        data = requests.get(dep.url + "/v2/images/%s/file" % made["id"], headers=OWNER,
                            timeout=30).content
        assert data == bytes(3 * 1024 * 1024)
    finally:
        dep.stop()
