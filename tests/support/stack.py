"""glance-api and glance-registry wired together in-process for unit tests."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import webob
from oslo_config import cfg

from glance_clone import api as api_root
from glance_clone.api import versions
from glance_clone.api.middleware.version_negotiation import VersionNegotiationFilter
from glance_clone.api.v1 import router
from glance_clone.api.v2 import router as v2_router
from glance_clone.common import config, context_middleware, request_guard
from glance_clone.db import api as db_api
from glance_clone.db import migration, session
from glance_clone.domain import regions
from glance_clone.registry import api as registry_api
from glance_clone.registry.client.v1.client import RegistryClient
from glance_clone.store import backend, named
from tests.support.wsgi_transport import transport_for


@dataclasses.dataclass
class Stack:
    conf: cfg.ConfigOpts
    api: Any
    registry_app: Any
    datadir: str
    v1: Any = None
    v2: Any = None
    # The context filter, whose ``application`` tests may wrap (cache filters).
    context_filter: Any = None

    def request(self, path: str, method: str = "GET", body: bytes | None = None,
                headers: dict[str, str] | None = None, tenant: str | None = None,
                roles: str = "reader,member", user: str = "user") -> webob.Response:
        """Call glance-api as ``tenant`` (admin role via ``roles='admin'``)."""
        req = webob.Request.blank(path, method=method)
        if tenant is not None or roles:
            req.headers.update({"X-Identity-Status": "Confirmed", "X-Roles": roles,
                                "X-User-Id": user, "X-Tenant-Id": tenant or ""})
        if body is not None:
            req.body = body
            req.content_type = "application/octet-stream"
        for name, value in (headers or {}).items():
            req.headers[name] = value
        return req.get_response(self.api)

    def stored_files(self) -> list[str]:
        return sorted(os.listdir(self.datadir))


def make_conf(tmp_path: Any, overrides: dict[str, Any] | None = None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    config.register_server_opts(conf)
    config.register_database_opts(conf)
    v2_router.register_opts(conf)
    versions.register_opts(conf)
    registry_api.register_opts(conf)
    conf([], project="glance", default_config_files=[])
    datadir = str(tmp_path / "images")
    conf.set_override("connection", "sqlite:///%s" % (tmp_path / "glance.sqlite"),
                      group="database")
    conf.set_override("filesystem_store_datadir", datadir, group="glance_store")
    conf.set_override("node_staging_uri", "file://%s" % (tmp_path / "staging"))
    # The tests' HTTP servers are on loopback, on random ports.
    conf.set_override("allowed_hosts", ["127.0.0.1"], group="import_filtering_opts")
    conf.set_override("allowed_ports", [], group="import_filtering_opts")
    conf.set_override("send_identity_headers", True)
    # Named stores and regions first: their sections exist once they are
    # declared.
    declaring = ("enabled_backends", "enabled_regions")
    regions.register_opts(conf)
    for key, value in sorted((overrides or {}).items(),
                             key=lambda item: item[0] not in declaring):
        group, _, name = key.rpartition(".")
        conf.set_override(name, value, group=group or None)
        if key == "enabled_backends":
            for store_id, store_type in value.items():
                named.register_section(conf, store_id, backend.DRIVERS[store_type])
        elif key == "enabled_regions":
            regions.register_opts(conf)
    return conf


def make_stack(tmp_path: Any, overrides: dict[str, Any] | None = None) -> Stack:
    """A trusted-auth api and registry sharing one SQLite file and file store."""
    conf = make_conf(tmp_path, overrides)
    engine = session.create_engine(conf.database.connection)
    migration.db_sync(engine)
    registry = registry_api.API(conf, db_api.Database(engine))
    registry_app = request_guard.RequestGuard(
        context_middleware.ContextMiddleware(registry, conf, None), conf)
    client = RegistryClient(conf, transport=transport_for(registry_app),
                            base_url="http://registry")
    stores = backend.StoreSet(conf)
    v1 = router.API(conf, registry=client, stores=stores)
    v2 = v2_router.API(conf, registry=client, stores=stores)
    root = api_root.PathPrefixMap({"/v1": v1, "/v2": v2, "/": versions.VersionsApp(conf)})
    context_filter = context_middleware.ContextMiddleware(root, conf, None)
    api = request_guard.RequestGuard(VersionNegotiationFilter(context_filter, conf), conf)
    return Stack(conf, api, registry_app, conf.glance_store.filesystem_store_datadir,
                 v1, v2, context_filter)
