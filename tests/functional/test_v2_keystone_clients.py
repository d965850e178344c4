"""The v2 API with real Keystone tokens, through the ``openstack`` CLI,
openstacksdk and python-glanceclient 4: owners, members giving their
consent, and admin-only publicizing, each identity from a password login
at the Keystone of ``KEYSTONE_URL`` (glanceclient also given the token
itself)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tests.functional import clients, harness, keystone_harness

pytestmark = [pytest.mark.needs("keystone"), pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def glance(keystone_glance) -> harness.Deployment:
    """The keystone-flavor deployment of this module (see the conftest)."""
    return keystone_glance


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
import hashlib, json, sys
import openstack


def connect(env):
    return openstack.connect(
        auth_url=env["OS_AUTH_URL"], username=env["OS_USERNAME"],
        password=env["OS_PASSWORD"], user_domain_name=env["OS_USER_DOMAIN_NAME"],
        project_id=env["OS_PROJECT_ID"], project_domain_name=env["OS_USER_DOMAIN_NAME"],
        region_name=env["OS_REGION_NAME"],
        image_endpoint_override=env["OS_IMAGE_ENDPOINT_OVERRIDE"])


conn, other = connect(json.loads(sys.argv[1])), connect(json.loads(sys.argv[2]))
other_project = json.loads(sys.argv[2])["OS_PROJECT_ID"]
data = b"keystone bytes" * 1000
image = conn.image.create_image(name="sdk-ks", disk_format="raw", container_format="bare",
                                visibility="shared", data=data)
image = conn.image.get_image(image.id)
out = {"owner": image.owner, "status": image.status,
       "mine": [i.id for i in conn.image.images()] == [image.id]}
conn.image.update_image(image, name="sdk-renamed", distro="debian")
conn.image.add_tag(image, "gold")
out["tagged"] = [i.name for i in conn.image.images(tag="gold")]
conn.image.remove_tag(image, "gold")
shown = conn.image.get_image(image.id)
out["shown"] = [shown.name, shown.properties.get("distro"), shown.tags]
member = conn.image.add_member(image, member_id=other_project)
out["member"] = member.status
out["before"] = image.id in [i.id for i in other.image.images()]
other.image.update_member(member, image, status="accepted")
out["after"] = image.id in [i.id for i in other.image.images()]
out["downloaded"] = hashlib.md5(other.image.download_image(image).content).hexdigest()
conn.image.delete_image(image)
print(json.dumps(out))
"""


def test_openstacksdk_with_a_token(glance, keystone):
    bin_dir = clients.ensure_venv()
    user, other = keystone.user(), keystone.user()
    result = clients.python(bin_dir, SDK_SCRIPT, json.dumps(cli_env(glance, keystone, user)),
                            json.dumps(cli_env(glance, keystone, other)))
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"owner": user.project_id, "status": "active", "mine": True,
                   "tagged": ["sdk-renamed"], "shown": ["sdk-renamed", "debian", []],
                   "member": "pending", "before": False, "after": True,
                   "downloaded": hashlib.md5(b"keystone bytes" * 1000,
                                             usedforsecurity=False).hexdigest()}


def test_python_glanceclient_4_with_real_tokens(glance, keystone, tmp_path):
    """glanceclient 4 sends a token it was given (an owner's, a member's)
    or logs in to Keystone itself (an admin's password); keystonemiddleware
    checks each, and the roles and project reach the v2 rules."""
    bin_dir = clients.ensure_venv()
    owner, member = keystone.user(), keystone.user()
    admin = keystone.user(roles=("admin",))
    data = os.urandom(150_000)
    disk = tmp_path / "disk.img"
    disk.write_bytes(data)
    no_env = {"OS_AUTH_URL": "", "OS_USERNAME": "", "OS_PASSWORD": "", "OS_CLOUD": "",
              "OS_PROJECT_NAME": "", "OS_TOKEN": "", "OS_AUTH_TOKEN": ""}

    def glance_as(token: str, *args: str, ok: bool = True):
        return clients.run(bin_dir / "glance", "--os-image-api-version", "2",
                           "--os-image-url", glance.url, "--os-auth-token", token,
                           *args, env=no_env, ok=ok)

    owner_token, member_token = keystone.token(owner), keystone.token(member)
    created = glance_as(owner_token, "image-create", "--name", "g4-ks",
                        "--disk-format", "raw", "--container-format", "bare",
                        "--visibility", "shared", "--file", str(disk))
    image_id = clients.table_value(created.stdout, "id")
    assert clients.table_value(created.stdout, "owner") == owner.project_id
    assert clients.table_value(created.stdout, "status") == "active"
    # Not shared yet: the member's token does not see it.
    refused = glance_as(member_token, "image-show", image_id, ok=False)
    assert refused.returncode != 0 and "404" in refused.stdout + refused.stderr
    glance_as(owner_token, "member-create", image_id, member.project_id)
    glance_as(member_token, "member-update", image_id, member.project_id, "accepted")
    assert image_id in glance_as(member_token, "image-list").stdout
    copy = tmp_path / "copy.img"
    glance_as(member_token, "image-download", "--file", str(copy), image_id)
    assert copy.read_bytes() == data
    # A member may read, not change; a token Keystone never issued is refused.
    changed = glance_as(member_token, "image-update", "--name", "mine", image_id, ok=False)
    assert changed.returncode != 0 and "403" in changed.stdout + changed.stderr
    bogus = glance_as("gAAAAAB-not-a-token", "image-list", ok=False)
    # (glanceclient's words for a 401)
    assert bogus.returncode != 0 and "Invalid OpenStack Identity credentials" in bogus.stderr
    # Publicizing is the admin's: the owner's token is refused, the admin
    # logs in with its password.
    own = glance_as(owner_token, "image-update", "--visibility", "public", image_id,
                    ok=False)
    assert own.returncode != 0 and "403" in own.stdout + own.stderr
    publicized = clients.run(
        bin_dir / "glance", "--os-image-api-version", "2", "--os-image-url", glance.url,
        "--os-auth-url", keystone.url, "--os-username", admin.name,
        "--os-password", admin.password, "--os-user-domain-name", admin.domain_name,
        "--os-project-id", admin.project_id, "--os-project-domain-name",
        admin.domain_name, "image-update", "--visibility", "public", image_id,
        env=no_env)
    assert clients.table_value(publicized.stdout, "visibility") == "public"
    glance_as(owner_token, "image-delete", image_id)
    assert glance_as(owner_token, "image-show", image_id, ok=False).returncode != 0
