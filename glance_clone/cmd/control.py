"""glance-control: start, stop, reload and query the Glance servers.

Usage::

    glance-control [--pid-file PATH] [--await-child N] [--capture-output]
                   [--respawn] <server> <command> [CONFPATH]

Servers
    ``api``, ``registry``, ``scrubber`` (or their full names ``glance-api``,
    ``glance-registry``, ``glance-scrubber``) and ``all``, which runs the
    command for the three in that order.

Commands
    ``start``
        If the pid file names a live process, says so ("<server> appears to
        already be running: <pidfile>") and exits 0 without starting a
        second copy, as Glance does: init scripts and configuration tools
        run ``start`` to make sure a server runs. Otherwise it removes a
        stale pid file, prints "Starting <server>[ with <conf>]", raises the
        soft limits for open files (32768) and data size (2 GiB) as far as
        the hard limits allow (never lowering them), and launches the
        server in a new session with stdin and output on /dev/null, then
        records its pid. With ``--capture-output`` the server's stdout and
        stderr are piped to ``logger -t "<server>[<pid>]"`` instead (syslog).
    ``stop``
        Removes the pid file, sends SIGTERM ("Stopping <server> (pid <n>)
        with signal(15)"), waits up to 15 s for the process to exit and then
        sends SIGKILL. Without a pid file: "<server> is already stopped". A
        pid file naming a dead process is removed and reported.
    ``shutdown``
        Like ``stop`` but sends SIGHUP, the graceful signal. There is no
        SIGKILL: if the server is still running after 15 s, the pid file is
        written back and glance-control gives up.
    ``restart``
        ``stop`` then ``start``.
    ``reload``, ``force-reload``
        Sends SIGHUP to glance-api or glance-registry, which re-read their
        configuration and replace their workers. glance-scrubber: "Reload of
        glance-scrubber not supported".
    ``status``
        "<server> (pid <n>) is running..." when the pid file names a live
        process, else "<server> is stopped" (mentioning a stale pid file).

``CONFPATH``
    Passed to the server as ``--config-file CONFPATH`` when the file exists;
    a missing file is reported on stderr and the server starts without it.

Options
    ``--pid-file PATH``
        Pid file of the (single) server; not allowed with ``all``. Default:
        ``/var/run/glance/<server>.pid``. If that directory cannot be
        created or written, ``<tmpdir>/glance-control-<uid>/`` is used and a
        hint is printed on stderr.
    ``--await-child N``
        After ``start``, wait up to N seconds for the server to exit and
        exit with its code (128 + signal number if a signal killed it). A
        server still running after N seconds counts as started (exit 0).
    ``--respawn``
        Stay in the foreground and start the server again whenever it dies
        after running for more than 1 s while its pid file still exists.
        Otherwise print "Suppressed respawn as <server> was bouncing" (exit
        1) or "Suppressed respawn as <server> was deliberately stopped"
        (exit 0; ``stop`` removes the pid file before signalling for this
        reason). Cannot be combined with ``--await-child`` or ``all``.
    ``--capture-output``
        See ``start``; needs the ``logger`` program on PATH.

Finding the server program
    1. ``GLANCE_CONTROL_SERVER_CMD_API`` (``_REGISTRY``, ``_SCRUBBER``), if
       set, is split like a shell command line (no shell runs) and used as
       the server's command; meant for tests and unusual installs.
    2. ``glance-<name>`` next to the running Python interpreter (the
       virtualenv's bin directory), then on PATH.
    3. ``<python> -m glance_clone.cmd.<name>``, when that module exists.
    Otherwise glance-control reports the program as missing (exit 1).
    ``GLANCE_CONTROL_PID_DIR`` replaces ``/var/run/glance``.

Exit codes
    0  success; for ``status``, the server is running
    1  failure: program missing, reload of a stopped
       or unsupported server, bouncing respawn, conflicting options; for
       ``status``, a stale pid file (LSB "dead and pid file exists")
    2  command-line usage error
    3  ``status``: the server is stopped (LSB "not running")
    N  with ``--await-child``: the server's own exit code
    With ``all`` the highest code of the three is returned.

Differences from Glance 11.0.2: the "already running" check is done for
every pid file, not only explicit ones; ``status`` checks that the pid is
alive (a zombie counts as dead); ``stop`` really waits for the process and
escalates to SIGKILL; limits are only ever raised.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

SERVERS = ("glance-api", "glance-registry", "glance-scrubber")
RELOADABLE = frozenset({"glance-api", "glance-registry"})
SERVER_CHOICES = ("api", "registry", "scrubber", *SERVERS, "all")
COMMANDS = ("start", "status", "stop", "shutdown", "restart", "reload", "force-reload")

DEFAULT_PID_DIR = "/var/run/glance"
PID_DIR_ENV = "GLANCE_CONTROL_PID_DIR"
SERVER_CMD_ENV_PREFIX = "GLANCE_CONTROL_SERVER_CMD_"

STOP_TIMEOUT = 15.0
KILL_TIMEOUT = 5.0
POLL_INTERVAL = 0.1
MIN_RESPAWN_RUNTIME = 1.0
SOFT_LIMITS = (
    (resource.RLIMIT_NOFILE, 32768),
    (resource.RLIMIT_DATA, 2 * 1024**3),
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3


class ControlError(Exception):
    """A failure to report to the operator as "ERROR: <message>" (exit 1)."""


@dataclass(frozen=True)
class Options:
    pid_file: str | None
    await_child: int
    capture_output: bool
    respawn: bool
    conf: str | None


# --- output -----------------------------------------------------------------


def say(message: str) -> None:
    """Print a progress message; flushed because --respawn runs for long."""
    print(message, flush=True)


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------


def is_alive(pid: int) -> bool:
    """Return True if `pid` is a running (not zombie) process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # A killed server whose parent never reaps it (glance-control has exited
    # and some container inits do not reap) still answers kill(pid, 0).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return False
    return bool(fields) and fields[0] == "Z"


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Poll until `pid` is gone; return False if it outlived `timeout`."""
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def send_signal(pid: int, sig: signal.Signals) -> bool:
    """Send `sig` to `pid`; return False if the process no longer exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def exit_code(returncode: int) -> int:
    """Map a Popen return code to a shell-style exit code."""
    return 128 - returncode if returncode < 0 else returncode


