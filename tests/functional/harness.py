"""Start real glance-registry and glance-api processes for functional tests.

Each server gets a config and paste file in its own temporary folder, a
free loopback port, and a log file. ``start`` polls ``/healthcheck`` until
it answers (the app is loaded) or the process exits or a deadline passes;
on failure the log is shown. A bind race on the chosen port is retried on
a new port, as Glance's functional tests did.

A ``Deployment`` runs on one *backend set*, "<database>-<store>":

``sqlite-file`` (the default)
    a SQLite file and the file store, both in the test's folder.
``postgres-swift``, ``postgres-s3``, ``postgres-rbd`` (or any other mix)
    a new PostgreSQL database per deployment on the server of
    ``PG_SQLALCHEMY_URL`` (created with the role's CREATEDB, dropped at
    stop), and a new Swift container or S3 bucket per deployment on the
    cluster of ``SWIFT_AUTH_URL``/``SWIFT_USER``/``SWIFT_KEY`` or
    ``S3_ENDPOINT_URL``/``S3_ACCESS_KEY``/``S3_SECRET_KEY`` (created by
    glance-api on the first upload, deleted with its objects at stop), or
    the pool ``CEPH_POOL`` of the Ceph cluster of ``CEPH_CONF`` as user
    ``CEPH_USER``, shared by the deployments one after the other (each
    counts and removes only the RBD images that appeared during its life).

``tools/backends/start-postgres.sh``, ``start-swift.sh`` and
``start-ceph.sh`` print exactly these variables. ``BackendSet.missing``
says what a set lacks on this machine; the suite deselects what cannot run
(see conftest.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
ETC = ROOT / "etc"
START_DEADLINE = 60.0
STOP_DEADLINE = 15.0


# --- backend sets -------------------------------------------------------------

DATABASES = ("sqlite", "postgres")
STORES = ("file", "swift", "s3", "rbd")
# The sets the main suite runs on; GLANCE_TEST_BACKEND_SETS (comma
# separated, e.g. "sqlite-file,postgres-file") picks others.
SUITE_SETS = ("sqlite-file", "postgres-swift", "postgres-s3", "postgres-rbd")
SUITE_ENV = "GLANCE_TEST_BACKEND_SETS"

# What each part needs: environment variables, then importable modules.
NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sqlite": ((), ()),
    "file": ((), ()),
    "postgres": (("PG_SQLALCHEMY_URL",), ("psycopg",)),
    "swift": (("SWIFT_AUTH_URL", "SWIFT_USER", "SWIFT_KEY"), ("swiftclient",)),
    "s3": (("S3_ENDPOINT_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY"), ("boto3",)),
    "rbd": (("CEPH_CONF", "CEPH_USER", "CEPH_POOL"), ("rados", "rbd")),
    # Not a set: what the keystone tests need (tests/functional/keystone_harness.py).
    "keystone": (("KEYSTONE_URL", "KEYSTONE_ADMIN_USER", "KEYSTONE_ADMIN_PASSWORD",
                  "KEYSTONE_SERVICE_USER", "KEYSTONE_SERVICE_PASSWORD"),
                 ("keystonemiddleware", "keystoneauth1")),
}


# Programs tools/backends/start-*.sh need to start a private server (a test
# that restarts its backend cannot share the suite's).
SERVER_PROGRAMS: dict[str, tuple[str, ...]] = {
    "postgres-server": ("/usr/lib/postgresql/15/bin/pg_ctl", "psql"),
    "swift-server": ("swift-proxy-server", "swift-object-server", "memcached", "curl"),
    "ceph-server": ("ceph-mon", "ceph-osd", "ceph-mgr", "ceph", "rbd"),
}
BACKEND_TOOLS = ROOT / "tools" / "backends"


def missing_for(part: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """What this machine lacks for ``part``: a database or store name, or
    one of ``SERVER_PROGRAMS``."""
    if part in SERVER_PROGRAMS:
        return ["program %s" % program for program in SERVER_PROGRAMS[part]
                if shutil.which(program) is None]
    environ = os.environ if environ is None else environ
    env_names, modules = NEEDS[part]
    missing = [name for name in env_names if not environ.get(name)]
    missing += ["python module %s" % m for m in modules
                if importlib.util.find_spec(m) is None]
    return missing


@dataclasses.dataclass(frozen=True)
class BackendSet:
    """Where a deployment keeps its metadata (database) and image data (store)."""

    database: str
    store: str

    @property
    def name(self) -> str:
        return "%s-%s" % (self.database, self.store)

    def missing(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Environment variables and modules this set needs but lacks."""
        return missing_for(self.database, environ) + missing_for(self.store, environ)


