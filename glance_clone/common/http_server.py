"""The HTTP/1.1 server under the WSGI apps of glance-api and glance-registry.

One eventlet greenthread per connection. Requests are framed by
``http_framing`` (strict: what it refuses is answered with its status and
the connection is closed). Responses carry ``Content-Length`` when the app
gives it or returns its body as a list, otherwise they are chunked (HTTP/1.1)
or end with the connection (HTTP/1.0). ``Expect: 100-continue`` is answered
when the app first reads the body.

Slow and idle clients. A connection waiting for a request or sending its
head is *pending*. Its head must be complete ``client_header_timeout``
seconds after it was accepted or, on a kept-alive connection, after the
first byte of the request. A worker keeps at most
``max_pending_connections`` pending connections: one more, and the one that
has waited longest is closed. So clients trickling headers, or holding idle
keep-alive connections, cannot take the greenthreads that serve requests.

Stopping (``stop``): the listening socket is closed, pending connections
are closed at once, and a request in progress finishes, its connection
closing after the response. ``serve`` returns when no connection is left,
or at the deadline ``stop`` was given.
"""

from __future__ import annotations

import collections
import email.utils
import errno
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import eventlet
from eventlet import greenio
from eventlet.greenthread import greenlet
from eventlet.hubs import trampoline

from glance_clone.common import data_out, exception, faults
from glance_clone.common.http_framing import (
    BodyInput,
    ChunkedInput,
    LengthInput,
    RequestHead,
    body_length,
    is_valid_field,
    read_head,
)

LOG = logging.getLogger(__name__)

GREEN_POOL_SIZE = 1000
READ_BUFFER = 64 * 1024
# Closing a socket with unread input makes the kernel reset the connection,
# which can destroy the response before the client reads it; so a
# connection closed while its client may still be sending is drained a
# little first.
LINGER_SECONDS = 1.0
# accept() errors that mean "not now" (descriptors or memory exhausted),
# not "the listening socket is gone".
ACCEPT_RETRY = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ACCEPT_IGNORE = {errno.ECONNABORTED, errno.EAGAIN, errno.EINTR, errno.EPROTO}
BODYLESS_STATUSES = {204, 304}
EVICTION_LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class Settings:
    """What the server needs from the configuration."""

    keepalive: bool = True
    socket_timeout: float | None = 900.0
    header_timeout: float = 60.0
    max_pending: int = 256
    max_header_line: int = 16384


class HttpServer:
    """Serves ``app`` on the listening socket ``sock`` until stopped."""

    def __init__(self, sock: socket.socket, app: Callable, settings: Settings,
                 access_log: logging.Logger) -> None:
        self.sock = sock
        self.app = app          # replaced in place by a single-process reload
        self.settings = settings
        self.access_log = access_log
        self.scheme = "https" if hasattr(sock, "do_handshake") else "http"
        self.pool = eventlet.GreenPool(GREEN_POOL_SIZE)
        # Pending connections, oldest first (an ordered set).
        self.pending: collections.OrderedDict[Connection, None] = collections.OrderedDict()
        self.stopping = False
        self.deadline: float | None = None
        self.acceptor: eventlet.greenthread.GreenThread | None = None
        self.evicted = 0
        self.evictions_logged = -EVICTION_LOG_INTERVAL

    def serve(self) -> None:
        """Accept connections until ``stop``; then let the open ones end."""
        self.acceptor = eventlet.spawn(self._accept)
        try:
            self.acceptor.wait()
        except greenlet.GreenletExit:
            pass
        self._wait_for_connections()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, address = self.sock.accept()
            except OSError as err:
                if err.errno in ACCEPT_RETRY:
                    LOG.error("Cannot accept connections: %s", err)
                    eventlet.sleep(0.1)
                    continue
                if err.errno in ACCEPT_IGNORE:
                    continue
                raise
            client.settimeout(self.settings.socket_timeout)
            self.pool.spawn_n(Connection(self, client, address).serve)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting and close pending connections; requests in progress
        get ``grace`` seconds (None: as long as they take). Call it from a
        greenthread, not from a signal handler.
        """
        if grace is not None:
            deadline = time.monotonic() + grace
            self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        if self.stopping:
            return
        self.stopping = True
        # Closing a socket does not wake a greenthread waiting on it, so
        # the accepting one is ended first.
        if self.acceptor is not None:
            self.acceptor.kill()
        self.sock.close()
        for connection in list(self.pending):
            connection.hang_up()

    def _wait_for_connections(self) -> None:
        while self.pool.running():
            if self.deadline is not None and time.monotonic() >= self.deadline:
                LOG.warning("Stopping with %d request(s) unfinished", self.pool.running())
                return
            # Short waits, so a deadline set meanwhile (SIGTERM during a
            # reload's drain) is noticed.
            with eventlet.Timeout(0.2, False):
                self.pool.waitall()

    # -- pending connections ---------------------------------------------
    def enter_pending(self, connection: Connection) -> None:
        self.pending[connection] = None
        if len(self.pending) > self.settings.max_pending:
            oldest, _ = self.pending.popitem(last=False)
            oldest.hang_up()
            self.evicted += 1
            # Once a minute at most: under a flood of slow clients, one
            # line per closed connection would flood the log instead.
            if time.monotonic() - self.evictions_logged > EVICTION_LOG_INTERVAL:
                LOG.warning("More than %d connections waiting for a request head "
                            "(max_pending_connections): %d closed so far, the "
                            "last from %s", self.settings.max_pending, self.evicted,
                            oldest.address[0])
                self.evictions_logged = time.monotonic()

    def leave_pending(self, connection: Connection) -> None:
        self.pending.pop(connection, None)


class _Response:
    """What the app has said about the response so far."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.length: int | None = None      # Content-Length, if framed by it
        self.chunked = False
        self.bodyless = False
        self.body_sent = 0
        self.keep_alive = False

    @property
    def code(self) -> int:
        return int(self.status[:3])


