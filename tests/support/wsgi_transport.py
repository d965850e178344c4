"""A requests transport that calls a WSGI app in-process.

The registry client takes a ``requests.Session``; mounting this adapter on
it lets unit tests run glance-api against the real registry app without a
socket.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import webob


class WSGIAdapter(requests.adapters.BaseAdapter):
    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        wreq = webob.Request.blank(parts.path, method=request.method,
                                   query_string=parts.query)
        for name, value in request.headers.items():
            wreq.headers[name] = value
        wreq.body = body
        wresp = wreq.get_response(self.app)
        response = requests.Response()
        response.status_code = wresp.status_code
        response.headers.update(wresp.headers)
        response.raw = io.BytesIO(wresp.body)
        response._content = wresp.body
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def session_for(app: Any) -> requests.Session:
    session = requests.Session()
    session.mount("http://", WSGIAdapter(app))
    return session
