"""Members and shared images (api-v1.md section 12)."""

from __future__ import annotations

import json

import pytest

from .helpers import ADMIN, NO_IMAGE_ID, create_image, message, policy_file

pytestmark = pytest.mark.timeout(60)


def members_of(stack, image_id, **caller):
    caller = caller or {"tenant": "t1"}
    return stack.request("/v1/images/%s/members" % image_id, **caller)


def put_member(stack, image_id, member, body=None, **caller):
    caller = caller or {"tenant": "t1"}
    raw = None if body is None else (body if isinstance(body, bytes)
                                     else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"} if raw is not None else None
    return stack.request("/v1/images/%s/members/%s" % (image_id, member), "PUT", body=raw,
                         headers=headers, **caller)


def replace(stack, image_id, body, **caller):
    caller = caller or {"tenant": "t1"}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return stack.request("/v1/images/%s/members" % image_id, "PUT", body=raw,
                         headers={"Content-Type": "application/json"}, **caller)


def remove(stack, image_id, member, **caller):
    caller = caller or {"tenant": "t1"}
    return stack.request("/v1/images/%s/members/%s" % (image_id, member), "DELETE", **caller)


def listed(stack, image_id, **caller):
    response = members_of(stack, image_id, **caller)
    assert response.status_int == 200, response.body
    return response.json["members"]


@pytest.fixture
def image(stack):
    return create_image(stack, body=b"data")


def test_owner_adds_and_lists_members(stack, image):
    response = put_member(stack, image["id"], "t2")
    assert response.status_int == 204
    assert response.body == b""
    assert put_member(stack, image["id"], "t3", {"member": {"can_share": True}}).status_int == 204
    assert listed(stack, image["id"]) == [{"member_id": "t2", "can_share": False},
                                          {"member_id": "t3", "can_share": True}]


def test_member_sees_the_image_and_only_its_own_membership(stack, image):
    put_member(stack, image["id"], "t2")
    put_member(stack, image["id"], "t3")
    assert listed(stack, image["id"], tenant="t2") == [{"member_id": "t2", "can_share": False}]
    assert image["id"] in [i["id"] for i in stack.request("/v1/images",
                                                          tenant="t2").json["images"]]
    assert stack.request("/v1/images/" + image["id"], tenant="t2").body == b"data"
    assert members_of(stack, image["id"], tenant="t4").status_int == 404
    assert len(listed(stack, image["id"], **ADMIN)) == 2


def test_adding_an_existing_member_without_body_changes_nothing(stack, image):
    put_member(stack, image["id"], "t2", {"member": {"can_share": True}})
    assert put_member(stack, image["id"], "t2").status_int == 204
    assert put_member(stack, image["id"], "t2", {}).status_int == 204
    assert listed(stack, image["id"]) == [{"member_id": "t2", "can_share": True}]
    put_member(stack, image["id"], "t2", {"member": {"can_share": False}})
    assert listed(stack, image["id"]) == [{"member_id": "t2", "can_share": False}]


@pytest.mark.parametrize("body", [b"{not json", {"member": {}}, {"can_share": True},
                                  {"member": "yes"}, [1],
                                  {"member": {"can_share": "false"}}])
def test_malformed_member_body_is_400(stack, image, body):
    response = put_member(stack, image["id"], "t2", body)
    assert response.status_int == 400
    assert listed(stack, image["id"]) == []


def test_remove_member(stack, image):
    put_member(stack, image["id"], "t2")
    response = remove(stack, image["id"], "t2")
    assert response.status_int == 204 and response.body == b""
    assert listed(stack, image["id"]) == []
    response = remove(stack, image["id"], "t2")
    assert response.status_int == 404
    assert "Membership could not be found." in message(response)
    # Re-adding a removed member works.
    assert put_member(stack, image["id"], "t2").status_int == 204
    assert listed(stack, image["id"]) == [{"member_id": "t2", "can_share": False}]


def test_replace_members(stack, image):
    put_member(stack, image["id"], "t2", {"member": {"can_share": True}})
    put_member(stack, image["id"], "t3")
    response = replace(stack, image["id"], {"memberships": [
        {"member_id": "t2"}, {"member_id": "t4", "can_share": True}]})
    assert response.status_int == 204 and response.body == b""
    assert listed(stack, image["id"]) == [{"member_id": "t2", "can_share": True},
                                          {"member_id": "t4", "can_share": True}]
    assert replace(stack, image["id"], {"memberships": []}).status_int == 204
    assert listed(stack, image["id"]) == []


@pytest.mark.parametrize("body", [b"", b"[]", b"{bad", {"members": []},
                                  {"memberships": [{"can_share": True}]},
                                  {"memberships": "t2"}, {"memberships": [{"member_id": 5}]}])
def test_malformed_replace_body_is_400_not_500(stack, image, body):
    put_member(stack, image["id"], "t2")
    response = replace(stack, image["id"], body)
    assert response.status_int == 400
    assert listed(stack, image["id"]) == [{"member_id": "t2", "can_share": False}]


def test_writes_need_an_owner_value(stack, image):
    for response in (put_member(stack, image["id"], "t2", tenant=None),
                     replace(stack, image["id"], {"memberships": []}, tenant=None),
                     remove(stack, image["id"], "t2", tenant=None)):
        assert response.status_int == 401
        assert "No authenticated user" in message(response)


def test_admin_without_tenant_may_share(stack, image):
    assert put_member(stack, image["id"], "t2", roles="admin", tenant=None).status_int == 204
    assert listed(stack, image["id"]) == [{"member_id": "t2", "can_share": False}]


def test_sharing_rules(stack, image):
    put_member(stack, image["id"], "sharer", {"member": {"can_share": True}})
    put_member(stack, image["id"], "plain")
    # A member holding can_share may add and remove others.
    assert put_member(stack, image["id"], "t5", tenant="sharer").status_int == 204
    assert remove(stack, image["id"], "t5", tenant="sharer").status_int == 204
    # A plain member may not: 404, nothing changes.
    for response in (put_member(stack, image["id"], "t6", tenant="plain"),
                     remove(stack, image["id"], "sharer", tenant="plain"),
                     replace(stack, image["id"], {"memberships": []}, tenant="plain")):
        assert response.status_int == 404
    # Strangers cannot see the image at all.
    assert put_member(stack, image["id"], "t6", tenant="stranger").status_int == 404
    assert [m["member_id"] for m in listed(stack, image["id"])] == ["sharer", "plain"]


def test_public_image_of_someone_else_cannot_be_shared(stack):
    image = create_image(stack, {"x-image-meta-is_public": "true"}, **ADMIN)
    assert put_member(stack, image["id"], "t9", tenant="t2").status_int == 404
    assert listed(stack, image["id"], **ADMIN) == []


def test_member_quota(stack_with):
    stack = stack_with({"image_member_quota": 2})
    image = create_image(stack)
    assert put_member(stack, image["id"], "t2").status_int == 204
    assert put_member(stack, image["id"], "t3").status_int == 204
    response = put_member(stack, image["id"], "t4")
    assert response.status_int == 413
    assert ("The limit has been exceeded on the number of allowed image members for this "
            "image. Attempted: 3, Maximum: 2") in message(response)
    # Re-adding an existing member also counts one more.
    assert put_member(stack, image["id"], "t2").status_int == 413
    response = replace(stack, image["id"], {"memberships": [
        {"member_id": m} for m in ("a", "b", "c")]})
    assert response.status_int == 413
    assert [m["member_id"] for m in listed(stack, image["id"])] == ["t2", "t3"]
    assert replace(stack, image["id"], {"memberships": [
        {"member_id": m} for m in ("a", "b")]}).status_int == 204


def test_negative_member_quota_is_unlimited(stack_with):
    stack = stack_with({"image_member_quota": -1})
    image = create_image(stack)
    assert replace(stack, image["id"], {"memberships": [
        {"member_id": "m%d" % n} for n in range(140)]}).status_int == 204
    assert put_member(stack, image["id"], "one-more").status_int == 204


def test_missing_and_deleted_images(stack, image):
    for response in (members_of(stack, NO_IMAGE_ID), put_member(stack, NO_IMAGE_ID, "t2"),
                     remove(stack, NO_IMAGE_ID, "t2"),
                     replace(stack, NO_IMAGE_ID, {"memberships": []})):
        assert response.status_int == 404
    put_member(stack, image["id"], "t2")
    assert stack.request("/v1/images/" + image["id"], "DELETE", tenant="t1").status_int == 200
    for response in (members_of(stack, image["id"], **ADMIN),
                     put_member(stack, image["id"], "t3", **ADMIN),
                     remove(stack, image["id"], "t2", **ADMIN),
                     replace(stack, image["id"], {"memberships": []}, **ADMIN)):
        assert response.status_int == 404
        assert "Image with identifier %s has been deleted." % image["id"] in message(response)
    assert members_of(stack, image["id"]).status_int == 404


def test_shared_images(stack, image):
    other = create_image(stack, tenant="t1")
    put_member(stack, image["id"], "t2", {"member": {"can_share": True}})
    put_member(stack, other["id"], "t2")
    response = stack.request("/v1/shared-images/t2", tenant="t2")
    assert response.status_int == 200
    assert response.json == {"shared_images": [
        {"image_id": image["id"], "can_share": True},
        {"image_id": other["id"], "can_share": False}]}
    assert stack.request("/v1/shared-images/t2", tenant="t7").json == {"shared_images": []}
    stack.request("/v1/images/" + other["id"], "DELETE", tenant="t1")
    assert stack.request("/v1/shared-images/t2", tenant="t2").json == {"shared_images": [
        {"image_id": image["id"], "can_share": True}]}


@pytest.mark.parametrize("rule", ["get_members", "modify_member", "delete_member"])
def test_member_policies(stack_with, tmp_path, rule):
    stack = stack_with({"oslo_policy.policy_file": policy_file(tmp_path, {rule: "!"})})
    image = create_image(stack)
    put_member(stack, image["id"], "t2") if rule != "modify_member" else None
    calls = {"get_members": lambda: members_of(stack, image["id"]),
             "modify_member": lambda: put_member(stack, image["id"], "t3"),
             "delete_member": lambda: remove(stack, image["id"], "t2")}
    assert calls[rule]().status_int == 403
    if rule == "modify_member":
        assert replace(stack, image["id"], {"memberships": []}).status_int == 403
    # Shared-images has no policy at all.
    assert stack.request("/v1/shared-images/t2", tenant="t2").status_int == 200
