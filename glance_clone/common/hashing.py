"""Hashing image data: the md5 ``checksum`` and the multihash.

hashlib releases the GIL while it hashes a buffer of more than 2 KiB, so a
digest can be computed on a native thread, on another core, while the
request thread goes on reading the socket and writing the store. With
``background``, ``Digests`` keeps one chunk in flight per algorithm: chunk
N is hashed while chunk N+1 is read, each algorithm on its own thread.

Measured with tools/benchmark.py (1 GiB upload to the file store, 2 cores):
md5 alone on a native thread took 166-175 MiB/s against 192 MiB/s hashed
in place. Handing each 1 MiB chunk to a thread and waiting for it costs
more than the overlap gains, so one digest is computed in place; only two
digests (md5 and a multihash) go to threads by default, where they run
side by side instead of one after the other.

The threads are ``common.offload``'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from glance_clone.common import offload
from glance_clone.common.offload import Job

MD5 = "md5"


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
        self._background = len(self._hashers) > 1 if background is None else background
        self._jobs: list[Job] = []

    def update(self, data: bytes) -> None:
        self._settle()
        if not self._background or len(data) < offload.MIN_SIZE:
            for hasher in self._hashers:
                hasher.update(data)
            return
        if not isinstance(data, bytes):
            data = bytes(data)      # the caller may reuse its buffer
        self._jobs = [Job(hasher.update, data) for hasher in self._hashers]

    def _settle(self) -> None:
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.wait()

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
