"""The outermost layer of glance-api and glance-registry.

``load_paste_app`` wraps every pipeline in ``RequestGuard``, whatever the
paste file, so these hold before the first filter (``healthcheck``, the
auth filters) looks at a request:

- The path and the query string must be UTF-8 once percent-decoded
  (``/v1/images/%ff`` and ``?name=%ff`` are not): 400. WebOb decodes them
  lazily wherever a filter or controller first reads them, and a failure
  there would be a 500.
- The JSON body limit, ``max_json_body_size``, is handed to the request
  (``wsgi.JSON_BODY_LIMIT``) for the JSON reader of ``wsgi.Resource``,
  which refuses a larger body with 413 before reading it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from oslo_config import cfg

from glance_clone.common import exception, faults, wsgi


def decodes_as_utf8(environ: dict) -> bool:
    """True if PATH_INFO, SCRIPT_NAME and QUERY_STRING decode as UTF-8.

    WSGI hands the path over percent-decoded and the query string raw, both
    as latin-1 text of the bytes received.
    """
    try:
        for key in ("SCRIPT_NAME", "PATH_INFO"):
            environ.get(key, "").encode("latin-1").decode("utf-8")
        unquote_to_bytes(environ.get("QUERY_STRING", "").encode("latin-1")).decode("utf-8")
    except UnicodeError:
        return False
    return True


class RequestGuard:
    """Checks every request before the pipeline sees it (see module doc)."""

    def __init__(self, application: Callable, conf: cfg.ConfigOpts) -> None:
        self.application = application
        self.json_body_limit = conf.max_json_body_size

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if not decodes_as_utf8(environ):
            response = faults.to_http(exception.UndecodableRequest())
            return response(environ, start_response)  # type: ignore[misc]
        environ[wsgi.JSON_BODY_LIMIT] = self.json_body_limit
        return self.application(environ, start_response)
