"""The ``gzip`` paste filter: compresses responses for clients that accept it.

Not in any shipped pipeline (as in Glance); operators may add it. Image
downloads (``application/octet-stream``) are compressed while they stream,
which drops ``Content-Length``; other responses are compressed whole.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any

import webob

from glance_clone.common import wsgi


def _gzip_stream(chunks: Any) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    try:
        for chunk in chunks:
            data = compressor.compress(chunk)
            if data:
                yield data
        yield compressor.flush()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


class GzipMiddleware(wsgi.Middleware):
    @classmethod
    def factory(cls, global_conf: dict, **local_conf: str) -> Callable:
        return lambda app: cls(app)

    def process_response(self, response: webob.Response) -> webob.Response:
        accept = response.request.headers.get("Accept-Encoding", "")
        if "gzip" not in accept or response.content_encoding or \
                response.status_int in (204, 304) or response.request.method == "HEAD":
            return response
        if response.content_type == "application/octet-stream":
            response.app_iter = _gzip_stream(response.app_iter)
            response.content_length = None
            response.content_encoding = "gzip"
        else:
            response.encode_content("gzip")
        return response
