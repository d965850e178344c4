"""The versions document served at ``/`` (300) and ``/versions`` (200).

Only the API versions this project serves are listed: v2.7 (CURRENT) down
to v2.0 when ``enable_v2_api`` is on, then v1.1 and v1.0 when
``enable_v1_api`` is on. v2.6 brought interoperable import (stage, import,
``/v2/info/import``), v2.7 ``os_hidden`` and the multihash. Later minors
(multiple stores, the cache API, ``/v2/info/usage``) are not all served, so
none is listed, not even v2.17 whose location API is: clients read the
newest minor as a promise of everything below it. ``enable_v3_api`` is accepted so existing config
files load, and adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import webob
import webob.dec
from oslo_config import cfg

from glance_clone.common import config

API_OPTS = [
    cfg.BoolOpt("enable_v1_api", default=True, help="Serve the v1 API under /v1."),
    cfg.BoolOpt("enable_v2_api", default=True, help="Serve the v2 API under /v2."),
    cfg.BoolOpt("enable_v3_api", default=False,
                help="Accepted for compatibility; v3 is not served."),
    cfg.StrOpt("public_endpoint",
               help="Base URL used in the versions document instead of the "
                    "request's host URL."),
]

V1_IDS = ("v1.1", "v1.0")
# Newest first; the first is CURRENT.
V2_IDS = ("v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0")
# Path segments that select an API (v2.8 and later are not served).
V1_NAMES = frozenset(("v1",) + V1_IDS)
V2_NAMES = frozenset(("v2",) + V2_IDS)


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, API_OPTS)


def versions_document(conf: cfg.ConfigOpts, host_url: str) -> dict[str, Any]:
    base = (conf.public_endpoint or host_url).rstrip("/")
    versions = []
    if conf.enable_v2_api:
        for index, version_id in enumerate(V2_IDS):
            versions.append({"id": version_id,
                             "status": "CURRENT" if index == 0 else "SUPPORTED",
                             "links": [{"rel": "self", "href": base + "/v2/"}]})
    if conf.enable_v1_api:
        for version_id in V1_IDS:
            versions.append({"id": version_id, "status": "SUPPORTED",
                             "links": [{"rel": "self", "href": base + "/v1/"}]})
    return {"versions": versions}


class VersionsApp:
    """Answers with the versions document and a 300 status."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    @webob.dec.wsgify
    def __call__(self, req: webob.Request) -> webob.Response:
        return versions_response(self.conf, req, 300)


def versions_response(conf: cfg.ConfigOpts, req: webob.Request, status: int) -> webob.Response:
    body = json.dumps(versions_document(conf, req.host_url)).encode("utf-8")
    return webob.Response(status=status, body=body,
                          content_type="application/json", charset=None)


def create_resource(global_conf: dict, **local_conf: str) -> Callable:
    """paste.app_factory for ``[app:apiversions]``."""
    conf = config.conf_for_factory()
    register_opts(conf)
    return VersionsApp(conf)
