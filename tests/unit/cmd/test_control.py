"""Tests for glance-control, driven as the real command against fake servers."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from glance_clone.cmd import control

REPO_ROOT = Path(__file__).resolve().parents[3]

# A stand-in server: records each start and the signals it gets in STATE_DIR.
# Modes: serve (run until SIGTERM), hup-exits (SIGHUP ends it too), exit:N
# (exit N at once), crash-once (first run dies after 1.5 s, later runs at once).
FAKE_SERVER = r'''
import os, signal, sys, time

state, mode = sys.argv[1], sys.argv[2]
pid = os.getpid()

def record(name, text):
    with open(os.path.join(state, name), "a") as f:
        f.write(text + "\n")

def on_signal(signum, frame):
    record(f"signals-{pid}", signal.Signals(signum).name)
    if signum == signal.SIGTERM or mode == "hup-exits":
        sys.exit(0)

signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGHUP, on_signal)
runs = os.path.join(state, "runs")
first_run = not os.path.exists(runs)
record("runs", str(pid))
record(f"argv-{pid}", " ".join(sys.argv[3:]))
if mode.startswith("exit:"):
    sys.exit(int(mode[5:]))
if mode == "crash-once":
    if first_run:
        time.sleep(1.5)
    sys.exit(1)
while True:
    time.sleep(0.05)
'''


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll `condition` until true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout:.1f} s")
        time.sleep(0.02)


@dataclass
class Harness:
    tmp: Path
    state: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.tmp / "api.pid"

    def use_fake(self, mode: str = "serve", servers: tuple[str, ...] = ("API",)) -> None:
        script = self.tmp / "fake_server.py"
        script.write_text(FAKE_SERVER)
        command = shlex.join([sys.executable, str(script), str(self.state), mode])
        for name in servers:
            self.env[control.SERVER_CMD_ENV_PREFIX + name] = command

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "glance_clone.cmd.control", *args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "glance_clone.cmd.control", *args],
            env=self.env, capture_output=True, text=True, timeout=45)

    def api(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("--pid-file", str(self.pid_file), *args)

    def runs(self) -> list[int]:
        path = self.state / "runs"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def signals(self, pid: int) -> list[str]:
        path = self.state / f"signals-{pid}"
        return path.read_text().split() if path.exists() else []

    def recorded_pid(self, path: Path | None = None) -> int:
        return int((path or self.pid_file).read_text())


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    state = tmp_path / "state"
    state.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env[control.PID_DIR_ENV] = str(tmp_path / "run")
    h = Harness(tmp_path, state, env)
    yield h
    # A server may not have recorded its run yet, but its pid file names it.
    pid_files = [h.pid_file, *(tmp_path / "run").glob("*.pid")]
    pids = set(h.runs()) | {control.read_pid(str(p)) or 0 for p in pid_files}
    for pid in pids:
        if control.is_alive(pid):
            os.kill(pid, signal.SIGKILL)
            control.wait_for_exit(pid, 5)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def start_api(h: Harness, *extra: str) -> int:
    result = h.api(*extra, "api", "start")
    assert result.returncode == 0, result.stderr
    pid = h.recorded_pid()
    wait_until(lambda: pid in h.runs())
    return pid


# --- start --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_start_records_pid_of_running_server(harness: Harness) -> None:
    harness.use_fake()
    result = harness.api("api", "start")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Starting glance-api"]
    pid = harness.recorded_pid()
    wait_until(lambda: harness.runs() == [pid])
    assert control.is_alive(pid)


@pytest.mark.timeout(60)
def test_start_passes_existing_config_file(harness: Harness) -> None:
    harness.use_fake()
    conf = harness.tmp / "glance-api.conf"
    conf.write_text("[DEFAULT]\n")
    result = harness.api("glance-api", "start", str(conf))
    assert f"Starting glance-api with {conf}" in result.stdout
    pid = harness.recorded_pid()
    wait_until(lambda: (harness.state / f"argv-{pid}").exists())
    assert (harness.state / f"argv-{pid}").read_text().split() == ["--config-file", str(conf)]


@pytest.mark.timeout(60)
def test_start_ignores_missing_config_file(harness: Harness) -> None:
    harness.use_fake()
    result = harness.api("api", "start", str(harness.tmp / "missing.conf"))
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["Starting glance-api"]
    assert "not found" in result.stderr


@pytest.mark.timeout(60)
def test_start_of_a_running_server_says_so_and_succeeds(harness: Harness) -> None:
    harness.use_fake()
    pid = start_api(harness)
    result = harness.api("api", "start")
    assert result.returncode == 0
    assert f"glance-api appears to already be running: {harness.pid_file}" in result.stdout
    assert harness.recorded_pid() == pid
    assert harness.runs() == [pid]


@pytest.mark.timeout(60)
def test_start_replaces_stale_pid_file(harness: Harness) -> None:
    harness.use_fake()
    stale = dead_pid()
    harness.pid_file.write_text(f"{stale}\n")
    result = harness.api("api", "start")
    assert result.returncode == 0, result.stderr
    assert f"Removing stale pid file {harness.pid_file}" in result.stdout
    assert harness.recorded_pid() != stale
    assert control.is_alive(harness.recorded_pid())


@pytest.mark.timeout(60)
def test_start_with_capture_output(harness: Harness) -> None:
    # util-linux's logger is on every Debian system; its absence is a failure.
    assert shutil.which("logger"), "logger (util-linux) is needed for --capture-output"
    harness.use_fake()
    pid = start_api(harness, "--capture-output")
    assert control.is_alive(pid)


# --- status -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_status_running(harness: Harness) -> None:
    harness.use_fake()
    pid = start_api(harness)
    result = harness.api("api", "status")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [f"glance-api (pid {pid}) is running..."]


@pytest.mark.timeout(60)
def test_status_stopped(harness: Harness) -> None:
    result = harness.api("api", "status")
    assert result.returncode == 3
    assert result.stdout.splitlines() == ["glance-api is stopped"]


@pytest.mark.timeout(60)
def test_status_stale_pid_file(harness: Harness) -> None:
    harness.pid_file.write_text(f"{dead_pid()}\n")
    result = harness.api("api", "status")
    assert result.returncode == 1
    assert result.stdout.startswith("glance-api is stopped (stale pid file")
    assert harness.pid_file.exists()


# --- stop / shutdown ----------------------------------------------------------


@pytest.mark.timeout(60)
def test_stop_terminates_server_and_removes_pid_file(harness: Harness) -> None:
    harness.use_fake()
    pid = start_api(harness)
    result = harness.api("api", "stop")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"Stopping glance-api (pid {pid}) with signal(15)"]
    assert not harness.pid_file.exists()
    assert not control.is_alive(pid)
    assert harness.signals(pid) == ["SIGTERM"]


@pytest.mark.timeout(60)
def test_stop_when_already_stopped(harness: Harness) -> None:
    result = harness.api("api", "stop")
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["glance-api is already stopped"]


@pytest.mark.timeout(60)
def test_stop_removes_stale_pid_file(harness: Harness) -> None:
    harness.pid_file.write_text(f"{dead_pid()}\n")
    result = harness.api("api", "stop")
    assert result.returncode == 0
    assert "removed stale pid file" in result.stdout
    assert not harness.pid_file.exists()


@pytest.mark.timeout(60)
def test_shutdown_sends_sighup(harness: Harness) -> None:
    harness.use_fake("hup-exits")
    pid = start_api(harness)
    result = harness.api("api", "shutdown")
    assert result.returncode == 0, result.stderr
    assert f"Stopping glance-api (pid {pid}) with signal(1)" in result.stdout
    assert harness.signals(pid) == ["SIGHUP"]
    assert not harness.pid_file.exists()


@pytest.mark.timeout(60)
def test_stop_escalates_to_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "STOP_TIMEOUT", 0.3)
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, sys, time\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
         "print('ready', flush=True)\n"
         "while True: time.sleep(0.05)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        pid_file = tmp_path / "stubborn.pid"
        pid_file.write_text(f"{proc.pid}\n")
        assert control.stop_server("glance-api", str(pid_file), signal.SIGTERM) == 0
        assert proc.wait(5) == -signal.SIGKILL
        assert not pid_file.exists()
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


# --- reload / restart ---------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["reload", "force-reload"])
def test_reload_sends_sighup(harness: Harness, command: str) -> None:
    harness.use_fake()
    pid = start_api(harness)
    result = harness.api("api", command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"Reloading glance-api (pid {pid}) with signal(1)"]
    wait_until(lambda: harness.signals(pid) == ["SIGHUP"])
    assert control.is_alive(pid)


@pytest.mark.timeout(60)
def test_reload_of_stopped_server_fails(harness: Harness) -> None:
    result = harness.api("api", "reload")
    assert result.returncode == 1
    assert "glance-api is not running" in result.stderr


@pytest.mark.timeout(60)
def test_reload_scrubber_not_supported(harness: Harness) -> None:
    result = harness.run("scrubber", "reload")
    assert result.returncode == 1
    assert "Reload of glance-scrubber not supported" in result.stderr


@pytest.mark.timeout(60)
def test_restart_replaces_the_process(harness: Harness) -> None:
    harness.use_fake()
    old = start_api(harness)
    result = harness.api("api", "restart")
    assert result.returncode == 0, result.stderr
    new = harness.recorded_pid()
    assert new != old
    assert not control.is_alive(old)
    assert control.is_alive(new)


# --- --await-child / --respawn ------------------------------------------------


@pytest.mark.timeout(60)
def test_await_child_returns_exit_code(harness: Harness) -> None:
    harness.use_fake("exit:7")
    result = harness.api("--await-child", "10", "api", "start")
    assert result.returncode == 7
    assert not harness.pid_file.exists()


@pytest.mark.timeout(60)
def test_await_child_treats_running_server_as_started(harness: Harness) -> None:
    harness.use_fake()
    result = harness.api("--await-child", "1", "api", "start")
    assert result.returncode == 0
    assert control.is_alive(harness.recorded_pid())


@pytest.mark.timeout(60)
def test_respawn_restarts_then_suppresses_bouncing(harness: Harness) -> None:
    harness.use_fake("crash-once")
    result = harness.api("--respawn", "api", "start")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "Starting glance-api",
        "Respawning glance-api",
        "Suppressed respawn as glance-api was bouncing",
    ]
    assert len(harness.runs()) == 2
    assert not harness.pid_file.exists()


@pytest.mark.timeout(60)
def test_respawn_suppressed_for_bouncing_server(harness: Harness) -> None:
    harness.use_fake("exit:1")
    result = harness.api("--respawn", "api", "start")
    assert result.returncode == 1
    assert "Suppressed respawn as glance-api was bouncing" in result.stdout
    assert len(harness.runs()) == 1


@pytest.mark.timeout(60)
def test_respawn_stops_after_deliberate_stop(harness: Harness) -> None:
    harness.use_fake()
    supervisor = harness.popen("--pid-file", str(harness.pid_file), "--respawn", "api", "start")
    try:
        wait_until(lambda: len(harness.runs()) == 1)
        wait_until(lambda: harness.pid_file.exists())
        assert harness.api("api", "stop").returncode == 0
        out, _ = supervisor.communicate(timeout=20)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.communicate()
    assert supervisor.returncode == 0
    assert "Suppressed respawn as glance-api was deliberately stopped" in out
    assert len(harness.runs()) == 1


@pytest.mark.timeout(60)
def test_respawn_with_await_child_is_an_error(harness: Harness) -> None:
    result = harness.api("--respawn", "--await-child", "5", "api", "start")
    assert result.returncode == 1
    assert "ERROR" in result.stderr
    assert harness.runs() == []


# --- all ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_all_starts_queries_and_stops_three_servers(harness: Harness) -> None:
    harness.use_fake(servers=("API", "REGISTRY", "SCRUBBER"))
    result = harness.run("all", "start")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Starting glance-api", "Starting glance-registry", "Starting glance-scrubber"]
    run_dir = harness.tmp / "run"
    pids = [harness.recorded_pid(run_dir / f"{s}.pid") for s in control.SERVERS]
    wait_until(lambda: sorted(harness.runs()) == sorted(pids))
    assert harness.run("all", "status").returncode == 0
    assert harness.run("all", "stop").returncode == 0
    assert not any(control.is_alive(pid) for pid in pids)
    assert list(run_dir.iterdir()) == []


@pytest.mark.timeout(60)
def test_all_with_pid_file_is_an_error(harness: Harness) -> None:
    result = harness.run("--pid-file", str(harness.pid_file), "all", "start")
    assert result.returncode == 1
    assert "ERROR" in result.stderr


# --- in-process: parsing, lookup, pid directory -------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("argv", [[], ["api"], ["nova", "start"], ["api", "jump"],
                                  ["--await-child", "-1", "api", "start"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        control.main(argv)
    assert raised.value.code == 2
    assert "usage: glance-control" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_server_command_override_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLANCE_CONTROL_SERVER_CMD_REGISTRY", "/opt/x/run 'a b'")
    assert control.server_command("glance-registry") == ["/opt/x/run", "a b"]


@pytest.mark.timeout(60)
def test_server_command_prefers_script_beside_python(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "glance-api"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.delenv("GLANCE_CONTROL_SERVER_CMD_API", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert control.server_command("glance-api") == [str(script)]


@pytest.mark.timeout(60)
def test_server_command_falls_back_to_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLANCE_CONTROL_SERVER_CMD_SCRUBBER", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(control, "_module_available", lambda name: True)
    assert control.server_command("glance-scrubber") == [
        str(tmp_path / "python"), "-m", "glance_clone.cmd.scrubber"]
    monkeypatch.setattr(control, "_module_available", lambda name: False)
    with pytest.raises(control.ControlError, match="cannot find the glance-scrubber"):
        control.server_command("glance-scrubber")


@pytest.mark.timeout(60)
def test_missing_program_reports_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GLANCE_CONTROL_SERVER_CMD_API", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(control, "_module_available", lambda name: False)
    rc = control.main(["--pid-file", str(tmp_path / "api.pid"), "api", "start"])
    assert rc == 1
    assert "ERROR: cannot find the glance-api program" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_unusable_pid_dir_falls_back_to_private_temp_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv(control.PID_DIR_ENV, str(blocker / "glance"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = control.pid_file_for("glance-api", None)
    expected_dir = tmp_path / f"glance-control-{os.getuid()}"
    assert path == str(expected_dir / "glance-api.pid")
    assert expected_dir.stat().st_mode & 0o777 == 0o700
    assert f"using {path}" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_default_pid_dir_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(control.PID_DIR_ENV, str(tmp_path / "run" / "glance"))
    path = control.pid_file_for("glance-registry", None)
    assert path == str(tmp_path / "run" / "glance" / "glance-registry.pid")
    assert (tmp_path / "run" / "glance").is_dir()


@pytest.mark.timeout(60)
def test_exit_code_maps_signals() -> None:
    assert control.exit_code(3) == 3
    assert control.exit_code(-signal.SIGTERM) == 128 + signal.SIGTERM
