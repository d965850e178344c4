"""Writing image data to an HTTP(S) PUT target that needs no stored
credentials: a Swift TempURL or an S3 presigned URL (the export task).

The target is chosen by a caller, so it passes the source filter that
external sources pass (``[import_filtering_opts]``: no local files, no
internal hosts unless ``allowed_hosts`` lists them), before the request
and again on the connected peer address. Redirects are not followed: a
signed URL is answered where it points or not at all.

The body goes with a Content-Length (object stores refuse chunked PUTs to
signed URLs, and a body cut short is then never stored) and with the
image's MD5 both as ``ETag`` (Swift refuses an object whose MD5 differs)
and as ``Content-MD5`` (S3 does): a corrupted transfer leaves nothing at
the target. An S3 URL presigned with signature version 2 signs
Content-MD5 and Content-Type as empty: neither is sent to it, and the
ETag S3 answers is the check. The answer must be a 2xx whose ETag, when it is an MD5, equals
the MD5 of what was sent.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from oslo_config import cfg

from glance_clone.common import exception
from glance_clone.common.redaction import redact_url
from glance_clone.store import http, source_filter

LOG = logging.getLogger(__name__)

MD5 = re.compile(r"[0-9a-f]{32}")


def check_target(conf: cfg.ConfigOpts, url: Any) -> str:
    """Raises Invalid (not an http(s) URL) or ExternalSourceRefused."""
    if not isinstance(url, str) or url.partition(":")[0].lower() not in ("http", "https"):
        raise exception.Invalid("'export_to' must be an http or https URL")
    source_filter.check_source(conf, url)
    return url


def shown(url: str) -> str:
    """The target as a result or message may show it: no signature or
    credentials (scheme, host and path)."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    return redact_url(url) + "/" + path.split("://", 1)[-1].partition("/")[2]


def _signs_headers(url: str) -> bool:
    """Whether ``url`` is an S3 URL presigned the old way (signature
    version 2), whose signature covers Content-Type and Content-MD5: those
    must then go as they were signed (empty)."""
    query = {name.lower() for name, _value in parse_qsl(urlsplit(url).query)}
    return {"awsaccesskeyid", "signature"} <= query


class _Counted:
    """The chunks, counted and hashed as they go out, with a length."""

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size
        self.sent = 0
        self.md5 = hashlib.md5(usedforsecurity=False)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.sent += len(chunk)
            self.md5.update(chunk)
            yield chunk


class PutTarget:
    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    def _peer_check(self, host: str, address: str) -> None:
        source_filter.check_address(self.conf, host, address, host)

    def put(self, url: str, chunks: Iterable[bytes], size: int,
            checksum: str | None) -> dict[str, Any]:
        """Send ``size`` bytes; what was written (``size``, ``checksum``,
        ``etag`` when the target sent one, ``verified``: etag or length).
        Raises ExternalSourceRefused, BadGateway (an error answer, an ETag that does not match),
        RemoteServiceUnavailable, GatewayTimeout."""
        check_target(self.conf, url)
        body = _Counted(chunks, size)
        headers = {}
        if checksum:
            headers["ETag"] = checksum
        if not _signs_headers(url):
            headers["Content-Type"] = "application/octet-stream"
            if checksum:
                headers["Content-MD5"] = base64.b64encode(
                    bytes.fromhex(checksum)).decode()
        stall = self.conf.glance_store.http_stall_timeout
        session = http.checked_session(self._peer_check)
        try:
            response = session.put(url, data=body, headers=headers,
                                   allow_redirects=False, timeout=(stall, stall))
        except exception.GlanceError:
            raise
        except requests.exceptions.Timeout as err:
            raise exception.GatewayTimeout(
                "The export target %s sent nothing for %g seconds"
                % (redact_url(url), stall)) from err
        except requests.exceptions.RequestException as err:
            # The reason may be our own (the source stream failed).
            cause = err.__context__
            if isinstance(cause, exception.GlanceError):
                raise cause from err
            LOG.warning("Export target %s unreachable: %s", redact_url(url),
                        type(err).__name__)
            raise exception.RemoteServiceUnavailable(
                "The export target %s could not be reached" % redact_url(url)) from err
        finally:
            session.close()
        try:
            return self._verify(url, response, body, size, checksum)
        finally:
            response.close()

    def _verify(self, url: str, response: requests.Response, body: _Counted,
                size: int, checksum: str | None) -> dict[str, Any]:
        where = shown(url)
        sent = body.md5.hexdigest()
        if body.sent != size or (checksum and sent != checksum):
            # The target refused it (Content-Length, ETag, Content-MD5), or
            # (2xx) has no way to tell.
            stored = 200 <= response.status_code < 300
            raise exception.BadGateway(
                "The image data read for the export does not match the image "
                "(%d bytes, MD5 %s)%s" % (body.sent, sent,
                                          "; the target %s may hold a wrong copy" % where
                                          if stored else ""))
        if not 200 <= response.status_code < 300:
            raise exception.BadGateway(
                "The export target %s answered %d %s"
                % (where, response.status_code, response.reason or ""))
        etag = response.headers.get("ETag", "").strip().strip('"').lower()
        if MD5.fullmatch(etag) and etag != sent:
            raise exception.BadGateway(
                "The export target %s reports ETag %s for data whose MD5 is %s"
                % (where, etag, sent))
        # Without an MD5 ETag (a multipart S3 object), the target accepted
        # exactly Content-Length bytes: the length is what is verified.
        result: dict[str, Any] = {"size": body.sent, "checksum": sent,
                                  "verified": "etag" if MD5.fullmatch(etag) else "length"}
        if etag:
            result["etag"] = etag
        return result
