"""Hashing image data: the md5 ``checksum`` and the multihash.

hashlib releases the GIL while it hashes a buffer of more than 2 KiB, so a
digest can be computed on a native thread, on another core, while the
request thread goes on reading the socket and writing the store. With
``background``, each algorithm hashes on its own ``offload.Lane``: md5 and
the multihash run side by side, each a few pieces behind the reader, so
neither waits for the other nor for the socket.

Measured with tools/benchmark.py (1 GiB upload to the file store, 2 cores):
md5 alone on a native thread took 166-175 MiB/s against 192 MiB/s hashed
in place, so one digest is computed in place; only two digests (md5 and a
multihash) go to lanes by default. Each costs about 1.4 CPU seconds per
GiB here, the largest share of an upload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from glance_clone.common import offload

MD5 = "md5"
# Pieces a digest may lag behind the reader: room for the scheduler to keep
# both cores busy, at the cost of holding that many pieces.
LANE_DEPTH = 2


def new(algorithm: str) -> Any:
    """A hashlib object for ``algorithm``; raises ValueError for an unknown one."""
    if algorithm == MD5:
        return hashlib.md5(usedforsecurity=False)
    return hashlib.new(algorithm)


def check_algorithm(algorithm: str) -> None:
    """Raise ValueError unless hashlib offers ``algorithm`` with a fixed-size
    hex digest (the shake hashes need a length: not usable)."""
    try:
        new(algorithm).hexdigest()
    except TypeError:
        raise ValueError("%s has no fixed digest size" % algorithm) from None


# (algorithm, hex digest): an image's ``os_hash_algo`` and ``os_hash_value``.
Multihash = tuple[str, str]


def recorded_multihash(image: Mapping[str, Any]) -> Multihash | None:
    """The multihash an image record holds, None when it has none (an
    image from before multihash, or without data)."""
    algorithm, value = image.get("os_hash_algo"), image.get("os_hash_value")
    if not algorithm or not value:
        return None
    return str(algorithm), str(value)


class Digests:
    """The md5 and, when ``multihash`` names an algorithm, that hash of one stream.

    Feed it with ``update`` in stream order; the ``md5`` and ``multihash``
    properties wait for every update to be hashed.
    """

    def __init__(self, multihash: str | None = None,
                 background: bool | None = None) -> None:
        self._hashers = [new(MD5)]
        self.multihash_algorithm = multihash
        if multihash:
            self._hashers.append(new(multihash))
        background = len(self._hashers) > 1 if background is None else background
        self._lanes = ([offload.Lane(hasher.update, LANE_DEPTH) for hasher in self._hashers]
                       if background else [])

    def update(self, data: bytes) -> None:
        if not self._lanes or len(data) < offload.MIN_SIZE:
            self._settle()
            for hasher in self._hashers:
                hasher.update(data)
            return
        if not isinstance(data, bytes):
            data = bytes(data)      # the caller may reuse its buffer
        for lane in self._lanes:
            lane.put(data)

    def _settle(self) -> None:
        for lane in self._lanes:
            lane.join()

    @property
    def md5(self) -> str:
        """The md5 hex digest of everything fed so far."""
        self._settle()
        return str(self._hashers[0].hexdigest())

    @property
    def multihash(self) -> str | None:
        """The multihash hex digest so far, None without a multihash algorithm."""
        self._settle()
        if len(self._hashers) < 2:
            return None
        return str(self._hashers[1].hexdigest())

    def mismatch(self, checksum: str | None, multihash: Multihash | None) -> str:
        """Why the data hashed so far is not the one whose md5 is
        ``checksum`` and whose multihash is ``multihash``, or ''.

        A multihash of another algorithm than ours is not compared.
        """
        if checksum and self.md5 != checksum:
            return "checksum %s, expected %s" % (self.md5, checksum)
        if multihash is not None and multihash[0] == self.multihash_algorithm:
            value = self.multihash
            if value != multihash[1]:
                return "%s %s, expected %s" % (multihash[0], value, multihash[1])
        return ""
