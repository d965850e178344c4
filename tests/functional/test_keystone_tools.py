"""glance-scrubber, glance-cache-prefetcher and glance-cache-manage on a
deployment where both servers check Keystone tokens.

glance-api (keystone+cachemanagement, delayed_delete) forwards each
caller's token to glance-registry, which runs the keystone flavor too. The
tools get their own tokens from the Keystone of ``KEYSTONE_URL``: the
scrubber and the prefetcher with the admin credentials of their config
file (``admin_user``, ``admin_password``, ``admin_tenant_name``,
``auth_url`` and the v3 domain options), glance-cache-manage with its
``--os-*`` options. Their operator is an admin who lives in a domain of
its own, so only the domain options let it log in.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional import harness, keystone_harness
from tests.functional.keystone_harness import Keystone

pytestmark = [pytest.mark.needs("keystone"), pytest.mark.timeout(240)]
RUN_TIMEOUT = 60


@pytest.fixture(scope="module")
def glance(tmp_path_factory, keystone) -> Iterator[harness.Deployment]:
    base = tmp_path_factory.mktemp("keystone-tools")
    (base / "cache").mkdir()
    dep = keystone_harness.deployment(
        base, keystone, flavor="keystone+cachemanagement", registry_flavor="keystone",
        api_options={"DEFAULT": {"delayed_delete": True, "send_identity_headers": False,
                                 "image_cache_dir": str(base / "cache")}})
    try:
        yield dep.start()
    finally:
        dep.stop()


@pytest.fixture(scope="module")
def operator(keystone) -> keystone_harness.User:
    """An admin (role admin on its project), user and project in a new domain."""
    return keystone.user(roles=("admin",), domain=keystone.domain())


def admin_credentials(keystone: Keystone, operator: keystone_harness.User,
                      **changes: str) -> dict[str, str]:
    """The options of a tool's config file that name its Keystone identity."""
    credentials = {"auth_strategy": "keystone", "auth_url": keystone.url,
                   "admin_user": operator.name, "admin_password": operator.password,
                   "admin_tenant_name": operator.project_name,
                   "admin_user_domain_name": operator.domain_name,
                   "admin_project_domain_name": operator.domain_name}
    credentials.update(changes)
    return credentials


def tool_conf(dep: harness.Deployment, name: str, **options: Any) -> Path:
    workdir = dep.base / name
    workdir.mkdir(exist_ok=True)
    default = {"registry_host": "127.0.0.1", "registry_port": dep.registry.port,
               "image_cache_dir": dep.api.sections["DEFAULT"]["image_cache_dir"],
               "log_file": str(workdir / "tool.log")}
    default.update(options)
    path = workdir / ("glance-%s.conf" % name)
    path.write_text(harness.render_conf({
        "DEFAULT": default,
        "glance_store": {"filesystem_store_datadir": str(dep.datadir)}}))
    return path


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glance_clone.cmd." + module, *args],
                          env=harness.server_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def upload(dep: harness.Deployment, token: str, data: bytes) -> str:
    created = requests.post(dep.url + "/v1/images", data=data, timeout=30, headers={
        "X-Auth-Token": token, "x-image-meta-name": "tool", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare", "Content-Type": "application/octet-stream"})
    assert created.status_code == 201, created.text
    return str(created.json()["image"]["id"])


def registry_status(dep: harness.Deployment, keystone: Keystone, image_id: str) -> str:
    found = requests.get(dep.registry.url + "/images/" + image_id, timeout=30,
                         headers={"X-Auth-Token": keystone.admin_token()})
    assert found.status_code == 200, found.text
    return str(found.json()["image"]["status"])


def test_the_scrubber_logs_in_with_its_admin_credentials(glance, keystone, operator):
    token = keystone.token(keystone.user())
    image_id = upload(glance, token, b"scrub" * 1000)
    assert requests.delete(glance.url + "/v1/images/" + image_id, timeout=30,
                           headers={"X-Auth-Token": token}).status_code == 200
    assert registry_status(glance, keystone, image_id) == "pending_delete"

    # The registry refuses a scrubber without a token; Keystone refuses a
    # wrong password, or the right one looked up in the default domain.
    for name, options in (
            ("scrubber-anonymous", {}),
            ("scrubber-bad-password", admin_credentials(keystone, operator,
                                                        admin_password="wrong")),
            ("scrubber-default-domain", {
                key: value for key, value in admin_credentials(keystone, operator).items()
                if not key.endswith("_domain_name")})):
        result = run("scrubber", "--config-file", str(tool_conf(glance, name, **options)))
        assert result.returncode == 1, result.stderr
        assert "refused the scrubber's admin identity" in result.stderr
    assert image_id in glance.stored_files()

    conf = tool_conf(glance, "scrubber", **admin_credentials(keystone, operator))
    result = run("scrubber", "--config-file", str(conf))
    assert result.returncode == 0, result.stderr + (conf.parent / "tool.log").read_text()
    assert registry_status(glance, keystone, image_id) == "deleted"
    assert image_id not in glance.stored_files()


def cache_manage(dep: harness.Deployment, keystone: Keystone, user: keystone_harness.User,
                 *args: str) -> subprocess.CompletedProcess[str]:
    """glance-cache-manage logged in at Keystone as ``user``."""
    return run("cache_manage", "-H", "127.0.0.1", "-p", str(dep.api.port), "-f",
               "--os-auth-url", keystone.url, "--os-username", user.name,
               "--os-password", user.password, "--os-tenant-name", user.project_name,
               "--os-user-domain-name", user.domain_name,
               "--os-project-domain-name", user.domain_name, *args)


def test_cache_manage_and_the_prefetcher_log_in_at_keystone(glance, keystone, operator):
    owner = keystone.user()
    data = b"prefetch" * 2000
    image_id = upload(glance, keystone.token(owner), data)

    # Managing the cache is for admins: a member's token gets 403, no token 401.
    result = cache_manage(glance, keystone, owner, "queue-image", image_id)
    assert (result.returncode, result.stdout) == (1, "Not authorized to make this request.\n")
    result = run("cache_manage", "-H", "127.0.0.1", "-p", str(glance.api.port), "-f",
                 "queue-image", image_id)
    assert result.returncode == 1 and "401" in result.stdout, result.stdout

    result = cache_manage(glance, keystone, operator, "queue-image", image_id)
    assert result.returncode == 0, result.stdout + result.stderr
    result = cache_manage(glance, keystone, operator, "list-queued")
    assert result.stdout.splitlines()[0] == "Found 1 queued images...", result.stdout

    conf = tool_conf(glance, "prefetcher", **admin_credentials(keystone, operator))
    result = run("cache_prefetcher", "--config-file", str(conf))
    log = (conf.parent / "tool.log").read_text()
    assert result.returncode == 0, result.stderr + log
    assert "Prefetched 1 images, skipped 0, failed 0" in log
    result = cache_manage(glance, keystone, operator, "list-cached")
    assert result.stdout.splitlines()[0] == "Found 1 cached images...", result.stdout
    assert image_id in result.stdout
    result = cache_manage(glance, keystone, operator, "delete-cached-image", image_id)
    assert result.returncode == 0
    assert cache_manage(glance, keystone, operator, "list-cached").stdout == \
        "No cached images.\n"
