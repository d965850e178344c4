"""Asking the api node that holds an image's staged data: which URLs are
asked, what is sent, and how its answers (or its silence) come back."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from glance_clone.common import exception
from glance_clone.domain import stage_host
from glance_clone.domain.stage_host import FORWARDED_HEADER, Caller, StageHosts

SELF = "http://127.0.0.1:9292"
OWNER = {"X-Identity-Status": "Confirmed", "X-Tenant-Id": "owner", "X-Roles": "reader,member",
         "X-User-Id": "u", "X-Auth-Token": "tok"}


def record(host: str | None) -> dict:
    return {"id": "i1", "properties": {} if host is None else
            {"os_glance_stage_host": host}}


@pytest.mark.parametrize("host", [None, "", SELF, SELF + "/", "file:///etc/passwd",
                                  "ftp://127.0.0.1/", "http://", "127.0.0.1:9293"])
def test_no_other_http_node_is_no_node(host: str | None) -> None:
    assert StageHosts(SELF).elsewhere(record(host), Caller.of(OWNER)) is None


def test_another_node_is_asked_unless_the_request_was_sent_on_already() -> None:
    hosts = StageHosts(SELF)
    other = "https://node-2.example:9292/"
    assert hosts.elsewhere(record(other), Caller.of(OWNER)) == other.rstrip("/")
    assert hosts.elsewhere(record(other), None) is None
    forwarded = Caller.of(dict(OWNER, **{FORWARDED_HEADER: "1"}))
    assert hosts.elsewhere(record(other), forwarded) is None
    # A node without its own URL still asks the node that has one.
    assert StageHosts(None).elsewhere(record(other), Caller.of(OWNER)) is not None


def test_only_identity_and_store_headers_go_along() -> None:
    caller = Caller.of(dict(OWNER, Cookie="c", Host="h"))
    assert dict(caller.headers) == OWNER and not caller.forwarded
    # The store an import goes to is the request's too.
    caller = Caller.of(dict(OWNER, Cookie="c", **{"X-Image-Meta-Store": "x"}))
    assert dict(caller.headers) == dict(OWNER, **{"X-Image-Meta-Store": "x"})


class _Node(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answer: tuple[int, str] = (202, "")
    # Headers of the answer besides Content-Length and Location.
    answer_headers: dict[str, str] = {}
    seen: list[dict[str, Any]] = []
    hang = threading.Event()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return body
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self) -> None:
        body = self._body()
        json_body = self.headers.get("Content-Type") == "application/json"
        self.seen.append({"method": self.command, "path": self.path,
                          "headers": dict(self.headers),
                          "body": json.loads(body) if body and json_body else body or None})
        if self.answer[0] == 0:
            self.hang.wait(5)
            return
        status, text = self.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.send_header("Location", "http://10.0.0.1/")
        for name, value in self.answer_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(text.encode())

    do_POST = do_DELETE = do_PUT = do_GET = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def node() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Node)
    _Node.seen = []
    _Node.answer_headers = {}
    _Node.hang.clear()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    _Node.hang.set()
    server.shutdown()
    server.server_close()


def test_the_request_goes_as_the_caller_marked_as_sent_on(node: str) -> None:
    _Node.answer = (202, "")
    body = {"method": {"name": "glance-direct"}}
    StageHosts(SELF).send(Caller.of(OWNER), node, "POST", "i/1", "/import", body)
    (seen,) = _Node.seen
    assert (seen["method"], seen["path"], seen["body"]) == (
        "POST", "/v2/images/i%2F1/import", body)
    assert {k: seen["headers"][k] for k in OWNER} == OWNER
    assert seen["headers"][FORWARDED_HEADER] == "1"


@pytest.mark.parametrize("status,raised", [
    (403, exception.Forbidden), (404, exception.NotFound), (409, exception.Conflict),
    (413, exception.LimitExceeded), (400, exception.Invalid),
    (500, exception.BadGateway), (503, exception.BadGateway),
    (302, exception.BadGateway), (418, exception.BadGateway)])
def test_the_nodes_answers(node: str, status: int, raised: type) -> None:
    _Node.answer = (status, "%d Whatever\n\nImage i1 is busy" % status)
    with pytest.raises(raised) as err:
        StageHosts(SELF).send(Caller.of(OWNER), node, "DELETE", "i1")
    if status < 500 and status != 302 and status != 418:
        assert str(err.value) == "Image i1 is busy"
    else:
        assert "answered %d" % status in str(err.value)
    assert len(_Node.seen) == 1   # no redirect followed


def test_a_node_that_does_not_answer_in_time(node: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _Node.answer = (0, "")
    monkeypatch.setattr(stage_host, "TIMEOUT", 0.3)
    with pytest.raises(exception.GatewayTimeout, match="did not answer in time"):
        StageHosts(SELF).send(Caller.of(OWNER), node, "POST", "i1", "/import", {})


def test_a_node_that_is_gone() -> None:
    with socket.socket() as sock:   # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(exception.BadGateway, match="cannot be reached"):
        StageHosts(SELF).send(Caller.of(OWNER), "http://127.0.0.1:%d" % port,
                              "DELETE", "i1")


STAGED = "OpenStack-image-staged-size"


@pytest.mark.parametrize("length", [7, None])
def test_a_piece_goes_on_with_its_range_and_length(node: str, length: int | None) -> None:
    """A body of known length goes with that Content-Length, a chunked one
    chunked; the Content-Range ends where the body does."""
    _Node.answer, _Node.answer_headers = (204, ""), {STAGED: "12"}
    staged = StageHosts(SELF).stage(Caller.of(OWNER), node, "i1", iter([b"abc", b"defg"]),
                                    (5, 20), length)
    assert staged == 12
    (seen,) = _Node.seen
    assert (seen["method"], seen["path"], seen["body"]) == (
        "PUT", "/v2/images/i1/stage", b"abcdefg")
    headers = seen["headers"]
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers[FORWARDED_HEADER] == "1" and headers["X-Auth-Token"] == "tok"
    if length is None:
        assert headers["Transfer-Encoding"] == "chunked"
        assert headers["Content-Range"] == "bytes 5-19/20"
    else:
        assert headers["Content-Length"] == "7" and "Transfer-Encoding" not in headers
        assert headers["Content-Range"] == "bytes 5-11/20"


def test_the_staged_length_is_read_from_the_node(node: str) -> None:
    _Node.answer, _Node.answer_headers = (204, ""), {STAGED: "4000"}
    assert StageHosts(SELF).staged_length(Caller.of(OWNER), node, "i1") == 4000
    assert [(s["method"], s["path"]) for s in _Node.seen] == [("GET", "/v2/images/i1/stage")]


def test_a_node_that_does_not_say_what_it_staged(node: str) -> None:
    _Node.answer = (204, "")
    with pytest.raises(exception.BadGateway, match="did not say how much"):
        StageHosts(SELF).staged_length(Caller.of(OWNER), node, "i1")


def test_a_wrong_start_comes_back_with_the_staged_length(node: str) -> None:
    _Node.answer, _Node.answer_headers = (416, "416 Bad\n\nno"), {STAGED: "3000"}
    with pytest.raises(exception.StagedLengthMismatch) as err:
        StageHosts(SELF).stage(Caller.of(OWNER), node, "i1", iter([b"x"]), (0, 9), 1)
    assert err.value.size == 3000


def test_refused_data_comes_back_as_a_415(node: str) -> None:
    _Node.answer = (415, "415 Unsupported Media Type\n\nnot a raw image")
    with pytest.raises(exception.UnsupportedMediaType, match="not a raw image"):
        StageHosts(SELF).stage(Caller.of(OWNER), node, "i1", iter([b"x"]), (0, 9), 1)
