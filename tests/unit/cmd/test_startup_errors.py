"""A server that cannot start says why on stderr in exactly one line."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("log_to_file", [False, True])
def test_a_start_error_is_one_line_on_stderr(tmp_path, log_to_file):
    conf = tmp_path / "glance-api.conf"
    lines = ["[DEFAULT]", "bind_host = 127.0.0.1", "bind_port = 1",
             # No paste file where this looks: the app cannot be built.
             "[paste_deploy]", "config_file = %s" % (tmp_path / "missing-paste.ini")]
    if log_to_file:
        lines.insert(1, "log_file = %s" % (tmp_path / "api.log"))
    conf.write_text("\n".join(lines) + "\n")
    result = subprocess.run([sys.executable, "-m", "glance_clone.cmd.api",
                             "--config-file", str(conf)],
                            capture_output=True, text=True, timeout=90, cwd=str(tmp_path))
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ERROR: ") and "paste" in line
    if log_to_file:   # the operator's log keeps it too
        assert line[len("ERROR: "):] in (tmp_path / "api.log").read_text()
