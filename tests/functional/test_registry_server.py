"""glance-registry as a real process: workers, reload, stop, glance-manage."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from tests.functional import harness
from tests.support import raw_http

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


# --- process lifecycle -----------------------------------------------------------


class RawConnection:
    """A client connection driven byte by byte."""

    def __init__(self, server: harness.ServerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def healthcheck(self) -> bytes:
        """One keep-alive request; returns its answer."""
        self.send(b"GET /healthcheck HTTP/1.1\r\nHost: r\r\n\r\n")
        answer = b""
        while not answer.endswith(b"OK"):
            data = self.sock.recv(4096)
            assert data, answer
            answer += data
        return answer

    def start_create(self) -> None:
        """A create whose body is not sent yet: a request in progress.

        With ``Expect: 100-continue`` the server says when the app starts
        reading the body, so the request is known to be in progress.
        """
        body = json.dumps({"image": {"name": "slow", "status": "queued"}}).encode()
        self.rest = body
        self.send(("POST /images HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                   "X-Identity-Status: Confirmed\r\nX-Tenant-Id: t1\r\nX-Roles: member\r\n"
                   "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)).encode())
        interim = raw_http.read_until(self.sock, b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"

    def finish_create(self) -> bytes:
        self.send(self.rest)
        return self.read_to_end()

    def read_to_end(self) -> bytes:
        return raw_http.read_to_end(self.sock)

    def close(self) -> None:
        self.sock.close()


def refuses_connections(server: harness.ServerProcess) -> bool:
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_workers_stop_when_their_parent_is_killed(tmp_path):
    server = started(registry(tmp_path, workers=2))
    parent = server.process.pid
    workers = harness.wait_until(lambda: len(children_of(parent)) == 2 and children_of(parent),
                                 30, message="two workers")
    try:
        os.kill(parent, signal.SIGKILL)
        server.process.wait(10)
        harness.wait_until(lambda: not any(alive(p) for p in workers), 10,
                           message="orphaned workers to exit")
        assert refuses_connections(server)
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.stop()


def test_sighup_closes_idle_connections_and_old_workers_exit(tmp_path):
    server = started(registry(tmp_path, workers=1))
    client = RawConnection(server)
    try:
        parent = server.process.pid
        (old,) = harness.wait_until(lambda: children_of(parent), 30, message="a worker")
        assert b"200 OK" in client.healthcheck()   # the connection stays open, idle
        server.signal(signal.SIGHUP)
        harness.wait_until(lambda: not alive(old), 10, message="the old worker to exit")
        assert client.read_to_end() == b""
        harness.wait_until(lambda: len(children_of(parent)) == 1, 30, message="a new worker")
        assert requests.get(server.url + "/healthcheck").text == "OK"
    finally:
        client.close()
        server.stop()


def test_a_retiring_worker_does_not_silence_the_new_one(tmp_path):
    server = started(registry(tmp_path, workers=1))
    try:
        parent = server.process.pid
        (old,) = harness.wait_until(lambda: children_of(parent), 30, message="a worker")
        # The old worker stops only once the new one is accepting: the
        # order in which a loaded machine may run them.
        os.kill(old, signal.SIGSTOP)
        server.signal(signal.SIGHUP)
        harness.wait_until(lambda: children_of(parent) - {old}, 30, message="a new worker")
        assert requests.get(server.url + "/healthcheck", timeout=30).text == "OK"
        os.kill(old, signal.SIGCONT)
        harness.wait_until(lambda: not alive(old), 10, message="the old worker to exit")
        for _ in range(3):
            assert requests.get(server.url + "/healthcheck", timeout=10).text == "OK"
    finally:
        server.stop()


def test_sigterm_lets_a_request_in_progress_finish(tmp_path):
    server = started(registry(tmp_path, workers=1))
    busy, idle = RawConnection(server), RawConnection(server)
    try:
        assert b"200 OK" in idle.healthcheck()
        busy.start_create()
        server.signal(signal.SIGTERM)
        # Idle connections close and new ones are refused at once...
        assert idle.read_to_end() == b""
        harness.wait_until(lambda: refuses_connections(server), 10,
                           message="new connections to be refused")
        assert server.process.poll() is None
        # ...while the request in progress gets its answer, then all exit.
        answer = busy.finish_create()
        assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
        assert server.process.wait(10) == 0
    finally:
        busy.close()
        idle.close()
        server.stop()


def test_sigterm_stops_every_generation_within_the_bound(tmp_path):
    server = started(registry(tmp_path, workers=1, graceful_shutdown_timeout=1))
    stuck = RawConnection(server)
    try:
        parent = server.process.pid
        (old,) = harness.wait_until(lambda: children_of(parent), 30, message="a worker")
        stuck.start_create()                        # and never finished
        server.signal(signal.SIGHUP)
        new = harness.wait_until(lambda: children_of(parent) - {old}, 30,
                                 message="a new worker")
        assert alive(old)                           # still busy with the create
        server.signal(signal.SIGTERM)
        assert server.process.wait(20) == 0
        harness.wait_until(lambda: not any(alive(p) for p in new | {old}), 10,
                           message="both generations to exit")
    finally:
        stuck.close()
        server.stop()


def test_a_request_head_must_arrive_within_the_header_timeout(tmp_path):
    server = started(registry(tmp_path, client_header_timeout=1))
    client = RawConnection(server)
    try:
        client.send(b"GET /healthcheck HTTP/1.1\r\nHost: r\r\n")     # and no end
        assert client.read_to_end() == b""
        # On a kept-alive connection the limit runs from the first byte of
        # the next request.
        kept = RawConnection(server)
        assert b"200 OK" in kept.healthcheck()
        kept.send(b"GET /healthcheck HTTP/1.1\r\n")
        assert kept.read_to_end() == b""
        kept.close()
    finally:
        client.close()
        server.stop()


def test_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server = registry(tmp_path, cert_file=cert, key_file=key)
    server.port = harness.free_port()
    server.write_config()
    assert manage(server, "db_sync").returncode == 0
    server.launch(server.port)
    url = "https://127.0.0.1:%d" % server.port
    try:
        def healthy():
            try:
                return requests.get(url + "/healthcheck", verify=str(cert), timeout=5).text == "OK"
            except requests.ConnectionError:
                return False

        harness.wait_until(healthy, 60, message="the registry over TLS")
        # A plain-HTTP client gets nothing, and the server goes on.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as plain:
            plain.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: r\r\n\r\n")
            assert b"200 OK" not in raw_http.read_to_end(plain)
        with requests.Session() as session:
            for _ in range(2):      # twice on one kept-alive connection
                response = session.get(url + "/images", headers=harness.identity("t1"),
                                       verify=str(cert))
                assert response.status_code == 200 and response.json() == {"images": []}
    finally:
        server.stop()


WORKER_SCRIPT = """
import os, sys
import eventlet
eventlet.monkey_patch()
from oslo_config import cfg
from glance_clone.common import config, server

marks, port = sys.argv[1], int(sys.argv[2])
conf = cfg.ConfigOpts()
config.register_server_opts(conf)
conf([], project="glance-test", default_config_files=[])
conf.set_override("workers", 1)
conf.set_override("bind_host", "127.0.0.1")
conf.set_override("bind_port", port)


def load_app():
    def mark():             # as the v2 task reaper does
        while True:
            open(os.path.join(marks, str(os.getpid())), "w").close()
            eventlet.sleep(0.05)

    eventlet.spawn_n(mark)
    return lambda environ, start_response: start_response("200 OK", []) or [b"OK"]


srv = server.Server(conf, load_app, port, "glance-test")
srv.start()
sys.exit(srv.run())
"""


def test_greenthreads_started_while_loading_the_app_run_in_the_workers(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "server.py"
    script.write_text(WORKER_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(marks), str(harness.free_port())],
                               env=harness.server_env(), stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        (worker,) = harness.wait_until(lambda: children_of(process.pid), 30, message="a worker")
        harness.wait_until(lambda: (marks / str(worker)).exists(), 30,
                           message="the greenthread to run in the worker")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
