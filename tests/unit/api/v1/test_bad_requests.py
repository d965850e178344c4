"""Malformed requests get a 4xx from glance-api and glance-registry, never a
500: undecodable URLs, bodies where none belongs, JSON too deep or too big."""

from __future__ import annotations

import json

import pytest
import webob

from glance_clone.common import wsgi

from .helpers import ADMIN, Body, create_image, message, streamed

pytestmark = pytest.mark.timeout(60)

TRUSTED = {"X-Identity-Status": "Confirmed", "X-Roles": "admin",
           "X-Tenant-Id": "admin-t", "X-User-Id": "root"}
UNDECODABLE = ["/v1/images/%ff", "/v1/images?name=%ff", "/v1/images/detail?%ff=1",
               "/v1/images/detail?name=%c3%28", "/v1/%ff", "/%ff",
               "/v1/images/x/members/%ff", "/v1/images?name=\xff"]


def registry_request(stack, path, method="GET", body=None, headers=None):
    req = webob.Request.blank(path, method=method)
    req.headers.update(TRUSTED)
    if body is not None:
        req.body = body
        req.content_type = "application/json"
    req.headers.update(headers or {})
    return req.get_response(stack.registry_app)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- URLs that do not decode as UTF-8 ----------------------------------------

@pytest.mark.parametrize("path", UNDECODABLE)
def test_undecodable_url_is_400(stack, path):
    for caller in ({"tenant": "t1"}, ADMIN, {"tenant": None, "roles": ""}):
        response = stack.request(path, **caller)
        assert response.status_int == 400, (caller, response.status)
        assert "not valid UTF-8" in message(response)


@pytest.mark.parametrize("path", ["/images/%ff", "/images?name=%ff", "/images/detail?%ff=x",
                                  "/images/x/members/%ff", "/%ff"])
def test_undecodable_url_is_400_at_the_registry(stack, path):
    for method in ("GET", "PUT", "DELETE"):
        response = registry_request(stack, path, method)
        assert response.status_int == 400, (method, response.status)


def test_utf8_in_urls_still_works(stack):
    image = create_image(stack, headers={"x-image-meta-name": "caf\xc3\xa9"}, **ADMIN)
    response = stack.request("/v1/images?name=caf%C3%A9", **ADMIN)
    assert [i["id"] for i in response.json["images"]] == [image["id"]]


# --- bodies on GET and DELETE ----------------------------------------------------

def test_a_body_on_get_or_delete_is_ignored(stack):
    image = create_image(stack, body=b"data")
    path = "/v1/images/%s/members" % image["id"]
    assert stack.request(path + "/t2", "PUT", tenant="t1").status_int == 204
    for method, target, status in (("GET", path, 200), ("DELETE", path + "/t2", 204),
                                   ("GET", "/v1/images/" + image["id"], 200),
                                   ("GET", "/v1/images/detail", 200)):
        body = Body(b"{not json" * 10)
        response = streamed(stack, target, method, body, content_length=len(body.data),
                            content_type="application/json")
        assert response.status_int == status, (method, target, response.body)
        assert body.reads == 0
    assert stack.request(path, tenant="t1").json == {"members": []}


def test_a_body_on_a_registry_get_or_delete_is_ignored(stack):
    image = create_image(stack, **ADMIN)
    garbage = b"{not json"
    assert registry_request(stack, "/images/%s" % image["id"], "GET", garbage).status_int == 200
    assert registry_request(stack, "/images/detail", "GET", garbage).status_int == 200
    response = registry_request(stack, "/images/%s" % image["id"], "DELETE", garbage)
    assert response.status_int == 200


# --- JSON nested too deep ----------------------------------------------------------

@pytest.mark.parametrize("depth", [wsgi.MAX_JSON_DEPTH + 1, 5000, 100000])
def test_deeply_nested_member_bodies_are_400(stack, depth):
    image = create_image(stack, body=b"data")
    for path in ("/v1/images/%s/members" % image["id"],
                 "/v1/images/%s/members/t2" % image["id"]):
        response = stack.request(path, "PUT", body=nested(depth), tenant="t1",
                                 headers={"Content-Type": "application/json"})
        assert response.status_int == 400, response.body
        assert "nested deeper than %d levels" % wsgi.MAX_JSON_DEPTH in message(response)


