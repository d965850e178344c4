"""HTTP store: read-only access to images at ``http://`` and ``https://`` URLs.

Used for image locations and copy-from sources on remote web servers. What
it may contact is governed by ``[import_filtering_opts]`` (see
``glance_clone.store.source_filter``). Options (section ``[glance_store]``):

``http_stall_timeout`` (default 60 seconds)
    How long a source may send nothing: to accept the connection, to answer
    the request, and between any two pieces of the body. A stall raises
    GatewayTimeout (504).
``http_transfer_deadline`` (default 21600 seconds, 6 hours)
    How long one read may take in all, from the first request to the last
    byte, however steadily the source trickles; then GatewayTimeout (504).

- ``get`` streams the body; the size comes from ``Content-Length``. A body
  that ends before its ``Content-Length`` raises RemoteDataIncomplete (502).
- ``get_size`` sends HEAD (GET if the server refuses HEAD); 0 if unknown.
- Redirects are followed by hand, at most ``MAX_REDIRECTS``, and every hop is
  checked with the source filter; once connected, the peer address is
  checked again so DNS answers that change between check and connect
  cannot reach an internal address.
- A remote 404 gives NotFound, other 4xx and bad URLs BadStoreUri, 5xx and
  network failures RemoteServiceUnavailable.
- ``add`` raises StoreAddDisabled. ``delete`` only logs: the remote data is
  not ours, deleting the image merely forgets the location (the contract
  says delete-not-supported is logged and ignored).

Environment proxy settings and ``.netrc`` are ignored: a proxy would hide
the real peer address from the checks above.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from oslo_config import cfg
from requests.adapters import HTTPAdapter

from glance_clone.common import exception
from glance_clone.common.redaction import redact_url
from glance_clone.store import source_filter
from glance_clone.store.base import ChunkIterator, Driver

LOG = logging.getLogger(__name__)

GROUP = "glance_store"
MAX_REDIRECTS = 5
# A read waits until its whole amount is in (or the source ends or stalls),
# so that a short body fails before the first byte goes out (502, not a
# cut connection). From a slow web server, 1 MiB (CHUNK_SIZE) would hold
# every reader, and the cache file being filled, back for a whole MiB.
READ_SIZE = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
NOT_FOUND_MESSAGE = "HTTP datastore could not find image at URI."

PeerCheck = Callable[[str, str], None]


def _checked_connection(base: type[Any], peer_check: PeerCheck) -> type[Any]:
    """A urllib3 connection class that vets the connected peer address."""

    class CheckedConnection(base):  # type: ignore[misc, valid-type]
        def _new_conn(self) -> Any:
            sock = super()._new_conn()
            try:
                peer_check(self.host, sock.getpeername()[0])
            except BaseException:
                sock.close()
                raise
            return sock

    return CheckedConnection


class _CheckedAdapter(HTTPAdapter):
    """Transport adapter whose connections run ``peer_check`` on connect."""

    def __init__(self, peer_check: PeerCheck) -> None:
        http_cls = _checked_connection(urllib3.connection.HTTPConnection, peer_check)
        https_cls = _checked_connection(urllib3.connection.HTTPSConnection, peer_check)
        self._pool_classes = {
            "http": type("CheckedHTTPPool", (urllib3.HTTPConnectionPool,),
                         {"ConnectionCls": http_cls}),
            "https": type("CheckedHTTPSPool", (urllib3.HTTPSConnectionPool,),
                          {"ConnectionCls": https_cls}),
        }
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes


def checked_session(peer_check: PeerCheck) -> requests.Session:
    """A session without proxies or .netrc whose every connection passes
    ``peer_check(host, peer address)`` once connected."""
    session = requests.Session()
    session.trust_env = False
    adapter = _CheckedAdapter(peer_check)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _content_length(response: requests.Response) -> int | None:
    try:
        size = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return size if size >= 0 else None


OPTS = [
    cfg.FloatOpt("http_stall_timeout", default=60.0, min=0.001,
                 help="Seconds an HTTP image source (location or copy-from URL) "
                      "may send nothing, connecting and answering included, "
                      "before the transfer fails with 504."),
    cfg.FloatOpt("http_transfer_deadline", default=21600.0, min=0.001,
                 help="Seconds one read of an HTTP image source may take in "
                      "all, first request to last byte, before it fails with 504."),
]


class _Clock:
    """The stall timeout and overall deadline of one read of a source."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.stall = conf[GROUP].http_stall_timeout
        self.deadline = conf[GROUP].http_transfer_deadline
        self._end = time.monotonic() + self.deadline

    def expired(self) -> bool:
        return time.monotonic() >= self._end

    def next_wait(self) -> float:
        """Seconds the next socket operation may wait; raises GatewayTimeout
        once the deadline has passed."""
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise self.timeout_error()
        return min(self.stall, remaining)

    def timeout_error(self) -> exception.GatewayTimeout:
        if self.expired():
            LOG.warning("HTTP source not read within http_transfer_deadline (%gs)",
                        self.deadline)
            return exception.GatewayTimeout(
                "The remote server did not send the image data within %g seconds."
                % self.deadline)
        LOG.warning("HTTP source sent nothing for http_stall_timeout (%gs)", self.stall)
        return exception.GatewayTimeout(
            "The remote server sent nothing for %g seconds." % self.stall)


