"""Registry client: location encryption at rest and admin (keystone) tokens."""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import threading

import pytest

from glance_clone.common import exception, faults
from glance_clone.common.context import RequestContext
from glance_clone.registry.client.v1.client import RegistryClient
from tests.support.stack import make_conf, make_stack
from tests.support.wsgi_transport import transport_for

pytestmark = pytest.mark.timeout(60)
KEY = "0123456789abcdef0123456789abcdef"


def test_locations_are_encrypted_in_the_database(tmp_path):
    stack = make_stack(tmp_path, {"metadata_encryption_key": KEY})
    created = stack.request("/v1/images", "POST", body=b"secret bytes", tenant="t1",
                            headers={"x-image-meta-disk_format": "raw",
                                     "x-image-meta-container_format": "bare"})
    assert created.status_code == 201, created.text
    image_id = created.json["image"]["id"]
    with sqlite3.connect(tmp_path / "glance.sqlite") as db:
        (stored,) = db.execute("SELECT value FROM image_locations WHERE image_id = ?",
                               (image_id,)).fetchone()
    assert "file://" not in stored and image_id not in stored
    download = stack.request("/v1/images/" + image_id, tenant="t1")
    assert download.body == b"secret bytes"
    assert stack.request("/v1/images/" + image_id, "DELETE", tenant="t1").status_code == 200
    assert stack.stored_files() == []


def test_a_bad_encryption_key_is_refused_at_start(tmp_path):
    from glance_clone.common import exception
    conf = make_conf(tmp_path, {"metadata_encryption_key": "too-short"})
    with pytest.raises(exception.ConfigError):
        RegistryClient(conf)


class _Keystone(http.server.BaseHTTPRequestHandler):
    issued: list[str] = []
    requests: list[dict] = []

    def _json(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - version discovery
        base = "http://%s:%d" % self.server.server_address
        self._json(300, {"versions": {"values": [{
            "id": "v3.14", "status": "stable",
            "links": [{"rel": "self", "href": base + "/v3/"}]}]}})

    def do_POST(self):  # noqa: N802 - password authentication
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body["auth"])
        user = body["auth"]["identity"]["password"]["user"]
        assert user["name"] == "glance" and user["password"] == "pw"
        token = "tok-%d" % len(self.issued)
        self.issued.append(token)
        self._json(201, {"token": {"expires_at": "2099-01-01T00:00:00.000000Z",
                                   "methods": ["password"], "catalog": []}},
                   [("X-Subject-Token", token)])

    def log_message(self, *args):
        pass


def test_admin_credentials_get_a_keystone_token_and_renew_it(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Keystone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conf = make_conf(tmp_path, {
            "use_user_token": False, "auth_strategy": "keystone",
            "auth_url": "http://127.0.0.1:%d/" % server.server_address[1],
            "admin_user": "glance", "admin_password": "pw", "admin_tenant_name": "service",
            "send_identity_headers": False})
        seen = []

        def registry(environ, start_response):
            token = environ.get("HTTP_X_AUTH_TOKEN")
            seen.append(token)
            if token == "tok-0" and len(seen) > 1:
                start_response("401 Unauthorized", [("Content-Type", "text/plain")])
                return [b"401 Unauthorized\n\nexpired"]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"images": []}']

        client = RegistryClient(conf, transport=transport_for(registry),
                                base_url="http://registry")
        ctx = RequestContext(user="u", tenant="t", auth_token="caller-token")
        assert client.get_images(ctx) == []
        assert client.get_images(ctx) == []
        assert seen == ["tok-0", "tok-0", "tok-1"]
    finally:
        server.shutdown()


def test_a_service_program_uses_its_admin_credentials_in_their_domains(tmp_path):
    """glance-scrubber and glance-cache-prefetcher (as_service) send a token
    of their admin credentials even with use_user_token on (the default);
    glance-api's client then forwards the caller's token instead."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Keystone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Keystone.requests.clear()
    try:
        conf = make_conf(tmp_path, {
            "auth_strategy": "keystone",
            "auth_url": "http://127.0.0.1:%d/v3" % server.server_address[1],
            "admin_user": "glance", "admin_password": "pw", "admin_tenant_name": "service",
            "admin_user_domain_name": "Users", "admin_project_domain_name": "Projects",
            "send_identity_headers": False})
        seen = []

        def registry(environ, start_response):
            seen.append(environ.get("HTTP_X_AUTH_TOKEN"))
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"images": []}']

        ctx = RequestContext(user="u", tenant="t", auth_token="caller-token")
        for as_service in (True, False):
            client = RegistryClient(conf, transport=transport_for(registry),
                                    base_url="http://registry", as_service=as_service)
            assert client.get_images(ctx) == []
        assert seen[0].startswith("tok-") and seen[1] == "caller-token"
        [login] = _Keystone.requests
        assert login["identity"]["password"]["user"]["domain"] == {"name": "Users"}
        assert login["scope"]["project"] == {"name": "service", "domain": {"name": "Projects"}}
    finally:
        server.shutdown()


@pytest.mark.parametrize("keystone_answer", ["no listener", "500"])
def test_keystone_unreachable_for_the_admin_login_is_503_not_401(tmp_path, keystone_answer):
    """With use_user_token off, glance-api logs in itself: a Keystone that is
    down or failing is a 503 to retry, not a 401 blaming the credentials."""
    if keystone_answer == "no listener":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = "http://127.0.0.1:%d/v3" % sock.getsockname()[1]
        server = None
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingKeystone)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d/v3" % server.server_address[1]
    try:
        conf = make_conf(tmp_path, {
            "use_user_token": False, "auth_strategy": "keystone", "auth_url": url,
            "admin_user": "glance", "admin_password": "pw", "admin_tenant_name": "service",
            "send_identity_headers": False})

        def registry(environ, start_response):
            raise AssertionError("nothing reaches the registry without a token")

        client = RegistryClient(conf, transport=transport_for(registry),
                                base_url="http://registry")
        ctx = RequestContext(user="u", tenant="t", auth_token="caller-token")
        with pytest.raises(exception.IdentityUnavailable) as raised:
            client.get_images(ctx)
        assert faults.to_http(raised.value).status_int == 503
    finally:
        if server is not None:
            server.shutdown()


class _FailingKeystone(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args):
        pass


def test_a_server_that_is_not_the_registry_is_a_502_naming_the_setting(tmp_path):
    """registry_port pointing at glance-api (its 300 versions document) or
    at something that does not speak JSON: a clear 502, not a KeyError."""
    import webob

    from glance_clone.api.versions import VersionsApp

    conf = make_conf(tmp_path)
    context = RequestContext(user="u", tenant="t1", roles=("admin",), is_admin=True)
    client = RegistryClient(conf, transport=transport_for(VersionsApp(conf)))
    with pytest.raises(exception.BadGateway, match="registry_port"):
        client.get_images(context)

    def not_json(environ, start_response):
        return webob.Response(body=b"<html>hello</html>")(environ, start_response)

    client = RegistryClient(conf, transport=transport_for(not_json))
    with pytest.raises(exception.BadGateway, match="not JSON"):
        client.get_images(context)
    assert faults.to_http(exception.BadGateway("x")).status_int == 502
