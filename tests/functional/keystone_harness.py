"""A real Keystone for the functional tests of the keystone flavors.

``tools/backends/start-keystone.sh`` starts one and prints ``KEYSTONE_URL``
with the bootstrap admin's and the service user's credentials
(``tools/run-tests.sh`` does that for the suite; tests that need it are
marked ``@pytest.mark.needs("keystone")``). ``Keystone`` creates projects
and users through the identity v3 API as that admin, logs them in with
their passwords for real tokens, and deletes what it created.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.functional import harness


@dataclasses.dataclass(frozen=True)
class User:
    id: str
    name: str
    password: str
    project_id: str


class Keystone:
    """The Keystone of ``KEYSTONE_URL``, driven as its bootstrap admin."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        from keystoneauth1 import session

        env = os.environ if environ is None else environ
        self.url = env["KEYSTONE_URL"]
        self.region = env.get("KEYSTONE_REGION") or "RegionOne"
        self.service = (env["KEYSTONE_SERVICE_USER"], env["KEYSTONE_SERVICE_PASSWORD"],
                        env["KEYSTONE_SERVICE_PROJECT"])
        self.admin_name = env["KEYSTONE_ADMIN_USER"]
        self.admin_password = env["KEYSTONE_ADMIN_PASSWORD"]
        self.admin_project = env["KEYSTONE_ADMIN_PROJECT"]
        self.session = session.Session(auth=self._password(
            self.admin_name, self.admin_password, project_name=self.admin_project))
        self._created: list[str] = []   # paths to DELETE, newest last

    def _password(self, username: str, password: str, **scope: str) -> Any:
        from keystoneauth1.identity import v3

        if "project_name" in scope:
            scope["project_domain_id"] = "default"
        return v3.Password(auth_url=self.url, username=username, password=password,
                           user_domain_id="default", **scope)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self.session.request(self.url + path, method, **kwargs)
        return response.json() if response.content else {}

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def authtoken_options(self) -> dict[str, Any]:
        """The ``[keystone_authtoken]`` section of a glance server: the
        service user logs in at ``auth_url``, and tokens are checked at the
        identity endpoint of ``region_name`` in Keystone's catalog."""
        user, password, project = self.service
        return {"www_authenticate_uri": self.url, "auth_url": self.url,
                "auth_type": "password", "username": user, "password": password,
                "user_domain_name": "Default", "project_name": project,
                "project_domain_name": "Default", "region_name": self.region,
                "interface": "public"}

    def project(self) -> str:
        """A new project's id."""
        name = "glance-test-" + uuid.uuid4().hex[:12]
        project = self._call("POST", "/projects", json={"project": {
            "name": name, "domain_id": "default"}})["project"]
        self._created.append("/projects/" + project["id"])
        return str(project["id"])

    def identity_region(self, url: str) -> str:
        """A new region whose identity endpoint is ``url``; glance servers
        with it as ``region_name`` check tokens there."""
        region = self._call("POST", "/regions", json={"region": {
            "id": "glance-test-" + uuid.uuid4().hex[:12]}})["region"]
        self._created.append("/regions/" + region["id"])
        service = self._call("GET", "/services", params={"type": "identity"})["services"][0]
        endpoint = self._call("POST", "/endpoints", json={"endpoint": {
            "service_id": service["id"], "interface": "public", "region_id": region["id"],
            "url": url}})["endpoint"]
        self._created.append("/endpoints/" + endpoint["id"])
        return str(region["id"])

    def user(self, project_id: str | None = None, roles: tuple[str, ...] = ("member",)) -> User:
        """A new user with ``roles`` on ``project_id`` (a new project when None)."""
        project_id = project_id or self.project()
        name = "glance-test-" + uuid.uuid4().hex[:12]
        password = uuid.uuid4().hex
        user = self._call("POST", "/users", json={"user": {
            "name": name, "password": password, "domain_id": "default",
            "default_project_id": project_id}})["user"]
        self._created.append("/users/" + user["id"])
        for role in roles:
            role_id = self._call("GET", "/roles", params={"name": role})["roles"][0]["id"]
            self._call("PUT", "/projects/%s/users/%s/roles/%s" % (project_id, user["id"], role_id))
        return User(user["id"], name, password, project_id)

    def token(self, user: User) -> str:
        """A project-scoped token of ``user`` from a password login."""
        from keystoneauth1 import session

        auth = self._password(user.name, user.password, project_id=user.project_id)
        return str(session.Session(auth=auth).get_token())

    def admin_token(self) -> str:
        """A token of the bootstrap admin (role admin) on its project."""
        return str(self.session.get_token())

    def admin_project_id(self) -> str:
        return str(self.session.get_project_id())

    def revoke(self, token: str) -> None:
        self._call("DELETE", "/auth/tokens", headers={"X-Subject-Token": token})

    def cleanup(self) -> None:
        while self._created:
            self._call("DELETE", self._created.pop())


def deployment(base: Path, keystone: Keystone, flavor: str = "keystone",
               api_options: dict[str, dict[str, Any]] | None = None,
               registry_flavor: str = "trusted-auth",
               registry_options: dict[str, dict[str, Any]] | None = None,
               via: str | None = None) -> harness.Deployment:
    """glance-api on a keystone ``flavor`` that checks tokens at ``keystone``
    (through the URL ``via`` when given), sending the identity headers to a
    trusted-auth registry (not started)."""
    authtoken = keystone.authtoken_options()
    if via:
        authtoken.update(auth_url=via, region_name=keystone.identity_region(via))
    options: dict[str, dict[str, Any]] = {"keystone_authtoken": authtoken}
    for section, values in (api_options or {}).items():
        options.setdefault(section, {}).update(values)
    return harness.Deployment(base, api_flavor=flavor, api_options=options,
                              registry_flavor=registry_flavor,
                              registry_options=registry_options)


class Relay:
    """A TCP relay on a loopback port to ``target`` that can be cut and
    restored, to take Keystone away from a glance server and bring it back
    without touching the Keystone other tests use."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = harness.free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def url(self, path: str = "/v3") -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def start(self) -> Relay:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        """Close the port and every relayed connection: connections are refused."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            if self._listener is not None:
                sockets.append(self._listener)
                self._listener = None
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
