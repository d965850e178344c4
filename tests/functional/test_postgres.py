"""The registry on PostgreSQL: several registry processes on one database,
and a database that goes away and comes back while glance keeps running.
"""

from __future__ import annotations

import concurrent.futures
import copy
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.functional import harness

pytestmark = [pytest.mark.timeout(300), pytest.mark.needs("postgres")]

ADMIN = harness.admin()
TENANT = harness.identity("t1")
IMAGE = {"x-image-meta-disk_format": "raw", "x-image-meta-container_format": "bare",
         "Content-Type": "application/octet-stream"}


def test_glance_manage_creates_migrates_and_purges_on_postgres(tmp_path):
    database = harness.PostgresDatabase(os.environ, uuid.uuid4().hex[:12])
    database.create()
    try:
        conf = tmp_path / "glance-manage.conf"
        conf.write_text("[database]\nconnection = %s\n" % database.url)

        def manage(*args: str) -> str:
            result = subprocess.run(
                [sys.executable, "-m", "glance_clone.cmd.manage", "--config-file", str(conf),
                 *args], capture_output=True, text=True, timeout=120, env=harness.server_env())
            assert result.returncode == 0, result.stderr
            return result.stdout.strip()

        assert manage("db_version") == "None"
        manage("db_sync")
        assert manage("db_version") == "44"
        manage("db_sync")                       # at head already: nothing to do
        manage("db_downgrade", "42")            # v2 columns out, is_public back
        assert manage("db_version") == "42"
        manage("db_sync")
        manage("db", "purge", "--age_in_days", "1", "--max_rows", "-1")
        manage("db_downgrade", "0")
        assert manage("db_version") == "None"
    finally:
        database.drop()


@pytest.fixture
def two_registries(tmp_path: Path) -> Iterator[tuple[harness.Deployment, harness.ServerProcess]]:
    """A deployment on PostgreSQL plus a second registry on its database."""
    dep = harness.Deployment(tmp_path, backend="postgres-file")
    dep.start()
    second = harness.ServerProcess("registry", tmp_path / "registry-2",
                                   copy.deepcopy(dep.registry.sections),
                                   harness.ETC / "glance-registry-paste.ini")
    try:
        second.start()
        yield dep, second
    finally:
        second.stop()
        dep.stop()


def registry_call(base: str, method: str, path: str, body=None, who=TENANT):
    return requests.request(method, base + path, json=body, headers=who, timeout=60)


def test_two_registries_on_one_database_stay_correct(two_registries):
    dep, second = two_registries
    bases = [dep.registry.url, second.url]
    pool = concurrent.futures.ThreadPoolExecutor(16)

    # Creates through both: every one lands, each id once.
    created = list(pool.map(
        lambda i: registry_call(bases[i % 2], "POST", "/images",
                                {"image": {"name": "c%d" % i, "status": "queued",
                                           "disk_format": "raw", "container_format": "bare"}}),
        range(60)))
    assert [r.status_code for r in created] == [200] * 60
    ids = [r.json()["image"]["id"] for r in created]
    assert len(set(ids)) == 60
    for base in bases:
        listed = registry_call(base, "GET", "/images/detail?limit=1000&status=queued").json()
        assert {i["id"] for i in listed["images"]} == set(ids)

    # The same explicit id created through both at once: exactly one wins.
    for _ in range(5):
        image_id = str(uuid.uuid4())
        answers = list(pool.map(
            lambda i, image_id=image_id: registry_call(
                bases[i % 2], "POST", "/images", {"image": {"id": image_id, "name": "dup"}}),
            range(8)))
        assert sorted(r.status_code for r in answers) == [200] + [409] * 7

    # Status compare-and-swap queued -> saving: one winner per image, the
    # others get the status conflict, through whichever registry.
    def swap(i: int, image_id: str) -> int:
        return registry_call(bases[i % 2], "PUT", "/images/" + image_id,
                             {"image": {"status": "saving"}, "from_state": "queued"}).status_code

    for image_id in ids[:20]:
        outcomes = list(pool.map(swap, range(6), [image_id] * 6))
        assert sorted(outcomes) == [200] + [409] * 5, outcomes
    for base in bases:
        saving = registry_call(base, "GET", "/images/detail?limit=1000&status=saving").json()
        assert {i["id"] for i in saving["images"]} == set(ids[:20])

    # One member added through both at once: one membership.
    for image_id in ids[40:50]:
        outcomes = list(pool.map(
            lambda i, image_id=image_id: registry_call(
                bases[i % 2], "PUT", "/images/%s/members/friend" % image_id).status_code,
            range(6)))
        assert outcomes == [204] * 6
        members = registry_call(bases[1], "GET", "/images/%s/members" % image_id).json()
        assert [m["member_id"] for m in members["members"]] == ["friend"]

    # Deletes racing through both: one succeeds, the rest find nothing;
    # the image is gone for both.
    for image_id in ids[20:40]:
        outcomes = list(pool.map(
            lambda i, image_id=image_id: registry_call(
                bases[i % 2], "DELETE", "/images/" + image_id).status_code, range(4)))
        assert sorted(outcomes) == [200, 404, 404, 404], outcomes
        for base in bases:
            assert registry_call(base, "GET", "/images/" + image_id).status_code == 404
    pool.shutdown()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[harness.PrivatePostgres]:
    server = harness.PrivatePostgres().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.mark.needs("postgres-server")
