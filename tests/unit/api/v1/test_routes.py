"""The route table of api-v1.md section 3: 405s with Allow, 404 and 501."""

from __future__ import annotations

import pytest

from .helpers import NO_IMAGE_ID, create_image

pytestmark = pytest.mark.timeout(60)

IMAGE = "/v1/images/%s" % NO_IMAGE_ID

REJECTED = [
    ("/v1/images", m, "GET, POST") for m in ("PUT", "DELETE", "HEAD", "PATCH")
] + [
    ("/v1/images/detail", m, "GET, HEAD") for m in ("POST", "PUT", "DELETE", "PATCH")
] + [
    ("/v1/images/detail", "HEAD", "GET"),
] + [
    (IMAGE, m, "GET, HEAD, PUT, DELETE") for m in ("POST", "PATCH")
] + [
    (IMAGE + "/members", m, "GET, PUT") for m in ("POST", "DELETE", "HEAD", "PATCH")
] + [
    (IMAGE + "/members/t2", m, "GET, PUT, DELETE") for m in ("POST", "HEAD", "PATCH")
]


@pytest.mark.parametrize("path, method, allow", REJECTED)
def test_wrong_method_gets_405_with_allow(stack, path, method, allow):
    response = stack.request(path, method, tenant="t1")
    assert response.status_int == 405
    assert response.headers["Allow"] == allow


def test_get_on_a_single_member_is_405_without_allow(stack):
    image = create_image(stack)
    response = stack.request("/v1/images/%s/members/t2" % image["id"], tenant="t1")
    assert response.status_int == 405
    assert "Allow" not in response.headers


@pytest.mark.parametrize("path", ["/v1/nothing", "/v1/images/a/b", "/v1/images/a/members/b/c",
                                  "/v1/shared-images", "/v1/cached_images"])
def test_unknown_paths_get_404(stack, path):
    assert stack.request(path, tenant="t1").status_int == 404


@pytest.mark.parametrize("method", ["OPTIONS", "COPY", "PROPFIND"])
def test_unknown_methods_get_501(stack, method):
    assert stack.request("/v1/nothing", method, tenant="t1").status_int == 501
    assert stack.request("/v1/images", method, tenant="t1").status_int == 501


def test_detail_is_not_taken_for_an_image_id(stack):
    response = stack.request("/v1/images/detail", tenant="t1")
    assert response.status_int == 200
    assert response.json == {"images": []}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_shared_images_answers_any_method(stack, method):
    response = stack.request("/v1/shared-images/t2", method, tenant="t1")
    assert response.status_int == 200
    assert response.json == {"shared_images": []}


def test_method_override_in_query_is_ignored(stack):
    image = create_image(stack)
    response = stack.request("/v1/images/%s?_method=DELETE" % image["id"], "GET",
                             tenant="t1")
    assert response.status_int == 404  # a GET of a queued image, not a delete
    assert stack.request("/v1/images/" + image["id"], "HEAD", tenant="t1").status_int == 200


def test_form_encoded_post_body_is_never_read(stack):
    from .helpers import Body, all_images, streamed
    body = Body(b"_method=DELETE&" + b"x" * 100000)
    response = streamed(stack, "/v1/images", "POST", body, content_length=len(body.data),
                        content_type="application/x-www-form-urlencoded")
    assert response.status_int == 400
    assert body.reads == 0
    assert all_images(stack) == []
