"""The HTTP server in this process, on a loopback port, with green sockets."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import eventlet
import pytest
from eventlet.green import socket

from glance_clone.common import data_out, http_server
from tests.support.raw_http import read_to_end, read_until

pytestmark = pytest.mark.timeout(60)


class Running:
    """An HttpServer serving ``app`` in a greenthread of this process."""

    def __init__(self, app: Callable, **settings: Any) -> None:
        self.server = http_server.HttpServer(
            eventlet.listen(("127.0.0.1", 0)), app, http_server.Settings(**settings),
            logging.getLogger("test.access"))
        self.port = self.server.sock.getsockname()[1]
        self.thread = eventlet.spawn(self.server.serve)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def exchange(self, raw: bytes) -> bytes:
        """Send ``raw``, read until the server closes the connection."""
        with self.connect() as sock:
            sock.sendall(raw)
            return read_to_end(sock)

    def stop(self) -> None:
        self.server.stop(0)
        self.thread.wait()


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length."""
    head = read_until(sock, b"\r\n\r\n")[:-4]
    body = b""
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    servers: list[Running] = []

    def start(app: Callable, **settings: Any) -> Running:
        servers.append(Running(app, **settings))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def echo(environ: dict, start_response: Callable) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"got ", body]


def streamed(environ: dict, start_response: Callable) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one,"
    yield b"two"


CLOSE = b"Connection: close\r\n"


