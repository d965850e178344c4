"""A missing database driver or store library: every command and server
that loads it stops with one line naming the extra to install, never a
traceback.

Each command runs in a subprocess whose ``sitecustomize`` makes the library
unimportable, as on a host where the extra was never installed.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

from tests.functional.harness import ETC, free_port

pytestmark = pytest.mark.timeout(120)

BLOCKER = '''
import os
import sys

BLOCKED = set(os.environ["BLOCKED_MODULES"].split(","))


class Blocker:
    """Raise as Python does for a package that is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None


sys.meta_path.insert(0, Blocker())
'''

PG_URL = "postgresql+psycopg://glance:pw@127.0.0.1:%d/glance"
POSTGRES = "The postgresql database needs the Python package psycopg: " \
           "pip install 'glance_clone[postgres]'"
SWIFT = "The swift store needs the Python package python-swiftclient: " \
        "pip install 'glance_clone[swift]'"
S3 = "The s3 store needs the Python package boto3: pip install 'glance_clone[s3]'"
# Ceph's bindings are not on PyPI: the line names Debian's packages.
RBD = "The rbd store needs Ceph's python modules rados and rbd: install " \
      "python3-rados and python3-rbd (in a venv: bash tools/backends/link-ceph-python.sh VENV)"
STORES = {"swift": ("swiftclient", SWIFT), "s3": ("boto3", S3), "rbd": ("rados", RBD)}


def run(tmp_path: pathlib.Path, blocked: str, module: str, conf: str,
        *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``glance_clone.cmd.<module>`` with ``blocked`` unimportable."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "cache").mkdir(exist_ok=True)
    conf_path = tmp_path / ("%s.conf" % module)
    conf_path.write_text(textwrap.dedent(conf).format(tmp=tmp_path, etc=ETC))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "BLOCKED_MODULES": blocked,
           # No PYTHONWARNINGS: the commands themselves keep eventlet's
           # import-time deprecation notice off stderr (glance_clone/cmd).
           "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "glance_clone.cmd." + module,
                           "--config-file", str(conf_path), *args],
                          capture_output=True, text=True, timeout=90, env=env,
                          cwd=str(tmp_path))


def assert_one_line(result: subprocess.CompletedProcess[str], text: str,
                    code: int = 1) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.stderr.strip().splitlines() == ["ERROR: " + text], result.stderr
    assert result.returncode == code


DATABASE_CONF = """
    [DEFAULT]
    log_file = {tmp}/log.txt
    bind_host = 127.0.0.1
    bind_port = %d
    [database]
    connection = %s
    [paste_deploy]
    config_file = {etc}/glance-registry-paste.ini
"""


@pytest.mark.parametrize("module, args", [("manage", ("db_sync",)), ("registry", ())])
def test_a_missing_database_driver(tmp_path, module, args):
    conf = DATABASE_CONF % (free_port(), PG_URL % free_port())
    assert_one_line(run(tmp_path, "psycopg", module, conf, *args), POSTGRES)


def test_a_plain_postgresql_url_uses_the_driver_of_the_extra(tmp_path):
    conf = DATABASE_CONF % (free_port(), "postgresql://glance:pw@127.0.0.1:1/glance")
    assert_one_line(run(tmp_path, "psycopg", "manage", conf, "db_sync"), POSTGRES)


STORE_CONF = """
    [DEFAULT]
    log_file = {tmp}/log.txt
    bind_host = 127.0.0.1
    bind_port = %d
    image_cache_dir = {tmp}/cache
    [glance_store]
    stores = file,http,%s
    filesystem_store_datadir = {tmp}/images
    [paste_deploy]
    config_file = {etc}/glance-api-paste.ini
"""


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("module, code", [("api", 3), ("scrubber", 1),
                                          ("cache_prefetcher", 1)])
def test_a_missing_store_library(tmp_path, store, module, code):
    library, text = STORES[store]
    conf = STORE_CONF % (free_port(), store)
    assert_one_line(run(tmp_path, library, module, conf), text, code)
