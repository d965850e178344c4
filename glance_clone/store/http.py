"""HTTP store: read-only access to images at ``http://`` and ``https://`` URLs.

Used for image locations and copy-from sources on remote web servers. It has
no options of its own; what it may contact is governed by
``[import_filtering_opts]`` (see ``glance_clone.store.source_filter``).

- ``get`` streams the body; the size comes from ``Content-Length``.
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

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from oslo_config import cfg
from requests.adapters import HTTPAdapter

from glance_clone.common import exception
from glance_clone.store import source_filter
from glance_clone.store.base import CHUNK_SIZE, ChunkIterator, Driver, redact_url

LOG = logging.getLogger(__name__)

MAX_REDIRECTS = 5
# (connect, read) seconds: a stalled remote must not hold an upload forever.
TIMEOUTS = (10.0, 60.0)
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


def _content_length(response: requests.Response) -> int | None:
    try:
        size = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return size if size >= 0 else None


def _read_error(err: Exception) -> exception.GlanceError:
    LOG.warning("HTTP store read failed: %s", err)
    return exception.RemoteServiceUnavailable()


class HttpDriver(Driver):
    """Reads images from web servers; never writes."""

    schemes = ("http", "https")

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        source_filter.register_opts(conf)

    def get(self, url: str) -> tuple[ChunkIterator, int | None]:
        """Stream the remote body; raises NotFound, BadStoreUri,
        ExternalSourceRefused, RemoteServiceUnavailable."""
        session, response = self._open(url, "GET")
        raw = response.raw

        def read(amount: int) -> bytes:
            # Raw bytes, not decoded: they must match Content-Length.
            return raw.read(amount, decode_content=False)  # type: ignore[no-any-return]

        def close() -> None:
            response.close()
            session.close()

        return ChunkIterator(read, close, CHUNK_SIZE, _read_error), _content_length(response)

    def get_size(self, url: str) -> int:
        """Remote Content-Length, 0 if unknown; raises like ``get``."""
        session, response = self._open(url, "HEAD")
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
        session = requests.Session()
        session.trust_env = False
        adapter = _CheckedAdapter(self._peer_check)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def _open(self, url: str, method: str) -> tuple[requests.Session, requests.Response]:
        """Follow redirects from ``url``; return the final 2xx response."""
        session = self._session()
        try:
            response = self._follow(session, url, method)
            if method == "HEAD" and response.status_code in (405, 501):
                # Some servers refuse HEAD; a GET we never read costs one
                # response header.
                response.close()
                response = self._follow(session, url, "GET")
            self._check_status(response)
        except BaseException:
            session.close()
            raise
        return session, response

    def _follow(self, session: requests.Session, url: str, method: str) -> requests.Response:
        for _hop in range(MAX_REDIRECTS + 1):
            source_filter.check_source(self.conf, url)
            # The filter may allow schemes other stores serve; not ours to fetch.
            if urlsplit(url).scheme.lower() not in self.schemes:
                raise exception.ExternalSourceRefused(url=url)
            try:
                response = self._send(session, method, url)
            except exception.ExternalSourceRefused as err:
                raise exception.ExternalSourceRefused(url=url) from err
            if response.status_code not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise exception.BadStoreUri("The HTTP URL redirected without a location.")
            url = urljoin(url, location)
            LOG.debug("HTTP store following redirect to %s", redact_url(url))
        raise exception.BadStoreUri(
            f"The HTTP URL exceeded {MAX_REDIRECTS} maximum redirects.")

    @staticmethod
    def _send(session: requests.Session, method: str, url: str) -> requests.Response:
        try:
            return session.request(method, url, stream=True, allow_redirects=False,
                                   timeout=TIMEOUTS,
                                   headers={"Accept-Encoding": "identity"})
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema) as err:
            raise exception.BadStoreUri("The HTTP URL is invalid.") from err
        except requests.exceptions.RequestException as err:
            LOG.warning("HTTP store cannot reach %s: %s", redact_url(url), err)
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
