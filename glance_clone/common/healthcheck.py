"""The ``healthcheck`` paste filter: ``GET /healthcheck`` answers ``OK``.

It sits first in every pipeline, and the servers bind their socket only
after the whole pipeline is built, so an answer means the app is loaded.
While the file named by ``disable_by_file_path`` exists the answer is 503
``DISABLED BY FILE``: operators touch it to drain a node from a balancer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import webob

DEFAULT_DISABLE_FILE = "/etc/glance/healthcheck_disable"


class HealthcheckFilter:
    def __init__(self, application: Callable, path: str = "/healthcheck",
                 disable_file: str | None = DEFAULT_DISABLE_FILE) -> None:
        self.application = application
        self.path = path
        self.disable_file = disable_file

    @classmethod
    def factory(cls, global_conf: dict, **local_conf: str) -> Callable:
        path = local_conf.get("path", "/healthcheck")
        disable_file = local_conf.get("disable_by_file_path", DEFAULT_DISABLE_FILE)

        def filter_(app: Callable) -> HealthcheckFilter:
            return cls(app, path, disable_file)
        return filter_

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if environ.get("PATH_INFO") != self.path or \
                environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self.application(environ, start_response)
        if self.disable_file and os.path.exists(self.disable_file):
            response = webob.Response(status=503, body=b"DISABLED BY FILE",
                                      content_type="text/plain", charset=None)
        else:
            response = webob.Response(status=200, body=b"OK",
                                      content_type="text/plain", charset=None)
        return response(environ, start_response)
