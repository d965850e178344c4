"""A TCP relay that cuts a backend's answer short, as a restarting
backend would: a faithful fault between a client and a real server."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class CuttingRelay:
    """A TCP relay to a backend that can drop one connection mid-response.

    After ``cut_after(n)``, the first connection whose responses exceed ``n``
    bytes is closed abruptly, as a backend restarting mid-download would;
    connections after that are relayed whole.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._limit: int | None = None
        self._cut_at = 0
        self._lock = threading.Lock()
        self.cuts = 0
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def cut_after(self, limit: int) -> None:
        self._limit = limit

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, responses: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                sent += len(data)
                if responses and self._should_cut(sent):
                    dst.sendall(data[: max(0, len(data) - (sent - self._cut_at))])
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _should_cut(self, sent: int) -> bool:
        with self._lock:
            if self._limit is None or sent <= self._limit:
                return False
            self._cut_at, self._limit = self._limit, None
            self.cuts += 1
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(timeout=5)


def relay_to(url: str) -> tuple[CuttingRelay, str]:
    """A CuttingRelay to ``url``'s host and port, and ``url`` rewritten to
    go through it; the caller closes the relay."""
    parts = urlsplit(url)
    relay = CuttingRelay((parts.hostname or "127.0.0.1", parts.port or 80))
    return relay, urlunsplit(parts._replace(netloc=f"127.0.0.1:{relay.port}"))
