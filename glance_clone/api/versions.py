"""The versions document served at ``/`` (300) and ``/versions`` (200).

Only the API versions this project serves are listed: v1.1 and v1.0. The
``enable_v2_api`` / ``enable_v3_api`` options are accepted so existing
config files load, but advertising endpoints we do not serve would send
clients to 404s, so they never add entries here.
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
    cfg.BoolOpt("enable_v2_api", default=False,
                help="Accepted for compatibility; v2 is not served."),
    cfg.BoolOpt("enable_v3_api", default=False,
                help="Accepted for compatibility; v3 is not served."),
    cfg.StrOpt("public_endpoint",
               help="Base URL used in the versions document instead of the "
                    "request's host URL."),
]

V1_IDS = ("v1.1", "v1.0")


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, API_OPTS)


def versions_document(conf: cfg.ConfigOpts, host_url: str) -> dict[str, Any]:
    base = (conf.public_endpoint or host_url).rstrip("/")
    versions = []
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
