"""A registry-client transport that calls a WSGI app in-process.

``RegistryClient(conf, transport=WSGITransport(app))`` lets unit tests run
glance-api against the real registry app without a socket.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import webob

from glance_clone.registry.client.v1.transport import Reply


class WSGITransport:
    def __init__(self, app: Any) -> None:
        self.app = app

    def send(self, method: str, target: str, headers: dict[str, str],
             body: bytes | None = None) -> Reply:
        parts = urlsplit(target)
        request = webob.Request.blank(parts.path, method=method, query_string=parts.query)
        for name, value in headers.items():
            request.headers[name] = value
        request.body = body or b""
        response = request.get_response(self.app)
        return Reply(response.status_code, response.body)

    def close(self) -> None:
        pass


def transport_for(app: Any) -> WSGITransport:
    return WSGITransport(app)
