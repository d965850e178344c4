"""The registry routes the v2 API uses: search, tags, member status."""

from __future__ import annotations

import pytest

from .conftest import Client


def search(client: Client, caller: str = "A", **body):
    res = client.post("/images/search", caller, body=body)
    assert res.status_int == 200, res.text
    return sorted(image["name"] for image in res.json["images"])


def test_search_filters_and_sorts(client: Client) -> None:
    for name, size in (("a", 1), ("b", 2), ("c", 3)):
        client.create("A", name=name, size=size, visibility="private",
                      tags=["t", name], status="active")
    client.create("B", name="other", visibility="public", size=4)
    assert search(client) == ["a", "b", "c", "other"]
    assert search(client, columns={"name": ["in", ["a", "c"]]}) == ["a", "c"]
    assert search(client, tags=["t", "b"]) == ["b"]
    assert search(client, size_min=2, size_max=3) == ["b", "c"]
    assert search(client, min_ram_min=0, size_max=1) == ["a"]
    res = client.post("/images/search", "A", body={"min_disk_max": "3"})
    assert res.status_int == 400 and "'min_disk_max' must be a non-negative integer" \
        in res.text
    assert search(client, "B") == ["other"]
    res = client.post("/images/search", "A", body={
        "sort": [["size", "asc"]], "limit": 2,
        "columns": {"created_at": ["gte", "2000-01-01T00:00:00Z"]}})
    page = res.json["images"]
    assert [i["name"] for i in page] == ["a", "b"]
    assert page[0]["tags"] == ["t", "a"] and page[0]["visibility"] == "private"
    res = client.post("/images/search", "A", body={
        "sort": [["size", "asc"]], "marker": page[-1]["id"]})
    assert [i["name"] for i in res.json["images"]] == ["c", "other"]


@pytest.mark.parametrize("body, text", [
    ([], "must be a JSON object"),
    ({"visibility": "everyone"}, "'visibility' must be one of"),
    ({"member_status": "maybe"}, "'member_status' must be one of"),
    ({"os_hidden": "yes"}, "'os_hidden'"),
    ({"columns": {"location": ["eq", "x"]}}, "no filter on 'location'"),
    ({"columns": {"name": ["like", "x"]}}, "[operator, value]"),
    ({"columns": {"name": ["in", "x"]}}, "'in' takes a list"),
    ({"columns": {"size": ["eq", "10"]}}, "non-negative integers"),
    ({"columns": {"created_at": ["gt", "yesterday"]}}, "ISO 8601"),
    ({"columns": {"protected": ["eq", "true"]}}, "true or false"),
    ({"sort": [["location", "asc"]]}, "'sort key' must be one of"),
    ({"sort": [["name", "up"]]}, "'sort direction' must be one of"),
    ({"sort": "name"}, "'sort' must be"),
    ({"tags": "x"}, "'tags' must be a list"),
    ({"limit": -1}, "'limit' must be a non-negative integer"),
    ({"marker": "00000000-0000-0000-0000-000000000000"}, "Invalid marker"),
])
def test_search_refuses_bad_input(client: Client, body, text) -> None:
    res = client.post("/images/search", "A", body=body)
    assert res.status_int == 400, res.text
    assert text in res.text


def test_tags_one_at_a_time(client: Client) -> None:
    image = client.create("A", name="x")
    path = "/images/%s/tags/" % image["id"]
    assert client.put(path + "linux", "A").status_int == 204
    assert client.put(path + "linux", "A").status_int == 204
    assert client.put(path + "caf%C3%A9", "A").status_int == 204
    assert sorted(client.get("/images/" + image["id"], "A").json["image"]["tags"]) == [
        "café", "linux"]
    assert client.delete(path + "linux", "A").status_int == 204
    assert client.delete(path + "linux", "A").status_int == 404
    # Only who may change the image may tag it.
    assert client.put(path + "mine", "B").status_int == 404
    assert client.put(path + "x" * 256, "A").status_int == 400
    assert client.put(path + "t", "readonly").status_int == 403


def test_member_status_belongs_to_the_member(client: Client) -> None:
    image = client.create("A", name="x")
    members = "/images/%s/members/" % image["id"]
    assert client.put(members + "B", "A").status_int == 204
    [entry] = client.get(members[:-1], "A").json["members"]
    assert entry["status"] == "pending" and entry["can_share"] is False
    assert entry["image_id"] == image["id"] and entry["created_at"]
    res = client.put(members + "B/status", "A", body={"status": "accepted"})
    assert res.status_int == 403, res.text
    res = client.put(members + "B/status", "B", body={"status": "bogus"})
    assert res.status_int == 400
    res = client.put(members + "B/status", "B", body={"status": "accepted"})
    assert res.status_int == 200, res.text
    assert res.json["member"]["status"] == "accepted"
    assert res.json["member"]["member_id"] == "B"
    assert client.put(members + "C/status", "C",
                      body={"status": "accepted"}).status_int == 404
    assert client.put(members + "B/status", "admin",
                      body={"status": "rejected"}).status_int == 200
    # v1 writes leave the status alone, and v2 writes leave can_share alone.
    assert client.put(members + "B", "A",
                      body={"member": {"can_share": True}}).status_int == 204
    [entry] = client.get(members[:-1], "A").json["members"]
    assert (entry["status"], entry["can_share"]) == ("rejected", True)


def test_v2_fields_are_written_and_read(client: Client) -> None:
    image = client.create("A", name="x", visibility="community", os_hidden=True,
                          os_hash_algo="sha512", os_hash_value="ab" * 64)
    assert (image["visibility"], image["is_public"]) == ("community", False)
    assert image["os_hidden"] is True and image["os_hash_algo"] == "sha512"
    res = client.put("/images/" + image["id"], "A",
                     body={"image": {"visibility": "public", "tags": ["a"]}})
    assert res.json["image"]["is_public"] is True and res.json["image"]["tags"] == ["a"]
    res = client.post("/images", "A", body={"image": {"visibility": "everyone"}})
    assert res.status_int == 400 and "Invalid visibility" in res.text
    res = client.post("/images", "A", body={"image": {"os_hash_value": "x" * 129}})
    assert res.status_int == 400


def test_client_calls_of_the_extensions(tmp_path) -> None:
    from glance_clone.common import exception
    from glance_clone.common.context import RequestContext
    from tests.support.stack import make_stack

    stack = make_stack(tmp_path)
    registry = stack.v1.registry
    owner = RequestContext(user="u", tenant="A", roles=("member",))
    member = RequestContext(user="v", tenant="B", roles=("member",))
    image = registry.add_image(owner, {"name": "x", "status": "queued",
                                       "tags": ["a"], "visibility": "shared"})
    registry.add_tag(owner, image["id"], "b c")
    assert sorted(registry.get_image(owner, image["id"])["tags"]) == ["a", "b c"]
    registry.delete_tag(owner, image["id"], "a")
    with pytest.raises(exception.NotFound):
        registry.delete_tag(owner, image["id"], "a")
    registry.add_member(owner, image["id"], "B")
    assert registry.search_images(member, {}) == []
    entry = registry.set_member_status(member, image["id"], "B", "accepted")
    assert entry["status"] == "accepted"
    [found] = registry.search_images(member, {"tags": ["b c"]})
    assert found["id"] == image["id"] and found["tags"] == ["b c"]
    with pytest.raises(exception.Invalid):
        registry.search_images(member, {"visibility": "nobody"})
