"""A client of another region's glance-api v2, acting as the caller.

Only what moving images between regions needs: read, create, change and
delete an image, its members, and its data as a stream either way (no
copy of the bytes is ever held: a download is an iterator over the
response, an upload reads its chunks as they are sent, with a
Content-Length so a short body is refused by the remote api).

The remote answers are ours: 404 NotFound, 401/403 Forbidden, 409
Conflict, 413 LimitExceeded, any other 4xx Invalid, 5xx and network
failures RemoteServiceUnavailable, silence for the region's ``timeout``
GatewayTimeout; each names the region and quotes the remote message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

import requests

from glance_clone.common import exception
from glance_clone.common.chunking import CHUNK_SIZE
from glance_clone.common.context import RequestContext
from glance_clone.domain.regions import IDENTITY_HEADERS, Region
from glance_clone.store.base import ReadStream, remote_download

LOG = logging.getLogger(__name__)

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
# How much of a remote error body goes into our message.
MESSAGE_LIMIT = 300


class _SizedBody:
    """Chunks with a known length: requests sends them with Content-Length
    (not chunked), which object stores and our api check."""

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)


def _remote_message(response: requests.Response) -> str:
    """The message of a remote error answer (JSON or text), shortened."""
    text = response.text or ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        found = body.get("message") or body.get("title")
        nested = next((v for v in body.values() if isinstance(v, dict)), None)
        if not found and nested:
            found = nested.get("message") or nested.get("title")
        if found:
            text = str(found)
    # An HTML error page: its text, without the markup.
    text = " ".join(re.sub(r"<[^>]*>", " ", text).split())
    return text[:MESSAGE_LIMIT] or response.reason or ""


class RemoteGlance:
    def __init__(self, region: Region, context: RequestContext,
                 session: requests.Session | None = None) -> None:
        self.region = region
        self.context = context
        self.session = session or requests.Session()
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    # -- transport ---------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        context = self.context
        headers = {"X-Openstack-Request-Id": context.request_id,
                   "Accept": "application/json"}
        if self.region.auth == IDENTITY_HEADERS:
            headers.update({"X-Identity-Status": "Confirmed",
                            "X-Tenant-Id": context.tenant or "",
                            "X-User-Id": context.user or "",
                            "X-Roles": ",".join(context.roles)})
        elif context.auth_token:
            headers["X-Auth-Token"] = context.auth_token
        return headers

    def _request(self, method: str, path: str, expect: tuple[int, ...] = (200,),
                 headers: dict[str, str] | None = None, **kwargs: Any
                 ) -> requests.Response:
        url = self.region.api_url + path
        all_headers = self._headers()
        all_headers.update(headers or {})
        try:
            response = self.session.request(
                method, url, headers=all_headers, allow_redirects=False,
                timeout=(self.region.timeout, self.region.timeout),
                verify=self.region.ca_file or True, **kwargs)
        except requests.exceptions.Timeout as err:
            raise exception.GatewayTimeout(
                "Region %s did not answer within %g seconds"
                % (self.region.name, self.region.timeout)) from err
        except requests.exceptions.RequestException as err:
            LOG.warning("Region %s unreachable: %s", self.region.name, type(err).__name__)
            raise exception.RemoteServiceUnavailable(
                "Region %s could not be reached" % self.region.name) from err
        if response.status_code in expect:
            return response
        try:
            raise self._error(method, path, response)
        finally:
            response.close()

    def _error(self, method: str, path: str,
               response: requests.Response) -> exception.GlanceError:
        status = response.status_code
        message = "Region %s answered %d to %s %s: %s" % (
            self.region.name, status, method, path, _remote_message(response))
        if status == 404:
            return exception.NotFound(message)
        if status in (401, 403):
            return exception.Forbidden(message)
        if status == 409:
            return exception.Conflict(message)
        if status == 413:
            return exception.LimitExceeded(message)
        if 400 <= status < 500:
            return exception.Invalid(message)
        LOG.warning("%s", message)
        return exception.RemoteServiceUnavailable(message)

    def _json(self, method: str, path: str, body: Any = None,
              expect: tuple[int, ...] = (200,),
              content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {}
        if data is not None:
            headers["Content-Type"] = content_type
        response = self._request(method, path, expect, headers, data=data)
        try:
            return response.json() if response.content else None
        except ValueError as err:
            raise exception.BadGateway("Region %s sent an invalid answer to %s %s"
                                       % (self.region.name, method, path)) from err

    # -- images ------------------------------------------------------------------
    def get_image(self, image_id: str) -> dict | None:
        """The remote image, None when there is none (to the caller)."""
        try:
            image: dict = self._json("GET", "/v2/images/" + image_id)
        except exception.NotFound:
            return None
        return image

    def find_images(self, properties: dict[str, str]) -> list[dict]:
        """The first page of images (the caller sees) with these properties."""
        found = self._json("GET", "/v2/images?" + urlencode(properties))
        return list((found or {}).get("images") or [])

    def create_image(self, body: dict) -> dict:
        image: dict = self._json("POST", "/v2/images", body, expect=(201,))
        return image

    def patch_image(self, image_id: str, operations: list[dict]) -> dict:
        image: dict = self._json("PATCH", "/v2/images/" + image_id, operations,
                                 content_type=PATCH_TYPE)
        return image

    def delete_image(self, image_id: str) -> None:
        self._request("DELETE", "/v2/images/" + image_id, expect=(204,))

    def members(self, image_id: str) -> list[dict]:
        found = self._json("GET", "/v2/images/%s/members" % image_id)
        return list((found or {}).get("members") or [])

    def add_member(self, image_id: str, member: str) -> None:
        self._json("POST", "/v2/images/%s/members" % image_id, {"member": member})

    # -- data --------------------------------------------------------------------
    def upload(self, image_id: str, chunks: Iterable[bytes], size: int) -> None:
        """PUT ``size`` bytes as the data of the queued remote image."""
        self._request("PUT", "/v2/images/%s/file" % image_id, expect=(204,),
                      headers={"Content-Type": "application/octet-stream"},
                      data=_SizedBody(chunks, size))

    def download(self, image_id: str, size: int) -> ReadStream:
        """The remote image's data, ``size`` bytes; the stream raises
        RemoteServiceUnavailable when it ends early."""
        response = self._request("GET", "/v2/images/%s/file" % image_id,
                                 stream=True)
        raw = response.raw
        return remote_download(lambda n: raw.read(n), response.close, size,
                               "Region %s" % self.region.name, image_id, LOG,
                               CHUNK_SIZE)
