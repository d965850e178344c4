"""The default policy rules through both APIs.

Newer Glance's defaults (``enforce_new_defaults``, on by default): a
caller with only the ``reader`` role in the owning project reads and
writes nothing; ``member`` also writes. With ``enforce_new_defaults =
False``, or a Glance 11 policy.json and its ``""`` rules, roles do not
matter again and only the owner checks refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.stack import Stack, make_stack
from tests.unit.api.v1.helpers import FORMATS as V1_FORMATS
from tests.unit.api.v1.helpers import policy_file
from tests.unit.api.v2.conftest import V2

pytestmark = pytest.mark.timeout(60)

READER = {"roles": "reader"}
MEMBER = {"roles": "reader,member"}
OTHER_MEMBER = {"tenant": "t2", "roles": "reader,member"}
FORMATS = {"disk_format": "raw", "container_format": "bare"}
OLD_DEFAULTS = {"oslo_policy.enforce_new_defaults": False}

# Glance 11.0.2's etc/policy.json, as an operator has it.
GLANCE_11_POLICY = {
    "context_is_admin": "role:admin", "default": "",
    "add_image": "", "delete_image": "", "get_image": "", "get_images": "",
    "modify_image": "", "publicize_image": "role:admin", "copy_from": "",
    "download_image": "", "upload_image": "", "delete_image_location": "",
    "get_image_location": "", "set_image_location": "", "add_member": "",
    "delete_member": "", "get_member": "", "get_members": "", "modify_member": "",
    "manage_image_cache": "role:admin", "get_task": "", "get_tasks": "",
    "add_task": "", "modify_task": "", "deactivate": "", "reactivate": "",
}


@pytest.fixture
def stack_with(tmp_path: Any) -> Callable[..., Stack]:
    made = []

    def build(overrides: dict[str, Any] | None = None) -> Stack:
        base = tmp_path / ("stack%d" % len(made))
        base.mkdir()
        made.append(make_stack(base, overrides))
        return made[-1]
    return build


def v2_writes(v2: V2, caller: dict[str, Any]) -> dict[str, int]:
    """The status of each v2 write, in an order that lets each one succeed."""
    image_id = v2.create(name="q", **FORMATS)["id"]
    path = "/images/" + image_id
    rename = [{"op": "replace", "path": "/name", "value": "renamed"}]
    return {
        "create": v2.call("POST", "/images", {"name": "n"}, **caller).status_int,
        "patch": v2.patch(image_id, rename, **caller).status_int,
        "tag": v2.call("PUT", path + "/tags/t", **caller).status_int,
        "share": v2.call("POST", path + "/members", {"member": "t2"}, **caller).status_int,
        "unshare": v2.call("DELETE", path + "/members/t2", **caller).status_int,
        "upload": v2.upload(image_id, b"data", **caller).status_int,
        "deactivate": v2.call("POST", path + "/actions/deactivate", **caller).status_int,
        "reactivate": v2.call("POST", path + "/actions/reactivate", **caller).status_int,
        "delete": v2.call("DELETE", path, **caller).status_int,
    }


ALLOWED = {"create": 201, "patch": 200, "tag": 204, "share": 200, "unshare": 204,
           "upload": 204, "deactivate": 204, "reactivate": 204, "delete": 204}


def test_v2_reader_reads_and_writes_nothing(stack_with) -> None:
    v2 = V2(stack_with())
    assert v2_writes(v2, READER) == dict.fromkeys(ALLOWED, 403)
    image = v2.create(name="shared", **FORMATS)
    assert v2.upload(image["id"], b"data").status_int == 204
    v2.call("POST", "/images/%s/members" % image["id"], {"member": "t2"})
    path = "/images/" + image["id"]
    assert v2.names(**READER) == ["q", "shared"]
    assert v2.call("GET", path, **READER).json["name"] == "shared"
    assert v2.call("GET", path + "/members", **READER).status_int == 200
    assert v2.call("GET", path + "/file", **READER).status_int == 403
    assert v2.call("GET", path + "/file").body == b"data"
    # The member project's reader sees its own entry; its member answers.
    assert v2.call("GET", path + "/members/t2", tenant="t2", roles="reader").status_int == 200
    accept = {"status": "accepted"}
    assert v2.call("PUT", path + "/members/t2", accept, tenant="t2",
                   roles="reader").status_int == 403
    assert v2.call("PUT", path + "/members/t2", accept, **OTHER_MEMBER).status_int == 200
    # Without roles, nothing at all.
    assert v2.call("GET", "/images", roles="").status_int == 403


def test_v2_member_writes_its_projects_images_only(stack_with) -> None:
    v2 = V2(stack_with())
    assert v2_writes(v2, MEMBER) == ALLOWED
    image_id = v2.create(name="mine", **FORMATS)["id"]
    rename = [{"op": "replace", "path": "/name", "value": "x"}]
    # Another project's members cannot see it, and cannot create in t1.
    assert v2.patch(image_id, rename, **OTHER_MEMBER).status_int == 404
    assert v2.call("POST", "/images", {"name": "n", "owner": "t1"},
                   **OTHER_MEMBER).status_int == 403


@pytest.mark.parametrize("overrides", [
    OLD_DEFAULTS, "glance-11-policy.json"], ids=["old-defaults", "glance-11-policy"])
def test_v2_old_rules_ignore_roles_but_keep_owner_checks(stack_with, tmp_path,
                                                         overrides) -> None:
    if overrides == "glance-11-policy.json":
        overrides = {"oslo_policy.policy_file": policy_file(tmp_path, GLANCE_11_POLICY)}
    v2 = V2(stack_with(overrides))
    assert v2_writes(v2, READER) == ALLOWED
    assert v2_writes(v2, {"roles": ""}) == ALLOWED
    image_id = v2.create(name="mine", visibility="community",
                         caller={"roles": "admin", "tenant": "t1"})["id"]
    rename = [{"op": "replace", "path": "/name", "value": "x"}]
    assert v2.patch(image_id, rename, tenant="t2", roles="").status_int == 403
    assert v2.call("DELETE", "/images/" + image_id, tenant="t2").status_int == 403


def v1_writes(stack: Any, caller: dict[str, Any]) -> dict[str, int]:
    """The status of each v1 write, in an order that lets each one succeed."""
    queued = stack.request("/v1/images", "POST", tenant="t1",
                           headers={"x-image-meta-name": "q"}).json["image"]["id"]
    path = "/v1/images/" + queued
    return {
        "create": stack.request("/v1/images", "POST", tenant="t1",
                                headers={"x-image-meta-name": "n"}, **caller).status_int,
        "update": stack.request(path, "PUT", tenant="t1",
                                headers={"x-image-meta-name": "x"}, **caller).status_int,
        "share": stack.request(path + "/members/t2", "PUT", tenant="t1",
                               **caller).status_int,
        "unshare": stack.request(path + "/members/t2", "DELETE", tenant="t1",
                                 **caller).status_int,
        "upload": stack.request(path, "PUT", tenant="t1", body=b"data",
                                headers=V1_FORMATS, **caller).status_int,
        "delete": stack.request(path, "DELETE", tenant="t1", **caller).status_int,
    }


V1_ALLOWED = {"create": 201, "update": 200, "share": 204, "unshare": 204,
              "upload": 200, "delete": 200}


def test_v1_reader_reads_member_writes(stack_with) -> None:
    stack = stack_with()
    assert v1_writes(stack, READER) == dict.fromkeys(V1_ALLOWED, 403)
    assert v1_writes(stack, MEMBER) == V1_ALLOWED
    image = stack.request("/v1/images", "POST", tenant="t1", body=b"data",
                          headers=dict(V1_FORMATS, **{"x-image-meta-name": "d"}))
    path = "/v1/images/" + image.json["image"]["id"]
    assert stack.request(path, "HEAD", tenant="t1", **READER).status_int == 200
    assert stack.request(path + "/members", tenant="t1", **READER).status_int == 200
    listed = stack.request("/v1/images/detail", tenant="t1", **READER).json["images"]
    assert sorted(i["name"] for i in listed) == ["d", "n", "q"]
    assert stack.request(path, tenant="t1", **READER).status_int == 403
    assert stack.request(path, tenant="t1", **MEMBER).body == b"data"


def test_v1_old_defaults_ignore_roles(stack_with) -> None:
    stack = stack_with(OLD_DEFAULTS)
    assert v1_writes(stack, READER) == V1_ALLOWED
