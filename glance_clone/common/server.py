"""Processes of glance-api and glance-registry: workers and signals.

Process model, as Glance operators know it:

- ``workers = 0`` serves in the one process.
- ``workers = N`` forks N children that share the listening socket; the
  parent only supervises and replaces a child that dies.
- SIGHUP re-reads the configuration files and rebuilds the paste app, then
  starts fresh children and tells the old ones to stop: they close their
  idle connections at once and exit as soon as their requests in progress
  are done. With ``workers = 0`` the app is swapped in place.
- SIGTERM / SIGINT: every process stops accepting and closes its idle
  connections; requests in progress get ``graceful_shutdown_timeout``
  seconds, then the process exits. The parent stops every child, old
  generations still finishing a reload included, and exits last.
- A child whose parent dies (kill -9) stops the same way: the kernel sends
  it SIGTERM (``PR_SET_PDEATHSIG``), so orphans never keep the port.

The app is built in the parent before anything is forked, so a bad
configuration fails the start with a message instead of a crash loop.
The socket is bound just before, so that while a restarted server loads
its app, connections wait instead of being refused.
The HTTP side (framing, keep-alive, slow clients) is ``http_server``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable

import eventlet
from eventlet import patcher
from eventlet.green import ssl as green_ssl
from oslo_config import cfg

from glance_clone.common import background, http_server

LOG = logging.getLogger(__name__)
_select = patcher.original("select")

BIND_RETRY_SECONDS = 30
PARENT_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
# How much longer than graceful_shutdown_timeout the parent waits for its
# children before it kills them.
KILL_MARGIN = 5.0
PR_SET_PDEATHSIG = 1


def bind_socket(conf: cfg.ConfigOpts, default_port: int) -> socket.socket:
    """Listen on bind_host:bind_port, retrying while the port is busy."""
    host = conf.bind_host
    port = conf.bind_port if conf.bind_port is not None else default_port
    family = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][0]
    deadline = time.monotonic() + BIND_RETRY_SECONDS
    while True:
        try:
            sock = eventlet.listen((host, port), family=family,
                                   backlog=conf.backlog)
            break
        except OSError as err:
            if err.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            eventlet.sleep(0.1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE,
                        conf.tcp_keepidle)
    if conf.cert_file and conf.key_file:
        sock = _wrap_tls(conf, sock)
    return sock


def _wrap_tls(conf: cfg.ConfigOpts, sock: socket.socket) -> socket.socket:
    # eventlet.wrap_ssl ignores an ssl_context argument (the server then
    # had no certificate and failed every handshake); a green context
    # wraps the socket with this one.
    context = green_ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(conf.cert_file, conf.key_file)
    if conf.ca_file:
        context.load_verify_locations(conf.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context.wrap_socket(sock, server_side=True)


class Server:
    """Runs ``load_app()`` on our HTTP server, with workers."""

    def __init__(self, conf: cfg.ConfigOpts, load_app: Callable[[], Callable],
                 default_port: int, name: str) -> None:
        self.conf = conf
        self.load_app = load_app
        self.default_port = default_port
        self.name = name
        self.children: set[int] = set()     # the current generation
        self.retiring: set[int] = set()     # older ones finishing their requests
        self.sock: socket.socket | None = None
        self.app: Callable | None = None
        self.http: http_server.HttpServer | None = None
        self._running = True

    @property
    def worker_count(self) -> int:
        workers = self.conf.workers
        return os.cpu_count() or 1 if workers is None else workers

    def start(self) -> None:
        """Bind, then build the app; raises on bad configuration.

        Binding first lets clients of a restarting server queue for the
        second or two the app takes to load, instead of being refused.
        """
        self.sock = bind_socket(self.conf, self.default_port)
        try:
            self.app = self.load_app()
        except BaseException:
            self.sock.close()
            raise
        LOG.info("%s listening on %s:%s", self.name, *self.sock.getsockname()[:2])

    def run(self) -> int:
        """Serve until told to stop; returns the exit code."""
        if self.worker_count == 0:
            return self._run_single()
        return self._supervise()

    # -- single process -------------------------------------------------
    def _run_single(self) -> int:
        http = self._http_server()

        def on_hup() -> None:
            try:
                self.conf.reload_config_files()
                http.app = self.load_app()
                background.start()
                LOG.info("%s reloaded its configuration", self.name)
            except Exception:
                LOG.exception("Reload failed; keeping the running app")

        _watch_signals({signal.SIGHUP: on_hup, signal.SIGTERM: self._stop_serving,
                        signal.SIGINT: self._stop_serving})
        background.start()
        http.serve()
        return 0

    # -- parent with children -------------------------------------------
    def _supervise(self) -> int:
        # Signals are blocked and taken synchronously with sigwaitinfo, so
        # the supervision loop never runs a handler at an awkward moment.
        signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)
        for _ in range(self.worker_count):
            self._fork_child()
        while self._running:
            info = signal.sigwaitinfo(PARENT_SIGNALS)
            if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                self._running = False
            elif info.si_signo == signal.SIGHUP:
                self._reload()
            else:
                self._reap_and_replace()
        self._stop_children()
        return 0

    def _reap_and_replace(self) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            self.retiring.discard(pid)
            if pid in self.children:
                self.children.discard(pid)
                LOG.warning("Worker %s exited; starting a new one", pid)
                self._fork_child()

    def _reload(self) -> None:
        try:
            self.conf.reload_config_files()
            self.app = self.load_app()
        except Exception:
            LOG.exception("Reload failed; keeping the running workers")
            return
        old = set(self.children)
        self.retiring |= old
        self.children.clear()
        for _ in range(self.worker_count):
            self._fork_child()
        for pid in old:
            _signal_quietly(pid, signal.SIGHUP)
        LOG.info("%s reloaded its configuration", self.name)

    def _stop_children(self) -> None:
        """SIGTERM every child of every generation; SIGKILL the late ones."""
        if self.sock is not None:
            # New connections are refused (not queued) once the children
            # have closed their copies too.
            self.sock.close()
        everyone = self.children | self.retiring
        for pid in everyone:
            _signal_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.conf.graceful_shutdown_timeout + KILL_MARGIN
        while everyone and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                everyone.discard(pid)
            else:
                time.sleep(0.02)
        for pid in everyone:
            LOG.warning("Worker %s did not stop in time; killing it", pid)
            _signal_quietly(pid, signal.SIGKILL)

    def _fork_child(self) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return
        # In the child: its own epoll and handlers, then serve until told
        # otherwise.
        code = 0
        try:
            _own_epoll()
            self.children.clear()
            self.retiring.clear()
            http = self._http_server()
            _watch_signals({signal.SIGTERM: self._stop_serving,
                            signal.SIGINT: self._stop_serving,
                            signal.SIGHUP: self._retire})
            _stop_with_parent(parent)
            background.start()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS)
            http.serve()
        except BaseException:  # noqa: BLE001 - a child must never return into the parent's loop
            LOG.exception("Worker failed")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    # -- serving ----------------------------------------------------------
    def _http_server(self) -> http_server.HttpServer:
        conf = self.conf
        settings = http_server.Settings(
            keepalive=conf.http_keepalive,
            socket_timeout=conf.client_socket_timeout or None,
            header_timeout=conf.client_header_timeout,
            max_pending=conf.max_pending_connections,
            max_header_line=conf.max_header_line)
        assert self.sock is not None and self.app is not None
        self.http = http_server.HttpServer(
            self.sock, self.app, settings, logging.getLogger(self.name + ".access"))
        return self.http

    def _stop_serving(self) -> None:
        """SIGTERM, SIGINT: finish requests in progress, within the bound."""
        if self.http is not None:
            self.http.stop(self.conf.graceful_shutdown_timeout)

    def _retire(self) -> None:
        """SIGHUP in a child: a newer generation serves; finish and exit."""
        if self.http is not None:
            self.http.stop()


def _own_epoll() -> None:
    """Give a forked worker an epoll instance of its own.

    The event hub made in the parent (binding the socket makes one) comes
    with an epoll instance that the kernel shares between all the
    processes holding it: one worker unregistering the listening socket
    (a retiring one does) would leave the others deaf to it. The hub
    itself is kept; the app's background loops are started by the worker
    itself (``background``).
    """
    hub = eventlet.hubs.get_hub()
    inherited = getattr(hub, "poll", None)
    if not isinstance(inherited, _select.epoll):
        return      # poll and select keep no state in the kernel
    hub.poll = _select.epoll()
    inherited.close()
    for fileno in set(hub.listeners[hub.READ]) | set(hub.listeners[hub.WRITE]):
        hub.register(fileno, new=True)


def _watch_signals(handlers: dict[int, Callable[[], None]]) -> None:
    """Run ``handlers[signum]()`` in a greenthread when ``signum`` arrives.

    A Python signal handler runs inside whatever the eventlet hub is doing
    and, as system calls are resumed after it, the hub does not even wake
    up for work it schedules. Through ``set_wakeup_fd`` the signal number
    is written to a pipe, and a greenthread reading it runs the handler
    like any other code.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in handlers:
        # A Python-level handler must exist for the number to be written.
        signal.signal(signum, _noted)

    def dispatch() -> None:
        while True:
            eventlet.hubs.trampoline(read_end, read=True)
            for signum in os.read(read_end, 64):
                handler = handlers.get(signum)
                if handler is not None:
                    handler()

    eventlet.spawn_n(dispatch)


def _noted(signum: int, frame: object) -> None:
    """The handler of signals ``_watch_signals`` dispatches (see there)."""


def _stop_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux).

    Without it, the children of a killed parent would go on serving on
    the shared port next to the next generation.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError) as err:
        LOG.warning("Workers will not notice their parent dying: %s", err)
    if os.getppid() != parent:
        # The parent died before the request took effect.
        os.kill(os.getpid(), signal.SIGTERM)


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
