"""Registry v1: image memberships and shared images."""

from __future__ import annotations

import pytest

from tests.unit.registry.conftest import Client, uuid4
from tests.unit.registry.test_images import assert_error

pytestmark = pytest.mark.timeout(60)


def members(client: Client, image_id: str, caller: str = "admin") -> list:
    """The v1 part of the member list: member_id and can_share."""
    res = client.get("/images/%s/members" % image_id, caller)
    assert res.status_int == 200, res.text
    return [{"member_id": row["member_id"], "can_share": row["can_share"]}
            for row in res.json["members"]]


def as_dict(rows: list) -> dict[str, bool]:
    return {row["member_id"]: row["can_share"] for row in rows}


def test_add_member_and_list(client: Client) -> None:
    image = client.create("A")["id"]
    res = client.put("/images/%s/members/B" % image, "A")
    assert res.status_int == 204
    assert res.body == b""
    res = client.put("/images/%s/members/C" % image, "A",
                     body={"member": {"can_share": True}})
    assert res.status_int == 204
    assert members(client, image, "A") == [
        {"member_id": "B", "can_share": False},
        {"member_id": "C", "can_share": True}]
    assert res.headers.get("Content-Type") is None


def test_list_visibility(client: Client) -> None:
    image = client.create("A")["id"]
    client.put("/images/%s/members/B" % image, "A")
    client.put("/images/%s/members/C" % image, "A")
    assert len(members(client, image, "admin")) == 2
    assert len(members(client, image, "A")) == 2
    # A member sees only its own row.
    assert members(client, image, "B") == [{"member_id": "B",
                                            "can_share": False}]
    # Outsiders cannot see the image at all.
    assert client.get("/images/%s/members" % image, "noowner").status_int == 404
    other = client.create("C", is_public=True)["id"]
    client.put("/images/%s/members/A" % other, "C")
    # Public image, not owner, not member: no rows.
    assert members(client, other, "B") == []
    assert client.get("/images/%s/members" % uuid4(), "A").status_int == 404


def test_update_existing_member(client: Client) -> None:
    image = client.create("A")["id"]
    path = "/images/%s/members/B" % image
    client.put(path, "A")
    client.put(path, "A", body={"member": {"can_share": True}})
    assert as_dict(members(client, image, "A")) == {"B": True}
    # No body: nothing changes.
    client.put(path, "A")
    assert as_dict(members(client, image, "A")) == {"B": True}
    client.put(path, "A", body={})
    assert as_dict(members(client, image, "A")) == {"B": True}
    client.put(path, "A", body={"member": {"can_share": False}})
    assert as_dict(members(client, image, "A")) == {"B": False}


def test_readd_removed_member(client: Client) -> None:
    image = client.create("A")["id"]
    path = "/images/%s/members/B" % image
    client.put(path, "A", body={"member": {"can_share": True}})
    assert client.delete(path, "A").status_int == 204
    assert members(client, image, "A") == []
    # Unlike Glance, re-adding without a body brings the member back.
    assert client.put(path, "A").status_int == 204
    assert members(client, image, "A") == [{"member_id": "B",
                                            "can_share": False}]
    client.delete(path, "A")
    client.put(path, "A", body={"member": {"can_share": True}})
    assert as_dict(members(client, image, "A")) == {"B": True}


@pytest.mark.parametrize("body", [
    {"member": {}}, {"member": {"can_share": "false"}},
    {"member": {"can_share": 1}}, {"member": {"can_share": None}},
    {"member": True}, {"other": 1}, [1], "x"])
def test_add_member_bad_body(client: Client, body: object) -> None:
    image = client.create("A")["id"]
    res = client.put("/images/%s/members/B" % image, "A", body=body)
    assert_error(res, 400, "Invalid membership association: ")
    assert members(client, image, "A") == []


