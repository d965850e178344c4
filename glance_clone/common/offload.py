"""Work on a native thread while the request goes on: hashing a piece,
writing a block to a file.

hashlib and file writes release the GIL on large buffers, so that work can
run on another core while the request thread reads the next piece from
the socket. Under eventlet's monkey patching the native threads are
eventlet's thread pool (``tpool``) and the waiting greenthread waits
green, so the hub serves other requests meanwhile; elsewhere (tools,
tests) plain threads are used.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

import eventlet
import eventlet.patcher
import eventlet.tpool
from eventlet.green import threading as green_threading

# Pieces smaller than this are handled in place: handing them to a thread
# costs more than the work.
MIN_SIZE = 64 * 1024

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_NativeCondition: Callable[[], Any] = eventlet.patcher.original("threading").Condition


def _green() -> bool:
    return bool(eventlet.patcher.is_monkey_patched("thread"))


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="offload")
        return _executor


class Lane:
    """``fn(piece)`` for every piece ``put`` in, in order, on a native thread.

    The caller goes on while the lane works: up to ``depth`` pieces wait
    their turn (the one being handled included), and ``put`` waits only
    until one of them is done, never for the lane to run dry: a lane that
    drained whenever the caller waited left the other core idle while the
    slowest lane (sha512) worked through its last pieces alone.

    Under eventlet a greenthread hands the pieces one by one to the thread
    pool: every piece done is seen at once by a caller waiting for room, and
    no pool thread ever blocks waiting for the caller (with many uploads
    such waits could hold every pool thread). Elsewhere a plain thread
    handles the pieces itself.

    Once ``fn`` has raised, the lane drops what it holds, and ``put`` and
    ``join`` raise that error.
    """

    def __init__(self, fn: Callable[[Any], Any], depth: int = 2) -> None:
        self._fn = fn
        self._depth = depth
        self._green = _green()
        self._pieces: collections.deque[Any] = collections.deque()
        self._changed = green_threading.Condition() if self._green else _NativeCondition()
        self._running = False           # a pump is handling the pieces
        self._error: BaseException | None = None

    def put(self, piece: Any) -> None:
        """Queue ``piece``; waits while ``depth`` pieces are queued already."""
        with self._changed:
            while len(self._pieces) >= self._depth and self._error is None:
                self._changed.wait()
            self._raise()
            self._pieces.append(piece)
            if self._running:
                return
            self._running = True
        if self._green:
            eventlet.spawn_n(self._pump)
        else:
            _pool().submit(self._pump)

    def join(self) -> None:
        """Wait until every piece put in was handled; raises what ``fn`` raised."""
        with self._changed:
            while self._running:
                self._changed.wait()
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _pump(self) -> None:
        """Handles the pieces until none is left (greenthread or plain thread)."""
        call = eventlet.tpool.execute if self._green else _call
        while True:
            with self._changed:
                if not self._pieces:
                    self._running = False
                    self._changed.notify_all()
                    return
                piece = self._pieces[0]
            try:
                call(self._fn, piece)
            except BaseException as err:    # noqa: BLE001 - handed to the caller
                with self._changed:
                    self._error = err
                    self._pieces.clear()
                    self._running = False
                    self._changed.notify_all()
                return
            with self._changed:
                self._pieces.popleft()
                self._changed.notify_all()


def _call(fn: Callable[[Any], Any], piece: Any) -> Any:
    return fn(piece)