def backend_set(name: str | BackendSet) -> BackendSet:
    """The set called ``name`` ("<database>-<store>"); raises ValueError."""
    if isinstance(name, BackendSet):
        return name
    database, _, store = name.partition("-")
    if database not in DATABASES or store not in STORES:
        raise ValueError("unknown backend set %r: use <%s>-<%s>"
                         % (name, "|".join(DATABASES), "|".join(STORES)))
    return BackendSet(database, store)


def suite_sets() -> list[str]:
    """Names of the sets the parametrised suite runs on."""
    chosen = os.environ.get(SUITE_ENV, "")
    names = [n.strip() for n in chosen.split(",") if n.strip()] or list(SUITE_SETS)
    return [backend_set(n).name for n in names]


class PostgresDatabase:
    """A new database on the server of ``PG_SQLALCHEMY_URL``, for one deployment."""

    def __init__(self, environ: Mapping[str, str], tag: str) -> None:
        import sqlalchemy as sa

        self.server = sa.engine.make_url(environ["PG_SQLALCHEMY_URL"])
        self.name = "glance_test_" + tag
        self.url = self.server.set(database=self.name).render_as_string(hide_password=False)

    def _admin(self) -> Any:
        import sqlalchemy as sa

        return sa.create_engine(self.server, isolation_level="AUTOCOMMIT",
                                poolclass=sa.pool.NullPool)

    def create(self) -> None:
        engine = self._admin()
        with engine.connect() as connection:
            connection.exec_driver_sql('CREATE DATABASE "%s"' % self.name)
        engine.dispose()

    def drop(self) -> None:
        engine = self._admin()
        with engine.connect() as connection:
            connection.exec_driver_sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)
        engine.dispose()


class FileStore:
    """The file store in the deployment's folder."""

    scheme = "file"

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir

    def options(self) -> dict[str, Any]:
        return {"filesystem_store_datadir": str(self.datadir)}

    def names(self) -> list[str]:
        if not self.datadir.exists():
            return []
        return sorted(os.listdir(self.datadir))

    def revealing(self) -> list[str]:
        """Strings that would give a location away if a response held them."""
        return ["file://", str(self.datadir)]

    def cleanup(self) -> None:
        pass


class SwiftStore:
    """A container of its own on the Swift cluster of ``SWIFT_AUTH_URL``.

    Segments of large objects may live in containers named after it
    (e.g. "<container>_segments"): every container with its name as a
    prefix counts as the deployment's.
    """

    scheme = "swift"

    def __init__(self, environ: Mapping[str, str], tag: str) -> None:
        self.auth_url = environ["SWIFT_AUTH_URL"]
        self.user = environ["SWIFT_USER"]
        self.key = environ["SWIFT_KEY"]
        self.container = "glance-test-" + tag

    def options(self) -> dict[str, Any]:
        return {"swift_store_auth_address": self.auth_url,
                "swift_store_user": self.user, "swift_store_key": self.key,
                "swift_store_auth_version": "1",
                "swift_store_container": self.container,
                "swift_store_create_container_on_put": True}

    def connection(self) -> Any:
        from swiftclient.client import Connection

        return Connection(authurl=self.auth_url, user=self.user, key=self.key,
                          auth_version="1", retries=1, timeout=30)

    def _containers(self, conn: Any) -> list[str]:
        _, containers = conn.get_account(prefix=self.container, full_listing=True)
        return [c["name"] for c in containers]

    def names(self) -> list[str]:
        conn = self.connection()
        try:
            found = []
            for container in self._containers(conn):
                _, objects = conn.get_container(container, full_listing=True)
                found += [o["name"] for o in objects]
            return sorted(found)
        finally:
            conn.close()

    def revealing(self) -> list[str]:
        return ["swift+http", "swift://", self.key, self.container]

    def cleanup(self) -> None:
        from swiftclient.exceptions import ClientException

        conn = self.connection()
        try:
            for container in self._containers(conn):
                _, objects = conn.get_container(container, full_listing=True)
                for obj in objects:
                    try:
                        conn.delete_object(container, obj["name"])
                    except ClientException as err:
                        if err.http_status != 404:
                            raise
                conn.delete_container(container)
        finally:
            conn.close()