def test_add_member_malformed_json(client: Client) -> None:
    image = client.create("A")["id"]
    res = client.put("/images/%s/members/B" % image, "A", raw=b"{nope")
    assert res.status_int == 400
    res = client.put("/images/%s/members" % image, "A", raw=b"{nope")
    assert res.status_int == 400
    assert members(client, image, "A") == []


def test_bad_member_names(client: Client) -> None:
    image = client.create("A")["id"]
    res = client.put("/images/%s/members/%s" % (image, "m" * 256), "A")
    assert_error(res, 400, "Invalid membership association")
    res = client.put("/images/%s/members/%%F0%%9F%%98%%80" % image, "A")
    assert_error(res, 400, "4-byte")
    res = client.put("/images/%s/members/%%FF" % image, "A")
    assert res.status_int == 400
    res = client.put("/images/%s/members/%%C3%%A9" % image, "A")
    assert res.status_int == 204
    assert as_dict(members(client, image, "A")) == {"\u00e9": False}


def test_share_permissions(client: Client) -> None:
    image = client.create("A")["id"]
    public = client.create("A", is_public=True)["id"]
    # Not visible to C: 404 before the sharing check.
    assert_error(client.put("/images/%s/members/C" % image, "C"), 404,
                 "Image not found")
    # Visible but not allowed to share.
    assert_error(client.put("/images/%s/members/C" % public, "C"), 403,
                 "No permission to share that image")
    client.put("/images/%s/members/B" % image, "A")
    assert_error(client.put("/images/%s/members/C" % image, "B"), 403,
                 "No permission to share that image")
    assert_error(client.delete("/images/%s/members/B" % image, "B"), 403,
                 "No permission to share that image")
    assert_error(client.put("/images/%s/members" % image, "B",
                            body={"memberships": []}), 403,
                 "No permission to share that image")
    # A member holding can_share may share further.
    client.put("/images/%s/members/B" % image, "A",
               body={"member": {"can_share": True}})
    assert client.put("/images/%s/members/C" % image, "B").status_int == 204
    assert client.put("/images/%s/members/C" % image, "admin").status_int == 204
    assert as_dict(members(client, image, "A")) == {"B": True, "C": False}


def test_sharing_member_changes_other_members(client: Client) -> None:
    image = client.create("A")["id"]
    base = "/images/%s/members/" % image
    client.put(base + "B", "A", body={"member": {"can_share": True}})
    client.put(base + "C", "A")
    # B cannot list C's row, yet changes it rather than adding a second one.
    assert client.put(base + "C", "B", body={"member": {"can_share": True}}
                      ).status_int == 204
    assert client.put(base + "C", "B").status_int == 204
    assert members(client, image, "A") == [
        {"member_id": "B", "can_share": True},
        {"member_id": "C", "can_share": True}]
    assert client.delete(base + "C", "B").status_int == 204
    assert as_dict(members(client, image, "A")) == {"B": True}


def test_no_authenticated_user(client: Client) -> None:
    image = client.create("A", is_public=True)["id"]
    for res in (client.put("/images/%s/members/B" % image, "noowner"),
                client.delete("/images/%s/members/B" % image, "noowner"),
                client.put("/images/%s/members" % image, "noowner",
                           body={"memberships": []})):
        assert_error(res, 401, "No authenticated user")
    # Admins need no owner value.
    assert client.put("/images/%s/members/B" % image, "admin").status_int == 204


def test_read_only_member_writes(client: Client) -> None:
    image = client.create("A")["id"]
    res = client.put("/images/%s/members/B" % image, "readonly")
    assert_error(res, 403, "Read-only access")


def test_delete_member(client: Client) -> None:
    image = client.create("A")["id"]
    path = "/images/%s/members/B" % image
    assert_error(client.delete(path, "A"), 404,
                 "Membership could not be found.")
    client.put(path, "A")
    res = client.delete(path, "A")
    assert res.status_int == 204 and res.body == b""
    assert_error(client.delete(path, "A"), 404,
                 "Membership could not be found.")
    assert client.delete("/images/%s/members/B" % uuid4(), "A").status_int == 404