def test_database_down_gives_503_then_recovers_without_restart(tmp_path, private_postgres):
    url = private_postgres.env["PG_SQLALCHEMY_URL"]
    dep = harness.Deployment(tmp_path, registry_options={
        "database": {"connection": url, "max_pool_size": 2, "max_overflow": 2,
                     "pool_timeout": 10, "connection_recycle_time": 600}})
    dep.start()
    try:
        registry_pid, api_pid = dep.registry.process.pid, dep.api.process.pid
        image = requests.post(dep.url + "/v1/images", data=b"d" * 5000,
                              headers=dict(TENANT, **IMAGE), timeout=60).json()["image"]
        image_url = dep.url + "/v1/images/" + image["id"]
        # Fill the pool, so that dead pooled connections meet the restart.
        for _ in range(5):
            assert requests.head(image_url, headers=TENANT, timeout=30).status_code == 200

        private_postgres.stop()
        for response in (
                requests.head(image_url, headers=TENANT, timeout=30),
                requests.get(image_url, headers=TENANT, timeout=30),
                requests.get(dep.url + "/v1/images/detail", headers=TENANT, timeout=30),
                requests.post(dep.url + "/v1/images", headers=dict(TENANT, **IMAGE),
                              data=b"x" * 100, timeout=30)):
            assert response.status_code == 503, (response.status_code, response.text)
        from_registry = requests.get(dep.registry.url + "/images/detail", timeout=30,
                                     headers=dict(TENANT, Accept="text/plain"))
        assert from_registry.status_code == 503
        assert "registry database is unavailable" in from_registry.text
        detail = requests.get(dep.url + "/v1/images/detail", timeout=30,
                              headers=dict(TENANT, Accept="text/plain"))
        assert "registry database is unavailable" in detail.text
        assert "glance:" not in detail.text and str(private_postgres.port) not in detail.text

        private_postgres.start()
        # Every request after the database is back succeeds, at once.
        for _ in range(10):
            assert requests.head(image_url, headers=TENANT, timeout=30).status_code == 200
        assert requests.get(image_url, headers=TENANT, timeout=30).content == b"d" * 5000
        created = requests.post(dep.url + "/v1/images", data=b"e" * 100,
                                headers=dict(TENANT, **IMAGE), timeout=60)
        assert created.status_code == 201, created.text
        assert (dep.registry.process.pid, dep.api.process.pid) == (registry_pid, api_pid)
        assert dep.registry.process.poll() is None and dep.api.process.poll() is None
    finally:
        dep.stop()