class S3Store:
    """A bucket of its own on the S3 endpoint of ``S3_ENDPOINT_URL``."""

    scheme = "s3"

    def __init__(self, environ: Mapping[str, str], tag: str) -> None:
        self.endpoint = environ["S3_ENDPOINT_URL"]
        self.access_key = environ["S3_ACCESS_KEY"]
        self.secret_key = environ["S3_SECRET_KEY"]
        self.region = environ.get("S3_REGION") or "us-east-1"
        self.bucket = "glance-test-" + tag

    def options(self) -> dict[str, Any]:
        return {"s3_store_host": self.endpoint,
                "s3_store_access_key": self.access_key,
                "s3_store_secret_key": self.secret_key,
                "s3_store_bucket": self.bucket, "s3_store_region": self.region,
                "s3_store_create_bucket_on_put": True}

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          retries={"max_attempts": 2}))

    def names(self) -> list[str]:
        """Object keys, and "<key> (incomplete upload)" for each multipart
        upload neither completed nor aborted."""
        from botocore.exceptions import ClientError

        client = self.client()
        found: list[str] = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                found += [o["Key"] for o in page.get("Contents", [])]
            uploads = client.list_multipart_uploads(Bucket=self.bucket)
            found += ["%s (incomplete upload)" % u["Key"] for u in uploads.get("Uploads", [])]
        except ClientError as err:
            if err.response["Error"]["Code"] != "NoSuchBucket":
                raise
        return sorted(found)

    def revealing(self) -> list[str]:
        return ["s3://", "s3+http", self.secret_key, self.bucket]

    def cleanup(self) -> None:
        from botocore.exceptions import ClientError

        client = self.client()
        try:
            uploads = client.list_multipart_uploads(Bucket=self.bucket)
            for upload in uploads.get("Uploads", []):
                client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                              UploadId=upload["UploadId"])
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=self.bucket, Key=obj["Key"])
            client.delete_bucket(Bucket=self.bucket)
        except ClientError as err:
            if err.response["Error"]["Code"] != "NoSuchBucket":
                raise


class RbdStore:
    """The pool ``CEPH_POOL`` of the Ceph cluster of ``CEPH_CONF``.

    Deployments share the pool one after the other: the RBD images there
    when this one was made are not its own.
    """

    scheme = "rbd"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.conf = environ["CEPH_CONF"]
        self.user = environ["CEPH_USER"]
        self.pool = environ["CEPH_POOL"]
        self.before = set(self._list())

    def options(self) -> dict[str, Any]:
        return {"rbd_store_ceph_conf": self.conf, "rbd_store_user": self.user,
                "rbd_store_pool": self.pool}

    def _session(self) -> Any:
        from tests.support import ceph

        return ceph.session(self.conf, self.user, self.pool)

    def _list(self) -> list[str]:
        import rbd

        with self._session() as (_, ioctx):
            return rbd.RBD().list(ioctx)

    def names(self) -> list[str]:
        """This deployment's RBD images, each followed by its snapshots
        ("<image>@<snapshot>")."""
        import rbd

        from tests.support import ceph

        found = []
        with self._session() as (_, ioctx):
            for name in sorted(set(rbd.RBD().list(ioctx)) - self.before):
                found.append(name)
                with contextlib.suppress(rbd.ImageNotFound):
                    found += ["%s@%s" % (name, snap) for snap in ceph.snapshots(ioctx, name)]
        return found

    def revealing(self) -> list[str]:
        return ["rbd://"]

    def cleanup(self) -> None:
        """Remove this deployment's RBD images, clones first."""
        import rbd

        from tests.support import ceph

        with self._session() as (_, ioctx):
            ours = set(rbd.RBD().list(ioctx)) - self.before
            for name in sorted(ours, key=lambda n: not n.endswith("-clone")):
                ceph.remove_image(ioctx, name)


def make_store(backend: BackendSet, datadir: Path, environ: Mapping[str, str],
               tag: str) -> FileStore | SwiftStore | S3Store | RbdStore:
    if backend.store == "swift":
        return SwiftStore(environ, tag)
    if backend.store == "s3":
        return S3Store(environ, tag)
    if backend.store == "rbd":
        return RbdStore(environ)
    return FileStore(datadir)


