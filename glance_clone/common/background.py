"""Work an app runs beside its requests (the task reaper), started by the
process that serves the app.

An app factory ``register``s its loops instead of spawning them: the app
is built in the parent before any worker is forked (and again on every
reload), where a greenthread would either never run (the parent does not
run the event hub) or be copied into every later generation of workers
next to its successors. ``Server`` calls ``start`` where requests are
served: in each new worker, or in the one process with ``workers = 0``;
``start`` again (after a reload) stops the loops it started before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import eventlet

LOG = logging.getLogger(__name__)

_loops: dict[str, Callable[[], None]] = {}
_running: list[eventlet.greenthread.GreenThread] = []


def register(name: str, loop: Callable[[], None]) -> None:
    """``loop`` (which never returns) runs in every serving process; a
    later registration under the same ``name`` (a reloaded app) replaces it."""
    _loops[name] = loop


def start() -> int:
    """Stop the loops this process started before, start the registered
    ones; the number started."""
    while _running:
        _running.pop().kill()
    for name, loop in _loops.items():
        LOG.debug("Starting %s", name)
        _running.append(eventlet.spawn(loop))
    return len(_running)
