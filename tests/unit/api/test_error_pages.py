"""Error bodies: v2 answers as today's Glance (HTML, JSON or plain text
from Accept), v1 as Glance 11 (HTML for html or */*, else plain text)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.stack import Stack, make_stack

MISSING = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def stack(tmp_path: Any) -> Stack:
    return make_stack(tmp_path)


def test_v2_json_error_body(stack: Stack) -> None:
    res = stack.request("/v2/images/" + MISSING, headers={"Accept": "application/json"})
    assert res.status_int == 404
    assert res.content_type == "application/json"
    assert res.json == {"code": "404 Not Found", "title": "Not Found",
                        "message": "No image found with ID %s<br /><br />\n\n\n" % MISSING}


@pytest.mark.parametrize("accept, media", [
    ("", "text/plain"), ("text/plain", "text/plain"), ("*/*", "text/html"),
    ("text/*", "text/html"), ("application/json;q=0.5, text/html", "text/html")])
def test_v2_error_media_types(stack: Stack, accept: str, media: str) -> None:
    res = stack.request("/v2/images/" + MISSING, headers={"Accept": accept})
    assert (res.status_int, res.content_type) == (404, media)
    assert "No image found with ID " + MISSING in res.text


def test_v2_router_and_body_errors_are_json(stack: Stack) -> None:
    json_accept = {"Accept": "application/json"}
    unrouted = stack.request("/v2/nowhere", headers=json_accept)
    assert unrouted.status_int == 404 and unrouted.json["title"] == "Not Found"
    malformed = stack.request("/v2/images", method="POST", body=b"{nope",
                              headers=dict(json_accept, **{"Content-Type": "application/json"}))
    assert malformed.status_int == 400
    assert malformed.json["code"] == "400 Bad Request"
    assert malformed.json["message"].startswith("Malformed JSON in request body")


@pytest.mark.parametrize("path", ["/v1/images/" + MISSING, "/v1/nowhere"])
@pytest.mark.parametrize("accept, media", [
    ("application/json", "text/plain"), ("", "text/plain"), ("text/*", "text/plain"),
    ("*/*", "text/html"), ("application/xhtml+xml", "text/html")])
def test_v1_keeps_glance_11_error_pages(stack: Stack, path: str, accept: str,
                                        media: str) -> None:
    res = stack.request(path, headers={"Accept": accept})
    assert (res.status_int, res.content_type) == (404, media)
    if media == "text/plain":
        assert res.text.startswith("404 Not Found\n\n")


def test_v1_middleware_error_is_not_json(stack: Stack) -> None:
    """A refusal made before the router (the context filter's) keeps v1's form."""
    res = stack.request("/v1/images", tenant="t1", roles="reader,member",
                        headers={"Accept": "application/json",
                                 "X-Identity-Status": "Invalid"})
    assert res.status_int == 401
    assert res.content_type == "text/plain"
    v2 = stack.request("/v2/images", tenant="t1", roles="reader,member",
                       headers={"Accept": "application/json",
                                "X-Identity-Status": "Invalid"})
    assert v2.status_int == 401 and v2.json["code"] == "401 Unauthorized"


def test_refusals_before_version_negotiation_keep_each_apis_form(stack: Stack) -> None:
    """The request guard refuses an undecodable URL before the version is
    chosen: a v1 path still gets v1's page, a v2 path v2's."""
    json_accept = {"Accept": "application/json"}
    v1 = stack.request("/v1/images?name=%FF", tenant="t1", headers=json_accept)
    assert (v1.status_int, v1.content_type) == (400, "text/plain")
    v2 = stack.request("/v2/images?name=%FF", tenant="t1", headers=json_accept)
    assert v2.status_int == 400 and v2.json["code"] == "400 Bad Request"
