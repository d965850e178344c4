"""glance-registry as a real process: workers, reload, stop, glance-manage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from tests.functional import harness

pytestmark = pytest.mark.timeout(180)


def registry(tmp_path, **default_options):
    sections = {
        "DEFAULT": dict({"workers": 0}, **default_options),
        "database": {"connection": "sqlite:///%s" % (tmp_path / "glance.sqlite")},
        "paste_deploy": {"flavor": "trusted-auth"},
    }
    return harness.ServerProcess("registry", tmp_path / "registry", sections,
                                 harness.ETC / "glance-registry-paste.ini")


def manage(server: harness.ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glance_clone.cmd.manage",
                           "--config-file", str(server.conf_path), *args],
                          capture_output=True, text=True, timeout=120,
                          env=harness.server_env())


def started(server: harness.ServerProcess) -> harness.ServerProcess:
    server.port = harness.free_port()
    server.write_config()
    result = manage(server, "db_sync")
    assert result.returncode == 0, result.stderr
    server.start(server.port)
    return server


def create(server, tenant="t1", **image):
    body = {"image": dict({"name": "img", "status": "queued", "disk_format": "raw",
                           "container_format": "bare"}, **image)}
    response = requests.post(server.url + "/images", json=body,
                             headers=harness.identity(tenant))
    assert response.status_code == 200, response.text
    return response.json()["image"]


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_glance_manage_creates_and_reports_the_schema(tmp_path):
    server = registry(tmp_path)
    server.port = harness.free_port()
    server.write_config()
    assert manage(server, "db_version").stdout.strip() in ("", "None")
    assert manage(server, "db_sync").returncode == 0
    assert manage(server, "db_version").stdout.strip() == "44"
    assert manage(server, "db", "version").stdout.strip() == "44"
    assert manage(server, "db_sync").returncode == 0  # idempotent


def test_registry_serves_every_caller_its_own_view(tmp_path):
    server = started(registry(tmp_path))
    try:
        mine = create(server, "t1")
        create(server, "t2")
        public = create(server, "t2", is_public=True)
        listed = requests.get(server.url + "/images", headers=harness.identity("t1")).json()
        assert {i["id"] for i in listed["images"]} == {mine["id"], public["id"]}
        assert requests.get(server.url + "/images/%s" % mine["id"],
                            headers=harness.identity("t2")).status_code == 404
        unconfirmed = requests.get(server.url + "/images")
        assert unconfirmed.status_code == 401
        assert requests.get(server.url + "/images?sort_key=bogus",
                            headers=harness.identity("t1")).status_code == 400
    finally:
        server.stop()


def test_two_workers_share_the_socket_and_stop_on_sigterm(tmp_path):
    server = started(registry(tmp_path, workers=2))
    try:
        parent = server.process.pid
        workers = harness.wait_until(lambda: len(children_of(parent)) == 2 and children_of(parent),
                                     30, message="two workers")
        for _ in range(20):
            create(server)
        listed = requests.get(server.url + "/images/detail?limit=100",
                              headers=harness.identity("t1")).json()["images"]
        assert len(listed) == 20
        # A worker that dies is replaced.
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        harness.wait_until(lambda: victim not in children_of(parent)
                           and len(children_of(parent)) == 2, 30, message="replacement worker")
        assert requests.get(server.url + "/healthcheck").text == "OK"
        remaining = children_of(parent)
        server.signal(signal.SIGTERM)
        assert server.process.wait(20) == 0
        harness.wait_until(lambda: not any(alive(p) for p in remaining),
                           20, message="workers to exit")
    finally:
        server.stop()


def test_sighup_reloads_the_configuration(tmp_path):
    server = started(registry(tmp_path, workers=1, limit_param_default=25))
    try:
        for _ in range(5):
            create(server)

        def page_size():
            return len(requests.get(server.url + "/images",
                                    headers=harness.identity("t1")).json()["images"])

        assert page_size() == 5
        server.sections["DEFAULT"]["limit_param_default"] = 2
        server.write_config()
        server.signal(signal.SIGHUP)
        harness.wait_until(lambda: page_size() == 2, 30, message="reloaded page size")
        assert server.process.poll() is None
    finally:
        server.stop()


def test_bad_configuration_fails_the_start_with_a_message(tmp_path):
    server = registry(tmp_path)
    server.sections["paste_deploy"]["flavor"] = "no-such-flavor"
    server.port = harness.free_port()
    server.write_config()
    result = subprocess.run([sys.executable, "-m", "glance_clone.cmd.registry",
                             "--config-file", str(server.conf_path)],
                            capture_output=True, text=True, timeout=60,
                            env=harness.server_env())
    assert result.returncode == 1
    assert "glance-registry-no-such-flavor" in result.stderr
