"""Interoperable import through the real openstacksdk (the clients'
virtualenv, ``tests/functional/clients.py``) against real api and registry
processes: ``create_image(..., use_import=True)`` stages and imports with
glance-direct, ``import_method="web-download"`` has the api fetch a URL,
and the image's tasks show both imports."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
import requests

from tests.functional import clients, harness
from tests.support.file_server import served  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(600)

NO_ENV = {"OS_AUTH_URL": "", "OS_USERNAME": "", "OS_PASSWORD": "", "OS_CLOUD": "",
          "OS_PROJECT_NAME": "", "OS_TOKEN": ""}

SDK_IMPORT = r"""
import hashlib, json, sys, time
import openstack
url, path, source = sys.argv[1:4]
conn = openstack.connect(auth_type="none", auth={"endpoint": url},
                         image_endpoint_override=url)

def settled(image):
    for _ in range(600):
        image = conn.image.get_image(image.id)
        if image.status not in ("queued", "uploading", "importing"):
            return image
        time.sleep(0.1)
    return image

data = open(path, "rb").read()
direct = conn.image.create_image(name="sdk-direct", disk_format="raw",
                                 container_format="bare", data=data, use_import=True)
direct = settled(direct)
web = conn.image.create_image(name="sdk-web", disk_format="raw", container_format="bare",
                              use_import=True, import_method="web-download",
                              uri=source)
web = settled(web)
out = {"direct": [direct.status, direct.checksum, direct.size],
       "web": [web.status, web.checksum],
       "ids": [direct.id, web.id],
       "downloaded": hashlib.md5(conn.image.download_image(direct).content).hexdigest()}
print(json.dumps(out))
"""


@pytest.fixture
def noauth(tmp_path) -> Iterator[harness.Deployment]:
    yield from harness.deployment(tmp_path, api_flavor=None, registry_flavor=None)


def test_openstacksdk_use_import(noauth, served, tmp_path) -> None:  # noqa: F811
    bin_dir = clients.ensure_venv()
    folder, url = served
    data = bytes(range(256)) * 8192          # 2 MiB
    (folder / "image.raw").write_bytes(data)
    path = tmp_path / "image.raw"
    path.write_bytes(data)
    result = clients.python(bin_dir, SDK_IMPORT, noauth.url, str(path),
                            url + "/image.raw", env=NO_ENV)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert out["direct"] == ["active", md5, len(data)]
    assert out["web"] == ["active", md5]
    assert out["downloaded"] == md5
    for image_id in out["ids"]:
        def done(image_id: str = image_id) -> list[dict] | None:
            found = requests.get(noauth.url + "/v2/images/%s/tasks" % image_id,
                                 timeout=30).json()["tasks"]
            return found if found and found[0]["status"] != "processing" else None

        [task] = harness.wait_until(done, 30, message="the import task")
        assert (task["type"], task["status"]) == ("api_image_import", "success")
