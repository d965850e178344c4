"""Work on a native thread while the request goes on: hashing a piece,
writing a block to a file.

hashlib and file writes release the GIL on large buffers, so that work can
run on another core while the request thread reads the next piece from
the socket. Under eventlet's monkey patching the native threads are
eventlet's thread pool (``tpool``) and the waiting greenthread waits
green, so the hub serves other requests meanwhile; elsewhere (tools,
tests) a plain thread pool is used.
"""

from __future__ import annotations

import collections
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
# A lock that native threads and greenthreads can share: it is only held
# for a few bytecodes, so a greenthread may block the hub on it.
_NativeLock: Callable[[], Any] = eventlet.patcher.original("threading").Lock


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
    """``fn(*args)`` running on a native thread; ``wait`` re-raises its error."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        if _green():
            self._handle: Any = eventlet.spawn(eventlet.tpool.execute, fn, *args)
            self._wait = self._handle.wait
        else:
            self._handle = _pool().submit(fn, *args)
            self._wait = self._handle.result

    def wait(self) -> None:
        self._wait()


class Lane:
    """``fn(piece)`` for every piece ``put`` in, in order, on a native thread.

    The caller goes on while the lane works: up to ``depth`` pieces wait
    their turn, and ``put`` waits only when the lane is that far behind.
    So a slow step (hashing sha512, say) is never left idle while the
    caller reads the socket, and the caller is never idle while the lane
    has room. One ``Job`` drains the lane for as long as it has pieces: a
    lane that is kept busy costs one hand-over to a thread per burst, not
    one per piece.

    Once ``fn`` has raised, the lane drops what it holds, and ``put`` and
    ``join`` raise that error.
    """

    def __init__(self, fn: Callable[[Any], Any], depth: int = 2) -> None:
        self._fn = fn
        self._depth = depth
        self._pieces: collections.deque[Any] = collections.deque()
        self._lock = _NativeLock()
        self._running = False           # a Job is draining the pieces
        self._runner: Job | None = None
        self._error: BaseException | None = None

    def put(self, piece: Any) -> None:
        """Queue ``piece``; waits while ``depth`` pieces are queued already."""
        while len(self._pieces) >= self._depth and self._runner is not None:
            self._settle()
        self._raise()
        with self._lock:
            self._pieces.append(piece)
            idle, self._running = not self._running, True
        if idle:
            self._settle()      # the last runner has ended: collect it
            self._runner = Job(self._drain)

    def join(self) -> None:
        """Wait until every piece put in was handled; raises what ``fn`` raised."""
        self._settle()
        self._raise()

    def _settle(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            try:
                runner.wait()
            except BaseException as err:
                self._error = self._error or err
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _drain(self) -> None:
        """The runner: handles pieces until none is left (native thread)."""
        while True:
            with self._lock:
                if not self._pieces:
                    self._running = False
                    return
                piece = self._pieces[0]
            try:
                self._fn(piece)
            except BaseException:
                with self._lock:
                    self._pieces.clear()
                    self._running = False
                raise
            with self._lock:
                self._pieces.popleft()
