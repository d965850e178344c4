"""Per-project image quotas kept in a real Keystone (``use_keystone_limits``).

The test registers an image service and its endpoint in Keystone, a
default limit for each quota and a larger one for one project, and gives
glance-api a user with the reader role on the system scope, as Glance's
deployments do for oslo.limit. glance-api reads the limits from Keystone
for each check.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.functional import harness, keystone_harness

pytestmark = [pytest.mark.needs("keystone"), pytest.mark.timeout(180)]


class SystemAdmin:
    """Keystone's bootstrap admin on the system scope: only it may write
    registered and project limits."""

    def __init__(self, keystone: keystone_harness.Keystone) -> None:
        from keystoneauth1 import session
        from keystoneauth1.identity import v3
        self.url = keystone.url
        self.session = session.Session(auth=v3.Password(
            auth_url=keystone.url, username=keystone.admin_name,
            password=keystone.admin_password, user_domain_id="default",
            system_scope="all"))
        self.created: list[str] = []

    def call(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self.session.request(self.url + path, method, **kwargs)
        return response.json() if response.content else {}

    def create(self, path: str, key: str, body: dict) -> dict:
        made: dict = self.call("POST", path, json={key: body})[key]
        self.created.append("%s/%s" % (path, made["id"]))
        return made

    def create_limits(self, path: str, key: str, items: list[dict]) -> None:
        for made in self.call("POST", path, json={key: items})[key]:
            self.created.append("%s/%s" % (path, made["id"]))

    def cleanup(self) -> None:
        while self.created:
            self.call("DELETE", self.created.pop())


class Limited:
    """The deployment, and projects with the limits a test chooses."""

    def __init__(self, glance: harness.Deployment, keystone: keystone_harness.Keystone,
                 admin: SystemAdmin, scope: dict[str, str], service_name: str,
                 limit_options: dict[str, Any]) -> None:
        self.glance, self.keystone, self.admin, self.scope = glance, keystone, admin, scope
        self.service_name = service_name
        self.limit_options = limit_options

    def token(self, **limits: int) -> str:
        """A token of a new user whose project has ``limits`` of its own
        (the registered defaults, 1 each, for the rest)."""
        user = self.keystone.user()
        if limits:
            self.admin.create_limits("/limits", "limits", [
                dict(self.scope, project_id=user.project_id, resource_name=name,
                     resource_limit=limit) for name, limit in limits.items()])
        return self.keystone.token(user)


@pytest.fixture(scope="module")
def limited(tmp_path_factory, keystone) -> Iterator[Limited]:
    admin = SystemAdmin(keystone)
    try:
        service = admin.create("/services", "service", {
            "type": "image", "name": "glance-test-" + uuid.uuid4().hex[:8]})
        endpoint = admin.create("/endpoints", "endpoint", {
            "service_id": service["id"], "interface": "public",
            "region_id": keystone.region, "url": "http://127.0.0.1:9292"})
        scope = {"service_id": service["id"], "region_id": keystone.region}
        admin.create_limits("/registered_limits", "registered_limits", [
            dict(scope, resource_name=name, default_limit=1) for name in (
                "image_size_total", "image_stage_total", "image_count_total",
                "image_count_uploading")])
        reader = keystone.user(roles=())
        reader_role = admin.call("GET", "/roles", params={"name": "reader"})["roles"][0]
        admin.call("PUT", "/system/users/%s/roles/%s" % (reader.id, reader_role["id"]))
        login = {"auth_type": "password", "auth_url": keystone.url,
                 "username": reader.name, "password": reader.password,
                 "user_domain_name": "Default", "system_scope": "all"}
        dep = keystone_harness.deployment(
            tmp_path_factory.mktemp("limits"), keystone, api_options={
                "DEFAULT": {"use_keystone_limits": True},
                "oslo_limit": dict(login, endpoint_id=endpoint["id"])})
        dep.start()
        try:
            yield Limited(dep, keystone, admin, scope, service["name"], login)
        finally:
            dep.stop()
    finally:
        admin.cleanup()


def _create(limited: Limited, token: str) -> requests.Response:
    return requests.post(limited.glance.url + "/v2/images", json={
        "name": "q", "disk_format": "raw", "container_format": "bare"},
        headers={"X-Auth-Token": token}, timeout=30)


def _upload(limited: Limited, token: str, image_id: str, data: bytes) -> requests.Response:
    return requests.put(limited.glance.url + "/v2/images/%s/file" % image_id, data=data,
                        headers={"X-Auth-Token": token,
                                 "Content-Type": "application/octet-stream"}, timeout=60)


def test_a_project_limit_overrides_the_registered_one(limited):
    big, small = limited.token(image_count_total=3), limited.token()
    for _ in range(3):
        assert _create(limited, big).status_code == 201
    refused = _create(limited, big)
    assert refused.status_code == 413
    assert "Resource image_count_total is over limit of 3" in refused.text
    assert _create(limited, small).status_code == 201
    assert _create(limited, small).status_code == 413
    listed = requests.get(limited.glance.url + "/v2/images",
                          headers={"X-Auth-Token": small}, timeout=30).json()["images"]
    assert len(listed) == 1


def test_usage_shows_the_limits_kept_in_keystone(limited):
    token = limited.token(image_size_total=20, image_count_uploading=4)
    usage = requests.get(limited.glance.url + "/v2/info/usage",
                         headers={"X-Auth-Token": token}, timeout=30)
    assert usage.status_code == 200, usage.text
    assert usage.json()["usage"] == {
        "image_size_total": {"usage": 0, "limit": 20},
        "image_stage_total": {"usage": 0, "limit": 1},
        "image_count_total": {"usage": 0, "limit": 1},
        "image_count_uploading": {"usage": 0, "limit": 4}}


def test_the_upload_that_crosses_the_size_limit_is_the_last(limited):
    token = limited.token(image_count_total=5)
    first, second = (_create(limited, token).json()["id"] for _ in range(2))
    # 0 MiB in use of 1: the upload runs, and ends at 2 MiB.
    assert _upload(limited, token, first, b"x" * (2 * 1024 ** 2)).status_code == 204
    refused = _upload(limited, token, second, b"y")
    assert refused.status_code == 413
    assert "Resource image_size_total is over limit of 1" in refused.text
    shown = requests.get(limited.glance.url + "/v2/images/" + second,
                         headers={"X-Auth-Token": token}, timeout=30).json()
    assert shown["status"] == "queued"


def test_the_endpoint_found_by_service_name_type_and_region(limited, tmp_path):
    dep = keystone_harness.deployment(tmp_path, limited.keystone, api_options={
        "DEFAULT": {"use_keystone_limits": True},
        "oslo_limit": dict(limited.limit_options, endpoint_service_type="image",
                           endpoint_service_name=limited.service_name,
                           endpoint_region_name=limited.keystone.region,
                           endpoint_interface="publicURL")})
    dep.start()
    try:
        token = limited.token(image_count_total=2)
        usage = requests.get(dep.url + "/v2/info/usage", headers={"X-Auth-Token": token},
                             timeout=30).json()["usage"]
        assert usage["image_count_total"] == {"usage": 0, "limit": 2}
    finally:
        dep.stop()
