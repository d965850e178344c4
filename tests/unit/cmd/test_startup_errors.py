"""A server that cannot start says why on stderr in exactly one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("option, text", [
    ("[taskflow_executor]\nconversion_format = qcow3",
     "conversion_format = qcow3 is no format imports convert to: use one of"),
    ("[task]\nwork_dir = /nonexistent/work", "create it, writable by glance-api"),
])
def test_a_bad_task_work_option_is_one_error_line_naming_the_fix(tmp_path, option, text):
    paste = Path(__file__).resolve().parents[3] / "etc" / "glance-api-paste.ini"
    conf = tmp_path / "glance-api.conf"
    conf.write_text("\n".join([
        "[DEFAULT]", "bind_host = 127.0.0.1", "bind_port = 0",
        "node_staging_uri = file://%s" % (tmp_path / "staging"),
        "[glance_store]", "filesystem_store_datadir = %s" % (tmp_path / "images"),
        "[paste_deploy]", "config_file = %s" % paste, option]) + "\n")
    result = subprocess.run([sys.executable, "-m", "glance_clone.cmd.api",
                             "--config-file", str(conf)],
                            capture_output=True, text=True, timeout=90, cwd=str(tmp_path))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].startswith("ERROR: "), result.stderr
    assert text in errors[0] and "Traceback" not in result.stderr