def test_replace_members(client: Client) -> None:
    image = client.create("A")["id"]
    base = "/images/%s/members" % image
    client.put(base + "/B", "A", body={"member": {"can_share": True}})
    client.put(base + "/C", "A")
    res = client.put(base, "A", body={"memberships": [
        {"member_id": "B"},                       # keeps can_share
        {"member_id": "D", "can_share": True},   # new
        {"member_id": "E"}]})                     # new, default false
    assert res.status_int == 204 and res.body == b""
    assert as_dict(members(client, image, "A")) == {
        "B": True, "D": True, "E": False}
    res = client.put(base, "A", body={"memberships": [
        {"member_id": "B", "can_share": False}]})
    assert as_dict(members(client, image, "A")) == {"B": False}
    assert client.put(base, "A", body={"memberships": []}).status_int == 204
    assert members(client, image, "A") == []


@pytest.mark.parametrize("body,text", [
    (None, "memberships"),
    ({}, "memberships"),
    ({"memberships": {"member_id": "B"}}, "memberships"),
    ({"memberships": [{"can_share": True}]}, "member_id"),
    ({"memberships": ["B"]}, "member_id"),
    ({"memberships": [{"member_id": 5}]}, "member_id must be a"),
    ({"memberships": [{"member_id": ""}]}, "member_id must be a"),
    ({"memberships": [{"member_id": "m" * 256}]}, "longer than 255"),
    ({"memberships": [{"member_id": "\U0001F600"}]}, "4-byte"),
    ({"memberships": [{"member_id": "B", "can_share": "yes"}]},
     "can_share must be true or false"),
    ({"memberships": [{"member_id": "B"}, {"member_id": "B"}]},
     "member B is listed more than once"),
])
def test_replace_members_bad_body(client: Client, body: object,
                                  text: str) -> None:
    image = client.create("A")["id"]
    client.put("/images/%s/members/Z" % image, "A")
    res = client.put("/images/%s/members" % image, "A", body=body)
    assert_error(res, 400, "Invalid membership association: ")
    assert text in res.text
    assert as_dict(members(client, image, "A")) == {"Z": False}


def test_replace_members_errors_before_body(client: Client) -> None:
    image = client.create("A")["id"]
    res = client.put("/images/%s/members" % uuid4(), "A",
                     body={"memberships": []})
    assert res.status_int == 404
    res = client.put("/images/%s/members" % image, "C",
                     body={"memberships": []})
    assert res.status_int == 404


def test_shared_images(client: Client) -> None:
    one = client.create("A")["id"]
    two = client.create("A")["id"]
    gone = client.create("A")["id"]
    removed = client.create("A")["id"]
    client.put("/images/%s/members/B" % one, "A")
    client.put("/images/%s/members/B" % two, "A",
               body={"member": {"can_share": True}})
    client.put("/images/%s/members/B" % gone, "A")
    client.put("/images/%s/members/B" % removed, "A")
    client.delete("/images/" + gone, "A")
    client.delete("/images/%s/members/B" % removed, "A")
    expected = {one: False, two: True}
    for caller in ("B", "A", "admin"):
        for method in ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"):
            res = client.request(method, "/shared-images/B", caller)
            assert res.status_int == 200, (caller, method, res.text)
            if method == "HEAD":
                continue
            got = {row["image_id"]: row["can_share"]
                   for row in res.json["shared_images"]}
            assert got == expected, (caller, method)
    # A caller unrelated to those images learns nothing.
    assert client.get("/shared-images/B", "C").json == {"shared_images": []}
    assert client.get("/shared-images/nobody", "A").json == {
        "shared_images": []}


def test_member_rows_follow_image_delete(client: Client) -> None:
    image = client.create("A")["id"]
    client.put("/images/%s/members/B" % image, "A")
    client.delete("/images/" + image, "A")
    assert client.get("/images/%s/members" % image, "A").status_int == 404
    assert client.get("/shared-images/B", "B").json == {"shared_images": []}