# Ports this process handed out: a server started later may not have
# bound its port yet, and the kernel would offer that port again.
_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on and no earlier call returned (a
    registry and its api drawing the same port would answer each other's
    calls)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


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
        start_servers([(self, port)], attempts)

    def launch(self, port: int | None = None) -> None:
        """Start the process on ``port`` (a free one when None); see ``start_servers``."""
        self.port = port or free_port()
        self.write_config()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "glance_clone.cmd.%s" % self.program,
             "--config-file", str(self.conf_path)],
            cwd=str(self.workdir), stdin=subprocess.DEVNULL, env=server_env(),
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "stderr.txt", "wb"),
            start_new_session=True)

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


def start_servers(servers: list[tuple[ServerProcess, int | None]], attempts: int = 3,
                  launched: bool = False) -> None:
    """Start the servers side by side (unless ``launched`` already), then
    wait until each one answers.

    A server given no port whose port was taken meanwhile is retried on a
    new one; any other failure raises AssertionError with its log (servers
    already started are left to the caller to stop).
    """
    pending = servers
    for attempt in range(attempts):
        if attempt or not launched:
            for server, port in pending:
                server.launch(port)
        retry = []
        for server, port in pending:
            try:
                wait_until(server._ready, START_DEADLINE, 0.1,
                           "glance-%s to answer /healthcheck" % server.program)
            except _Exited:
                if attempt + 1 < attempts and port is None and \
                        "Address already in use" in server.log():
                    retry.append((server, port))
                    continue
                raise AssertionError("glance-%s exited at start:\n%s"
                                     % (server.program, server.log()))
            except AssertionError:
                server.stop()
                raise AssertionError("glance-%s did not become ready:\n%s"
                                     % (server.program, server.log()))
        if not retry:
            return
        pending = retry


