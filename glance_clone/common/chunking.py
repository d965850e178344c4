"""The size image data moves in, and request bodies read as chunks.

What happens to the chunks on the way in or out (counting, hashing,
limits, checks) is ``data_in`` and ``data_out``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from glance_clone.common import exception

# Image data moves in 1 MiB chunks everywhere (request bodies, store reads,
# the cache): each chunk costs a trip through Python and the WSGI server's
# write path, and 64 KiB chunks halved single-stream throughput. 16
# concurrent downloads still hold only a few MiB.
CHUNK_SIZE = 1024 * 1024
# Request bodies are read in larger pieces: every piece is hashed twice,
# inspected and written on native threads, and each hand-over costs a trip
# through the hub; 4 MiB is also an RBD write, passed on without a copy.
BODY_PIECE = 4 * 1024 * 1024


def body_chunks(stream: BinaryIO, expected: int | None,
                size: int = BODY_PIECE) -> Iterator[bytes]:
    """Chunks of a request body; raises ClientDisconnected when it ends short.

    ``expected`` is the Content-Length, or None for a chunked body.
    """
    remaining = expected
    while remaining is None or remaining > 0:
        want = size if remaining is None else min(size, remaining)
        try:
            chunk = stream.read(want)
        except (OSError, ValueError):
            raise exception.ClientDisconnected()
        if not chunk:
            if remaining:
                raise exception.ClientDisconnected()
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk
