"""Metadata, tag and member writes whose registry answer is lost.

The registry commits the write and the answer never reaches glance-api
(a reset connection): the api reads the image or its members back, and
the caller gets the true outcome instead of a 503 that leaves it guessing.
A write that never reached the registry (connection refused) is sent
again. Both APIs, v1 and v2, go through the same rule.
"""

from __future__ import annotations

import json

import pytest
import webob

from glance_clone.common.context import RequestContext
from tests.support import lossy_transport
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.timeout(60)
T1 = {"X-Identity-Status": "Confirmed", "X-Roles": "reader,member", "X-User-Id": "u1",
      "X-Tenant-Id": "t1"}
ADMIN = RequestContext(user="root", tenant="admin-t", roles=("admin",), is_admin=True)


@pytest.fixture
def stack(tmp_path) -> Stack:
    return make_stack(tmp_path)


@pytest.fixture
def lossy(stack: Stack) -> lossy_transport.LossyTransport:
    return lossy_transport.install(stack.v1.registry)


def call(stack: Stack, method: str, path: str, body=None, tenant: str = "t1",
         headers: dict | None = None, content_type: str = "application/json"
         ) -> webob.Response:
    req = webob.Request.blank(path, method=method)
    req.headers.update(dict(T1, **{"X-Tenant-Id": tenant}))
    if body is not None:
        req.body = json.dumps(body).encode()
        req.content_type = content_type
    req.headers.update(headers or {})
    response = req.get_response(stack.api)
    assert response.status_int < 500, (method, path, response.status, response.text)
    return response


def new_image(stack: Stack) -> str:
    response = call(stack, "POST", "/v2/images", {"name": "before"})
    assert response.status_int == 201, response.text
    return response.json["id"]


def writes_to(method: str, suffix: str = ""):
    def match(m, target, headers, body) -> bool:
        return m == method and target.startswith("/images/") and target.endswith(suffix)
    return match


def sent(transport, method: str, suffix: str = "") -> int:
    return sum(1 for m, target in transport.calls
               if m == method and target.startswith("/images/") and target.endswith(suffix))


def members_of(stack: Stack, image_id: str) -> dict[str, dict]:
    rows = stack.v1.registry.get_image_members(ADMIN, image_id)
    return {row["member_id"]: row for row in rows}


# --- image metadata ------------------------------------------------------------

def test_v1_update_committed_but_answer_lost_is_the_update(stack, lossy):
    image_id = new_image(stack)
    lossy.lose(writes_to("PUT", image_id))
    response = call(stack, "PUT", "/v1/images/" + image_id,
                    headers={"x-image-meta-name": "after",
                             "x-image-meta-property-os": "linux"})
    assert response.status_int == 200, response.text
    assert response.json["image"]["name"] == "after"
    assert response.json["image"]["properties"] == {"os": "linux"}
    assert sent(lossy, "PUT", image_id) == 1


def test_v1_update_not_sent_is_sent_again(stack, lossy):
    image_id = new_image(stack)
    lossy.refuse(writes_to("PUT", image_id))
    response = call(stack, "PUT", "/v1/images/" + image_id,
                    headers={"x-image-meta-name": "after"})
    assert response.status_int == 200, response.text
    assert response.json["image"]["name"] == "after"
    assert sent(lossy, "PUT", image_id) == 2


def test_v2_patch_committed_but_answer_lost_is_the_update(stack, lossy):
    image_id = new_image(stack)
    lossy.lose(writes_to("PUT", image_id))
    response = call(stack, "PATCH", "/v2/images/" + image_id,
                    [{"op": "replace", "path": "/name", "value": "after"},
                     {"op": "add", "path": "/os", "value": "linux"}],
                    content_type="application/openstack-images-v2.1-json-patch")
    assert response.status_int == 200, response.text
    assert (response.json["name"], response.json["os"]) == ("after", "linux")
    assert sent(lossy, "PUT", image_id) == 1


def test_v2_tags_committed_but_answers_lost(stack, lossy):
    image_id = new_image(stack)
    lossy.lose(writes_to("PUT", "/tags/blue"))
    assert call(stack, "PUT", "/v2/images/%s/tags/blue" % image_id).status_int == 204
    lossy.lose(writes_to("DELETE", "/tags/blue"))
    assert call(stack, "DELETE", "/v2/images/%s/tags/blue" % image_id).status_int == 204
    assert call(stack, "GET", "/v2/images/" + image_id).json["tags"] == []
    assert sent(lossy, "DELETE", "/tags/blue") == 1


# --- members -----------------------------------------------------------------------

def test_v1_member_add_and_remove_committed_but_answers_lost(stack, lossy):
    image_id = new_image(stack)
    lossy.lose(writes_to("PUT", "/members/t2"))
    response = call(stack, "PUT", "/v1/images/%s/members/t2" % image_id,
                    {"member": {"can_share": True}})
    assert response.status_int == 204, response.text
    assert members_of(stack, image_id)["t2"]["can_share"] is True
    # The retry of a delete that was committed would answer 404: the api
    # reads the members back instead, and the member is gone as asked.
    lossy.lose(writes_to("DELETE", "/members/t2"))
    response = call(stack, "DELETE", "/v1/images/%s/members/t2" % image_id)
    assert response.status_int == 204, response.text
    assert members_of(stack, image_id) == {}
    assert (sent(lossy, "PUT", "/members/t2"), sent(lossy, "DELETE", "/members/t2")) == (1, 1)


def test_v1_member_replace_committed_but_answer_lost(stack, lossy):
    image_id = new_image(stack)
    lossy.lose(writes_to("PUT", "/members"))
    response = call(stack, "PUT", "/v1/images/%s/members" % image_id,
                    {"memberships": [{"member_id": "t2", "can_share": False},
                                     {"member_id": "t3"}]})
    assert response.status_int == 204, response.text
    assert sorted(members_of(stack, image_id)) == ["t2", "t3"]


def test_v1_member_add_not_sent_is_sent_again(stack, lossy):
    image_id = new_image(stack)
    lossy.refuse(writes_to("PUT", "/members/t2"))
    assert call(stack, "PUT", "/v1/images/%s/members/t2" % image_id).status_int == 204
    assert list(members_of(stack, image_id)) == ["t2"]
    assert sent(lossy, "PUT", "/members/t2") == 2


def test_v2_members_committed_but_answers_lost(stack, lossy):
    image_id = new_image(stack)
    call(stack, "PATCH", "/v2/images/" + image_id,
         [{"op": "replace", "path": "/visibility", "value": "shared"}],
         content_type="application/openstack-images-v2.1-json-patch")
    members = "/v2/images/%s/members" % image_id
    lossy.lose(writes_to("PUT", "/members/t2"))
    response = call(stack, "POST", members, {"member": "t2"})
    assert response.status_int == 200, response.text
    assert (response.json["member_id"], response.json["status"]) == ("t2", "pending")
    lossy.lose(writes_to("PUT", "/members/t2/status"))
    response = call(stack, "PUT", members + "/t2", {"status": "accepted"}, tenant="t2")
    assert response.status_int == 200, response.text
    assert response.json["status"] == "accepted"
    lossy.lose(writes_to("DELETE", "/members/t2"))
    assert call(stack, "DELETE", members + "/t2").status_int == 204
    assert members_of(stack, image_id) == {}


def test_a_member_write_on_an_image_deleted_meanwhile_is_not_found(stack, lossy):
    """The answer is lost and, before the api reads back, the image is gone."""
    image_id = new_image(stack)

    def then_delete(method, target, headers, body) -> bool:
        if method == "PUT" and target.endswith("/members/t2"):
            stack.v1.registry.delete_image(ADMIN, image_id)
            return True
        return False
    lossy.lose(then_delete)
    assert call(stack, "PUT", "/v1/images/%s/members/t2" % image_id).status_int == 404
