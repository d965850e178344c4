"""v2 members with consent."""

from __future__ import annotations

from .conftest import ADMIN, V2


def test_member_lifecycle(v2: V2) -> None:
    image = v2.create(name="a")
    members = "/images/%s/members" % image["id"]
    res = v2.call("POST", members, {"member": "t2"})
    assert res.status_int == 200, res.text
    entry = res.json
    assert entry["member_id"] == "t2" and entry["status"] == "pending"
    assert entry["image_id"] == image["id"] and entry["schema"] == "/v2/schemas/member"
    assert v2.call("POST", members, {"member": "t2"}).status_int == 409
    # The member reads the image at once; it lists it once accepted.
    assert v2.call("GET", "/images/" + image["id"], tenant="t2").status_int == 200
    assert v2.names(tenant="t2") == []
    assert v2.names("?member_status=pending", tenant="t2") == ["a"]
    assert v2.call("PUT", members + "/t2", {"status": "accepted"}).status_int == 403
    assert v2.call("PUT", members + "/t2", {"status": "bogus"},
                   tenant="t2").status_int == 400
    res = v2.call("PUT", members + "/t2", {"status": "accepted"}, tenant="t2")
    assert res.status_int == 200 and res.json["status"] == "accepted"
    assert v2.names(tenant="t2") == ["a"]
    assert [m["member_id"] for m in v2.call("GET", members).json["members"]] == ["t2"]
    assert v2.call("GET", members + "/t2", tenant="t2").json["status"] == "accepted"
    assert v2.call("GET", members + "/t3", tenant="t2").status_int == 404
    # Only the owner removes members.
    assert v2.call("DELETE", members + "/t2", tenant="t2").status_int == 403
    assert v2.call("DELETE", members + "/t2").status_int == 204
    assert v2.call("GET", "/images/" + image["id"], tenant="t2").status_int == 404


def test_member_refusals(v2_with) -> None:
    v2 = v2_with({"image_member_quota": 1})
    private = v2.create(name="p", visibility="private")
    assert v2.call("POST", "/images/%s/members" % private["id"],
                   {"member": "t2"}).status_int == 403
    image = v2.create(name="s")
    members = "/images/%s/members" % image["id"]
    assert v2.call("POST", members, {}).status_int == 400
    assert v2.call("POST", members, {"member": ""}).status_int == 400
    assert v2.call("POST", members, ["t2"]).status_int == 400
    assert v2.call("POST", members, {"member": "t2"}).status_int == 200
    assert v2.call("POST", members, {"member": "t3"}).status_int == 413
    assert v2.call("POST", members, {"member": "t4"}, tenant="t2").status_int == 403
    assert v2.call("GET", members, tenant="t3").status_int == 404
    assert v2.call("PUT", members + "/t2", {"status": "rejected"}, **ADMIN).status_int == 200


def test_v1_members_are_v2_members(v2: V2, stack) -> None:
    image = v2.create(name="a")
    assert stack.request("/v1/images/%s/members/t2" % image["id"], "PUT",
                         tenant="t1").status_int == 204
    [entry] = v2.call("GET", "/images/%s/members" % image["id"]).json["members"]
    assert entry["member_id"] == "t2" and entry["status"] == "pending"
    v2.call("PUT", "/images/%s/members/t2" % image["id"], {"status": "accepted"},
            tenant="t2")
    listed = stack.request("/v1/images/%s/members" % image["id"], tenant="t1").json
    assert listed == {"members": [{"member_id": "t2", "can_share": False}]}


def test_json_with_half_a_surrogate_pair_is_a_400(v2: V2) -> None:
    """``\\ud800`` is valid JSON but no text: it is refused where bodies are
    parsed, before it reaches a URL or the database."""
    image = v2.create(name="a")
    members = "/images/%s/members" % image["id"]
    for path, raw in ((members, b'{"member": "t\\ud800"}'),
                      ("/images", b'{"name": "x", "k\\udfff": "v"}')):
        res = v2.call("POST", path, raw=raw, content_type="application/json")
        assert res.status_int == 400, res.text
        assert "unpaired surrogate" in res.text
    assert v2.call("GET", members).json["members"] == []
    # An escaped backslash before "ud800" is text.
    res = v2.call("POST", "/images", raw=b'{"name": "\\\\ud800"}',
                  content_type="application/json")
    assert res.status_int == 201 and res.json["name"] == "\\ud800"


def test_one_member_of_an_image_without_members_is_a_404(v2: V2) -> None:
    """Where the member list of a non-shared image is a 403, one entry of it
    is a 404, as any other entry the caller may not see."""
    image = v2.create(name="s")
    members = "/images/%s/members" % image["id"]
    assert v2.call("POST", members, {"member": "t2"}).status_int == 200
    assert v2.call("GET", members + "/t2").status_int == 200
    res = v2.patch(image["id"], [{"op": "replace", "path": "/visibility",
                                  "value": "private"}])
    assert res.status_int == 200
    assert v2.call("GET", members).status_int == 403
    for caller in ({}, ADMIN):
        res = v2.call("GET", members + "/t2", **caller)
        assert res.status_int == 404, res.text


def test_member_status_of_an_image_no_longer_shared_is_frozen(v2: V2) -> None:
    image = v2.create(name="s")
    member = "/images/%s/members/t2" % image["id"]
    assert v2.call("POST", "/images/%s/members" % image["id"],
                   {"member": "t2"}).status_int == 200
    # The owner may not answer for the member, whatever the answer.
    assert v2.call("PUT", member, {"status": "bogus"}).status_int == 403
    assert v2.call("PUT", member, {"status": "bogus"}, tenant="t2").status_int == 400
    res = v2.patch(image["id"], [{"op": "replace", "path": "/visibility",
                                  "value": "private"}])
    assert res.status_int == 200
    res = v2.call("PUT", member, {"status": "accepted"}, **ADMIN)
    assert res.status_int == 403, res.text
    # Shared again, the entry is as it was: still pending.
    v2.patch(image["id"], [{"op": "replace", "path": "/visibility", "value": "shared"}])
    assert v2.call("GET", member).json["status"] == "pending"
