"""The route table of api-v1.md section 3: 405s with Allow, 404 and 501."""

from __future__ import annotations

import pytest

from .helpers import ADMIN, NO_IMAGE_ID, create_image

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
def test_unknown_methods_on_unknown_paths_get_501(stack, method):
    assert stack.request("/v1/nothing", method, tenant="t1").status_int == 501


ROUTED = [("/v1/images", "GET, POST"), ("/v1/", "GET, POST"),
          ("/v1/images/detail", "GET, HEAD"), (IMAGE, "GET, HEAD, PUT, DELETE"),
          (IMAGE + "/members", "GET, PUT"), (IMAGE + "/members/t2", "GET, PUT, DELETE")]


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "COPY", "get", "Put", "delete"])
@pytest.mark.parametrize("path, allow", ROUTED)
def test_unknown_methods_on_routed_paths_get_405_with_allow(stack, path, allow, method):
    response = stack.request(path, method, tenant="t1")
    assert response.status_int == 405
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/images/detail/members"), ("PUT", "/v1/images/detail/members"),
    ("GET", "/v1/images/detail/members/t2"), ("PUT", "/v1/images/detail/members/t2"),
    ("DELETE", "/v1/images/detail/members/t2"),
])
def test_detail_is_no_image_id_under_members(stack, method, path):
    # The registry's /images/detail is its list: this was a 500 (KeyError).
    assert stack.request(path, method, tenant="t1").status_int == 404
    assert stack.request(path, method, **ADMIN).status_int == 404