def _is_incomplete(err: BaseException) -> bool:
    """True if ``err`` says the body ended before its Content-Length."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, http.client.IncompleteRead) or any(
                isinstance(arg, http.client.IncompleteRead) for arg in seen.args):
            return True
        seen = seen.__cause__
    return False


def _read_error(err: Exception, clock: _Clock) -> exception.GlanceError:
    """Our exception for a failed read of a response body."""
    if isinstance(err, exception.GlanceError):
        return err
    if isinstance(err, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return clock.timeout_error()
    if _is_incomplete(err):
        LOG.warning("HTTP source ended early: %s", err)
        return exception.RemoteDataIncomplete()
    LOG.warning("HTTP store read failed: %s", err)
    return exception.RemoteServiceUnavailable()


def _reason(err: requests.exceptions.RequestException) -> str:
    """Why a request failed, without the URL requests puts in its message
    ("Max retries exceeded with url: /path?query")."""
    cause = err.args[0] if err.args else err
    reason = getattr(cause, "reason", None)
    return "%s: %s" % (type(err).__name__, reason if reason is not None else
                       type(cause).__name__)


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Let the next read of ``response``'s body wait at most ``seconds``."""
    connection = response.raw.connection
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


class HttpDriver(Driver):
    """Reads images from web servers; never writes."""

    schemes = ("http", "https")

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        conf.register_opts(OPTS, group=GROUP)
        source_filter.register_opts(conf)

    def get(self, url: str) -> tuple[ChunkIterator, int | None]:
        """Stream the remote body; raises NotFound, BadStoreUri,
        ExternalSourceRefused, RemoteServiceUnavailable, GatewayTimeout, and
        (from the iterator) RemoteDataIncomplete."""
        clock = _Clock(self.conf)
        session, response = self._open(url, "GET", clock)
        raw = response.raw

        def read(amount: int) -> bytes:
            # One receive at a time, each bounded by the stall timeout and
            # what is left of the deadline: a source trickling a byte now
            # and then must not keep one read going past the deadline.
            parts = []
            while amount > 0:
                _set_read_timeout(response, clock.next_wait())
                # Raw bytes, not decoded: they must match Content-Length.
                data = raw.read1(amount, decode_content=False)
                if not data:
                    break
                parts.append(data)
                amount -= len(data)
            return b"".join(parts)

        def close() -> None:
            response.close()
            session.close()

        return (ChunkIterator(read, close, READ_SIZE, lambda err: _read_error(err, clock)),
                _content_length(response))

    def get_size(self, url: str) -> int:
        """Remote Content-Length, 0 if unknown; raises like ``get``."""
        session, response = self._open(url, "HEAD", _Clock(self.conf))
        try:
            return _content_length(response) or 0
        finally:
            response.close()
            session.close()

    # --- transport ---------------------------------------------------------
    def _peer_check(self, host: str, address: str) -> None:
        # The URL is not known down here; _follow re-raises with the hop URL.
        source_filter.check_address(self.conf, host, address, host)

    def _session(self) -> requests.Session:
        return checked_session(self._peer_check)

    def _open(self, url: str, method: str,
              clock: _Clock) -> tuple[requests.Session, requests.Response]:
        """Follow redirects from ``url``; return the final 2xx response."""
        session = self._session()
        try:
            response = self._follow(session, url, method, clock)
            if method == "HEAD" and response.status_code in (405, 501):
                # Some servers refuse HEAD; a GET we never read costs one
                # response header.
                response.close()
                response = self._follow(session, url, "GET", clock)
            self._check_status(response)
        except BaseException:
            session.close()
            raise
        return session, response

    def _follow(self, session: requests.Session, source: str, method: str,
                clock: _Clock) -> requests.Response:
        """Request ``source``, following redirects; every hop passes the
        source filter. Errors and logs name ``source`` (scheme and host),
        never a redirect target: a Location header may hold credentials
        or a signed query string."""
        url = source
        for hop in range(MAX_REDIRECTS + 1):
            try:
                source_filter.check_source(self.conf, url)
                # The filter may allow schemes other stores serve; not ours to fetch.
                if urlsplit(url).scheme.lower() not in self.schemes:
                    raise exception.ExternalSourceRefused(url=url)
                response = self._send(session, method, url, clock, source)
            except exception.ExternalSourceRefused as err:
                if hop:
                    raise exception.RedirectRefused(url=source) from err
                raise exception.ExternalSourceRefused(url=source) from err
            if response.status_code not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise exception.BadStoreUri("The HTTP URL redirected without a location.")
            url = urljoin(url, location)
            LOG.debug("HTTP store: %s redirects (hop %d)", redact_url(source), hop + 1)
        raise exception.BadStoreUri(
            f"The HTTP URL exceeded {MAX_REDIRECTS} maximum redirects.")

    @staticmethod
    def _send(session: requests.Session, method: str, url: str,
              clock: _Clock, source: str) -> requests.Response:
        wait = clock.next_wait()
        try:
            return session.request(method, url, stream=True, allow_redirects=False,
                                   timeout=(wait, wait),
                                   headers={"Accept-Encoding": "identity"})
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema) as err:
            raise exception.BadStoreUri("The HTTP URL is invalid.") from err
        except requests.exceptions.Timeout as err:
            raise clock.timeout_error() from err
        except requests.exceptions.RequestException as err:
            LOG.warning("HTTP store cannot reach %s: %s", redact_url(source), _reason(err))
            raise exception.RemoteServiceUnavailable() from err

    @staticmethod
    def _check_status(response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        response.close()
        if status == 404:
            raise exception.NotFound(NOT_FOUND_MESSAGE)
        if status >= 500:
            raise exception.RemoteServiceUnavailable()
        raise exception.BadStoreUri(f"HTTP URL returned a {status} status code.")
