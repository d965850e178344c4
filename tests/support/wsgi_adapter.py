"""A requests transport adapter that calls a WSGI app in-process, so code
speaking HTTP to another glance-api (a region) can be driven against an
in-process stack in unit tests."""

from __future__ import annotations

import io
from typing import Any

import requests
import urllib3
import webob
from requests.adapters import BaseAdapter


class WSGIAdapter(BaseAdapter):
    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        body = request.body
        if body is not None and not isinstance(body, (bytes, str)):
            body = b"".join(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        url = urllib3.util.parse_url(request.url)
        req = webob.Request.blank(url.path or "/", method=request.method,
                                  query_string=url.query or "")
        for name, value in request.headers.items():
            req.headers[name] = value
        if body is not None:
            req.body = body
        res = req.get_response(self.app)
        response = requests.Response()
        response.status_code = res.status_int
        response.reason = res.status.partition(" ")[2]
        response.headers = requests.structures.CaseInsensitiveDict(res.headers)
        response.raw = urllib3.HTTPResponse(io.BytesIO(res.body), headers=dict(res.headers),
                                            status=res.status_int, preload_content=False)
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def session_for(app: Any) -> requests.Session:
    session = requests.Session()
    adapter = WSGIAdapter(app)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
