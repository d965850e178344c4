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
OWNER = {"X-Identity-Status": "Confirmed", "X-Tenant-Id": "owner", "X-Roles": "member",
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


def test_only_identity_headers_go_along() -> None:
    caller = Caller.of(dict(OWNER, Cookie="c", Host="h", **{"X-Image-Meta-Store": "x"}))
    assert dict(caller.headers) == OWNER and not caller.forwarded


class _Node(http.server.BaseHTTPRequestHandler):
    answer: tuple[int, str] = (202, "")
    seen: list[dict[str, Any]] = []
    hang = threading.Event()

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append({"method": self.command, "path": self.path,
                          "headers": dict(self.headers),
                          "body": json.loads(body) if body else None})
        if self.answer[0] == 0:
            self.hang.wait(5)
            return
        status, text = self.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.send_header("Location", "http://10.0.0.1/")
        self.end_headers()
        self.wfile.write(text.encode())

    do_POST = do_DELETE = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def node() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Node)
    _Node.seen = []
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
