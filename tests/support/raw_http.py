"""Reading HTTP answers from a raw client socket, for framing tests."""

from __future__ import annotations

import socket


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    received = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return received
        received += data


def read_until(sock: socket.socket, end: bytes) -> bytes:
    """Byte by byte up to and including ``end`` (e.g. a head's blank line),
    so nothing after it is consumed."""
    received = b""
    while not received.endswith(end):
        data = sock.recv(1)
        assert data, received
        received += data
    return received
