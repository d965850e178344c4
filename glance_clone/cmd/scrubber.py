"""glance-scrubber: remove the data of images deleted with delayed_delete.

Usage::

    glance-scrubber [--config-file F] [-D/--daemon]

Reads ``glance.conf`` and ``glance-scrubber.conf`` from the usual places
unless ``--config-file`` is given. Without ``--daemon`` it makes one pass
and exits; with it, it makes a pass at once and then every
``wakeup_time`` seconds until SIGTERM, SIGINT or SIGHUP (the signal
``glance-control scrubber shutdown`` sends), finishing the images it is
working on first. A daemon whose registry is unreachable logs the error
and tries again at the next wakeup.

Exit codes
    0  the pass completed (daemon: stopped by a signal)
    1  configuration error, or the registry could not be reached or
       refused the scrubber's admin identity (one pass)
    3  the pass completed but some images could not be scrubbed or
       reaped; they are retried on the next run
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from oslo_config import cfg  # noqa: E402

from glance_clone import scrubber  # noqa: E402
from glance_clone.common import config, exception  # noqa: E402

LOG = logging.getLogger(__name__)
PROG = "glance-scrubber"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INCOMPLETE = 3

# SIGHUP too: glance-control's "shutdown" sends it as the graceful stop.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _fail(message: str) -> int:
    print("ERROR: %s" % message, file=sys.stderr)
    LOG.error("%s", message)
    return EXIT_ERROR


def _registry_problem(worker: scrubber.Scrubber, err: exception.GlanceError) -> str:
    where = getattr(worker.registry, "base_url", "the registry")
    if isinstance(err, exception.RegistryUnavailable):
        return "cannot reach glance-registry at %s: %s" % (where, err)
    if isinstance(err, (exception.NotAuthenticated, exception.Forbidden)):
        return ("glance-registry at %s refused the scrubber's admin identity "
                "(%s); check send_identity_headers, admin_role and the "
                "registry's pipeline" % (where, err))
    return "glance-registry at %s failed: %s" % (where, err)


def run_once(worker: scrubber.Scrubber) -> int:
    try:
        report = worker.run_once()
    except exception.GlanceError as err:
        return _fail(_registry_problem(worker, err))
    if not report.ok:
        print("WARNING: %s" % report.summary(), file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK


def _stop_pending() -> bool:
    return bool(signal.sigpending() & STOP_SIGNALS)


def run_daemon(worker: scrubber.Scrubber, wakeup_time: int) -> int:
    """Pass after pass until a stop signal arrives.

    The stop signals are blocked and taken with sigtimedwait, so one never
    lands in the middle of a store delete or a registry write: a pass in
    progress starts no new image once a stop is pending, then returns.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    LOG.info("%s started as a daemon, waking every %d s", PROG, wakeup_time)
    while True:
        try:
            worker.run_once(stop_requested=_stop_pending)
        except exception.GlanceError as err:
            LOG.error("%s; retrying in %d s", _registry_problem(worker, err), wakeup_time)
        except Exception:
            LOG.exception("Scrubber pass failed; retrying in %d s", wakeup_time)
        info = signal.sigtimedwait(STOP_SIGNALS, wakeup_time)
        if info is not None:
            LOG.info("%s stopping on signal %d", PROG, info.si_signo)
            return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    conf = config.command_conf(PROG, argv, scrubber.register_opts)
    if conf is None:
        return EXIT_ERROR
    try:
        worker = scrubber.Scrubber(conf)
    except (exception.GlanceError, cfg.Error) as err:
        return _fail(str(err))
    if conf.daemon:
        return run_daemon(worker, conf.wakeup_time)
    return run_once(worker)


if __name__ == "__main__":
    sys.exit(main())
