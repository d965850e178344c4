"""glance-api: the public image API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import webob.exc

from glance_clone.api import versions
from glance_clone.common import config


class PathPrefixMap:
    """Sends a request to the app mounted at the longest matching prefix."""

    def __init__(self, apps: dict[str, Callable]) -> None:
        self.apps = sorted(((p.rstrip("/"), a) for p, a in apps.items()),
                           key=lambda item: len(item[0]), reverse=True)

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.apps:
            if not prefix:
                return app(environ, start_response)
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                # "/v1" is the app's root, as "/v1/" is.
                environ["PATH_INFO"] = path[len(prefix):] or "/"
                return app(environ, start_response)
        return webob.exc.HTTPNotFound()(environ, start_response)


def root_app_factory(loader: Any, global_conf: dict, **local_conf: str) -> Callable:
    """paste.composite_factory for ``[composite:rootapp]``.

    Maps ``/`` to the versions app, ``/v1`` and ``/v2`` to their routers
    (each unless disabled). A ``/v3`` entry in an operator's paste file is
    dropped: this project serves no v3.
    """
    conf = config.conf_for_factory()
    versions.register_opts(conf)
    served = {"/": True, "/v1": conf.enable_v1_api, "/v2": conf.enable_v2_api}
    apps = {}
    for path, app_name in local_conf.items():
        if served.get(path.rstrip("/") or "/"):
            apps[path] = loader.get_app(app_name, global_conf=global_conf)
    return PathPrefixMap(apps)