class Connection:
    """One client connection: requests one after the other."""

    def __init__(self, server: HttpServer, sock: socket.socket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.address = address if isinstance(address, tuple) else ("unix", "")
        self.rfile = sock.makefile("rb", READ_BUFFER)
        self.linger = False     # unread input may follow: drain before closing

    def serve(self) -> None:
        try:
            first = True
            while self._one_request(first):
                first = False
        except OSError as err:
            LOG.debug("Connection from %s ended: %s", self.address[0], err)
        finally:
            self.server.leave_pending(self)
            if self.linger and not self.server.stopping:
                self._drain_input()
            greenio.shutdown_safe(self.sock)
            self.sock.close()
            self.rfile.close()

    def hang_up(self) -> None:
        """End the connection from another greenthread: the one serving it
        sees the end of its input, and closes the socket.

        (Closing it here would not wake that greenthread.)
        """
        greenio.shutdown_safe(self.sock)

    def _drain_input(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
            with eventlet.Timeout(LINGER_SECONDS, False):
                while self.sock.recv(READ_BUFFER):
                    pass
        except OSError:
            pass

    # -- one request ------------------------------------------------------
    def _one_request(self, first: bool) -> bool:
        """Serve one request; True if the connection can carry another."""
        head = self._read_head(first)
        if head is None:
            return False
        started = time.time()
        try:
            length = body_length(head)
        except exception.GlanceError as err:
            self._refuse(head, err, started)
            return False
        body: BodyInput
        response = _Response()
        send_continue = self._continue_sender(head, response)
        if length is None:
            body = ChunkedInput(self.rfile, send_continue)
        else:
            body = LengthInput(self.rfile, length, send_continue)
        environ = self._environ(head, body)
        self._run(self.server.app, environ, head, response, started)
        if response.keep_alive and not self.server.stopping:
            self._finish_body(body, head, response)
        if not body.complete:
            self.linger = True
            return False
        return response.keep_alive and not self.server.stopping

    def _read_head(self, first: bool) -> RequestHead | None:
        if self.server.stopping:
            return None
        self.server.enter_pending(self)
        try:
            if not first and not self.rfile.peek(1):
                return None     # the client closed its idle connection
            timer = eventlet.Timeout(self.server.settings.header_timeout)
            try:
                return read_head(self.rfile, self.server.settings.max_header_line)
            except eventlet.Timeout as expired:
                if expired is not timer:
                    raise
                LOG.info("Closing a connection from %s: no complete request "
                         "head within %ss", self.address[0],
                         self.server.settings.header_timeout)
                return None
            finally:
                timer.cancel()
        except exception.GlanceError as err:
            self._refuse(None, err, time.time())
            return None
        finally:
            self.server.leave_pending(self)

    def _refuse(self, head: RequestHead | None, err: exception.GlanceError,
                started: float) -> None:
        """Answer a request the server cannot frame, then close."""
        LOG.info("Refused a request from %s: %s", self.address[0], err)
        self.linger = True
        if head is None:     # not even the request line was understood
            head = RequestHead("GET", "-", "HTTP/1.1", [("Connection", "close")])
        else:
            head.headers.append(("Connection", "close"))
        error = faults.to_http(err)
        environ = self._environ(head, LengthInput(self.rfile, 0, lambda: False))
        self._run(error, environ, head, _Response(), started)

    def _finish_body(self, body: BodyInput, head: RequestHead, response: _Response) -> None:
        """Read and drop what the app left of the request body, so the
        connection can carry the next request (and a client that sends its
        whole body before reading gets to read the answer)."""
        if body.complete or body.broken:
            return
        if head.expects_continue and not body.continue_sent:
            return      # the client may never send it
        try:
            while not body.complete and body.read(READ_BUFFER):
                pass
        except (OSError, exception.GlanceError):
            pass

    def _continue_sender(self, head: RequestHead, response: _Response) -> Callable[[], bool]:
        """What the body input runs before reading: ``100 Continue`` if the
        client waits for it and no response has started."""
        def send_continue() -> bool:
            if head.expects_continue and not response.head_sent:
                self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                return True
            return False
        return send_continue

    # -- WSGI ---------------------------------------------------------------
    def _environ(self, head: RequestHead, body: BodyInput) -> dict[str, Any]:
        path, _, query = head.target.partition("?")
        server_name, server_port = self.sock.getsockname()[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": head.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": _unquote_latin1(path),
            "RAW_PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": server_name,
            "SERVER_PORT": str(server_port),
            "SERVER_PROTOCOL": head.version,
            "REMOTE_ADDR": self.address[0],
            "REMOTE_PORT": str(self.address[1]),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.server.scheme,
            "wsgi.input": body,
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if self.server.scheme == "https":
            environ["HTTPS"] = "on"
        for name, value in head.headers:
            key = _environ_key(name)
            if key is None:
                continue
            if key in environ:
                environ[key] += "," + value
            else:
                environ[key] = value
        return environ

    def _run(self, app: Callable, environ: dict[str, Any], head: RequestHead,
             response: _Response, started: float) -> None:
        """Call ``app`` and send its response; log the access line."""
        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and response.head_sent:
                raise exc_info[1].with_traceback(exc_info[2])
            response.status, response.headers = status, list(headers)
            return write

        def write(data: bytes) -> None:
            self._write(head, response, data)

        result: Iterable[bytes] | None = None
        try:
            result = app(environ, start_response)
            self._send_body(head, response, result)
        except (BrokenPipeError, ConnectionResetError) as err:
            LOG.info("%s %s: the client went away: %s", head.method, head.target, err)
            response.keep_alive = False
        except Exception:   # noqa: BLE001 - any app failure is a 500 or a cut
            LOG.exception("Request %s %s failed", head.method, head.target)
            response.keep_alive = False
            if not response.head_sent:
                self._send_error(head, response)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:   # noqa: BLE001 - the response is over either way
                    LOG.exception("Closing the response of %s failed", head.target)
            self._log_access(head, response, started)

    def _send_body(self, head: RequestHead, response: _Response,
                   result: Iterable[bytes]) -> None:
        if head.method == "HEAD":
            # Only until the app has called start_response: a HEAD must not
            # read (say) an image from its store.
            if not response.status:
                iterator = iter(result)
                while not response.status and next(iterator, None) is not None:
                    pass
            self._write(head, response, b"", final=True)
            return
        if (isinstance(result, (list, tuple)) and response.status
                and not _has_header(response.headers, "content-length")):
            response.headers.append(("Content-Length", str(sum(len(b) for b in result))))
        regions = self._sends_regions(response) and data_out.allow_regions(result)
        for data in result:
            if regions and isinstance(data, data_out.FileRegion):
                self._send_region(head, response, data)
            elif data:
                self._write(head, response, data)
        self._write(head, response, b"", final=True)

    def _sends_regions(self, response: _Response) -> bool:
        """Whether file regions of the body can go out by sendfile(2): the
        bytes as they are on disk, so not through TLS nor chunked framing."""
        return (self.server.scheme == "http" and bool(response.status)
                and response.code not in BODYLESS_STATUSES and response.code >= 200
                and _has_header(response.headers, "content-length"))

    def _send_region(self, head: RequestHead, response: _Response,
                     region: data_out.FileRegion) -> None:
        """Send a file region with sendfile(2): the kernel moves the bytes
        from the page cache to the socket, none are copied through Python."""
        if not response.head_sent:
            self._write(head, response, b"")
        assert response.length is not None
        count = region.length
        if count > response.length - response.body_sent:
            LOG.error("%s %s: the app sent more than its Content-Length",
                      head.method, head.target)
            count = response.length - response.body_sent
            response.keep_alive = False
        out = self.sock.fileno()
        timeout = self.sock.gettimeout()
        offset, sent = region.offset, 0
        while sent < count:
            try:
                done = os.sendfile(out, region.fd, offset, count - sent)
            except BlockingIOError:
                trampoline(out, write=True, timeout=timeout,
                           timeout_exc=TimeoutError("timed out"))
                continue
            if not done:
                response.keep_alive = False
                raise region.short(sent)
            offset += done
            sent += done
            response.body_sent += done

    def _send_error(self, head: RequestHead, response: _Response) -> None:
        error = faults.to_http(exception.ServerError())
        assert error is not None
        response.status = error.status
        response.headers = [("Content-Type", "text/plain; charset=UTF-8"),
                            ("Connection", "close")]
        body = error.explanation.encode("utf-8")
        response.headers.append(("Content-Length", str(len(body))))
        try:
            self._write(head, response, body, final=True)
        except OSError:
            pass

    def _write(self, head: RequestHead, response: _Response, data: bytes,
               final: bool = False) -> None:
        out = b""
        if not response.head_sent:
            if not response.status:
                raise RuntimeError("the app sent a body before start_response")
            out = self._head_bytes(head, response, data if final else None)
            response.head_sent = True
        if response.bodyless:
            data = b""
        elif response.length is not None:
            room = response.length - response.body_sent
            if len(data) > room:
                LOG.error("%s %s: the app sent more than its Content-Length",
                          head.method, head.target)
                data = data[:room]
                response.keep_alive = False
        if data:
            response.body_sent += len(data)
            out += b"%x\r\n%s\r\n" % (len(data), data) if response.chunked else data
        if final and response.chunked:
            out += b"0\r\n\r\n"
        if (final and not response.bodyless and response.length is not None
                and response.body_sent < response.length):
            response.keep_alive = False     # the client sees a short body
        if out:
            self.sock.sendall(out)

    def _head_bytes(self, head: RequestHead, response: _Response,
                    whole_body: bytes | None) -> bytes:
        """The status line and headers; decides framing and keep-alive."""
        for name, value in response.headers:
            if not is_valid_field(name, value):
                raise ValueError("the app set an invalid response header %r" % name)
        code = response.code
        response.bodyless = (head.method == "HEAD" or code in BODYLESS_STATUSES
                             or 100 <= code < 200)
        headers = [(n, v) for n, v in response.headers if n.lower() != "connection"]
        length = _header(headers, "content-length")
        keep_alive = (self.server.settings.keepalive and head.keep_alive
                      and not self.server.stopping and not _has_token(response.headers,
                                                                       "connection", "close"))
        if length is not None:
            response.length = int(length)
        elif response.bodyless:
            pass
        elif whole_body is not None:
            response.length = len(whole_body)
            headers.append(("Content-Length", str(response.length)))
        elif head.version == "HTTP/1.1":
            response.chunked = True
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            keep_alive = False      # an HTTP/1.0 body ends with the connection
        if not _has_header(headers, "date"):
            headers.append(("Date", _http_date()))
        if not keep_alive:
            headers.append(("Connection", "close"))
        elif head.version == "HTTP/1.0":
            headers.append(("Connection", "keep-alive"))
        response.keep_alive = keep_alive
        lines = ["HTTP/1.1 %s\r\n" % response.status]
        lines += ["%s: %s\r\n" % (_capitalize(n), v) for n, v in headers]
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _log_access(self, head: RequestHead, response: _Response, started: float) -> None:
        self.server.access_log.info(
            '%s - - [%s] "%s %s %s" %s %d %.6f', self.address[0],
            time.strftime("%d/%b/%Y %H:%M:%S", time.localtime(started)),
            head.method, head.target, head.version, response.status[:3] or "-",
            response.body_sent, time.time() - started)


def _environ_key(name: str) -> str | None:
    """The WSGI variable of header ``name``; None to drop it.

    ``A_B`` and ``A-B`` would land in the same variable, so a name with an
    underscore is dropped, except under ``x-image-meta-``: the v1 API takes
    both spellings of image metadata headers as equal (python-glanceclient
    sends ``x-image-meta-disk_format``), so there the merge is what is meant.
    """
    if "_" in name and not name.lower().startswith("x-image-meta-"):
        return None
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return key
    return "HTTP_" + key


def _unquote_latin1(path: str) -> str:
    return unquote(path, encoding="latin-1")


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for n, v in headers if n.lower() == name), None)


def _has_header(headers: list[tuple[str, str]], name: str) -> bool:
    return _header(headers, name) is not None


def _has_token(headers: list[tuple[str, str]], name: str, token: str) -> bool:
    return any(token in [t.strip().lower() for t in v.split(",")]
               for n, v in headers if n.lower() == name)


def _capitalize(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


_date_cache: list[Any] = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return str(_date_cache[1])
