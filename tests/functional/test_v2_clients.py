"""The v2 API through today's real clients, against real api and registry
processes on every backend set: python-glanceclient 4.13, openstacksdk
4.22 and the ``openstack`` CLI 10.5 (no-auth pipeline: every caller is an
admin without a project), and images made through one API used through the
other (python-glanceclient 2.17.1 speaks v1). The clients live in their
own virtualenv (``tests/functional/clients.py``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional import clients, harness
from tests.functional.test_glanceclient import glance_program
from tests.support import disk_images

pytestmark = pytest.mark.timeout(1500)

NO_ENV = {"OS_AUTH_URL": "", "OS_USERNAME": "", "OS_PASSWORD": "", "OS_CLOUD": "",
          "OS_PROJECT_NAME": "", "OS_TOKEN": ""}


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return clients.ensure_venv()


@pytest.fixture
def glance_v2(tmp_path, backend) -> Iterator[harness.Deployment]:
    dep = harness.Deployment(tmp_path, api_flavor=None, registry_flavor=None,
                             backend=backend)
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


@pytest.fixture
def disk(tmp_path) -> tuple[Path, bytes]:
    # A real qcow2: the scenarios declare it qcow2 (checked against the
    # data) or raw (accepted whatever the data).
    data = disk_images.qcow2(tmp_path, "5M")
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path, data


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# The CLIs take seconds to start per command: their long scenarios run on
# one backend set; the SDK and the v1/v2 exchange run on every set.
@pytest.mark.stores("file")
def test_python_glanceclient_4(glance_v2, bin_dir, disk, tmp_path):
    path, data = disk

    def glance(*args: str, ok: bool = True):
        return clients.run(bin_dir / "glance", "--os-image-api-version", "2",
                           "--os-image-url", glance_v2.url, "--os-auth-token", "unused",
                           *args, env=NO_ENV, ok=ok)

    created = glance("image-create", "--name", "g4", "--disk-format", "qcow2",
                     "--container-format", "bare", "--file", str(path),
                     "--property", "distro=ubuntu")
    image_id = clients.table_value(created.stdout, "id")
    assert clients.table_value(created.stdout, "status") == "active"
    assert clients.table_value(created.stdout, "checksum") == md5(data)
    assert clients.table_value(created.stdout, "distro") == "ubuntu"
    assert image_id in glance("image-list").stdout
    assert image_id in glance("image-list", "--property-filter", "distro=ubuntu").stdout
    assert image_id not in glance("image-list", "--tag", "nope").stdout
    updated = glance("image-update", image_id, "--name", "renamed", "--min-ram", "64",
                     "--remove-property", "distro")
    assert clients.table_value(updated.stdout, "name") == "renamed"
    assert "distro" not in updated.stdout
    glance("image-tag-update", image_id, "linux")
    assert "linux" in clients.table_value(glance("image-show", image_id).stdout, "tags")
    glance("image-tag-delete", image_id, "linux")
    copy = tmp_path / "copy.img"
    glance("image-download", "--file", str(copy), image_id)
    assert copy.read_bytes() == data
    glance("member-create", image_id, "project-b")
    members = glance("member-list", "--image-id", image_id).stdout
    assert "project-b" in members and "pending" in members
    glance("member-update", image_id, "project-b", "accepted")
    assert "accepted" in glance("member-list", "--image-id", image_id).stdout
    glance("member-delete", image_id, "project-b")
    glance("image-deactivate", image_id)
    assert clients.table_value(glance("image-show", image_id).stdout,
                               "status") == "deactivated"
    glance("image-reactivate", image_id)
    glance("image-delete", image_id)
    assert glance("image-show", image_id, ok=False).returncode != 0


@pytest.mark.stores("file")
def test_openstack_cli(glance_v2, bin_dir, disk, tmp_path):
    path, data = disk
    env = dict(NO_ENV, OS_AUTH_TYPE="none", OS_ENDPOINT=glance_v2.url)

    def openstack(*args: str, ok: bool = True):
        return clients.run(bin_dir / "openstack", *args, env=env, ok=ok)

    created = openstack("image", "create", "--file", str(path), "--disk-format", "raw",
                        "--container-format", "bare", "--property", "os=linux",
                        "--tag", "first", "osc-image", "-f", "json")
    image = json.loads(created.stdout)
    assert image["status"] == "active" and image["checksum"] == md5(data)
    listed = json.loads(openstack("image", "list", "-f", "json").stdout)
    assert [i["ID"] for i in listed] == [image["id"]]
    openstack("image", "set", "--property", "arch=x86_64", "--tag", "second",
              "--name", "osc-renamed", image["id"])
    shown = json.loads(openstack("image", "show", image["id"], "-f", "json").stdout)
    assert shown["name"] == "osc-renamed"
    assert sorted(shown["tags"]) == ["first", "second"]
    assert shown["properties"]["arch"] == "x86_64"
    copy = tmp_path / "saved.img"
    openstack("image", "save", "--file", str(copy), image["id"])
    assert copy.read_bytes() == data
    # Members are added by project name or id, which the CLI looks up in
    # Keystone: here glanceclient adds one, the CLI lists it.
    clients.run(bin_dir / "glance", "--os-image-api-version", "2", "--os-image-url",
                glance_v2.url, "--os-auth-token", "unused", "member-create", image["id"],
                "project-b", env=NO_ENV)
    members = json.loads(openstack("image", "member", "list", image["id"], "-f",
                                   "json").stdout)
    assert [(m["Member ID"], m["Status"]) for m in members] == [("project-b", "pending")]
    openstack("image", "delete", image["id"])
    assert openstack("image", "show", image["id"], ok=False).returncode != 0


SDK_SCRIPT = r"""
import hashlib, json, sys
import openstack
url, path = sys.argv[1], sys.argv[2]
conn = openstack.connect(auth_type="none", auth={"endpoint": url},
                         image_endpoint_override=url)
