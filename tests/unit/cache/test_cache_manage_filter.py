"""The cachemanage filter's admin routes (api-v1.md section 13)."""

from __future__ import annotations

import json
import os

import pytest

from tests.unit.cache.conftest import CacheStack, body_of

pytestmark = pytest.mark.timeout(60)

DATA = os.urandom(70000)


def admin_call(cstack: CacheStack, path: str, method: str = "GET"):
    return cstack.request(path, method, tenant="admin-t", roles="admin")


def test_list_queue_and_delete(cstack: CacheStack) -> None:
    first, second = cstack.upload(DATA), cstack.upload(DATA[:5000])
    body_of(cstack.get(first))
    body_of(cstack.get(first))
    body_of(cstack.get(second))
    listed = admin_call(cstack, "/v1/cached_images")
    assert listed.status_int == 200
    assert listed.content_type == "application/json"
    images = json.loads(listed.body)["cached_images"]
    assert [i["image_id"] for i in images] == sorted([first, second])
    by_id = {i["image_id"]: i for i in images}
    assert by_id[first]["hits"] == 1 and by_id[first]["size"] == len(DATA)
    assert by_id[second]["hits"] == 0
    assert isinstance(by_id[first]["last_accessed"], float)
    assert set(by_id[first]) == {"image_id", "hits", "last_accessed", "last_modified", "size"}

    answer = admin_call(cstack, "/v1/cached_images/" + first, "DELETE")
    assert (answer.status_int, answer.body) == (200, b"null")
    assert [i["image_id"] for i in json.loads(
        admin_call(cstack, "/v1/cached_images").body)["cached_images"]] == [second]
    assert json.loads(admin_call(cstack, "/v1/cached_images", "DELETE").body) == {"num_deleted": 1}
    assert json.loads(admin_call(cstack, "/v1/cached_images").body) == {"cached_images": []}

    assert admin_call(cstack, "/v1/queued_images/" + first, "PUT").body == b"null"
    assert admin_call(cstack, "/v1/queued_images/not-an-image", "PUT").status_int == 200
    queued = json.loads(admin_call(cstack, "/v1/queued_images").body)["queued_images"]
    assert sorted(queued) == sorted([first, "not-an-image"])
    assert admin_call(cstack, "/v1/queued_images/not-an-image", "DELETE").body == b"null"
    assert json.loads(admin_call(cstack, "/v1/queued_images", "DELETE").body) == {"num_deleted": 1}
    assert json.loads(admin_call(cstack, "/v1/queued_images").body) == {"queued_images": []}


def test_admin_only(cstack: CacheStack) -> None:
    for path, method in (("/v1/cached_images", "GET"), ("/v1/cached_images", "DELETE"),
                         ("/v1/cached_images/x", "DELETE"), ("/v1/queued_images", "GET"),
                         ("/v1/queued_images/x", "PUT"), ("/v1/queued_images/x", "DELETE"),
                         ("/v1/queued_images", "DELETE")):
        answer = cstack.request(path, method, tenant="t1", roles="reader,member")
        assert answer.status_int == 403, (path, method)
    assert cstack.cache.list_queued() == []


def test_other_methods_fall_through_to_the_api(cstack: CacheStack) -> None:
    assert admin_call(cstack, "/v1/cached_images", "POST").status_int == 404
    assert admin_call(cstack, "/v1/queued_images/x", "GET").status_int == 404


def test_bad_id_is_refused(cstack: CacheStack) -> None:
    assert admin_call(cstack, "/v1/queued_images/..", "PUT").status_int == 400
