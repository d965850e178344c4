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

Under eventlet's monkey patching the native threads are eventlet's thread
pool (``tpool``) and the request greenthread waits green, so the hub serves
other requests meanwhile; elsewhere (tools, tests) a plain thread pool is used.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import eventlet.patcher
import eventlet.tpool

MD5 = "md5"
# Chunks smaller than this are hashed in place: handing them to a thread
# costs more than hashing them.
BACKGROUND_MIN = 64 * 1024

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


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


def _green() -> bool:
    return bool(eventlet.patcher.is_monkey_patched("thread"))


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="hashing")
        return _executor


class _Job:
    """One hash update running on a native thread; ``wait`` re-raises its error."""

    def __init__(self, fn: Callable[[bytes], None], data: bytes) -> None:
        if _green():
            self._handle: Any = eventlet.spawn(eventlet.tpool.execute, fn, data)
            self._wait = self._handle.wait
        else:
            self._handle = _pool().submit(fn, data)
            self._wait = self._handle.result

    def wait(self) -> None:
        self._wait()


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
        self._jobs: list[_Job] = []

    def update(self, data: bytes) -> None:
        self._settle()
        if not self._background or len(data) < BACKGROUND_MIN:
            for hasher in self._hashers:
                hasher.update(data)
            return
        if not isinstance(data, bytes):
            data = bytes(data)      # the caller may reuse its buffer
        self._jobs = [_Job(hasher.update, data) for hasher in self._hashers]

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
