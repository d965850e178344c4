"""Strict request framing: heads, body lengths, chunked bodies."""

from __future__ import annotations

import io

import pytest

from glance_clone.common import exception
from glance_clone.common.http_framing import (
    ChunkedInput,
    LengthInput,
    RequestHead,
    body_length,
    is_valid_field,
    read_head,
)


def head_of(raw: bytes, max_header_line: int = 1024) -> RequestHead | None:
    return read_head(io.BytesIO(raw), max_header_line)


def request(*header_lines: str, version: str = "HTTP/1.1") -> RequestHead:
    raw = "POST /v1/images %s\r\n%s\r\n" % (
        version, "".join(line + "\r\n" for line in header_lines))
    head = head_of(raw.encode("latin-1"))
    assert head is not None
    return head


def test_a_plain_head() -> None:
    head = head_of(b"GET /v1/images?x=1 HTTP/1.1\r\nHost: h\r\nX-A:  a b \r\n\r\nrest")
    assert head == RequestHead("GET", "/v1/images?x=1", "HTTP/1.1",
                               [("Host", "h"), ("X-A", "a b")])
    assert head.keep_alive and not head.expects_continue


def test_bare_lf_line_ends_and_a_stray_blank_line_are_accepted() -> None:
    head = head_of(b"\r\nGET / HTTP/1.0\nConnection: keep-alive\n\n")
    assert head is not None and head.version == "HTTP/1.0" and head.keep_alive


def test_a_closed_connection_is_no_request() -> None:
    assert head_of(b"") is None
    with pytest.raises(ConnectionResetError):
        head_of(b"GET / HTTP/1.1\r\nHost: h\r\n")


@pytest.mark.parametrize("line", [
    b"GET  / HTTP/1.1", b"GET / HTTP/1.1 x", b"G(T / HTTP/1.1", b"GET /\x7f HTTP/1.1",
    b"GET / HTTP/1.x", b"GET / http/1.1",
])
def test_bad_request_lines(line: bytes) -> None:
    with pytest.raises(exception.MalformedRequest):
        head_of(line + b"\r\n\r\n")


def test_other_http_versions_are_505() -> None:
    with pytest.raises(exception.HttpVersionNotSupported):
        head_of(b"GET / HTTP/2.0\r\n\r\n")


