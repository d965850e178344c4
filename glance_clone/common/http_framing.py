"""HTTP/1.1 request framing, read strictly: the request head and the body.

When a proxy and the server behind it disagree on where a request ends,
one request can hide inside another (request smuggling). So what is not
plainly valid is refused, never guessed at:

- Request line: ``METHOD SP target SP HTTP/1.x``; the method a token, the
  target visible ASCII. Another HTTP version: 505.
- Header lines: a token name, ``:`` right after it, a value of visible
  characters, spaces and tabs (no CR, LF, NUL or other control). A line
  that starts with a space or tab would continue the one before (obsolete
  line folding); it is refused, so a folded value is never passed on, nor
  echoed into a response.
- The body: ``Transfer-Encoding: chunked`` alone, or one ``Content-Length``
  of plain digits, never both. Other codings (``gzip``, ``identity``,
  ``gzip, chunked``) are 501; ``chunked`` given twice or not last is 400.
- A chunked body: every size line is hex digits (extensions allowed and
  ignored) and every chunk's data is followed by exactly CRLF, so data
  longer or shorter than its size line says is 400, not cut or padded.
  The trailer section is read and ignored.

Head lines may end in a bare LF (RFC 9112 lets a recipient accept it);
lines inside a chunked body must end in CRLF. The errors raised are ours
(``exception.MalformedRequest`` and friends); ``faults`` gives their status.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, NoReturn

from glance_clone.common import exception

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 65536
MAX_HEADER_COUNT = 100
MAX_CHUNK_LINE = 4096
# Clients may send a stray CRLF after a body; a few are skipped.
MAX_LEADING_BLANK_LINES = 4

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_BLANK = (b"\r\n", b"\n")


@dataclass
class RequestHead:
    """A parsed request line and header section."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def tokens(self, name: str) -> list[str]:
        """The comma-separated elements of header ``name``, lower-cased."""
        return [t.strip().lower() for v in self.values(name) for t in v.split(",")]

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept after this request."""
        connection = self.tokens("connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def expects_continue(self) -> bool:
        return self.version == "HTTP/1.1" and self.tokens("expect") == ["100-continue"]


def read_head(rfile: BinaryIO, max_header_line: int) -> RequestHead | None:
    """Read a request head; None if the connection ended before one began.

    Raises MalformedRequest, RequestURITooLong, RequestHeaderTooLarge,
    HttpVersionNotSupported, and ConnectionResetError when the connection
    ends inside the head.
    """
    line = _read_line(rfile, MAX_REQUEST_LINE, exception.RequestURITooLong)
    for _ in range(MAX_LEADING_BLANK_LINES):
        if line not in _BLANK:
            break
        line = _read_line(rfile, MAX_REQUEST_LINE, exception.RequestURITooLong)
    if not line:
        return None
    head = parse_request_line(_content(line))
    total = 0

    def line_too_long() -> exception.GlanceError:
        return exception.MalformedRequest(
            reason="header line longer than %d bytes (max_header_line)" % max_header_line)

    while True:
        line = _read_line(rfile, max_header_line, line_too_long)
        if not line:
            raise ConnectionResetError("connection closed inside the request head")
        if line in _BLANK:
            break
        total += len(line)
        if total > MAX_HEADER_BYTES or len(head.headers) >= MAX_HEADER_COUNT:
            raise exception.RequestHeaderTooLarge()
        head.headers.append(parse_header_line(_content(line)))
    if len(head.values("host")) > 1:
        raise exception.MalformedRequest(reason="more than one Host header")
    return head


def parse_request_line(line: bytes) -> RequestHead:
    """``METHOD SP target SP version`` (without its line end)."""
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise exception.MalformedRequest(reason="invalid request line")
    version = _VERSION.fullmatch(parts[2])
    if version is None:
        raise exception.MalformedRequest(reason="invalid HTTP version")
    if version.group(1) != b"1":
        raise exception.HttpVersionNotSupported()
    return RequestHead(parts[0].decode("ascii"), parts[1].decode("ascii"),
                       "HTTP/1.1" if version.group(2) != b"0" else "HTTP/1.0")


def parse_header_line(line: bytes) -> tuple[str, str]:
    """``name: value`` (without its line end) as text; raises MalformedRequest."""
    if line[:1] in (b" ", b"\t"):
        raise exception.MalformedRequest(
            reason="folded header line (obsolete line folding)")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise exception.MalformedRequest(reason="invalid header name")
    value = value.strip(b" \t")
    if not _FIELD_VALUE.fullmatch(value):
        raise exception.MalformedRequest(
            reason="control character in the value of header %s" % name.decode("ascii"))
    return name.decode("ascii"), value.decode("latin-1")


def is_valid_field(name: str, value: str) -> bool:
    """Whether a response header may be sent as it is (no CR, LF, NUL...)."""
    try:
        raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return bool(_TOKEN.fullmatch(raw_name) and _FIELD_VALUE.fullmatch(raw_value))


def body_length(head: RequestHead) -> int | None:
    """The body's length in bytes, 0 without a body, None when chunked.

    Raises MalformedRequest or UnsupportedTransferCoding.
    """
    lengths = head.values("content-length")
    if head.values("transfer-encoding"):
        if lengths:
            raise exception.MalformedRequest(
                reason="both Transfer-Encoding and Content-Length")
        if head.version == "HTTP/1.0":
            raise exception.MalformedRequest(reason="Transfer-Encoding in an HTTP/1.0 request")
        codings = head.tokens("transfer-encoding")
        if codings == ["chunked"]:
            return None
        if "" in codings or codings.count("chunked") > 1 or (
                "chunked" in codings and codings[-1] != "chunked"):
            raise exception.MalformedRequest(
                reason="chunked must be the last transfer coding, given once")
        raise exception.UnsupportedTransferCoding(coding=", ".join(codings))
    if not lengths:
        return 0
    if len(lengths) > 1:
        raise exception.MalformedRequest(reason="more than one Content-Length")
    value = lengths[0]
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise exception.MalformedRequest(reason="Content-Length must be plain digits")
    return int(value)


def _read_line(rfile: BinaryIO, limit: int,
               too_long: Callable[[], exception.GlanceError]) -> bytes:
    line = rfile.readline(limit + 1)
    if len(line) > limit:
        raise too_long()
    if line and not line.endswith(b"\n"):
        raise ConnectionResetError("connection closed inside a line")
    return line


def _content(line: bytes) -> bytes:
    """A head line without its CRLF or bare LF."""
    return line[:-2] if line.endswith(b"\r\n") else line[:-1]


# --- request bodies ------------------------------------------------------------


class BodyInput(abc.ABC):
    """``wsgi.input``: the request body, ending where its framing says.

    ``send_continue`` runs before the first read from the socket; it sends
    ``100 Continue`` if the client waits for it and says whether it did.
    ``complete`` tells whether the whole body was read; ``broken`` that its
    framing was invalid or the client left, so the connection cannot carry
    another request.
    """

    def __init__(self, rfile: BinaryIO, send_continue: Callable[[], bool]) -> None:
        self.rfile = rfile
        self.send_continue = send_continue
        self.continue_sent = False
        self.first_read = True
        self.complete = False
        self.broken = False

    def before_read(self) -> None:
        if self.first_read:
            self.first_read = False
            self.continue_sent = self.send_continue()

    @abc.abstractmethod
    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the body (all that is left if negative)."""

    def readline(self, size: int = -1) -> bytes:
        # Bodies we read are JSON or image data; a line reader only has to
        # be correct, so it goes byte by byte through read().
        line = bytearray()
        while size < 0 or len(line) < size:
            byte = self.read(1)
            line += byte
            if not byte or byte == b"\n":
                break
        return bytes(line)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class LengthInput(BodyInput):
    """A body of ``Content-Length`` bytes (possibly none)."""

    def __init__(self, rfile: BinaryIO, length: int, send_continue: Callable[[], bool]) -> None:
        super().__init__(rfile, send_continue)
        self.remaining = length
        self.complete = length == 0

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        self.before_read()
        wanted = self.remaining if size < 0 else min(size, self.remaining)
        data = self.rfile.read(wanted)
        if len(data) < wanted:
            # The client went away: the app sees a short body and says so.
            self.broken = True
            self.remaining = 0
            return data
        self.remaining -= wanted
        self.complete = self.remaining == 0
        return data


