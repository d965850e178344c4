"""Tests for the HTTP store against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import threading
from collections.abc import Iterator

import pytest

from glance_clone.common import exception
from glance_clone.store import source_filter
from glance_clone.store.http import MAX_REDIRECTS, NOT_FOUND_MESSAGE, READ_SIZE, HttpDriver
from tests.unit.store.conftest import make_conf

pytestmark = pytest.mark.timeout(20)

IMAGE = bytes(range(256)) * (4 * READ_SIZE // 256) + b"tail"  # four full reads + 4

# The test server listens on a random port, which the default allowed_ports
# (80, 443) would refuse before any other check.
ANY_PORT: dict[str, object] = {"allowed_ports": []}
LOOPBACK_ANY_PORT: dict[str, object] = {"allowed_hosts": ["127.0.0.1"], "allowed_ports": []}


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /image, /missing, /broken, /forbidden, /nohead, /redirect/*."""

    protocol_version = "HTTP/1.1"
    requests_seen: list[tuple[str, str]]

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        self.server.requests_seen.append((self.command, self.path))  # type: ignore[attr-defined]
        port = self.server.server_address[1]
        path = self.path
        if path == "/image":
            self._send(200, IMAGE)
        elif path == "/missing":
            self._send(404, b"no such thing")
        elif path == "/broken":
            self._send(500, b"oops")
        elif path == "/forbidden":
            self._send(403, b"go away")
        elif path == "/nohead":
            if self.command == "HEAD":
                self._send(405, headers={"Allow": "GET"})
            else:
                self._send(200, IMAGE)
        elif path == "/short":
            # Promise more than we send, then hang up.
            self._send(200, b"x" * 1000, length=5000)
            self.close_connection = True
        elif path == "/stall/answer":
            self.server.release.wait(10)  # type: ignore[attr-defined]
            self._send(200, IMAGE)
        elif path == "/stall/body":
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.server.release.wait(10)  # type: ignore[attr-defined]
            self.close_connection = True
        elif path == "/trickle":
            # One byte every 50 ms: never a stall, never done in time.
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                if self.server.release.wait(0.05):  # type: ignore[attr-defined]
                    break
                self.wfile.write(b"x")
                self.wfile.flush()
            self.close_connection = True
        elif path == "/redirect/relative":
            self._send(302, headers={"Location": "/image"})
        elif path == "/redirect/chain":
            self._send(301, headers={"Location": f"http://127.0.0.1:{port}/redirect/relative"})
        elif path == "/redirect/localhost":
            self._send(302, headers={"Location": f"http://localhost:{port}/image"})
        elif path == "/redirect/file":
            self._send(302, headers={"Location": "file:///etc/passwd"})
        elif path == "/redirect/internal":
            self._send(307, headers={"Location": "http://169.254.169.254/latest/"})
        elif path == "/redirect/loop":
            self._send(302, headers={"Location": "/redirect/loop"})
        elif path == "/redirect/nowhere":
            self._send(302)
        else:
            self._send(400)

    do_GET = _route
    do_HEAD = _route


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.requests_seen = []  # type: ignore[attr-defined]
    # Set at teardown: lets the stalling routes end.
    srv.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()  # type: ignore[attr-defined]
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture
def base(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def driver() -> HttpDriver:
    conf = make_conf(import_filtering_opts=LOOPBACK_ANY_PORT)
    return HttpDriver(conf)


def test_get_streams_in_chunks(driver: HttpDriver, base: str) -> None:
    it, size = driver.get(f"{base}/image")
    assert size == len(IMAGE)
    chunks = list(it)
    assert [len(c) for c in chunks] == [READ_SIZE] * 4 + [4]
    assert hashlib.md5(b"".join(chunks)).digest() == hashlib.md5(IMAGE).digest()
    assert it.closed


def test_get_close_early(driver: HttpDriver, base: str) -> None:
    it, _size = driver.get(f"{base}/image")
    assert len(next(it)) == READ_SIZE
    it.close()
    assert list(it) == []


def test_get_size_uses_head(driver: HttpDriver, base: str,
                            server: http.server.ThreadingHTTPServer) -> None:
    assert driver.get_size(f"{base}/image") == len(IMAGE)
    assert server.requests_seen == [("HEAD", "/image")]  # type: ignore[attr-defined]


def test_get_size_falls_back_to_get(driver: HttpDriver, base: str,
                                    server: http.server.ThreadingHTTPServer) -> None:
    assert driver.get_size(f"{base}/nohead") == len(IMAGE)
    assert server.requests_seen == [("HEAD", "/nohead"), ("GET", "/nohead")]  # type: ignore[attr-defined]


def test_not_found(driver: HttpDriver, base: str) -> None:
    for call in (driver.get, driver.get_size):
        with pytest.raises(exception.NotFound) as info:
            call(f"{base}/missing")
        assert str(info.value) == NOT_FOUND_MESSAGE


def test_remote_errors(driver: HttpDriver, base: str) -> None:
    with pytest.raises(exception.RemoteServiceUnavailable):
        driver.get(f"{base}/broken")
    with pytest.raises(exception.BadStoreUri):
        driver.get(f"{base}/forbidden")


def test_truncated_body(driver: HttpDriver, base: str) -> None:
    it, size = driver.get(f"{base}/short")
    assert size == 5000
    with pytest.raises(exception.RemoteDataIncomplete):
        list(it)
    assert it.closed


def timed_driver(stall: float, deadline: float = 60.0) -> HttpDriver:
    return HttpDriver(make_conf(
        import_filtering_opts=LOOPBACK_ANY_PORT,
        glance_store={"http_stall_timeout": stall, "http_transfer_deadline": deadline}))


def test_stalled_answer_times_out(base: str) -> None:
    driver = timed_driver(stall=0.2)
    for call in (driver.get, driver.get_size):
        with pytest.raises(exception.GatewayTimeout, match="sent nothing for 0.2 seconds"):
            call(f"{base}/stall/answer")


def test_stalled_body_times_out(base: str) -> None:
    it, size = timed_driver(stall=0.2).get(f"{base}/stall/body")
    assert size == 5000
    with pytest.raises(exception.GatewayTimeout, match="sent nothing for 0.2 seconds"):
        list(it)
    assert it.closed


def test_a_trickling_source_meets_the_deadline(base: str) -> None:
    it, _size = timed_driver(stall=5, deadline=0.5).get(f"{base}/trickle")
    with pytest.raises(exception.GatewayTimeout, match="within 0.5 seconds"):
        list(it)
    assert it.closed


def test_connection_refused(driver: HttpDriver, server: http.server.ThreadingHTTPServer) -> None:
    # A port that was just listening and is now closed refuses connections.
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(exception.RemoteServiceUnavailable):
        driver.get(f"http://127.0.0.1:{port}/image")


def test_follows_allowed_redirects(driver: HttpDriver, base: str) -> None:
    it, size = driver.get(f"{base}/redirect/chain")
    assert size == len(IMAGE)
    assert b"".join(it) == IMAGE
    assert driver.get_size(f"{base}/redirect/relative") == len(IMAGE)


@pytest.mark.parametrize("path", ["/redirect/localhost", "/redirect/file",
                                  "/redirect/internal"])
def test_redirect_to_refused_source_blocked(driver: HttpDriver, base: str,
                                            server: http.server.ThreadingHTTPServer,
                                            path: str) -> None:
    for call in (driver.get, driver.get_size):
        with pytest.raises(exception.ExternalSourceRefused):
            call(f"{base}{path}")
    # Nothing was fetched from the redirect target (it is this same server
    # for the localhost case).
    assert all(p == path for _m, p in server.requests_seen)  # type: ignore[attr-defined]


def test_loopback_refused_by_default(base: str) -> None:
    """Default filtering refuses the first hop itself: 127.0.0.1 is loopback."""
    with pytest.raises(exception.ExternalSourceRefused):
        HttpDriver(make_conf(import_filtering_opts=ANY_PORT)).get(f"{base}/image")


def test_redirect_limit(driver: HttpDriver, base: str,
                        server: http.server.ThreadingHTTPServer) -> None:
    with pytest.raises(exception.BadStoreUri, match="redirects"):
        driver.get(f"{base}/redirect/loop")
    assert len(server.requests_seen) == MAX_REDIRECTS + 1  # type: ignore[attr-defined]


def test_redirect_without_location(driver: HttpDriver, base: str) -> None:
    with pytest.raises(exception.BadStoreUri):
        driver.get(f"{base}/redirect/nowhere")


def test_connected_peer_is_checked(base: str, server: http.server.ThreadingHTTPServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the check resolves a public address, the connection
    then lands on loopback. The peer check must stop it before any request."""
    port = server.server_address[1]
    monkeypatch.setattr(source_filter, "resolve",
                        lambda host, port: [ipaddress.ip_address("93.184.216.34")])
    driver = HttpDriver(make_conf(import_filtering_opts=ANY_PORT))
    with pytest.raises(exception.ExternalSourceRefused) as info:
        driver.get(f"http://127.0.0.1:{port}/image")
    assert str(info.value) == "External sources are not supported: 'http://127.0.0.1'"
    assert server.requests_seen == []  # type: ignore[attr-defined]


def test_add_disabled(driver: HttpDriver, base: str) -> None:
    with pytest.raises(exception.StoreAddDisabled):
        driver.add("some-id", iter([b"x"]), 1)


def test_delete_is_a_logged_no_op(driver: HttpDriver, base: str,
                                  server: http.server.ThreadingHTTPServer,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    driver.delete(f"http://user:secret@127.0.0.1:{server.server_address[1]}/image")
    assert server.requests_seen == []  # type: ignore[attr-defined]
    assert "does not delete" in caplog.text
    assert "secret" not in caplog.text


def test_bad_scheme_refused(driver: HttpDriver) -> None:
    with pytest.raises(exception.ExternalSourceRefused):
        driver.get("ftp://127.0.0.1/x")
