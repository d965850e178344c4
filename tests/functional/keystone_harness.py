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
import datetime
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
    project_name: str
    domain_name: str        # of the user and of the project


class Keystone:
    """The Keystone of ``KEYSTONE_URL``, driven as its bootstrap admin."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        env = os.environ if environ is None else environ
        self.url = env["KEYSTONE_URL"]
        self.region = env.get("KEYSTONE_REGION") or "RegionOne"
        self.service = (env["KEYSTONE_SERVICE_USER"], env["KEYSTONE_SERVICE_PASSWORD"],
                        env["KEYSTONE_SERVICE_PROJECT"])
        self.admin_name = env["KEYSTONE_ADMIN_USER"]
        self.admin_password = env["KEYSTONE_ADMIN_PASSWORD"]
        self.admin_project = env["KEYSTONE_ADMIN_PROJECT"]
        self.session = session.Session(auth=v3.Password(
            auth_url=self.url, username=self.admin_name, password=self.admin_password,
            user_domain_id="default", project_name=self.admin_project,
            project_domain_id="default"))
        self._created: list[str] = []   # paths to DELETE, newest last

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

    def domain(self) -> dict[str, str]:
        """A new domain (``id`` and ``name``)."""
        domain = self._call("POST", "/domains", json={"domain": {
            "name": "glance-test-" + uuid.uuid4().hex[:12]}})["domain"]
        self._created.append("/domains/" + domain["id"])
        return {"id": domain["id"], "name": domain["name"]}

    def project(self, domain_id: str = "default") -> dict[str, str]:
        """A new project (``id`` and ``name``)."""
        name = "glance-test-" + uuid.uuid4().hex[:12]
        project = self._call("POST", "/projects", json={"project": {
            "name": name, "domain_id": domain_id}})["project"]
        self._created.append("/projects/" + project["id"])
        return {"id": project["id"], "name": name}

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

    def user(self, roles: tuple[str, ...] = ("member",),
             domain: dict[str, str] | None = None) -> User:
        """A new user with ``roles`` on a new project, both in ``domain``
        (Keystone's own when None)."""
        domain = domain or {"id": "default", "name": "Default"}
        project = self.project(domain["id"])
        name = "glance-test-" + uuid.uuid4().hex[:12]
        password = uuid.uuid4().hex
        user = self._call("POST", "/users", json={"user": {
            "name": name, "password": password, "domain_id": domain["id"],
            "default_project_id": project["id"]}})["user"]
        self._created.append("/users/" + user["id"])
        for role in roles:
            role_id = self._call("GET", "/roles", params={"name": role})["roles"][0]["id"]
            self._call("PUT", "/projects/%s/users/%s/roles/%s"
                       % (project["id"], user["id"], role_id))
        return User(user["id"], name, password, project["id"], project["name"], domain["name"])

    def token(self, user: User) -> str:
        """A project-scoped token of ``user`` from a password login."""
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        auth = v3.Password(auth_url=self.url, username=user.name, password=user.password,
                           user_domain_name=user.domain_name, project_id=user.project_id)
        return str(session.Session(auth=auth).get_token())

    def expiring_token(self, user: User, seconds: int) -> str:
        """A project-scoped token of ``user`` that expires in ``seconds``.

        Keystone caps a token's lifetime at the expiry of the application
        credential it was issued for, so a credential that lapses soon gives
        a token that lapses with it (the server's own lifetime stays as is).
        """
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=seconds)
        user_session = session.Session(auth=v3.Password(
            auth_url=self.url, username=user.name, password=user.password,
            user_domain_name=user.domain_name, project_id=user.project_id))
        credential = user_session.post(
            self.url + "/users/%s/application_credentials" % user.id,
            json={"application_credential": {
                "name": "glance-test-" + uuid.uuid4().hex[:12],
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S")}},
        ).json()["application_credential"]
        # Removed before its user: deleting the user leaves the credential's
        # role rows behind in a SQLite Keystone (no foreign keys there), and
        # the next credential, given the freed internal id, then collides
        # with them (409) in every later run against the same Keystone.
        self._created.append("/users/%s/application_credentials/%s"
                             % (user.id, credential["id"]))
        auth = v3.ApplicationCredential(
            auth_url=self.url, application_credential_id=credential["id"],
            application_credential_secret=credential["secret"])
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
            path = self._created.pop()
            if path.startswith("/domains/"):   # only a disabled domain can go
                self._call("PATCH", path, json={"domain": {"enabled": False}})
            self._call("DELETE", path)


def deployment(base: Path, keystone: Keystone, flavor: str = "keystone",
               api_options: dict[str, dict[str, Any]] | None = None,
               registry_flavor: str = "trusted-auth", via: str | None = None) -> harness.Deployment:
    """glance-api on a keystone ``flavor`` that checks tokens at ``keystone``
    (through the URL ``via`` when given), and glance-registry on
    ``registry_flavor``: trusted-auth (the api sends the identity headers)
    or keystone (it checks the tokens the api forwards). Not started."""
    authtoken = keystone.authtoken_options()
    if via:
        authtoken.update(auth_url=via, region_name=keystone.identity_region(via))
    options: dict[str, dict[str, Any]] = {"keystone_authtoken": authtoken}
    for section, values in (api_options or {}).items():
        options.setdefault(section, {}).update(values)
    registry_options = None
    if registry_flavor == "keystone":
        registry_options = {"keystone_authtoken": keystone.authtoken_options()}
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
