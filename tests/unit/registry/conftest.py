"""An in-process registry on a fresh SQLite file, called as chosen callers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
from oslo_config import cfg

from glance_clone.common import config
from glance_clone.common.context import RequestContext

CALLERS = {
    "admin": RequestContext(user="root", is_admin=True, roles=("admin",)),
    "admin-t": RequestContext(user="root", tenant="T", is_admin=True,
                              roles=("admin",)),
    "A": RequestContext(user="ua", tenant="A", roles=("member",)),
    "B": RequestContext(user="ub", tenant="B", roles=("member",)),
    "C": RequestContext(user="uc", tenant="C", roles=("member",)),
    "noowner": RequestContext(user="anon"),
    "readonly": RequestContext(tenant="A", read_only=True),
}
CALLER_HEADER = "X-Test-Caller"


class CallerContext:
    """Test middleware: sets the context named by X-Test-Caller."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        caller = environ.pop("HTTP_X_TEST_CALLER", "admin")
        environ["glance.context"] = CALLERS[caller]
        return self.app(environ, start_response)


class Client:
    """Drives the wrapped registry app with webob requests."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def request(self, method: str, path: str, caller: str = "admin",
                body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None,
                allow_5xx: bool = False) -> webob.Response:
        req = webob.Request.blank(path, method=method)
        req.headers[CALLER_HEADER] = caller
        for name, value in (headers or {}).items():
            req.headers[name] = value
        if body is not None:
            raw = json.dumps(body).encode("utf-8")
        if raw is not None:
            req.body = raw
            req.content_type = "application/json"
        res = req.get_response(self.app)
        # Every error in these tests must be the caller's (4xx), never ours.
        assert allow_5xx or res.status_int < 500, (method, path, res.status,
                                                   res.text)
        return res

    def get(self, path: str, caller: str = "admin", **kw: Any) -> webob.Response:
        return self.request("GET", path, caller, **kw)

    def post(self, path: str, caller: str = "admin", **kw: Any) -> webob.Response:
        return self.request("POST", path, caller, **kw)

    def put(self, path: str, caller: str = "admin", **kw: Any) -> webob.Response:
        return self.request("PUT", path, caller, **kw)

    def delete(self, path: str, caller: str = "admin", **kw: Any) -> webob.Response:
        return self.request("DELETE", path, caller, **kw)

    def create(self, caller: str = "admin", **image: Any) -> dict[str, Any]:
        """Create an image and return it; the test fails on any error."""
        res = self.post("/images", caller, body={"image": image})
        assert res.status_int == 200, res.text
        return res.json["image"]

    def ids(self, path: str, caller: str = "admin") -> list[str]:
        res = self.get(path, caller)
        assert res.status_int == 200, res.text
        return [image["id"] for image in res.json["images"]]


def write_paste_ini(tmp_path: Path) -> Path:
    ini = tmp_path / "glance-registry-paste.ini"
    ini.write_text("[app:glance-registry]\n"
                   "paste.app_factory = glance_clone.registry.api:API.factory\n")
    return ini


@pytest.fixture
def conf(tmp_path: Path) -> Iterator[cfg.ConfigOpts]:
    """A fresh configuration with a migrated SQLite file in tmp_path."""
    from glance_clone.db import migration

    conf = cfg.ConfigOpts()
    config.register_server_opts(conf)
    config.register_database_opts(conf)
    conf([], project="glance", prog="glance-registry", default_config_files=[])
    url = "sqlite:///%s" % (tmp_path / "registry.sqlite")
    conf.set_override("connection", url, group="database")
    conf.set_override("config_file", str(write_paste_ini(tmp_path)),
                      group="paste_deploy")
    migration.db_sync(url)
    yield conf
    conf.reset()


@pytest.fixture
def registry_app(conf: cfg.ConfigOpts) -> Iterator[Any]:
    """The registry built by the production paste factory (in its RequestGuard)."""
    app = config.load_paste_app(conf, "glance-registry")
    yield app
    app.application.database.engine.dispose()


@pytest.fixture
def client(registry_app: Any) -> Client:
    return Client(CallerContext(registry_app))


def body_text(res: webob.Response) -> str:
    return res.body.decode("utf-8")


def uuid4() -> str:
    import uuid
    return str(uuid.uuid4())
