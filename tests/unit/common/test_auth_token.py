"""The authtoken filter of the keystone flavors, built in-process.

No Keystone runs here: a request without a token never reaches one, and
the outage case points the filter at a loopback port nobody listens on.
The real Keystone is in tests/functional/test_keystone*.py.
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import webob
from oslo_config import cfg

from glance_clone import common
from glance_clone.api import versions
from glance_clone.api.v1 import router
from glance_clone.common import config, exception

pytestmark = pytest.mark.timeout(30)

ROOT = pathlib.Path(__file__).resolve().parents[3]
PASTE = ROOT / "etc" / "glance-api-paste.ini"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def write_conf(tmp_path: pathlib.Path, keystone_port: int, paste: pathlib.Path = PASTE) -> str:
    url = "http://127.0.0.1:%d/v3" % keystone_port
    path = tmp_path / "glance-api.conf"
    path.write_text(f"""
[paste_deploy]
flavor = keystone
config_file = {paste}
[glance_store]
filesystem_store_datadir = {tmp_path / "images"}
[keystone_authtoken]
www_authenticate_uri = {url}
auth_url = {url}
auth_type = password
username = glance
password = secret
user_domain_name = Default
project_name = service
project_domain_name = Default
http_connect_timeout = 2
http_request_max_retries = 0
""")
    return str(path)


def api_app(tmp_path: pathlib.Path, keystone_port: int, paste: pathlib.Path = PASTE) -> Any:
    conf = cfg.ConfigOpts()
    config.register_server_opts(conf)
    router.register_opts(conf)
    versions.register_opts(conf)
    conf(["--config-file", write_conf(tmp_path, keystone_port, paste)],
         project="glance", prog="glance-api", default_config_files=[])
    return config.load_paste_app(conf, "glance-api")


def test_the_filter_reads_keystone_authtoken_from_the_servers_conf(tmp_path, silent_port):
    # keystonemiddleware on its own reads the process-wide cfg.CONF, which
    # our servers leave empty: every request then failed with a 500.
    res = webob.Request.blank("/v1/images").get_response(api_app(tmp_path, silent_port))
    assert res.status_int == 401
    assert res.headers["WWW-Authenticate"] == 'Keystone uri="http://127.0.0.1:%d/v3"' % silent_port


@pytest.mark.parametrize("line", [
    "paste.filter_factory = keystonemiddleware.auth_token:filter_factory",
    "use = egg:keystonemiddleware#auth_token",
])
def test_both_spellings_of_keystonemiddlewares_filter_get_the_conf(tmp_path, silent_port, line):
    paste = tmp_path / "glance-api-paste.ini"
    paste.write_text(PASTE.read_text().replace(
        "paste.filter_factory = keystonemiddleware.auth_token:filter_factory", line))
    assert line in paste.read_text()
    res = webob.Request.blank("/v1/images").get_response(api_app(tmp_path, silent_port, paste))
    assert res.status_int == 401
    assert "127.0.0.1:%d" % silent_port in res.headers["WWW-Authenticate"]


def test_keystone_unreachable_is_503_not_401(tmp_path, silent_port):
    app = api_app(tmp_path, silent_port)
    req = webob.Request.blank("/v1/images", headers={"X-Auth-Token": "a-token"})
    res = req.get_response(app)
    assert res.status_int == 503
    assert "identity service (Keystone) could not be reached" in res.text


def test_without_keystonemiddleware_the_flavor_names_the_extra(tmp_path, silent_port, monkeypatch):
    monkeypatch.setitem(sys.modules, "keystonemiddleware", None)
    # As in a process that never had it: the filter module not imported yet.
    monkeypatch.delitem(sys.modules, "glance_clone.common.keystone_filter", raising=False)
    monkeypatch.delattr(common, "keystone_filter", raising=False)
    with pytest.raises(exception.MissingDependency,
                       match=r"keystonemiddleware: pip install 'glance_clone\[keystone\]'"):
        api_app(tmp_path, silent_port)


def test_glance_api_without_keystonemiddleware_exits_with_one_line(tmp_path, silent_port):
    conf = write_conf(tmp_path, silent_port)
    with open(conf, "a") as extra:
        extra.write("[DEFAULT]\nlog_file = %s\nbind_port = 0\n" % (tmp_path / "api.log"))
    code = ("import sys; sys.modules['keystonemiddleware'] = None; "
            "from glance_clone.cmd import api; sys.exit(api.main(['--config-file', %r]))" % conf)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=25)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == ["ERROR: The keystone flavor (the authtoken filter) needs the Python "
                      "package keystonemiddleware: pip install 'glance_clone[keystone]'"]
