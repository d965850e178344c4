"""Discovery routes of newer Glance beside the import ones:
``GET /v2/info/usage`` (v2.15), the caller's quota usage."""

from __future__ import annotations

from typing import Any

import webob
from oslo_config import cfg

from glance_clone.api.v2.images import json_response
from glance_clone.common import wsgi
from glance_clone.domain import usage


class UsageController:
    def __init__(self, conf: cfg.ConfigOpts, registry: Any) -> None:
        self.conf = conf
        self.registry = registry

    def usage(self, req: wsgi.Request) -> webob.Response:
        return json_response(req, {"usage": usage.project_usage(
            self.conf, self.registry, req.context)})
