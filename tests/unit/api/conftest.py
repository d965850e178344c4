"""Fixtures of every glance-api test: a small HTTP server on 127.0.0.1
serving the data of locations, copy-from and web-download sources."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest


class RemoteImages:
    """What the local HTTP server serves: path -> bytes."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.files: dict[str, bytes] = {}
        # Paths answered without Content-Length (the body ends at close).
        self.unsized: set[str] = set()
        self.requests: list[tuple[str, str]] = []

    def add(self, name: str, data: bytes, sized: bool = True) -> str:
        self.files["/" + name] = data
        if not sized:
            self.unsized.add("/" + name)
        return "%s/%s" % (self.base_url, name)


@pytest.fixture
def remote() -> Iterator[RemoteImages]:
    """An HTTP server in a thread on 127.0.0.1 (listed in allowed_hosts)."""
    served: list[RemoteImages] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, with_body: bool) -> None:
            images = served[0]
            images.requests.append((self.command, self.path))
            data = images.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if self.path in images.unsized:
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    served.append(RemoteImages("http://127.0.0.1:%d" % server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
