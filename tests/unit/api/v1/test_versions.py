"""Version negotiation, the versions document and request ids (v1 and v2)."""

from __future__ import annotations

import pytest

from .helpers import ADMIN, create_image

pytestmark = pytest.mark.timeout(60)

V1_ENTRIES = [
    {"id": "v1.1", "status": "SUPPORTED",
     "links": [{"rel": "self", "href": "http://localhost/v1/"}]},
    {"id": "v1.0", "status": "SUPPORTED",
     "links": [{"rel": "self", "href": "http://localhost/v1/"}]}]
V2_MINORS = (17, 15, 9, 7, 6, 5, 4, 3, 2, 1, 0)
V2_ENTRIES = [
    {"id": "v2.%d" % minor, "status": "CURRENT" if minor == 17 else "SUPPORTED",
     "links": [{"rel": "self", "href": "http://localhost/v2/"}]}
    for minor in V2_MINORS]
V1_DOC = {"versions": V1_ENTRIES}
DOC = {"versions": V2_ENTRIES + V1_ENTRIES}


@pytest.mark.parametrize("path", ["/", "/images", "/v1.2/images", "/v1.a/images",
                                  "/v10", "/v2.8/images", "/v2.10/images", "/v2.12/images",
                                  "/v2.13/images", "/v2.14/images", "/v2.16/images",
                                  "/v2.18/images", "/v3/images", "/v1images", "/x/v1/images",
                                  "/v2images"])
def test_unknown_versions_get_300_with_document(stack, path):
    response = stack.request(path, tenant="t1")
    assert response.status_int == 300
    assert response.content_type == "application/json"
    assert response.json == DOC


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "HEAD"])
def test_versions_path_answers_200_for_any_method(stack, method):
    response = stack.request("/versions", method, tenant="t1")
    assert response.status_int == 200
    if method != "HEAD":
        assert response.json == DOC


def test_versions_document_uses_public_endpoint(stack_with):
    stack = stack_with({"public_endpoint": "https://glance.example:9292/"})
    response = stack.request("/", tenant="t1")
    hrefs = [v["links"][0]["href"] for v in response.json["versions"]]
    assert hrefs == ["https://glance.example:9292/v2/"] * len(V2_MINORS) + [
        "https://glance.example:9292/v1/"] * 2


def test_disabled_v1_is_not_served_nor_advertised(stack_with):
    stack = stack_with({"enable_v1_api": False})
    response = stack.request("/v1/images", tenant="t1")
    assert response.status_int == 300
    assert response.json == {"versions": V2_ENTRIES}


def test_disabled_v2_is_not_served_nor_advertised(stack_with):
    stack = stack_with({"enable_v2_api": False})
    assert stack.request("/versions").json == V1_DOC
    assert stack.request("/v2/images", tenant="t1").status_int == 300


@pytest.mark.parametrize("prefix", ["/v2", "/v2.0", "/v2.3", "/v2.5", "/v2.6", "/v2.7",
                                    "/v2.9", "/v2.15", "/v2.17"])
def test_v2_names_select_v2(stack, prefix):
    image = create_image(stack, headers={"x-image-meta-is_public": "true"}, **ADMIN)
    response = stack.request(prefix + "/images", tenant="t1")
    assert response.status_int == 200, response.text
    assert [i["id"] for i in response.json["images"]] == [image["id"]]


def test_a_cache_directory_adds_the_cache_api_minors(stack_with, tmp_path):
    stack = stack_with({"image_cache_dir": str(tmp_path)})
    listed = stack.request("/versions").json["versions"]
    assert [(v["id"], v["status"]) for v in listed][:6] == [
        ("v2.18", "CURRENT"), ("v2.17", "SUPPORTED"), ("v2.16", "SUPPORTED"),
        ("v2.15", "SUPPORTED"), ("v2.14", "SUPPORTED"), ("v2.9", "SUPPORTED")]
    for prefix in ("/v2.14", "/v2.16", "/v2.18"):
        response = stack.request(prefix + "/cache", tenant="admin-t", roles="admin")
        assert response.status_int == 200, response.text
    accept = {"Accept": "application/vnd.openstack.images-v2.18"}
    assert stack.request("/cache", headers=accept, tenant="admin-t",
                         roles="admin").status_int == 200
    assert stack.request("/v2.12/cache", tenant="admin-t", roles="admin").status_int == 300


def named_stores(tmp_path, **extra):
    return {"enabled_backends": {"fast": "file", "cheap": "file"},
            "glance_store.default_backend": "fast",
            "fast.filesystem_store_datadir": str(tmp_path / "fast"),
            "cheap.filesystem_store_datadir": str(tmp_path / "cheap"), **extra}