def test_nesting_within_the_limit_reaches_the_checks(stack):
    image = create_image(stack, body=b"data")
    body = b'{"memberships": ' + nested(wsgi.MAX_JSON_DEPTH - 1) + b"}"
    response = stack.request("/v1/images/%s/members" % image["id"], "PUT", body=body,
                             tenant="t1", headers={"Content-Type": "application/json"})
    assert response.status_int == 400
    assert "Invalid membership association" in message(response)


@pytest.mark.parametrize("depth", [wsgi.MAX_JSON_DEPTH + 1, 5000, 100000])
def test_deeply_nested_service_catalog_is_400(stack, depth):
    response = stack.request("/v1/images", tenant="t1",
                             headers={"X-Service-Catalog": nested(depth).decode()})
    assert response.status_int == 400
    assert "Invalid service catalog json" in message(response)


@pytest.mark.parametrize("depth", [wsgi.MAX_JSON_DEPTH + 1, 5000])
def test_deeply_nested_registry_bodies_are_400(stack, depth):
    image = create_image(stack, **ADMIN)
    body = b'{"image": {"properties": ' + nested(depth) + b"}}"
    for method, path in (("POST", "/images"), ("PUT", "/images/" + image["id"])):
        response = registry_request(stack, path, method, body)
        assert response.status_int == 400, response.body


# --- JSON bodies above max_json_body_size ---------------------------------------------

def test_a_json_body_over_the_limit_is_413_unread(stack):
    image = create_image(stack, body=b"data")
    limit = stack.conf.max_json_body_size
    for method, path in (("PUT", "/v1/images/%s/members" % image["id"]),
                         ("PUT", "/v1/images/%s/members/t2" % image["id"])):
        body = Body(b" " * (limit + 1))
        response = streamed(stack, path, method, body, content_length=limit + 1,
                            content_type="application/json")
        assert response.status_int == 413, response.body
        assert "max_json_body_size" in message(response)
        assert body.reads == 0
    # A body of 256 MiB announced is refused just the same, without a read.
    body = Body(b"")
    response = streamed(stack, "/v1/images/%s/members" % image["id"], "PUT", body,
                        content_length=256 * 1024 * 1024, content_type="application/json")
    assert response.status_int == 413
    assert body.reads == 0


def test_a_chunked_json_body_over_the_limit_is_413_after_the_limit(stack):
    image = create_image(stack, body=b"data")
    limit = stack.conf.max_json_body_size
    body = Body(b" " * (4 * limit), chunk=wsgi.READ_SIZE)
    response = streamed(stack, "/v1/images/%s/members" % image["id"], "PUT", body,
                        content_type="application/json")
    assert response.status_int == 413
    assert body.pos <= limit + wsgi.READ_SIZE


def test_a_json_body_within_the_limit_is_read(stack):
    image = create_image(stack, body=b"data")
    raw = json.dumps({"memberships": [{"member_id": "t2", "can_share": False}]}).encode()
    body = Body(raw)
    response = streamed(stack, "/v1/images/%s/members" % image["id"], "PUT", body,
                        content_type="application/json")
    assert response.status_int == 204, response.body
    assert [m["member_id"] for m in stack.request(
        "/v1/images/%s/members" % image["id"], tenant="t1").json["members"]] == ["t2"]


def test_max_json_body_size_is_configurable(stack_with):
    # The registry applies it too, to what glance-api sends it: an image
    # record must still fit.
    stack = stack_with({"max_json_body_size": 2000})
    image = create_image(stack, body=b"data")
    members = [{"member_id": "tenant-%03d" % n, "can_share": False} for n in range(60)]
    raw = json.dumps({"memberships": members}).encode()
    assert len(raw) > 2000
    response = stack.request("/v1/images/%s/members" % image["id"], "PUT", body=raw,
                             tenant="t1", headers={"Content-Type": "application/json"})
    assert response.status_int == 413
    assert "2000 bytes" in message(response)


def test_registry_refuses_a_json_body_over_the_limit_unread(stack):
    limit = stack.conf.max_json_body_size
    req = webob.Request.blank("/images", method="POST")
    req.headers.update(TRUSTED)
    body = Body(b" " * (limit + 1))
    req.environ["wsgi.input"] = body
    req.environ["CONTENT_LENGTH"] = str(limit + 1)
    req.content_type = "application/json"
    response = req.get_response(stack.registry_app)
    assert response.status_int == 413
    assert body.reads == 0
