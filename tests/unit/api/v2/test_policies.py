"""v2's policy rule names: each guards its call (a rule made admin-only
refuses the owner or member and changes nothing), and the defaults keep
publicizing and communitizing the admin's."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.api.v1.helpers import policy_file

from .conftest import ADMIN, V2

T2 = {"tenant": "t2"}
# rule -> (caller, method, path with {id}, body, status when refused)
CALLS: dict[str, tuple[dict, str, str, Any, int]] = {
    "get_images": ({}, "GET", "/images", None, 403),
    # An image the caller may not get is not found, as in newer Glance.
    "get_image": ({}, "GET", "/images/{id}", None, 404),
    "add_image": ({}, "POST", "/images", {"name": "new"}, 403),
    "modify_image": ({}, "PATCH", "/images/{id}",
                     [{"op": "replace", "path": "/name", "value": "x"}], 403),
    "delete_image": ({}, "DELETE", "/images/{id}", None, 403),
    "upload_image": ({}, "PUT", "/images/{queued}/file", b"data", 403),
    "download_image": ({}, "GET", "/images/{id}/file", None, 403),
    "deactivate": ({}, "POST", "/images/{id}/actions/deactivate", None, 403),
    "add_member": ({}, "POST", "/images/{id}/members", {"member": "t3"}, 403),
    "get_members": ({}, "GET", "/images/{id}/members", None, 403),
    # So is a member entry the caller may not see.
    "get_member": (T2, "GET", "/images/{id}/members/t2", None, 404),
    "modify_member": (T2, "PUT", "/images/{id}/members/t2", {"status": "accepted"}, 403),
    "delete_member": ({}, "DELETE", "/images/{id}/members/t2", None, 403),
}


def call(v2: V2, caller: dict, method: str, path: str, body: Any) -> Any:
    if method == "PATCH":
        return v2.patch(path.rsplit("/", 1)[1], body, **caller)
    if method == "PUT" and isinstance(body, bytes):
        return v2.upload(path.split("/")[2], body, **caller)
    return v2.call(method, path, body, **caller)


def world(v2: V2) -> dict[str, Any]:
    """t1's shared image with data and member t2, and a queued one (made by
    an admin, whom the admin-only rules let through)."""
    image = v2.create(name="i", owner="t1", visibility="shared", disk_format="raw",
                      container_format="bare", caller=ADMIN)
    assert v2.upload(image["id"], b"bytes", **ADMIN).status_int == 204
    queued = v2.create(name="q", owner="t1", disk_format="raw", container_format="bare",
                       caller=ADMIN)
    res = v2.call("POST", "/images/%s/members" % image["id"], {"member": "t2"}, **ADMIN)
    assert res.status_int == 200, res.text
    return {"id": image["id"], "queued": queued["id"]}


def state(v2: V2, ids: dict[str, Any]) -> Any:
    images = [v2.call("GET", "/images/" + i, **ADMIN).json for i in ids.values()]
    members = v2.call("GET", "/images/%s/members" % ids["id"], **ADMIN).json
    for image in images:
        image.pop("updated_at")
    return images, [(m["member_id"], m["status"]) for m in members["members"]]


@pytest.mark.parametrize("rule", sorted(CALLS))
def test_each_rule_guards_its_call(v2_with, tmp_path, rule: str) -> None:
    v2 = v2_with({"oslo_policy.policy_file": policy_file(tmp_path, {rule: "role:admin"})})
    ids = world(v2)
    before = state(v2, ids)
    caller, method, path, body, refused = CALLS[rule]
    path = path.format(**ids)
    res = call(v2, caller, method, path, body)
    assert res.status_int == refused, res.text
    assert state(v2, ids) == before
    # Allowed again, the same call goes through.
    other = v2_with()
    ids = world(other)
    assert call(other, caller, method, CALLS[rule][2].format(**ids), body).status_int < 300


def test_community_images_are_for_project_members_by_default(v2: V2) -> None:
    image = v2.create(name="s")
    change = [{"op": "replace", "path": "/visibility", "value": "community"}]
    assert v2.patch(image["id"], change, roles="reader").status_int == 403
    assert v2.patch(image["id"], change).json["visibility"] == "community"
    assert v2.call("POST", "/images", {"name": "c", "visibility": "community"}
                   ).status_int == 201


@pytest.mark.parametrize("visibility", ["public", "community"])
def test_publicize_and_communitize_are_admin_only_by_old_defaults(v2_with,
                                                                  visibility) -> None:
    v2 = v2_with({"oslo_policy.enforce_new_defaults": False})
    res = v2.call("POST", "/images", {"name": "p", "visibility": visibility})
    assert res.status_int == 403
    image = v2.create(name="s")
    res = v2.patch(image["id"], [{"op": "replace", "path": "/visibility",
                                  "value": visibility}])
    assert res.status_int == 403
    res = v2.patch(image["id"], [{"op": "replace", "path": "/visibility",
                                  "value": visibility}], **ADMIN)
    assert res.status_int == 200 and res.json["visibility"] == visibility
