"""Start real glance-registry and glance-api processes for functional tests.

Each server gets a config and paste file in its own temporary folder, a
free loopback port, and a log file. ``start`` polls ``/healthcheck`` until
it answers (the app is loaded) or the process exits or a deadline passes;
on failure the log is shown. A bind race on the chosen port is retried on
a new port, as Glance's functional tests did.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
ETC = ROOT / "etc"
START_DEADLINE = 60.0
STOP_DEADLINE = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    """The environment for server processes: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def render_conf(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, options in sections.items():
        lines.append("[%s]" % section)
        for key, value in options.items():
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            lines.append("%s = %s" % (key, value))
        lines.append("")
    return "\n".join(lines)


def wait_until(predicate: Any, deadline: float, interval: float = 0.05,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value or time runs out."""
    end = time.monotonic() + deadline
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s" % message)
        time.sleep(interval)


class ServerProcess:
    """One glance server program run from a temporary config folder."""

    def __init__(self, program: str, workdir: Path, sections: dict[str, dict[str, Any]],
                 paste_ini: Path) -> None:
        self.program = program          # "api" or "registry"
        self.workdir = workdir
        self.sections = sections
        self.paste_source = paste_ini
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.conf_path = workdir / ("glance-%s.conf" % program)
        self.paste_path = workdir / ("glance-%s-paste.ini" % program)
        self.log_path = workdir / ("glance-%s.log" % program)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        sections = {k: dict(v) for k, v in self.sections.items()}
        default = sections.setdefault("DEFAULT", {})
        default.update({"bind_host": "127.0.0.1", "bind_port": self.port,
                        "log_file": str(self.log_path)})
        sections.setdefault("paste_deploy", {})["config_file"] = str(self.paste_path)
        shutil.copyfile(self.paste_source, self.paste_path)
        self.conf_path.write_text(render_conf(sections))

    def start(self, port: int | None = None, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.port = port or free_port()
            self.write_config()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "glance_clone.cmd.%s" % self.program,
                 "--config-file", str(self.conf_path)],
                cwd=str(self.workdir), stdin=subprocess.DEVNULL, env=server_env(),
                stdout=subprocess.DEVNULL, stderr=open(self.workdir / "stderr.txt", "wb"),
                start_new_session=True)
            try:
                wait_until(self._ready, START_DEADLINE, 0.1,
                           "glance-%s to answer /healthcheck" % self.program)
                return
            except _Exited:
                if attempt + 1 < attempts and port is None and "Address already in use" in self.log():
                    continue
                raise AssertionError("glance-%s exited at start:\n%s"
                                     % (self.program, self.log()))
            except AssertionError:
                self.stop()
                raise AssertionError("glance-%s did not become ready:\n%s"
                                     % (self.program, self.log()))

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise _Exited()
        try:
            return requests.get(self.url + "/healthcheck", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def log(self) -> str:
        text = ""
        for path in (self.log_path, self.workdir / "stderr.txt"):
            if path.exists():
                text += path.read_text(errors="replace")[-6000:]
        return text

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_DEADLINE)

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, for fault tests)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_DEADLINE)


class _Exited(Exception):
    pass


class Deployment:
    """A glance-registry and a glance-api sharing one SQLite file and store.

    The api runs the trusted-auth flavor and sends identity headers, and the
    registry runs trusted-auth, so tests can act as different tenants with
    the X-Identity-Status / X-Tenant-Id / X-Roles headers.
    """

    def __init__(self, base: Path, api_options: dict[str, dict[str, Any]] | None = None,
                 registry_options: dict[str, dict[str, Any]] | None = None,
                 api_flavor: str | None = "trusted-auth",
                 registry_flavor: str | None = "trusted-auth") -> None:
        self.base = base
        self.datadir = base / "images"
        self.db_path = base / "glance.sqlite"
        registry_sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {"workers": 0},
            "database": {"connection": "sqlite:///%s" % self.db_path},
            "paste_deploy": {},
        }
        if registry_flavor:
            registry_sections["paste_deploy"]["flavor"] = registry_flavor
        _merge(registry_sections, registry_options)
        self.registry = ServerProcess("registry", base / "registry", registry_sections,
                                      ETC / "glance-registry-paste.ini")
        api_sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {"workers": 0, "send_identity_headers": True},
            "glance_store": {"filesystem_store_datadir": str(self.datadir)},
            "import_filtering_opts": {"allowed_hosts": "127.0.0.1"},
            "oslo_policy": {"policy_file": str(ETC / "policy.json")},
            "paste_deploy": {},
        }
        if api_flavor:
            api_sections["paste_deploy"]["flavor"] = api_flavor
        _merge(api_sections, api_options)
        self.api = ServerProcess("api", base / "api", api_sections,
                                 ETC / "glance-api-paste.ini")

    def db_sync(self) -> None:
        subprocess.run([sys.executable, "-m", "glance_clone.cmd.manage",
                        "--config-file", str(self.registry.conf_path), "db_sync"],
                       check=True, capture_output=True, timeout=120, env=server_env())

    def start(self) -> Deployment:
        self.registry.port = free_port()
        self.registry.write_config()
        self.db_sync()
        self.registry.start(self.registry.port)
        self.api.sections["DEFAULT"]["registry_host"] = "127.0.0.1"
        self.api.sections["DEFAULT"]["registry_port"] = self.registry.port
        self.api.start()
        return self

    def stop(self) -> None:
        self.api.stop()
        self.registry.stop()

    @property
    def url(self) -> str:
        return self.api.url

    def stored_files(self) -> list[str]:
        if not self.datadir.exists():
            return []
        return sorted(os.listdir(self.datadir))


def _merge(sections: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]] | None) -> None:
    for section, options in (extra or {}).items():
        sections.setdefault(section, {}).update(options)


def identity(tenant: str | None, roles: str = "member", user: str = "user") -> dict[str, str]:
    """Trusted-auth headers for a caller."""
    return {"X-Identity-Status": "Confirmed", "X-Tenant-Id": tenant or "",
            "X-User-Id": user, "X-Roles": roles}


def admin() -> dict[str, str]:
    return identity("admin-tenant", roles="admin", user="admin")


def deployment(tmp_path: Path, **kwargs: Any) -> Iterator[Deployment]:
    dep = Deployment(tmp_path, **kwargs)
    try:
        yield dep.start()
    finally:
        dep.stop()