data = open(path, "rb").read()
made = conn.image.create_image(name="sdk-image", disk_format="raw",
                               container_format="bare", data=data)
made = conn.image.get_image(made.id)
out = {"created": [made.status, made.checksum]}
from_file = conn.image.create_image(name="sdk-file", disk_format="raw",
                                    container_format="bare", filename=path)
out["from_file"] = conn.image.get_image(from_file.id).size
image = conn.image.get_image(made.id)
out["size"] = image.size
conn.image.update_image(image, name="sdk-renamed", distro="debian")
conn.image.add_tag(image, "gold")
out["filtered"] = sorted(i.name for i in conn.image.images(tag="gold"))
out["by_name"] = [i.id for i in conn.image.images(name="sdk-renamed")]
out["shown"] = conn.image.get_image(made.id).tags
conn.image.remove_tag(image, "gold")
out["untagged"] = conn.image.get_image(made.id).tags
member = conn.image.add_member(image, member_id="project-c")
out["member"] = [member.member_id, member.status]
out["members"] = [m.member_id for m in conn.image.members(image)]
downloaded = conn.image.download_image(image)
out["downloaded"] = hashlib.md5(downloaded.content).hexdigest()
conn.image.delete_image(image)
conn.image.delete_image(from_file)
out["left"] = [i.name for i in conn.image.images()]
print(json.dumps(out))
"""


def test_openstacksdk(glance_v2, bin_dir, disk):
    path, data = disk
    result = clients.python(bin_dir, SDK_SCRIPT, glance_v2.url, str(path), env=NO_ENV)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["created"] == ["active", md5(data)]
    assert out["from_file"] == len(data) and out["size"] == len(data)
    assert out["filtered"] == ["sdk-renamed"] and len(out["by_name"]) == 1
    assert out["shown"] == ["gold"] and out["untagged"] == []
    assert out["member"] == ["project-c", "pending"]
    assert out["members"] == ["project-c"]
    assert out["downloaded"] == md5(data)
    assert out["left"] == []


def test_v1_and_v2_clients_share_images(glance_v2, bin_dir, disk, tmp_path):
    path, data = disk
    v1 = glance_program()
    base = ["--os-image-url", glance_v2.url, "--os-auth-token", "unused"]
    made = clients.run(Path(v1), "--os-image-api-version", "1", *base, "image-create",
                       "--name", "from-v1", "--disk-format", "raw", "--container-format",
                       "bare", "--file", str(path), "--property", "os=linux",
                       env=NO_ENV)
    v1_id = clients.table_value(made.stdout, "id")
    env = dict(NO_ENV, OS_AUTH_TYPE="none", OS_ENDPOINT=glance_v2.url)
    shown = json.loads(clients.run(bin_dir / "openstack", "image", "show", v1_id, "-f",
                                   "json", env=env).stdout)
    assert shown["status"] == "active" and shown["properties"]["os"] == "linux"
    copy = tmp_path / "v1-by-v2.img"
    clients.run(bin_dir / "openstack", "image", "save", "--file", str(copy), v1_id, env=env)
    assert copy.read_bytes() == data
    made = clients.run(bin_dir / "glance", "--os-image-api-version", "2", *base,
                       "image-create", "--name", "from-v2", "--disk-format", "raw",
                       "--container-format", "bare", "--file", str(path),
                       "--property", "os=bsd", env=NO_ENV)
    v2_id = clients.table_value(made.stdout, "id")
    back = tmp_path / "v2-by-v1.img"
    clients.run(Path(v1), "--os-image-api-version", "1", *base, "image-download",
                "--file", str(back), v2_id, env=NO_ENV)
    assert back.read_bytes() == data
    meta = clients.run(Path(v1), "--os-image-api-version", "1", *base, "image-show",
                       v2_id, env=NO_ENV).stdout
    assert clients.table_value(meta, "Property 'os'") == "bsd"
    clients.run(Path(v1), "--os-image-api-version", "1", *base, "image-delete", v2_id,
                env=NO_ENV)
    gone = clients.run(bin_dir / "openstack", "image", "show", v2_id, env=env, ok=False)
    assert gone.returncode != 0