def test_named_stores_add_the_multi_store_minors(stack_with, tmp_path):
    stack = stack_with(named_stores(tmp_path))
    listed = stack.request("/versions").json["versions"]
    assert [(v["id"], v["status"]) for v in listed] == [
        ("v2.17", "CURRENT"), ("v2.15", "SUPPORTED"), ("v2.13", "SUPPORTED"),
        ("v2.12", "SUPPORTED"), ("v2.11", "SUPPORTED"), ("v2.10", "SUPPORTED"),
        ("v2.9", "SUPPORTED"), ("v2.8", "SUPPORTED")] + [
        ("v2.%d" % minor, "SUPPORTED") for minor in range(7, -1, -1)] + [
        ("v1.1", "SUPPORTED"), ("v1.0", "SUPPORTED")]
    image = create_image(stack, headers={"x-image-meta-is_public": "true"}, **ADMIN)
    for prefix in ("/v2.8", "/v2.10", "/v2.11", "/v2.12", "/v2.13"):
        response = stack.request(prefix + "/images", tenant="t1")
        assert response.status_int == 200, response.text
        assert [i["id"] for i in response.json["images"]] == [image["id"]]
    accept = {"Accept": "application/vnd.openstack.images-v2.12"}
    assert stack.request("/images", headers=accept, tenant="t1").status_int == 200
    assert stack.request("/v2.14/images", tenant="t1").status_int == 300


def test_named_stores_and_a_cache_directory_list_both(stack_with, tmp_path):
    stack = stack_with(named_stores(tmp_path, image_cache_dir=str(tmp_path / "cache")))
    listed = [v["id"] for v in stack.request("/versions").json["versions"]]
    assert listed[:11] == ["v2.18", "v2.17", "v2.16", "v2.15", "v2.14", "v2.13", "v2.12",
                           "v2.11", "v2.10", "v2.9", "v2.8"]
    assert stack.request("/v2.12/images", tenant="t1").status_int == 200


@pytest.mark.parametrize("prefix", ["/v1", "/v1.0", "/v1.1"])
def test_v1_names_select_v1(stack, prefix):
    image = create_image(stack)
    response = stack.request(prefix + "/images", tenant="t1")
    assert response.status_int == 200
    assert [i["id"] for i in response.json["images"]] == [image["id"]]


@pytest.mark.parametrize("path", ["/v1/", "/v1"])
def test_v1_root_is_the_image_list(stack, path):
    image = create_image(stack)
    response = stack.request(path, tenant="t1")
    assert response.status_int == 200
    assert [i["id"] for i in response.json["images"]] == [image["id"]]


def test_accept_header_selects_version_and_keeps_path(stack):
    image = create_image(stack)
    response = stack.request("/images", tenant="t1", headers={
        "Accept": "application/vnd.openstack.images-v1"})
    assert response.status_int == 200
    assert [i["id"] for i in response.json["images"]] == [image["id"]]


def test_accept_header_with_unserved_version_gets_300(stack):
    response = stack.request("/v1/images", tenant="t1", headers={
        "Accept": "application/vnd.openstack.images-v2.8"})
    assert response.status_int == 300


def test_v1_versions_is_an_ordinary_missing_path(stack):
    assert stack.request("/v1/versions", tenant="t1").status_int == 404


def test_request_id_is_generated(stack):
    response = stack.request("/v1/images", tenant="t1")
    assert response.headers["x-openstack-request-id"].startswith("req-")
    other = stack.request("/v1/images", tenant="t1")
    assert other.headers["x-openstack-request-id"] != response.headers["x-openstack-request-id"]


@pytest.mark.parametrize("supplied, echoed", [("abc", "req-abc"), ("req-abc", "req-abc")])
def test_request_id_is_reused(stack, supplied, echoed):
    response = stack.request("/v1/images", tenant="t1",
                             headers={"X-Openstack-Request-ID": supplied})
    assert response.headers["x-openstack-request-id"] == echoed


@pytest.mark.parametrize("supplied", ["x" * 61, "req-" + "x" * 61])
def test_overlong_request_id_is_refused_cleanly(stack, supplied):
    response = stack.request("/v1/images", tenant="t1",
                             headers={"X-Openstack-Request-ID": supplied})
    assert response.status_int == 400
    assert "X-Openstack-Request-ID is longer than 64" in response.text


@pytest.mark.parametrize("supplied", ["x" * 60, "req-" + "x" * 60])
def test_longest_request_id_reaches_the_registry(stack, supplied):
    image = create_image(stack, headers={"X-Openstack-Request-ID": supplied})
    response = stack.request("/v1/images/" + image["id"], "HEAD", tenant="t1",
                             headers={"X-Openstack-Request-ID": supplied})
    assert response.status_int == 200
    assert response.headers["x-openstack-request-id"] == "req-" + "x" * 60


def test_request_id_rides_once_on_a_streamed_download(stack):
    image = create_image(stack, body=b"x" * 300_000)
    response = stack.request("/v1/images/" + image["id"], tenant="t1",
                             headers={"X-Openstack-Request-ID": "dl"})
    assert response.status_int == 200 and response.body == b"x" * 300_000
    assert response.headers.getall("x-openstack-request-id") == ["req-dl"]
