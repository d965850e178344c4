"""Registry v1 app: construction, unrouted paths and methods."""

from __future__ import annotations

from typing import Any

import pytest
from oslo_config import cfg

from glance_clone.common import config, exception, request_guard
from glance_clone.registry import api as registry_api
from tests.unit.registry.conftest import CallerContext, Client, uuid4

pytestmark = pytest.mark.timeout(60)


def test_factory_builds_api_with_database(registry_app: Any) -> None:
    assert isinstance(registry_app, request_guard.RequestGuard)
    assert isinstance(registry_app.application, registry_api.API)
    assert registry_app.application.database is not None


def test_factory_needs_load_paste_app() -> None:
    with pytest.raises(exception.ConfigError):
        registry_api.API.factory({})


def test_register_opts_is_idempotent(conf: cfg.ConfigOpts) -> None:
    registry_api.register_opts(conf)
    registry_api.register_opts(conf)
    assert conf.limit_param_default == 25
    assert conf.api_limit_max == 1000
    assert conf.enable_v1_registry is True
    assert conf.enable_v2_registry is True


def test_register_opts_tolerates_foreign_declaration() -> None:
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.IntOpt("limit_param_default", default=7,
                                 help="declared elsewhere"))
    registry_api.register_opts(conf)
    assert conf.limit_param_default == 7


def test_direct_construction(conf: cfg.ConfigOpts, registry_app: Any) -> None:
    app = registry_api.API(conf, registry_app.application.database)
    client = Client(CallerContext(app))
    client.create("A")
    assert len(client.ids("/images", "A")) == 1


def test_v1_disabled(conf: cfg.ConfigOpts, registry_app: Any) -> None:
    conf.set_override("enable_v1_registry", False)
    app = registry_api.API(conf, registry_app.application.database)
    assert Client(CallerContext(app)).get("/images").status_int == 404


@pytest.mark.parametrize("method,path", [
    ("HEAD", "/images"), ("DELETE", "/images"), ("PUT", "/images"),
    ("PATCH", "/images"), ("POST", "/"), ("POST", "/images/detail"),
    ("HEAD", "/images/detail"), ("HEAD", "/images/{id}"),
    ("POST", "/images/{id}"), ("PATCH", "/images/{id}"),
    ("DELETE", "/images/{id}/members"), ("HEAD", "/images/{id}/members"),
    ("POST", "/images/{id}/members/B"), ("GET", "/nothing"),
    ("GET", "/v1/images"), ("GET", "/images/{id}/other"),
    ("GET", "/shared-images"), ("GET", "/images/"),
])
def test_unrouted_is_404(client: Client, method: str, path: str) -> None:
    image = client.create("A")["id"]
    res = client.request(method, path.format(id=image), "A")
    assert res.status_int == 404, res.status


@pytest.mark.parametrize("path", ["/images", "/nothing", "/shared-images/B",
                                  "/images/x/members/y"])
def test_unknown_method_is_501(client: Client, path: str) -> None:
    res = client.request("FROB", path, "A", allow_5xx=True)
    if path.startswith("/shared-images/"):
        assert res.status_int == 200  # answers any method
    else:
        assert res.status_int == 501


@pytest.mark.parametrize("method,path", [
    ("GET", "/images/{id}/members/B"), ("POST", "/images/{id}/members")])
def test_member_405s(client: Client, method: str, path: str) -> None:
    image = client.create("A")["id"]
    res = client.request(method, path.format(id=image), "A")
    assert res.status_int == 405
    assert res.headers["Allow"] == "PUT, DELETE"


def test_put_and_delete_on_detail_are_image_ids(client: Client) -> None:
    assert client.put("/images/detail", "A",
                      body={"image": {}}).status_int == 404
    assert client.delete("/images/detail", "A").status_int == 404


def test_error_bodies_are_plain_text(client: Client) -> None:
    res = client.get("/images/" + uuid4(), "A")
    assert res.status_int == 404
    assert res.content_type == "text/plain"
    assert "Image not found" in res.text


def test_paste_factory_registers_database_opts(tmp_path) -> None:
    from glance_clone.db import migration
    from tests.unit.registry.conftest import write_paste_ini

    conf = cfg.ConfigOpts()
    config.register_server_opts(conf)
    conf([], project="glance", prog="glance-registry", default_config_files=[])
    conf.set_override("config_file", str(write_paste_ini(tmp_path)),
                      group="paste_deploy")
    url = "sqlite:///%s" % (tmp_path / "other.sqlite")
    migration.db_sync(url)
    # The factory registers [database] itself and needs a connection.
    with pytest.raises(exception.ConfigError, match="No database connection"):
        config.load_paste_app(conf, "glance-registry")
    conf.set_override("connection", url, group="database")
    app = config.load_paste_app(conf, "glance-registry")
    assert Client(CallerContext(app)).get("/images").json == {"images": []}