def test_a_list_body_gets_a_content_length(running) -> None:
    server = running(echo)
    answer = server.exchange(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n" + CLOSE + b"\r\nhi")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 6\r\n" in answer and answer.endswith(b"\r\n\r\ngot hi")


def test_a_streamed_body_is_chunked_or_ends_with_the_connection(running) -> None:
    server = running(streamed)
    answer = server.exchange(b"GET / HTTP/1.1\r\n" + CLOSE + b"\r\n")
    assert b"\r\nTransfer-Encoding: chunked\r\n" in answer
    assert answer.endswith(b"\r\n\r\n4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n")
    old = server.exchange(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in old and old.endswith(b"\r\n\r\none,two")


def test_keep_alive_and_an_unread_body_dropped(running) -> None:
    def ignores_body(environ: dict, start_response: Callable) -> list[bytes]:
        start_response("401 Unauthorized", [("Content-Length", "2")])
        return [b"no"]

    server = running(ignores_body)
    with server.connect() as sock:
        for _ in range(2):
            sock.sendall(b"PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            assert read_response(sock).startswith(b"HTTP/1.1 401 ")
        sock.sendall(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n" + CLOSE + b"\r\n")
        assert read_to_end(sock).count(b"HTTP/1.1 401 ") == 2


def test_head_does_not_read_the_body_of_the_app(running) -> None:
    class Image:
        def __iter__(self) -> Iterator[bytes]:
            raise AssertionError("the body was read")

    def download(environ: dict, start_response: Callable) -> Image:
        start_response("200 OK", [("Content-Length", "1000")])
        return Image()

    server = running(download)
    with server.connect() as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\n\r\n")
        head = read_until(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 1000" in head
        sock.sendall(b"HEAD / HTTP/1.1\r\n" + CLOSE + b"\r\n")   # still open
        assert read_to_end(sock).startswith(b"HTTP/1.1 200 ")


def test_a_response_header_with_a_line_break_is_never_sent(running) -> None:
    def echoes_header(environ: dict, start_response: Callable) -> list[bytes]:
        start_response("200 OK", [("X-Echo", "a\r\nSet-Cookie: x=y")])
        return [b"body"]

    answer = running(echoes_header).exchange(b"GET / HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ") and b"Set-Cookie" not in answer


def test_app_failures(running) -> None:
    def fails_late(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise RuntimeError("store failed")

    def fails_early(environ: dict, start_response: Callable) -> list[bytes]:
        raise RuntimeError("bug")

    late = running(fails_late).exchange(b"GET / HTTP/1.1\r\n\r\n")
    # Cut after what was sent: no chunked terminator, so clients see the failure.
    assert late.endswith(b"7\r\npartial\r\n")
    early = running(fails_early).exchange(b"GET / HTTP/1.1\r\n\r\n")
    assert early.startswith(b"HTTP/1.1 500 ") and b"Connection: close" in early


def test_100_continue_only_when_the_app_reads(running) -> None:
    server = running(echo)
    with server.connect() as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        interim = read_until(sock, b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hi")
        assert read_response(sock).endswith(b"got hi")

    def refuses(environ: dict, start_response: Callable) -> list[bytes]:
        start_response("413 Request Entity Too Large", [("Content-Length", "0")])
        return []

    answer = running(refuses).exchange(
        b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n")
    # The client may never send the body: the connection closes after the answer.
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer


def test_the_longest_waiting_pending_connection_is_closed(running) -> None:
    server = running(echo, max_pending=2)
    first, second = server.connect(), server.connect()
    first.sendall(b"GET / HTTP/1.1\r\n")
    eventlet.sleep(0)       # let the server take them in order
    second.sendall(b"GET / HTTP/1.1\r\n")
    third = server.connect()
    assert read_to_end(first) == b""
    third.sendall(b"GET / HTTP/1.1\r\n" + CLOSE + b"\r\n")
    assert read_to_end(third).startswith(b"HTTP/1.1 200 ")
    second.sendall(CLOSE + b"\r\n")
    assert read_to_end(second).startswith(b"HTTP/1.1 200 ")
    for sock in (first, second, third):
        sock.close()


def test_stop_closes_idle_connections_and_finishes_requests(running) -> None:
    server = running(echo)
    idle, busy = server.connect(), server.connect()
    idle.sendall(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    read_response(idle)
    busy.sendall(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert busy.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    server.server.stop(30)
    assert read_to_end(idle) == b""
    with pytest.raises(ConnectionRefusedError):
        server.connect()
    busy.sendall(b"hi")
    answer = read_to_end(busy)
    assert answer.endswith(b"got hi") and b"Connection: close" in answer
    server.thread.wait()
    idle.close()
    busy.close()


def test_stop_cuts_requests_at_its_deadline(running) -> None:
    server = running(echo)
    busy = server.connect()
    busy.sendall(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert busy.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    server.server.stop(0.1)
    server.thread.wait()        # returns although the request never ends
    assert server.server.pool.running() == 1
    busy.close()


class RegionBody:
    """A download body that can pass its middle as a file region."""

    def __init__(self, path: Any, offset: int, length: int) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.offset, self.length = offset, length
        self.allowed = False
        self.shortfalls: list[int] = []

    def allow_regions(self) -> bool:
        self.allowed = True
        return True

    def __iter__(self) -> Iterator[bytes | data_out.FileRegion]:
        yield b"<"
        if self.allowed:
            yield data_out.FileRegion(self.fd, self.offset, self.length, self.short)
        else:
            yield os.pread(self.fd, self.length, self.offset)
        yield b">"

    def short(self, sent: int) -> Exception:
        self.shortfalls.append(sent)
        return RuntimeError("the file ended early")

    def close(self) -> None:
        os.close(self.fd)


def region_app(body: RegionBody, length: int | None) -> Callable:
    def app(environ: dict, start_response: Callable) -> RegionBody:
        headers = [] if length is None else [("Content-Length", str(length))]
        start_response("200 OK", headers)
        return body
    return app


def test_file_regions_go_out_by_sendfile(running, tmp_path, monkeypatch) -> None:
    # Far more than the socket buffers hold: the server waits for the
    # client to read, as other greenthreads do.
    data = os.urandom(16 * 1024 * 1024)
    (tmp_path / "image").write_bytes(data)
    body = RegionBody(tmp_path / "image", 3, len(data) - 5)
    sent: list[int] = []
    real_sendfile = os.sendfile

    def counting(out: int, fd: int, offset: int, count: int) -> int:
        done = real_sendfile(out, fd, offset, count)
        sent.append(done)
        return done
    monkeypatch.setattr(os, "sendfile", counting)
    answer = running(region_app(body, len(data) - 3)).exchange(
        b"GET / HTTP/1.1\r\n" + CLOSE + b"\r\n")
    assert answer.endswith(b"\r\n\r\n<" + data[3:-2] + b">")
    assert body.allowed and sum(sent) == len(data) - 5


def test_a_region_the_file_cannot_fill_cuts_the_connection(running, tmp_path) -> None:
    (tmp_path / "image").write_bytes(b"x" * 1000)
    body = RegionBody(tmp_path / "image", 0, 5000)
    server = running(region_app(body, 5002))
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")      # keep-alive asked for
        answer = read_to_end(sock)
    assert answer.endswith(b"\r\n\r\n<" + b"x" * 1000)
    assert body.shortfalls == [1000]


def test_no_regions_without_a_content_length(running, tmp_path) -> None:
    (tmp_path / "image").write_bytes(b"abc")
    body = RegionBody(tmp_path / "image", 0, 3)
    answer = running(region_app(body, None)).exchange(b"GET / HTTP/1.1\r\n" + CLOSE + b"\r\n")
    assert answer.endswith(b"1\r\n<\r\n3\r\nabc\r\n1\r\n>\r\n0\r\n\r\n")
    assert not body.allowed
