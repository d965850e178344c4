"""Keep-alive HTTP connections from one process to glance-registry.

Every image request in glance-api makes one to three registry calls, so
the cost of a call is most of the cost of a HEAD or a DELETE. This
transport is ``http.client`` over a small pool of idle connections: no
per-call request preparation, cookie jars, hooks or redirect handling,
none of which the registry uses (it never redirects nor sets cookies).
Under glance-api's eventlet patching the sockets are green, so a call
blocks only its own request.

Connections the registry has closed while idle (its
``client_socket_timeout``, a reload or a restart) are noticed before
reuse and replaced, so no request is ever sent twice because of them.

A refused connection is tried again for up to ``reconnect_time`` seconds:
while ``glance-control registry restart`` runs, nothing listens on the
port for the second or two between the old registry closing its socket
and the new one binding it (longer on a loaded machine: the new process
must start its interpreter and import its modules first). Nothing was
sent, so this is safe for every request, writes included; the caller
waits a little instead of getting a 503.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import eventlet
from eventlet import patcher

# The real select: a zero-timeout poll of an idle socket must not yield to
# the eventlet hub, it only asks the kernel whether the peer hung up.
_select = patcher.original("select")

# Seconds a refused connection is tried again (a registry restart's gap),
# and the pauses between tries: short at first, the gap often is.
RECONNECT_TIME = 3.0
FIRST_PAUSE = 0.02
MAX_PAUSE = 0.25


class TransportError(Exception):
    """The connection failed before a complete answer arrived."""


class TransportTimeout(TransportError):
    """The registry did not answer within the timeout."""


class NotSent(TransportError):
    """No connection could be made: the request never left this process."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


def tls_context(verify: bool | str, client_cert: tuple[str, str] | None) -> ssl.SSLContext:
    """A client TLS context: ``verify`` is False, True or a CA bundle path."""
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(*client_cert)
    return context


class HTTPTransport:
    """Sends requests to one ``http(s)://host:port`` base URL."""

    def __init__(self, base_url: str, timeout: float | None, pool_size: int,
                 tls: ssl.SSLContext | None = None,
                 reconnect_time: float = RECONNECT_TIME) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.pool_size = pool_size
        self.tls = tls
        self.reconnect_time = reconnect_time
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def send(self, method: str, target: str, headers: dict[str, str],
             body: bytes | None = None) -> Reply:
        """One request on a pooled connection.

        Raises NotSent when no connection could be made (the registry cannot
        have seen the request), TransportTimeout or TransportError when the
        request may have reached it but no complete answer came back.
        """
        conn = self._checkout()
        if conn.sock is None:
            self._open(conn)
        try:
            conn.request(method, self.prefix + target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except TimeoutError as err:
            conn.close()
            raise TransportTimeout(str(err) or "timed out") from err
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise TransportError(str(err) or type(err).__name__) from err
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._checkin(conn)
        return Reply(response.status, data)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _open(self, conn: http.client.HTTPConnection) -> None:
        """Connect, trying again while refused; raises NotSent."""
        backoff = Backoff(self.reconnect_time)
        while True:
            try:
                conn.connect()
                return
            except ConnectionRefusedError as err:
                conn.close()
                if not backoff.wait():
                    raise NotSent(str(err) or type(err).__name__) from err
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                raise NotSent(str(err) or type(err).__name__) from err

    # -- the pool ----------------------------------------------------------
    def _checkout(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if _still_open(conn):
                return conn
            conn.close()

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)


class Backoff:
    """Growing pauses between tries, for ``seconds`` at most."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.pause = FIRST_PAUSE

    def wait(self) -> bool:
        """Pause before the next try; False (no pause) when it would end
        past the deadline."""
        if time.monotonic() + self.pause > self.deadline:
            return False
        # eventlet's sleep, patched or not: only this greenthread waits, and
        # a hub running other greenthreads (a server's) is never held up.
        eventlet.sleep(self.pause)
        self.pause = min(self.pause * 2, MAX_PAUSE)
        return True


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection can carry another request.

    An idle connection has nothing to read; if its socket is readable the
    peer closed it (or sent something unasked), either way it is unusable.
    """
    sock: Any = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = _select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