class ChunkedInput(BodyInput):
    """A ``Transfer-Encoding: chunked`` body, checked chunk by chunk."""

    def __init__(self, rfile: BinaryIO, send_continue: Callable[[], bool]) -> None:
        super().__init__(rfile, send_continue)
        self.left = 0           # bytes of the current chunk not read yet

    def read(self, size: int = -1) -> bytes:
        parts = []
        wanted = size
        while not self.complete and wanted != 0:
            if self.broken:
                raise exception.MalformedRequest(reason="invalid chunked body")
            if self.left == 0:
                self.before_read()
                self._start_chunk()
                continue
            count = self.left if wanted < 0 else min(self.left, wanted)
            data = self.rfile.read(count)
            if len(data) < count:
                self._fail(ConnectionResetError("connection closed inside a chunk"))
            parts.append(data)
            self.left -= count
            if wanted > 0:
                wanted -= count
            if self.left == 0:
                self._end_chunk()
        return b"".join(parts)

    def _start_chunk(self) -> None:
        line = self._line()
        size_part = line.split(b";", 1)[0].rstrip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size_part) or not _FIELD_VALUE.fullmatch(line):
            self._fail(exception.MalformedRequest(reason="invalid chunk size line"))
        self.left = int(size_part, 16)
        if self.left == 0:
            self._skip_trailers()
            self.complete = True

    def _end_chunk(self) -> None:
        end = self.rfile.read(2)
        if end == b"\r\n":
            return
        if len(end) < 2 and b"\r\n".startswith(end):
            self._fail(ConnectionResetError("connection closed inside a chunk"))
        self._fail(exception.MalformedRequest(
            reason="chunk data does not end where its size line says"))

    def _skip_trailers(self) -> None:
        total = 0
        while True:
            line = self._line()
            if not line:
                return
            total += len(line)
            if total > MAX_HEADER_BYTES:
                self._fail(exception.RequestHeaderTooLarge())
            try:
                parse_header_line(line)
            except exception.MalformedRequest as err:
                self._fail(err)

    def _line(self) -> bytes:
        """The next line of the chunked framing, without its CRLF."""
        line = self.rfile.readline(MAX_CHUNK_LINE + 1)
        if len(line) > MAX_CHUNK_LINE:
            self._fail(exception.MalformedRequest(reason="chunk size line too long"))
        if not line.endswith(b"\n"):
            self._fail(ConnectionResetError("connection closed inside a chunk size line"))
        if not line.endswith(b"\r\n"):
            self._fail(exception.MalformedRequest(reason="chunk line without CRLF"))
        return line[:-2]

    def _fail(self, error: Exception) -> NoReturn:
        self.broken = True
        raise error
