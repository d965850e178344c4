"""The v2 API with real Keystone tokens, through the ``openstack`` CLI and
openstacksdk: owners, members giving their consent, and admin-only
publicizing, each identity from a password login at the Keystone of
``KEYSTONE_URL``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.functional import clients, harness, keystone_harness

pytestmark = [pytest.mark.needs("keystone"), pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def glance(tmp_path_factory, keystone) -> Iterator[harness.Deployment]:
    dep = keystone_harness.deployment(tmp_path_factory.mktemp("v2-keystone"), keystone)
    try:
        yield dep.start()
    finally:
        dep.stop()


def cli_env(glance: harness.Deployment, keystone, user: keystone_harness.User
            ) -> dict[str, str]:
    """The openstack CLI's environment for ``user``; the image endpoint is
    given, as this Keystone's catalog has none."""
    return {"OS_AUTH_URL": keystone.url, "OS_AUTH_TYPE": "password",
            "OS_IDENTITY_API_VERSION": "3", "OS_USERNAME": user.name,
            "OS_PASSWORD": user.password, "OS_USER_DOMAIN_NAME": user.domain_name,
            "OS_PROJECT_ID": user.project_id, "OS_PROJECT_NAME": "",
            "OS_PROJECT_DOMAIN_NAME": user.domain_name, "OS_CLOUD": "",
            "OS_REGION_NAME": keystone.region,
            "OS_IMAGE_ENDPOINT_OVERRIDE": glance.url}


def test_sharing_with_consent_through_the_cli(glance, keystone, tmp_path):
    bin_dir = clients.ensure_venv()
    owner, member = keystone.user(), keystone.user()
    data = os.urandom(200_000)
    disk = tmp_path / "disk.img"
    disk.write_bytes(data)

    def openstack(user, *args: str, ok: bool = True):
        return clients.run(bin_dir / "openstack", *args, ok=ok,
                           env=cli_env(glance, keystone, user))

    image = json.loads(openstack(owner, "image", "create", "--file", str(disk),
                                 "--disk-format", "raw", "--container-format", "bare",
                                 "--shared", "ks-shared", "-f", "json").stdout)
    assert image["owner"] == owner.project_id and image["status"] == "active"
    # Members read an image shared with them, but list it only once accepted.
    assert openstack(member, "image", "show", image["id"], ok=False).returncode != 0
    openstack(owner, "image", "add", "project", image["id"], member.project_id)
    assert json.loads(openstack(member, "image", "show", image["id"], "-f",
                                "json").stdout)["name"] == "ks-shared"
    listed = json.loads(openstack(member, "image", "list", "-f", "json").stdout)
    assert image["id"] not in [i["ID"] for i in listed]
    openstack(member, "image", "set", "--accept", image["id"])
    listed = json.loads(openstack(member, "image", "list", "-f", "json").stdout)
    assert image["id"] in [i["ID"] for i in listed]
    members = json.loads(openstack(owner, "image", "member", "list", image["id"],
                                   "-f", "json").stdout)
    assert [(m["Member ID"], m["Status"]) for m in members] == [
        (member.project_id, "accepted")]
    saved = tmp_path / "saved.img"
    openstack(member, "image", "save", "--file", str(saved), image["id"])
    assert saved.read_bytes() == data
    # Only the owner changes the image; publicizing is the admin's.
    assert openstack(member, "image", "set", "--name", "mine", image["id"],
                     ok=False).returncode != 0
    assert openstack(owner, "image", "set", "--public", image["id"],
                     ok=False).returncode != 0
    admin = keystone.user(roles=("admin",))
    openstack(admin, "image", "set", "--public", image["id"])
    stranger = keystone.user()
    assert json.loads(openstack(stranger, "image", "show", image["id"], "-f",
                                "json").stdout)["visibility"] == "public"
    openstack(owner, "image", "delete", image["id"])


SDK_SCRIPT = r"""
import json, sys
import openstack
env = json.loads(sys.argv[1])
conn = openstack.connect(
    auth_url=env["OS_AUTH_URL"], username=env["OS_USERNAME"],
    password=env["OS_PASSWORD"], user_domain_name=env["OS_USER_DOMAIN_NAME"],
    project_id=env["OS_PROJECT_ID"], project_domain_name=env["OS_USER_DOMAIN_NAME"],
    region_name=env["OS_REGION_NAME"], image_endpoint_override=env["OS_IMAGE_ENDPOINT_OVERRIDE"])
image = conn.image.create_image(name="sdk-ks", disk_format="raw", container_format="bare",
                                data=b"keystone bytes" * 1000)
image = conn.image.get_image(image.id)
out = {"owner": image.owner, "status": image.status,
       "mine": [i.id for i in conn.image.images()] == [image.id]}
conn.image.delete_image(image)
print(json.dumps(out))
"""


def test_openstacksdk_with_a_token(glance, keystone):
    bin_dir = clients.ensure_venv()
    user = keystone.user()
    env = cli_env(glance, keystone, user)
    result = clients.python(bin_dir, SDK_SCRIPT, json.dumps(env))
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"owner": user.project_id, "status": "active", "mine": True}
