"""The ``versionnegotiation`` filter: picks the API version of a request.

The version comes from an ``Accept: application/vnd.openstack.images-<v>``
header, else from the first path segment, which is then removed. v1, v1.0
and v1.1 select v1; v2 and the v2 minors of the versions document select
v2 (each when enabled);
anything else answers 300 with the versions document. ``/versions``
answers 200 with the same document. The chosen version is noted on the
request: error pages take the form of that API (``faults.ErrorPage``).
"""

from __future__ import annotations

from collections.abc import Callable

import webob
from oslo_config import cfg

from glance_clone.api import versions
from glance_clone.common import config, faults, wsgi

ACCEPT_PREFIX = "application/vnd.openstack.images-"


class VersionNegotiationFilter(wsgi.Middleware):
    def __init__(self, application: Callable, conf: cfg.ConfigOpts) -> None:
        super().__init__(application)
        self.conf = conf

    @classmethod
    def factory(cls, global_conf: dict, **local_conf: str) -> Callable:
        conf = config.conf_for_factory()
        versions.register_opts(conf)

        def filter_(app: Callable) -> VersionNegotiationFilter:
            return cls(app, conf)
        return filter_

    def process_request(self, req: wsgi.Request) -> webob.Response | None:
        segments = req.path_info.strip("/").split("/")
        if segments[0] == "versions":
            return versions.versions_response(self.conf, req, 200)
        accept = req.headers.get("Accept", "")
        if accept.startswith(ACCEPT_PREFIX):
            requested = accept[len(ACCEPT_PREFIX):]
            rest = req.path_info
        else:
            requested = segments[0]
            rest = req.path_info[len("/" + requested):] if requested else ""
        if requested in versions.V1_NAMES and self.conf.enable_v1_api:
            req.path_info = "/v1" + rest
            req.environ[faults.API_VERSION] = "v1"
            return None
        if requested in versions.v2_names(self.conf) and self.conf.enable_v2_api:
            req.path_info = "/v2" + rest
            req.environ[faults.API_VERSION] = "v2"
            return None
        return versions.versions_response(self.conf, req, 300)
