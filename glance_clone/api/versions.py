"""The versions document served at ``/`` (300) and ``/versions`` (200).

Only the API versions this project serves are listed, newest first, and
each selects its API in a path (``/v2.15/images``) or an ``Accept``
header. With ``enable_v2_api``: v2.17 (CURRENT: the location API), v2.15
(``/v2/info/usage``), v2.9, v2.7 (``os_hidden``, multihash) down to v2.0
(v2.6 brought interoperable import; v2.9 import into chosen stores); with
``image_cache_dir`` set also v2.18 (then CURRENT: the cache's nodes,
clean and prune routes), v2.16 and v2.14 (the cache API); with named
stores (``enabled_backends``) also v2.13 to v2.10 and v2.8, as newer
Glance lists them only there (v2.8 brought named stores, v2.10 deleting
from one; ``GET /v2/images/{id}/tasks`` of v2.12 is served either way).
Then v1.1 and v1.0 with ``enable_v1_api``.

As newer Glance does, the list has gaps: a minor is listed when what it
brought is served in this configuration. ``enable_v3_api`` is accepted so
existing config files load, and adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import webob
import webob.dec
from oslo_config import cfg

from glance_clone.cache import options as cache_options
from glance_clone.common import config
from glance_clone.store import named

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
# Served in every configuration, newest first; the first is CURRENT.
V2_IDS = ("v2.17", "v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1",
          "v2.0")
# Served with image_cache_dir set (the cache API).
V2_CACHE_IDS = ("v2.18", "v2.16", "v2.14")
# Served with named stores (enabled_backends): newer Glance lists these
# only there, v2.9 aside, which it lists in every configuration.
V2_STORES_IDS = ("v2.13", "v2.12", "v2.11", "v2.10", "v2.8")
# Path segments that select v1.
V1_NAMES = frozenset(("v1",) + V1_IDS)


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, API_OPTS)
    cache_options.register_opts(conf)
    named.register_opts(conf)


def _minor(version_id: str) -> int:
    return int(version_id.split(".")[1])


def v2_ids(conf: cfg.ConfigOpts) -> list[str]:
    """The v2 minors served in this configuration, newest first."""
    served = (V2_IDS + (V2_CACHE_IDS if conf.image_cache_dir else ())
              + (V2_STORES_IDS if named.store_ids(conf) else ()))
    return sorted(served, key=_minor, reverse=True)


def v2_names(conf: cfg.ConfigOpts) -> frozenset[str]:
    """Path segments (and Accept versions) that select v2."""
    return frozenset(["v2", *v2_ids(conf)])


def versions_document(conf: cfg.ConfigOpts, host_url: str) -> dict[str, Any]:
    base = (conf.public_endpoint or host_url).rstrip("/")
    versions = []
    if conf.enable_v2_api:
        for index, version_id in enumerate(v2_ids(conf)):
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