class Deployment:
    """A glance-registry and one or more glance-api nodes sharing one
    database and one store, on a backend set (see the module docstring).

    The api runs the trusted-auth flavor and sends identity headers, and the
    registry runs trusted-auth, so tests can act as different tenants with
    the X-Identity-Status / X-Tenant-Id / X-Roles headers. ``api_options``
    and ``registry_options`` are merged over the settings of the set.
    ``environ`` (default: the process environment) supplies the backends'
    endpoints and credentials.
    """

    def __init__(self, base: Path, api_options: dict[str, dict[str, Any]] | None = None,
                 registry_options: dict[str, dict[str, Any]] | None = None,
                 api_flavor: str | None = "trusted-auth",
                 registry_flavor: str | None = "trusted-auth",
                 backend: str | BackendSet = "sqlite-file", api_nodes: int = 1,
                 environ: Mapping[str, str] | None = None) -> None:
        self.base = base
        self.backend = backend_set(backend)
        environ = os.environ if environ is None else environ
        self.tag = uuid.uuid4().hex[:12]
        self.datadir = base / "images"
        self.db_path = base / "glance.sqlite"
        self.database: PostgresDatabase | None = None
        if self.backend.database == "postgres":
            self.database = PostgresDatabase(environ, self.tag)
            connection = self.database.url
        else:
            connection = "sqlite:///%s" % self.db_path
        self.store = make_store(self.backend, self.datadir, environ, self.tag)
        registry_sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {"workers": 0},
            "database": {"connection": connection},
            "paste_deploy": {},
        }
        if registry_flavor:
            registry_sections["paste_deploy"]["flavor"] = registry_flavor
        _merge(registry_sections, registry_options)
        self.registry = ServerProcess("registry", base / "registry", registry_sections,
                                      ETC / "glance-registry-paste.ini")
        store_options: dict[str, Any] = {"filesystem_store_datadir": str(self.datadir)}
        if self.backend.store != "file":
            store_options.update(self.store.options(), default_store=self.store.scheme,
                                 stores=["file", "http", self.store.scheme])
        self.apis: list[ServerProcess] = []
        for node in range(api_nodes):
            api_sections: dict[str, dict[str, Any]] = {
                "DEFAULT": {"workers": 0, "send_identity_headers": True},
                "glance_store": dict(store_options),
                # The tests' HTTP servers are on loopback, on random ports.
                "import_filtering_opts": {"allowed_hosts": "127.0.0.1", "allowed_ports": ""},
                "oslo_policy": {"policy_file": str(ETC / "policy.json")},
                "paste_deploy": {},
            }
            if api_flavor:
                api_sections["paste_deploy"]["flavor"] = api_flavor
            _merge(api_sections, api_options)
            workdir = base / ("api" if node == 0 else "api-%d" % (node + 1))
            self.apis.append(ServerProcess("api", workdir, api_sections,
                                           ETC / "glance-api-paste.ini"))
        self.api = self.apis[0]

    def _db_sync_command(self) -> list[str]:
        return [sys.executable, "-m", "glance_clone.cmd.manage",
                "--config-file", str(self.registry.conf_path), "db_sync"]

    def db_sync(self) -> None:
        subprocess.run(self._db_sync_command(), check=True, capture_output=True,
                       timeout=120, env=server_env())

    def start(self) -> Deployment:
        """Start the registry and the api nodes all at once, create the
        schema meanwhile (in this process: the migrations glance-manage
        runs, without paying another interpreter start), and wait for all.

        The registry connects to its database on its first request and the
        api to the registry, so neither needs the other, or the schema, to
        start.
        """
        try:
            connection = self.registry.sections["database"]["connection"]
            if self.database is not None and connection == self.database.url:
                self.database.create()
            self.registry.port = free_port()
            for api in self.apis:
                api.sections["DEFAULT"]["registry_host"] = "127.0.0.1"
                api.sections["DEFAULT"]["registry_port"] = self.registry.port
            # An api node given a port before the start (a test that writes
            # the node's own URL into its configuration) keeps it.
            servers = [(self.registry, self.registry.port)] + [
                (api, api.port or None) for api in self.apis]
            for server, port in servers:
                server.launch(port)
            _db_sync(connection)
            start_servers(servers, launched=True)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the servers, then delete this deployment's database,
        container or bucket (never anything else on those servers)."""
        for api in self.apis:
            api.stop()
        self.registry.stop()
        try:
            self.store.cleanup()
        finally:
            if self.database is not None:
                self.database.drop()

    @property
    def url(self) -> str:
        return self.api.url

    @property
    def urls(self) -> list[str]:
        """The URL of every api node."""
        return [api.url for api in self.apis]

    def stored_files(self) -> list[str]:
        """Names in the default store: files, objects (and segments), keys."""
        return self.store.names()

    def revealing(self) -> list[str]:
        """Strings a response must never hold: they give a location away."""
        return self.store.revealing()


def _db_sync(connection: str) -> None:
    """``glance-manage db_sync`` for the database at ``connection``."""
    from glance_clone.db import migration, session

    session.ensure_sqlite_directory(session.database_url(connection))
    migration.db_sync(connection)


def _merge(sections: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]] | None) -> None:
    for section, options in (extra or {}).items():
        sections.setdefault(section, {}).update(options)


def identity(tenant: str | None, roles: str = "reader,member",
             user: str = "user") -> dict[str, str]:
    """Trusted-auth headers for a caller."""
    return {"X-Identity-Status": "Confirmed", "X-Tenant-Id": tenant or "",
            "X-User-Id": user, "X-Roles": roles}


def admin() -> dict[str, str]:
    return identity("admin-tenant", roles="admin", user="admin")


def killed_images(dep: Deployment) -> list[dict]:
    """Every killed image of the deployment, as an admin lists them."""
    found = requests.get(dep.url + "/v1/images/detail?is_public=none&status=killed"
                         "&changes-since=2000-01-01T00:00:00", headers=admin(), timeout=30)
    return found.json()["images"]


def deployment(tmp_path: Path, **kwargs: Any) -> Iterator[Deployment]:
    dep = Deployment(tmp_path, **kwargs)
    try:
        yield dep.start()
    finally:
        dep.stop()


# --- private backends ------------------------------------------------------------
# Tests that stop or restart a backend cannot do it to the suite's shared
# one: these start their own through tools/backends/ in a temp state dir
# (the PostgreSQL server refuses a dir below a private folder such as
# pytest's, so it is made directly in the system temp dir).


def _exports(text: str) -> dict[str, str]:
    """NAME=value pairs of the ``export`` lines a start script prints."""
    import shlex

    found: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            found.update(word.split("=", 1) for word in words[1:] if "=" in word)
    return found


class PrivateBackend:
    """One server started by ``tools/backends/start-<kind>.sh``."""

    kind = ""
    timeout = 180.0

    def __init__(self) -> None:
        import tempfile

        self.state = Path(tempfile.mkdtemp(prefix="glance-test-%s-" % self.kind))
        self.env: dict[str, str] = {}

    def _script(self, name: str, extra_env: Mapping[str, str]) -> str:
        result = subprocess.run(
            ["bash", str(BACKEND_TOOLS / name), str(self.state)],
            env=dict(os.environ, **extra_env), capture_output=True, text=True,
            timeout=self.timeout)
        if result.returncode != 0:
            raise AssertionError("%s failed:\n%s" % (name, result.stderr[-4000:]))
        return result.stdout

    def settings(self) -> dict[str, str]:
        return {}

    def start(self) -> PrivateBackend:
        self.env = _exports(self._script("start-%s.sh" % self.kind, self.settings()))
        return self

    def stop(self, keep: bool = True) -> None:
        """Stop the servers; with ``keep`` their data stays for ``start``."""
        self._script("stop-%s.sh" % self.kind, {"KEEP_STATE": "1" if keep else "0"})

    def destroy(self) -> None:
        self.stop(keep=False)
        shutil.rmtree(self.state, ignore_errors=True)


class PrivatePostgres(PrivateBackend):
    """A PostgreSQL of our own on a free port; ``env`` has PG_SQLALCHEMY_URL."""

    kind = "postgres"

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()

    def settings(self) -> dict[str, str]:
        return {"PG_PORT": str(self.port)}


class PrivateSwift(PrivateBackend):
    """A Swift cluster (with S3) of our own on ports that are free; ``env``
    has the SWIFT_* and S3_* variables. ``restart_proxy`` restarts only the
    proxy, the server clients talk to."""

    kind = "swift"
    OFFSETS = (10, 11, 12, 80, 211)   # object, container, account, proxy, memcached

    def __init__(self) -> None:
        super().__init__()
        self.base = self._free_base()

    @classmethod
    def _free_base(cls) -> int:
        import random

        for _ in range(50):
            base = random.randrange(20000, 30000, 1000)
            if all(_port_is_free(base + offset) for offset in cls.OFFSETS):
                return base
        raise AssertionError("no free port range for a private Swift cluster")

    def settings(self) -> dict[str, str]:
        return {"SWIFT_PORT_BASE": str(self.base), "SWIFT_WORKERS": "0"}

    def restart_proxy(self) -> None:
        """SIGTERM the proxy (in-flight requests are cut), then start it
        again and wait until it passes the start script's checks."""
        pid = int((self.state / "swift" / "run" / "proxy.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _alive(pid), STOP_DEADLINE, 0.1, "the Swift proxy to exit")
        self.start()


class PrivateCeph(PrivateBackend):
    """A Ceph cluster of our own (monitor, OSD and a manager, which pool
    quotas need) on free monitor ports; ``env`` has the CEPH_* variables.
    ``stop_osd`` then ``start`` restarts its OSD; ``admin`` runs the ceph
    CLI as client.admin."""

    kind = "ceph"

    def __init__(self) -> None:
        super().__init__()
        self.mon_ports = (free_port(), free_port())

    def settings(self) -> dict[str, str]:
        return {"CEPH_MON_PORT": str(self.mon_ports[0]),
                "CEPH_MON_V1_PORT": str(self.mon_ports[1]),
                "CEPH_MGR": "1", "CEPH_OSD_SIZE_GB": "2"}

    def admin(self, *args: str) -> str:
        result = subprocess.run(["ceph", "-c", self.env["CEPH_CONF"], *args],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError("ceph %s failed: %s" % (" ".join(args), result.stderr))
        return result.stdout

    def pool_flags(self) -> set[str]:
        """The flags of the store's pool in the osdmap ("full", ...)."""
        import json

        pools = json.loads(self.admin("osd", "pool", "ls", "detail", "-f", "json"))
        [pool] = [p for p in pools if p["pool_name"] == self.env["CEPH_POOL"]]
        return set(pool["flags_names"].split(","))

    def stop_osd(self) -> None:
        """SIGTERM the OSD (the monitor marks it down at once) and wait for it."""
        pid = int((self.state / "ceph" / "run" / "osd.0.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _alive(pid), STOP_DEADLINE, 0.1, "the Ceph OSD to exit")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """True until ``pid`` exits (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
