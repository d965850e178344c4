"""The real v2 clients (python-glanceclient 4, openstacksdk, the
``openstack`` CLI) in a virtualenv beside the project's ``.venv``.

The virtualenv is made on first use from ``clients-requirements.txt`` and
kept (``.venv-clients``, or ``GLANCE_TEST_CLIENTS_VENV``); it is made again
when that file changes. CLIs run on a pseudo-terminal, as a person would
run them: glanceclient and the openstack CLI read image data from standard
input when it is not a terminal.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("clients-requirements.txt")
STAMP = "requirements.installed"
INSTALL_TIMEOUT = 1200


def venv_dir() -> Path:
    return Path(os.environ.get("GLANCE_TEST_CLIENTS_VENV") or ROOT / ".venv-clients")


def ensure_venv() -> Path:
    """The clients' virtualenv, made or refreshed as needed; its bin/."""
    venv = venv_dir()
    wanted = REQUIREMENTS.read_text()
    stamp = venv / STAMP
    if stamp.exists() and stamp.read_text() == wanted:
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-r", str(REQUIREMENTS)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert result.returncode == 0, "installing the v2 clients failed:\n" + result.stderr
    stamp.write_text(wanted)
    return venv / "bin"


def run(program: Path, *args: str, env: dict[str, str] | None = None,
        ok: bool = True, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run a client CLI on a terminal; asserts success unless ``ok`` is False."""
    master, slave = pty.openpty()
    try:
        result = subprocess.run([str(program), *args], stdin=slave, capture_output=True,
                                text=True, timeout=timeout,
                                env=dict(os.environ, **(env or {})))
    finally:
        os.close(master)
        os.close(slave)
    if ok:
        assert result.returncode == 0, "%s %s\n%s%s" % (
            program.name, " ".join(args), result.stdout, result.stderr)
    return result


def python(bin_dir: Path, script: str, *args: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` with the clients' Python (for openstacksdk)."""
    result = subprocess.run([str(bin_dir / "python"), "-c", script, *args],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, **(env or {})))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def table_value(output: str, key: str) -> str:
    """A value of the Property/Field table a CLI prints."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and cells[1] == key:
            return cells[2]
    raise AssertionError("%r not in output:\n%s" % (key, output))
