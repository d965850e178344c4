"""Per-project quotas from Keystone's unified limits (``use_keystone_limits``).

Keystone is replaced here by the limits each test sets (the real Keystone
is driven in tests/functional/test_keystone_limits.py); what is tested is
where each quota is checked, with which delta, and what the caller gets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from glance_clone.common import exception
from glance_clone.domain import unified_limits
from tests.unit.api.v1 import helpers as v1

from .conftest import V2
from .test_import import do_import, new_image, stage, staged_files
from .test_tasks import source  # noqa: F401 (the local HTTP server fixture)

MIB = 1024 ** 2
UNLIMITED = 1_000_000
KEYSTONE_LIMITS = {"use_keystone_limits": True, "oslo_limit.endpoint_id": "image-endpoint",
                   "oslo_limit.auth_type": "password"}


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, int]]:
    """The limits Keystone gives each project: ``limits[project][quota]``
    (quotas not set are unlimited here)."""
    table: dict[str, dict[str, int]] = {}
    asked: list[str] = []

    def from_keystone(self: Any, project_id: str) -> dict[str, int]:
        asked.append(project_id)
        given = table.get(project_id, {})
        return {name: given.get(name, UNLIMITED) for name in unified_limits.QUOTAS}
    monkeypatch.setattr(unified_limits.KeystoneLimits, "limits", from_keystone)
    return table


@pytest.fixture
def v2k(v2_with: Callable[..., V2]) -> V2:
    return v2_with(KEYSTONE_LIMITS)


def _over(res: Any, resource: str) -> None:
    assert res.status_int == 413, res.text
    assert "Resource %s is over limit" % resource in res.text


def test_image_count_total_refuses_the_next_create_on_both_apis(v2k: V2, limits) -> None:
    limits["t1"] = {"image_count_total": 2}
    new_image(v2k)
    new_image(v2k)
    _over(v2k.call("POST", "/images", {"name": "third"}), "image_count_total")
    _over(v1.create(v2k.stack, {"x-image-meta-name": "third"}), "image_count_total")
    # Nothing was written, and other projects have their own limits.
    assert len(v2k.call("GET", "/images").json["images"]) == 2
    assert v2k.create({"tenant": "t2"}, name="other")["status"] == "queued"


def test_image_size_total_lets_the_crossing_upload_finish_then_refuses(
        v2k: V2, limits) -> None:
    limits["t1"] = {"image_size_total": 1}
    first, second = new_image(v2k), new_image(v2k)
    # Usage 0 MiB of 1: allowed, although it ends at 2 MiB (a stream's size
    # is known only at its end; Glance's quotas are soft the same way).
    assert v2k.upload(first["id"], b"a" * (2 * MIB)).status_int == 204
    _over(v2k.upload(second["id"], b"b"), "image_size_total")
    assert v2k.call("GET", "/images/" + second["id"]).json["status"] == "queued"
    assert len(v2k.stack.stored_files()) == 1


def test_image_count_uploading_counts_the_staged_image(v2k: V2, limits) -> None:
    limits["t1"] = {"image_count_uploading": 1}
    staged, other = new_image(v2k), new_image(v2k)
    assert stage(v2k, staged["id"]).status_int == 204          # uploading: 1 of 1
    _over(v2k.upload(other["id"], b"data"), "image_count_uploading")
    _over(stage(v2k, other["id"]), "image_count_uploading")
    assert v2k.call("GET", "/images/" + other["id"]).json["status"] == "queued"
    # glance-direct imports the image already counted: not refused.
    assert do_import(v2k, staged["id"]).status_int == 202


def test_image_stage_total_counts_the_size_the_stage_will_have(v2k: V2, limits) -> None:
    limits["t1"] = {"image_stage_total": 1}
    first, second = new_image(v2k), new_image(v2k)
    # The declared size (else the body's length) is the delta, in MiB
    # rounded up: 2 MiB over a limit of 1 is refused before any byte is staged.
    _over(stage(v2k, first["id"], b"s" * (2 * MIB),
                headers={"x-openstack-image-size": str(2 * MIB)}), "image_stage_total")
    _over(stage(v2k, first["id"], b"s" * (MIB + 1)), "image_stage_total")
    assert v2k.call("GET", "/images/" + first["id"]).json["status"] == "queued"
    assert staged_files(v2k) == []
    assert stage(v2k, first["id"], b"s" * MIB,
                 headers={"x-openstack-image-size": str(MIB)}).status_int == 204
    # 1 MiB staged of 1: one more byte is over.
    _over(stage(v2k, second["id"], b"x"), "image_stage_total")
    assert v2k.call("GET", "/images/" + second["id"]).json["status"] == "queued"
    assert len(staged_files(v2k)) == 1


def test_web_download_counts_as_one_more_upload(v2k: V2, limits,
                                                source: str) -> None:  # noqa: F811
    limits["t1"] = {"image_count_uploading": 0}
    image = new_image(v2k)
    _over(do_import(v2k, image["id"], "web-download", source + "/image"),
          "image_count_uploading")
    assert v2k.call("GET", "/images/" + image["id"]).json["status"] == "queued"


def test_usage_shows_keystones_limits_and_ignores_user_storage_quota(
        v2_with: Callable[..., V2], limits) -> None:
    v2 = v2_with(dict(KEYSTONE_LIMITS, user_storage_quota="1MB"))
    limits["t1"] = {"image_size_total": 3, "image_stage_total": 1,
                    "image_count_total": 5, "image_count_uploading": 2}
    image = new_image(v2)
    # user_storage_quota (1 MB) is not what limits this upload.
    assert v2.upload(image["id"], b"u" * (2 * MIB)).status_int == 204
    assert v2.call("GET", "/info/usage").json == {"usage": {
        "image_size_total": {"usage": 2, "limit": 3},
        "image_stage_total": {"usage": 0, "limit": 1},
        "image_count_total": {"usage": 1, "limit": 5},
        "image_count_uploading": {"usage": 0, "limit": 2}}}


def test_keystone_unreachable_is_503_and_nothing_is_written(v2k: V2, monkeypatch) -> None:
    def unreachable(self: Any, project_id: str) -> dict[str, int]:
        raise exception.IdentityUnavailable(
            "The identity service (Keystone) could not be reached to check "
            "the image quotas; try again later.")
    monkeypatch.setattr(unified_limits.KeystoneLimits, "limits", unreachable)
    req_images = v2k.stack.request("/v2/images", "POST", b'{"name": "x"}',
                                   {"Content-Type": "application/json"}, tenant="t1")
    assert req_images.status_int == 503
    assert "check the image quotas" in req_images.text
    assert v2k.call("GET", "/images").json["images"] == []


def test_the_quotas_are_off_by_default(v2: V2, monkeypatch) -> None:
    def never(self: Any, project_id: str) -> dict[str, int]:
        raise AssertionError("Keystone asked without use_keystone_limits")
    monkeypatch.setattr(unified_limits.KeystoneLimits, "limits", never)
    image = new_image(v2)
    assert v2.upload(image["id"], b"data").status_int == 204


@pytest.mark.parametrize("settings, fix", [
    ({"use_keystone_limits": True, "oslo_limit.auth_type": "password"},
     "set endpoint_id"),
    ({"use_keystone_limits": True, "oslo_limit.endpoint_id": "e"},
     "set auth_type = password"),
])
def test_incomplete_settings_stop_the_start_with_the_fix(
        v2_with: Callable[..., V2], settings: dict, fix: str) -> None:
    with pytest.raises(exception.ConfigError) as raised:
        v2_with(settings)
    assert fix in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_unreachable_keystone_is_identity_unavailable(tmp_path) -> None:
    from tests.support.stack import make_conf
    conf = make_conf(tmp_path, dict(KEYSTONE_LIMITS, **{
        "oslo_limit.auth_type": "password"}))
    from keystoneauth1 import loading
    conf.register_opts(loading.get_auth_plugin_conf_options("password"), group="oslo_limit")
    for name, value in (("auth_url", "http://127.0.0.1:9/v3"), ("username", "u"),
                        ("password", "p"), ("user_domain_name", "Default")):
        conf.set_override(name, value, group="oslo_limit")
    with pytest.raises(exception.IdentityUnavailable) as raised:
        unified_limits.KeystoneLimits(conf).limits("project")
    assert "check the image quotas" in str(raised.value)


def test_a_location_import_counts_as_one_more_upload(v2k: V2, limits,
                                                     source: str) -> None:  # noqa: F811
    limits["t1"] = {"image_count_uploading": 0}
    image = new_image(v2k)
    res = v2k.call("POST", "/images/%s/locations" % image["id"],
                   {"url": source + "/image"}, roles="reader,member,service")
    _over(res, "image_count_uploading")
    shown = v2k.call("GET", "/images/" + image["id"]).json
    assert shown["status"] == "queued" and "os_glance_import_task" not in shown
    assert v2k.call("GET", "/images/%s/tasks" % image["id"]).json["tasks"] == []