# --- pid files --------------------------------------------------------------


def read_pid(path: str) -> int | None:
    """Return the pid recorded in `path`, or None if missing or unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def write_pid_file(path: str, pid: int) -> None:
    """Record `pid` in `path` atomically, so readers never see half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, path)


def remove_pid_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def live_pid(path: str) -> int | None:
    """Return the pid recorded in `path` if that process is alive."""
    pid = read_pid(path)
    return pid if pid is not None and is_alive(pid) else None


def pid_file_for(server: str, explicit: str | None) -> str:
    """Return the pid file of `server`. Raises ControlError if none is usable."""
    if explicit:
        return os.path.abspath(explicit)
    pid_dir = os.environ.get(PID_DIR_ENV) or DEFAULT_PID_DIR
    if _writable_dir(pid_dir):
        return os.path.join(pid_dir, f"{server}.pid")
    fallback = os.path.join(_private_fallback_dir(), f"{server}.pid")
    warn(f"Cannot write pid files in {pid_dir} (not running as root?); "
         f"using {fallback}")
    return fallback


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _private_fallback_dir() -> str:
    # Stable per user, so status and stop find what start wrote; refuse a
    # directory someone else planted in the shared temp dir.
    path = os.path.join(tempfile.gettempdir(), f"glance-control-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as err:
        raise ControlError(f"cannot create pid directory {path}: {err}") from err
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ControlError(f"refusing to use pid directory {path}: not ours")
    return path


# --- launching --------------------------------------------------------------


def server_command(server: str) -> list[str]:
    """Return the argv that runs `server`. Raises ControlError if not found."""
    name = server.removeprefix("glance-")
    override = os.environ.get(SERVER_CMD_ENV_PREFIX + name.upper())
    if override:
        return shlex.split(override)
    script = _find_script(server)
    if script:
        return [script]
    module = f"glance_clone.cmd.{name}"
    if _module_available(module):
        return [sys.executable, "-m", module]
    raise ControlError(
        f"cannot find the {server} program (looked next to {sys.executable}, "
        f"on PATH and for the module {module})")


def _find_script(server: str) -> str | None:
    beside_python = os.path.join(os.path.dirname(sys.executable), server)
    if os.path.isfile(beside_python) and os.access(beside_python, os.X_OK):
        return beside_python
    return shutil.which(server)


def _module_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def raise_soft_limits() -> None:
    """Raise soft resource limits towards SOFT_LIMITS; never lower them."""
    for limit, wanted in SOFT_LIMITS:
        try:
            soft, hard = resource.getrlimit(limit)
            if soft == resource.RLIM_INFINITY or soft >= wanted:
                continue
            if hard != resource.RLIM_INFINITY:
                wanted = min(wanted, hard)
            resource.setrlimit(limit, (wanted, hard))
        except (ValueError, OSError):
            pass  # best effort, as the limits are only a tuning aid


@dataclass
class Child:
    server: subprocess.Popen[bytes]
    logger: subprocess.Popen[bytes] | None = None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the server (and its logger); raises TimeoutExpired."""
        returncode = self.server.wait(timeout)
        if self.logger is not None:
            # The logger sees EOF once the server's output pipe closes.
            try:
                self.logger.wait(KILL_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.logger.kill()
                self.logger.wait()
        return returncode


def launch(server: str, argv: list[str], capture_output: bool) -> Child:
    """Start `argv` in a new session. Raises ControlError if it cannot run."""
    logger = shutil.which("logger") if capture_output else None
    if capture_output and logger is None:
        raise ControlError("--capture-output needs the 'logger' program on PATH")
    output = subprocess.PIPE if capture_output else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as err:
        raise ControlError(f"cannot run {shlex.join(argv)}: {err}") from err
    child = Child(proc)
    if logger is not None:
        child.logger = _attach_logger(logger, server, proc)
    return child


def _attach_logger(logger: str, server: str,
                   proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    assert proc.stdout is not None
    try:
        return subprocess.Popen(
            [logger, "-t", f"{server}[{proc.pid}]"], stdin=proc.stdout,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
    except OSError as err:
        proc.kill()
        proc.wait()
        raise ControlError(f"cannot run {logger}: {err}") from err
    finally:
        proc.stdout.close()  # only the logger should hold the read end


# --- commands ---------------------------------------------------------------


def do_start(server: str, opts: Options) -> int:
    """Start `server` unless it already runs; see the module docstring."""
    pid_file = pid_file_for(server, opts.pid_file)
    if live_pid(pid_file) is not None:
        say(f"{server} appears to already be running: {pid_file}")
        return EXIT_OK
    _prepare_pid_file(pid_file)
    argv = server_command(server)
    if opts.conf:
        argv += ["--config-file", opts.conf]
    say(f"Starting {server}" + (f" with {opts.conf}" if opts.conf else ""))
    raise_soft_limits()
    if opts.respawn:
        return respawn(server, argv, pid_file, opts.capture_output)
    child = launch(server, argv, opts.capture_output)
    write_pid_file(pid_file, child.server.pid)
    if opts.await_child:
        return await_child(child, pid_file, opts.await_child)
    return EXIT_OK


def _prepare_pid_file(pid_file: str) -> None:
    if os.path.exists(pid_file):
        say(f"Removing stale pid file {pid_file}")
        remove_pid_file(pid_file)
    try:
        os.makedirs(os.path.dirname(pid_file), exist_ok=True)
    except OSError as err:
        raise ControlError(f"cannot create directory for {pid_file}: {err}") from err


def await_child(child: Child, pid_file: str, seconds: int) -> int:
    """Return the child's exit code, or EXIT_OK if it outlives `seconds`."""
    try:
        returncode = child.wait(seconds)
    except subprocess.TimeoutExpired:
        return EXIT_OK
    remove_pid_file(pid_file)
    return exit_code(returncode)


def respawn(server: str, argv: list[str], pid_file: str, capture_output: bool) -> int:
    """Run `server` in the foreground, restarting it while it keeps dying."""
    while True:
        started = time.monotonic()
        child = launch(server, argv, capture_output)
        write_pid_file(pid_file, child.server.pid)
        child.wait()
        if not os.path.exists(pid_file):
            say(f"Suppressed respawn as {server} was deliberately stopped")
            return EXIT_OK
        if time.monotonic() - started <= MIN_RESPAWN_RUNTIME:
            say(f"Suppressed respawn as {server} was bouncing")
            remove_pid_file(pid_file)
            return EXIT_FAILURE
        say(f"Respawning {server}")


def do_stop(server: str, opts: Options) -> int:
    return stop_server(server, pid_file_for(server, opts.pid_file), signal.SIGTERM)


def do_shutdown(server: str, opts: Options) -> int:
    return stop_server(server, pid_file_for(server, opts.pid_file), signal.SIGHUP)


def stop_server(server: str, pid_file: str, sig: signal.Signals) -> int:
    """Signal the recorded pid and wait for it to go; see the docstring."""
    if not os.path.exists(pid_file):
        say(f"{server} is already stopped")
        return EXIT_OK
    pid = live_pid(pid_file)
    # Removed before signalling so a --respawn supervisor sees a deliberate stop.
    remove_pid_file(pid_file)
    if pid is None:
        say(f"{server} is already stopped; removed stale pid file {pid_file}")
        return EXIT_OK
    say(f"Stopping {server} (pid {pid}) with signal({int(sig)})")
    if not send_signal(pid, sig) or wait_for_exit(pid, STOP_TIMEOUT):
        return EXIT_OK
    if sig != signal.SIGTERM:
        write_pid_file(pid_file, pid)
        warn(f"Waited {STOP_TIMEOUT:g} seconds for pid {pid} ({pid_file}) "
             "to die; giving up")
        return EXIT_FAILURE
    return _kill(server, pid)


def _kill(server: str, pid: int) -> int:
    warn(f"{server} (pid {pid}) ignored signal(15) for {STOP_TIMEOUT:g} "
         "seconds; sending signal(9)")
    if not send_signal(pid, signal.SIGKILL) or wait_for_exit(pid, KILL_TIMEOUT):
        return EXIT_OK
    warn(f"{server} (pid {pid}) is still running after signal(9)")
    return EXIT_FAILURE


def do_restart(server: str, opts: Options) -> int:
    stopped = do_stop(server, opts)
    return stopped if stopped != EXIT_OK else do_start(server, opts)


def do_reload(server: str, opts: Options) -> int:
    """Send SIGHUP to a running api or registry server."""
    if server not in RELOADABLE:
        warn(f"Reload of {server} not supported")
        return EXIT_FAILURE
    pid = live_pid(pid_file_for(server, opts.pid_file))
    if pid is None:
        warn(f"{server} is not running")
        return EXIT_FAILURE
    say(f"Reloading {server} (pid {pid}) with signal({int(signal.SIGHUP)})")
    return EXIT_OK if send_signal(pid, signal.SIGHUP) else EXIT_FAILURE


def do_status(server: str, opts: Options) -> int:
    """Report whether `server` runs; exit code as in the module docstring."""
    pid_file = pid_file_for(server, opts.pid_file)
    if not os.path.exists(pid_file):
        say(f"{server} is stopped")
        return EXIT_STOPPED
    pid = live_pid(pid_file)
    if pid is None:
        say(f"{server} is stopped (stale pid file {pid_file})")
        return EXIT_FAILURE
    say(f"{server} (pid {pid}) is running...")
    return EXIT_OK


HANDLERS: dict[str, Callable[[str, Options], int]] = {
    "start": do_start,
    "status": do_status,
    "stop": do_stop,
    "shutdown": do_shutdown,
    "restart": do_restart,
    "reload": do_reload,
    "force-reload": do_reload,
}


# --- command line -----------------------------------------------------------


def _seconds(value: str) -> int:
    seconds = int(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glance-control",
        description="Start, stop, reload and query the Glance servers.")
    parser.add_argument("--pid-file", metavar="PATH",
                        help="pid file (default /var/run/glance/<server>.pid)")
    parser.add_argument("--await-child", metavar="N", type=_seconds, default=0,
                        help="wait up to N seconds for the server to exit")
    parser.add_argument("--capture-output", action="store_true",
                        help="send server output to syslog via logger")
    parser.add_argument("--respawn", action="store_true",
                        help="stay in the foreground and restart a dying server")
    parser.add_argument("server", choices=SERVER_CHOICES)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("confpath", nargs="?", metavar="CONFPATH")
    return parser


def conflict(args: argparse.Namespace) -> str | None:
    """Return why the options cannot be combined, or None."""
    if args.respawn and args.await_child:
        return "--respawn and --await-child cannot be used together"
    if args.server == "all" and args.pid_file:
        return "--pid-file names one server's pid file; it cannot be used with 'all'"
    if args.server == "all" and args.respawn:
        return "--respawn supervises one server; it cannot be used with 'all'"
    return None


def existing_conf(confpath: str | None) -> str | None:
    if confpath and not os.path.exists(confpath):
        warn(f"Config file {confpath} not found; ignoring it")
        return None
    return confpath


def servers_for(name: str) -> tuple[str, ...]:
    if name == "all":
        return SERVERS
    return (name if name.startswith("glance-") else f"glance-{name}",)


def run(server: str, command: str, opts: Options) -> int:
    try:
        return HANDLERS[command](server, opts)
    except ControlError as err:
        warn(f"ERROR: {err}")
        return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    """Entry point of glance-control; returns the exit code."""
    args = build_parser().parse_args(argv)
    problem = conflict(args)
    if problem:
        warn(f"ERROR: {problem}")
        return EXIT_FAILURE
    opts = Options(pid_file=args.pid_file, await_child=args.await_child,
                   capture_output=args.capture_output, respawn=args.respawn,
                   conf=existing_conf(args.confpath))
    try:
        return max([run(server, args.command, opts)
                    for server in servers_for(args.server)])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
