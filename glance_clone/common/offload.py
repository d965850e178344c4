"""Work on a native thread while the request goes on: hashing a chunk,
writing a block to a file.

hashlib and file writes release the GIL on large buffers, so that work can
run on another core while the request thread reads the next chunk from
the socket. Under eventlet's monkey patching the native threads are
eventlet's thread pool (``tpool``) and the waiting greenthread waits
green, so the hub serves other requests meanwhile; elsewhere (tools,
tests) a plain thread pool is used.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

import eventlet.patcher
import eventlet.tpool

# Pieces smaller than this are handled in place: handing them to a thread
# costs more than the work.
MIN_SIZE = 64 * 1024

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _green() -> bool:
    return bool(eventlet.patcher.is_monkey_patched("thread"))


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="offload")
        return _executor


class Job:
    """``fn(data)`` running on a native thread; ``wait`` re-raises its error."""

    def __init__(self, fn: Callable[[bytes], Any], data: bytes) -> None:
        if _green():
            self._handle: Any = eventlet.spawn(eventlet.tpool.execute, fn, data)
            self._wait = self._handle.wait
        else:
            self._handle = _pool().submit(fn, data)
            self._wait = self._handle.result

    def wait(self) -> None:
        self._wait()
