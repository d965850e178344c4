"""POST /v2/images/{id}/import: when a request is wrong in several ways,
the answer is the first in this order: the image's status and formats
(409), the glance-download names (400), the caller's right (403), the
import lock (409), the stores (400/409), then the method's own checks
(a web-download uri, 400)."""

from __future__ import annotations

import pathlib

from glance_clone.common.context import admin_context
from tests.unit.api.v1.helpers import policy_file

from .conftest import ADMIN, V2
from .test_glance_download import download, regions  # noqa: F401 (fixture)
from .test_import import do_import, new_image
from .test_import_reliability import _held_import
from .test_named_stores import copy, named_stores, uploaded, wait_copied


def public_image(v2: V2, **extra) -> dict:
    return v2.create(ADMIN, name="p", disk_format="raw", container_format="bare",
                     visibility="public", **extra)


def test_a_wrong_status_is_a_409_before_a_non_owner_is_refused(v2: V2) -> None:
    image = public_image(v2)
    # Not staged: the status is wrong whoever asks.
    res = do_import(v2, image["id"], tenant="t2")
    assert res.status_int == 409 and "staged" in res.text, res.text
    assert v2.upload(image["id"], b"data", **ADMIN).status_int == 204
    res = do_import(v2, image["id"], "web-download", "http://example.com/i",
                    tenant="t2")
    assert res.status_int == 409 and "only copy-image" in res.text, res.text
    # The right status: the non-owner is refused.
    queued = public_image(v2)
    res = do_import(v2, queued["id"], "web-download", "http://example.com/i",
                    tenant="t2")
    assert res.status_int == 403, res.text


def test_glance_download_names_are_checked_before_the_caller(
        regions: tuple[V2, V2]) -> None:  # noqa: F811
    here, _ = regions
    image = public_image(here)
    res = download(here, image["id"], remote_id="not-a-uuid", tenant="t2")
    assert res.status_int == 400 and "glance_image_id" in res.text, res.text
    res = download(here, image["id"], region="west", remote_id="not-a-uuid",
                   tenant="t2")
    assert res.status_int == 400 and "Unknown region" in res.text, res.text


def test_the_lock_is_a_409_before_a_bad_uri(v2: V2) -> None:
    image, held = _held_import(v2)
    # The status put back by hand while the import's task lives on.
    v2.stack.v2.registry.update_image(admin_context(), image["id"],
                                      {"status": "queued"}, from_state="importing")
    res = do_import(v2, image["id"], "web-download", "file:///etc/passwd")
    assert res.status_int == 409 and held[0]["id"] in res.text, res.text
    other = new_image(v2)
    res = do_import(v2, other["id"], "web-download", "file:///etc/passwd")
    assert res.status_int == 400, res.text


def test_copy_image_status_before_policy_and_lock_before_stores(
        v2_with, tmp_path: pathlib.Path) -> None:
    v2 = named_stores(v2_with, tmp_path)
    queued = v2.create(name="q", disk_format="raw", container_format="bare")
    res = v2.call("POST", "/images/%s/import" % queued["id"],
                  {"method": {"name": "copy-image"}, "stores": ["cheap"]})
    assert res.status_int == 409 and "active" in res.text, res.text
    image = uploaded(v2)
    started: list = []
    v2.stack.v2.importer.copies.spawn = lambda run, context, task: started.append(task)
    assert copy(v2, image["id"], stores=["cheap"]).status_int == 202
    # The copy holds the lock: a store holding the image already (400
    # otherwise) and an unknown one (409 otherwise) are not looked at.
    for stores in (["fast"], ["tape"]):
        res = copy(v2, image["id"], stores=stores)
        assert res.status_int == 409 and started[0]["id"] in res.text, res.text
    res = copy(v2, image["id"], all_stores=True)
    assert res.status_int == 409 and started[0]["id"] in res.text, res.text


def test_copy_image_by_a_non_owner_the_policy_lets_copy(
        v2_with, tmp_path: pathlib.Path) -> None:
    rules = policy_file(tmp_path, {"copy_image": "role:member"})
    v2 = named_stores(v2_with, tmp_path, **{"oslo_policy.policy_file": rules})
    public = v2.create(ADMIN, name="p", disk_format="raw", container_format="bare",
                       visibility="public")
    assert v2.upload(public["id"], b"data", **ADMIN).status_int == 204
    private = uploaded(v2)
    body = {"method": {"name": "copy-image"}, "stores": ["cheap"]}
    # Another project's private image is not there for t2.
    res = v2.call("POST", "/images/%s/import" % private["id"], body, tenant="t2")
    assert res.status_int == 404, res.text
    # A readable one is copied, the image's locations written for t2.
    res = v2.call("POST", "/images/%s/import" % public["id"], body, tenant="t2")
    assert res.status_int == 202, res.text
    shown = wait_copied(v2, public["id"])
    assert shown["stores"] == "fast,cheap" and shown["status"] == "active"
    assert shown["owner"] == "admin-t"
