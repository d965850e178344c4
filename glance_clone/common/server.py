"""The eventlet WSGI server behind glance-api and glance-registry.

Process model, as Glance operators know it:

- ``workers = 0`` serves in the one process.
- ``workers = N`` forks N children that share the listening socket; the
  parent only supervises and replaces a child that dies.
- SIGTERM / SIGINT stop the parent and every child at once.
- SIGHUP re-reads the configuration files and rebuilds the paste app, then
  starts fresh children and tells the old ones to stop accepting; they
  exit once their in-flight requests are done. With ``workers = 0`` the app
  is swapped in place.

The app is built in the parent before anything is forked, so a bad
configuration fails the start with a message instead of a crash loop.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

import eventlet
import eventlet.greenio
import eventlet.wsgi
from oslo_config import cfg

LOG = logging.getLogger(__name__)

BIND_RETRY_SECONDS = 30
GREEN_POOL_SIZE = 1000
PARENT_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class _SwappableApp:
    """Lets a single-process server replace its app on SIGHUP."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        return self.app(environ, start_response)


class GlanceHttpProtocol(eventlet.wsgi.HttpProtocol):
    """eventlet's protocol, also accepting ``x-image-meta-*`` headers with
    underscores.

    eventlet drops every header with an underscore, because ``A_B`` and
    ``A-B`` land in the same WSGI variable. The v1 API documents the two
    spellings of image metadata headers as equal (python-glanceclient sends
    ``x-image-meta-disk_format``), so for that prefix the merge is what the
    API means anyway; every other underscored header is still dropped.
    """

    def formalize_key_naming(self, k: str) -> str | None:
        if "_" in k and k.lower().startswith("x-image-meta-"):
            return k.replace("-", "_").upper()
        return super().formalize_key_naming(k)


class _WSGILog:
    """eventlet's access log into our logger (eventlet wants .write())."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def write(self, message: str) -> None:
        self.logger.info(message.rstrip())


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
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(conf.cert_file, conf.key_file)
    if conf.ca_file:
        context.load_verify_locations(conf.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return eventlet.wrap_ssl(sock, server_side=True, ssl_context=context)  # type: ignore[call-arg]


class Server:
    """Runs ``load_app()`` under eventlet's WSGI server with workers."""

    def __init__(self, conf: cfg.ConfigOpts, load_app: Callable[[], Callable],
                 default_port: int, name: str) -> None:
        self.conf = conf
        self.load_app = load_app
        self.default_port = default_port
        self.name = name
        self.children: set[int] = set()
        self.sock: socket.socket | None = None
        self.app: Callable | None = None
        self._running = True

    @property
    def worker_count(self) -> int:
        workers = self.conf.workers
        return os.cpu_count() or 1 if workers is None else workers

    def start(self) -> None:
        """Build the app and bind; raises on bad configuration."""
        self.app = self.load_app()
        eventlet.wsgi.MAX_HEADER_LINE = self.conf.max_header_line
        self.sock = bind_socket(self.conf, self.default_port)
        LOG.info("%s listening on %s:%s", self.name, *self.sock.getsockname()[:2])

    def run(self) -> int:
        """Serve until told to stop; returns the exit code."""
        if self.worker_count == 0:
            return self._run_single()
        return self._supervise()

    # -- single process -------------------------------------------------
    def _run_single(self) -> int:
        swappable = _SwappableApp(self.app)  # type: ignore[arg-type]

        def on_hup(*_: object) -> None:
            try:
                self.conf.reload_config_files()
                swappable.app = self.load_app()
                LOG.info("%s reloaded its configuration", self.name)
            except Exception:
                LOG.exception("Reload failed; keeping the running app")

        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGTERM, _exit_now)
        self._serve(swappable)
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
        self._stop_children(signal.SIGTERM)
        return 0

    def _reap_and_replace(self) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
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
        self.children.clear()
        for _ in range(self.worker_count):
            self._fork_child()
        for pid in old:
            _signal_quietly(pid, signal.SIGHUP)
        LOG.info("%s reloaded its configuration", self.name)

    def _stop_children(self, signum: int) -> None:
        for pid in list(self.children):
            _signal_quietly(pid, signum)
        deadline = time.monotonic() + 10
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.children.discard(pid)
            else:
                time.sleep(0.05)
        for pid in list(self.children):
            _signal_quietly(pid, signal.SIGKILL)

    def _fork_child(self) -> None:
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return
        # In the child: its own handlers, then serve until told otherwise.
        code = 0
        try:
            signal.signal(signal.SIGTERM, _exit_now)
            signal.signal(signal.SIGINT, _exit_now)
            signal.signal(signal.SIGHUP, self._child_hup)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS)
            self._serve(self.app)  # type: ignore[arg-type]
        except BaseException:  # noqa: BLE001 - a child must never return into the parent's loop
            LOG.exception("Worker failed")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _child_hup(self, *_: object) -> None:
        """Stop accepting; in-flight requests finish, then the child exits."""
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if self.sock is not None:
            self.sock.close()

    # -- the serving loop -------------------------------------------------
    def _serve(self, app: Callable) -> None:
        pool = eventlet.GreenPool(GREEN_POOL_SIZE)
        timeout = self.conf.client_socket_timeout or None
        try:
            eventlet.wsgi.server(
                self.sock, app, custom_pool=pool,
                log=_WSGILog(logging.getLogger(self.name + ".access")),
                keepalive=self.conf.http_keepalive,
                socket_timeout=timeout, debug=False, protocol=GlanceHttpProtocol,
                max_size=GREEN_POOL_SIZE)
        except (OSError, ValueError) as err:
            # Closing the listening socket on SIGHUP ends the accept loop.
            LOG.debug("Accept loop ended: %s", err)
        pool.waitall()


def _exit_now(*_: object) -> None:
    raise SystemExit(0)


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