@pytest.mark.parametrize("line", [
    b"X Bad: 1", b"X@: 1", b": 1", b"X-A : 1", b"X-A", b"X-A: a\x00b", b"X-A: a\rb",
    b"X-A: a\x7fb", b"X-A: a\x1bb",
])
def test_bad_header_lines(line: bytes) -> None:
    with pytest.raises(exception.MalformedRequest):
        head_of(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n")


def test_folded_header_lines_are_refused() -> None:
    for fold in (b" ", b"\t"):
        with pytest.raises(exception.MalformedRequest, match="folded"):
            head_of(b"GET / HTTP/1.1\r\nX-A: a\r\n" + fold + b"b\r\n\r\n")


def test_size_limits() -> None:
    with pytest.raises(exception.MalformedRequest, match="max_header_line"):
        head_of(b"GET / HTTP/1.1\r\nX-A: " + b"a" * 2000 + b"\r\n\r\n")
    with pytest.raises(exception.RequestURITooLong):
        head_of(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
    with pytest.raises(exception.RequestHeaderTooLarge):
        head_of(b"GET / HTTP/1.1\r\n" + b"X-A: a\r\n" * 101 + b"\r\n")
    with pytest.raises(exception.MalformedRequest):
        head_of(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")


def test_body_length() -> None:
    assert body_length(request()) == 0
    assert body_length(request("Content-Length: 12")) == 12
    assert body_length(request("Content-Length: 0")) == 0
    assert body_length(request("Transfer-Encoding: chunked")) is None
    assert body_length(request("Transfer-Encoding: Chunked")) is None


@pytest.mark.parametrize("lines", [
    ["Content-Length: +5"], ["Content-Length: -1"], ["Content-Length: 5, 5"],
    ["Content-Length: 0x5"], ["Content-Length: 5.0"], ["Content-Length: 1_000"],
    ["Content-Length: \xb2"], ["Content-Length: 5", "Content-Length: 5"],
    ["Content-Length: " + "9" * 19], ["Content-Length:"],
    ["Transfer-Encoding: chunked", "Content-Length: 5"],
    ["Transfer-Encoding: chunked, chunked"],
    ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
    ["Transfer-Encoding: chunked, gzip"], ["Transfer-Encoding: chunked,"],
])
def test_bad_body_framing_is_400(lines: list[str]) -> None:
    with pytest.raises(exception.MalformedRequest):
        body_length(request(*lines))


@pytest.mark.parametrize("coding", ["identity", "gzip", "gzip, chunked", "deflate"])
def test_other_transfer_codings_are_501(coding: str) -> None:
    with pytest.raises(exception.UnsupportedTransferCoding):
        body_length(request("Transfer-Encoding: " + coding))


def test_transfer_encoding_in_http_1_0_is_400() -> None:
    with pytest.raises(exception.MalformedRequest):
        body_length(request("Transfer-Encoding: chunked", version="HTTP/1.0"))


def test_response_fields() -> None:
    assert is_valid_field("X-Image-Meta-Name", "a b\tc \xe9")
    assert not is_valid_field("X-A", "a\r\nSet-Cookie: x")
    assert not is_valid_field("X A", "a")
    assert not is_valid_field("X-A", "\u0100")


# --- bodies ----------------------------------------------------------------------


class Continues:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return True


def chunked(raw: bytes) -> tuple[ChunkedInput, Continues]:
    continues = Continues()
    return ChunkedInput(io.BytesIO(raw), continues), continues


def test_chunked_body_with_extensions_and_trailers() -> None:
    body, continues = chunked(b"3;name=v\r\nhel\r\nA \r\nlo, world!\r\n0\r\nX-T: 1\r\n\r\nNEXT")
    assert body.read() == b"hello, world!"
    assert body.complete and not body.broken and continues.calls == 1
    assert body.read() == b""
    assert body.rfile.read() == b"NEXT"


def test_chunked_reads_of_a_given_size_cross_chunks() -> None:
    body, _ = chunked(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
    assert [body.read(2), body.read(2), body.read(5), body.read(5)] == [b"ab", b"cd", b"ef", b""]
    assert body.complete


@pytest.mark.parametrize("raw", [
    b"3\r\nhello\r\n0\r\n\r\n",        # data longer than its size line
    b"5\r\nhel\r\n0\r\n\r\n",          # data shorter
    b"0x3\r\nhel\r\n0\r\n\r\n", b"+3\r\nhel\r\n0\r\n\r\n", b" 3\r\nhel\r\n0\r\n\r\n",
    b"\r\nhel\r\n0\r\n\r\n", b"3\nhel\r\n0\r\n\r\n", b"3\r\nhel\n0\r\n\r\n",
    b"3;\x00\r\nhel\r\n0\r\n\r\n", b"3\r\nhel\r\n0\r\nX T: 1\r\n\r\n",
    b"1" * 5000 + b"\r\n",
])
def test_bad_chunked_bodies_are_400(raw: bytes) -> None:
    body, _ = chunked(raw)
    with pytest.raises(exception.MalformedRequest):
        body.read()
    assert body.broken and not body.complete
    with pytest.raises(exception.MalformedRequest):
        body.read()


@pytest.mark.parametrize("raw", [b"5\r\nhel", b"3\r\nhel", b"3\r\nhel\r", b"3\r\nhel\r\n0\r\n"])
def test_a_chunked_body_cut_short_is_a_disconnect(raw: bytes) -> None:
    body, _ = chunked(raw)
    with pytest.raises(ConnectionResetError):
        body.read()
    assert body.broken


def test_length_body() -> None:
    continues = Continues()
    body = LengthInput(io.BytesIO(b"hello, worldNEXT"), 12, continues)
    assert (body.read(5), body.readline(), body.read(), body.read()) == (
        b"hello", b", world", b"", b"")
    assert body.complete and continues.calls == 1


def test_length_body_cut_short() -> None:
    body = LengthInput(io.BytesIO(b"hel"), 5, Continues())
    assert body.read() == b"hel" and body.read() == b""
    assert body.broken and not body.complete


def test_no_body_never_reads_nor_continues() -> None:
    continues = Continues()
    body = LengthInput(io.BytesIO(b"GET / HTTP/1.1\r\n"), 0, continues)
    assert body.read() == b"" and body.complete and continues.calls == 0
