"""v2 locations and direct_url: hidden unless the operator shows them, then
only to callers the get_image_location policy lets through (admins by
default); JSON-patch changes to them under the same source filter as v1."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from tests.unit.api.v1.helpers import policy_file

from .conftest import ADMIN, V2

SHOWN = {"show_multiple_locations": True, "show_image_direct_url": True}
FORMATS = {"disk_format": "raw", "container_format": "bare"}


def add(url: str, position: Any = "-", **extra: Any) -> dict:
    return {"op": "add", "path": "/locations/%s" % position,
            "value": dict({"url": url, "metadata": {}}, **extra)}


def uploaded(v2: V2, data: bytes = b"data", caller: dict | None = None,
             **image: Any) -> dict:
    created = v2.create(caller=caller, **dict(FORMATS, **image))
    upload = dict(caller or {})
    assert v2.upload(created["id"], data, **upload).status_int == 204
    return created


def show(v2: V2, image_id: str, **caller: Any) -> dict:
    res = v2.call("GET", "/images/" + image_id, **caller)
    assert res.status_int == 200, res.text
    return res.json


def test_hidden_by_default_even_from_admins(v2: V2) -> None:
    image = uploaded(v2)
    shown = show(v2, image["id"], **ADMIN)
    assert "locations" not in shown and "direct_url" not in shown
    res = v2.patch(image["id"], [add("http://example.com/x")], **ADMIN)
    assert res.status_int == 403


def test_admins_see_them_when_shown(v2_with) -> None:
    v2 = v2_with(SHOWN)
    image = uploaded(v2)
    shown = show(v2, image["id"], **ADMIN)
    url = "file://" + os.path.join(v2.stack.datadir, image["id"])
    assert shown["direct_url"] == url
    assert [loc["url"] for loc in shown["locations"]] == [url]
    queued = v2.create(name="q", caller=ADMIN)
    assert queued["locations"] == [] and "direct_url" not in queued
    listed = v2.call("GET", "/images", **ADMIN).json["images"]
    assert {img["id"]: img.get("direct_url") for img in listed}[image["id"]] == url


def test_only_admins_and_services_see_them_when_shown(v2_with) -> None:
    # get_image_location is rule:service_api: not even the owning project
    # sees where its image is stored.
    v2 = v2_with(SHOWN)
    own = uploaded(v2, name="own")
    for roles in ("reader", "reader,member"):
        shown = v2.call("GET", "/images/" + own["id"], roles=roles).json
        assert "locations" not in shown and "direct_url" not in shown, roles
    shown = v2.call("GET", "/images/" + own["id"], roles="reader,service").json
    assert shown["locations"] and shown["direct_url"].startswith("file://")
    v2.call("POST", "/images/%s/members" % own["id"], {"member": "t2"})
    shared = v2.call("GET", "/images/" + own["id"], tenant="t2").json
    assert "locations" not in shared and "direct_url" not in shared


def test_users_never_see_them_under_the_old_defaults(v2_with, remote) -> None:
    v2 = v2_with(dict(SHOWN, **{"oslo_policy.enforce_new_defaults": False}))
    image = uploaded(v2, name="mine", visibility="public", caller=ADMIN)
    own = uploaded(v2, name="own")
    responses = [v2.call("GET", "/images/" + own["id"]).json,
                 v2.call("GET", "/images/" + image["id"], tenant="t2").json,
                 v2.patch(own["id"], [{"op": "replace", "path": "/name",
                                       "value": "n"}]).json,
                 v2.create(name="new")]
    responses += v2.call("GET", "/images", tenant="t1").json["images"]
    for body in responses:
        assert "locations" not in body and "direct_url" not in body, body
        assert "file://" not in str(body)
    # Nor may they change them (the policy they fail is delete_image_location).
    other = remote.add("other", b"data")
    assert v2.patch(own["id"], [add(other)], **ADMIN).status_int == 200
    assert v2.patch(own["id"], [{"op": "remove", "path": "/locations/1"}]).status_int == 403


def test_an_opened_policy_still_hides_deactivated_images(v2_with, tmp_path) -> None:
    v2 = v2_with(dict(SHOWN, **{"oslo_policy.policy_file": policy_file(
        tmp_path, {"get_image_location": ""})}))
    image = uploaded(v2)
    assert len(show(v2, image["id"])["locations"]) == 1
    deactivate = "/images/%s/actions/deactivate" % image["id"]
    assert v2.call("POST", deactivate, **ADMIN).status_int == 204
    assert "locations" not in show(v2, image["id"])
    assert len(show(v2, image["id"], **ADMIN)["locations"]) == 1


def test_the_first_location_activates_a_queued_image(v2_with, remote) -> None:
    v2 = v2_with(SHOWN)
    data = b"remote data" * 100
    url = remote.add("img", data)
    image = v2.create(name="q", **FORMATS)
    res = v2.patch(image["id"], [add(url, 0, metadata={"k": "v"})], **ADMIN)
    assert res.status_int == 200, res.text
    assert res.json["status"] == "active" and res.json["size"] == len(data)
    assert res.json["locations"] == [{"url": url, "metadata": {"k": "v"}}]
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == data


def test_validation_data_must_agree_and_is_taken_by_a_queued_image(v2_with, remote) -> None:
    v2 = v2_with(SHOWN)
    data = b"checked"
    url = remote.add("img", data)
    sha = hashlib.sha512(data).hexdigest()
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    queued = v2.create(name="q", **FORMATS)
    valid = {"checksum": md5, "os_hash_algo": "sha512", "os_hash_value": sha}
    res = v2.patch(queued["id"], [add(url, validation_data=valid)], **ADMIN)
    assert res.status_int == 200, res.text
    assert (res.json["checksum"], res.json["os_hash_value"]) == (md5, sha)
    active = uploaded(v2, b"other data")
    wrong = dict(valid, checksum="0" * 32)
    res = v2.patch(active["id"], [add(url, validation_data=wrong)], **ADMIN)
    assert res.status_int == 409
    res = v2.patch(queued["id"], [add(url + "?2", validation_data={"checksum": md5})],
                   **ADMIN)
    assert res.status_int == 400  # the schema wants os_hash_algo and os_hash_value


@pytest.mark.parametrize("ops, code", [
    ([add("file:///etc/passwd")], 400),
    ([add("http://169.254.169.254/latest/meta-data")], 400),
    ([add("http://127.0.0.1:1/x", 5)], 400),
    ([{"op": "add", "path": "/locations/first", "value": {"url": "http://a/", "metadata": {}}}],
     400),
    ([{"op": "add", "path": "/locations", "value": {"url": "http://a/", "metadata": {}}}], 400),
    ([{"op": "add", "path": "/locations/-", "value": {"metadata": {}}}], 400),
    ([{"op": "replace", "path": "/locations/0", "value": []}], 400),
    ([{"op": "replace", "path": "/locations", "value": []}], 403),
    ([{"op": "remove", "path": "/locations/0"}], 403),
    ([{"op": "remove", "path": "/locations/1"}], 400),
    ([{"op": "replace", "path": "/locations",
       "value": [{"url": "http://127.0.0.1:1/other", "metadata": {}}]}], 400),
], ids=["local file", "internal host", "position past the end", "word position",
        "no position", "no url", "replace one", "replace by none", "remove the last",
        "remove past the end", "replace by other urls"])
def test_refused_changes_change_nothing(v2_with, ops: list, code: int) -> None:
    v2 = v2_with(SHOWN)
    image = uploaded(v2)
    before = show(v2, image["id"], **ADMIN)
    res = v2.patch(image["id"], ops, **ADMIN)
    assert res.status_int == code, res.text
    assert show(v2, image["id"], **ADMIN) == before
    assert v2.stack.stored_files() == [image["id"]]


def test_add_remove_and_replace_metadata(v2_with, remote) -> None:
    v2 = v2_with(SHOWN)
    image = uploaded(v2, b"same bytes")
    url = remote.add("copy", b"same bytes")
    res = v2.patch(image["id"], [add(url)], **ADMIN)
    assert res.status_int == 200, res.text
    assert [loc["url"] for loc in res.json["locations"]][1] == url
    assert v2.patch(image["id"], [add(url)], **ADMIN).status_int == 400  # duplicate
    same = [{"url": loc["url"], "metadata": {"n": str(i)}}
            for i, loc in enumerate(res.json["locations"])]
    res = v2.patch(image["id"], [{"op": "replace", "path": "/locations", "value": same}],
                   **ADMIN)
    assert res.status_int == 200 and res.json["locations"] == same
    # Removing the uploaded location removes its bytes; the copy serves.
    res = v2.patch(image["id"], [{"op": "remove", "path": "/locations/0"}], **ADMIN)
    assert res.status_int == 200, res.text
    assert [loc["url"] for loc in res.json["locations"]] == [url]
    assert v2.stack.stored_files() == []
    assert v2.call("GET", "/images/%s/file" % image["id"]).body == b"same bytes"


def test_location_quota_and_status(v2_with, remote) -> None:
    v2 = v2_with(dict(SHOWN, image_location_quota=1))
    image = uploaded(v2)
    res = v2.patch(image["id"], [add(remote.add("x", b"data"))], **ADMIN)
    assert res.status_int == 413
    deactivate = "/images/%s/actions/deactivate" % image["id"]
    assert v2.call("POST", deactivate, **ADMIN).status_int == 204
    v2 = v2_with(SHOWN)
    other = uploaded(v2)
    assert v2.call("POST", "/images/%s/actions/deactivate" % other["id"],
                   **ADMIN).status_int == 204
    res = v2.patch(other["id"], [add(remote.add("y", b"data"))], **ADMIN)
    assert res.status_int == 409


def test_locations_are_still_refused_at_create(v2_with) -> None:
    v2 = v2_with(SHOWN)
    for field in ("locations", "direct_url"):
        res = v2.call("POST", "/images", {field: []}, **ADMIN)
        assert res.status_int == 403


def test_members_of_the_images_project_set_locations(v2_with, remote) -> None:
    v2 = v2_with(SHOWN)
    data = b"remote data"
    image = v2.create(name="q", **FORMATS)
    url = remote.add("img", data)
    # A reader of the project, and a member of another project it shares
    # the image with, may not.
    assert v2.patch(image["id"], [add(url)], roles="reader").status_int == 403
    assert v2.call("POST", "/images/%s/members" % image["id"],
                   {"member": "t2"}).status_int == 200
    assert v2.patch(image["id"], [add(url)], tenant="t2").status_int in (403, 404)
    assert show(v2, image["id"], **ADMIN)["status"] == "queued"
    res = v2.patch(image["id"], [add(url)])
    assert res.status_int == 200, res.text
    assert show(v2, image["id"], **ADMIN)["status"] == "active"
