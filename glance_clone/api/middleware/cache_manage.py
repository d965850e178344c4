"""The ``cachemanage`` filter: admin routes over the api node's image cache.

In the ``cachemanagement`` flavors, after the ``cache`` filter. Every route
needs policy ``manage_image_cache`` (``role:admin`` by default; 403
otherwise) and answers JSON:

==========================================  =====================================
GET    /v1/cached_images                    ``{"cached_images": [{"image_id",
                                            "hits", "last_accessed",
                                            "last_modified", "size"}]}`` by id;
                                            times in epoch seconds
DELETE /v1/cached_images                    ``{"num_deleted": n}``
DELETE /v1/cached_images/<id>               ``null``
GET    /v1/queued_images                    ``{"queued_images": [ids]}`` oldest first
PUT    /v1/queued_images/<id>               ``null`` (the image is not looked up;
                                            already cached images are not queued)
DELETE /v1/queued_images                    ``{"num_deleted": n}``
DELETE /v1/queued_images/<id>               ``null``
==========================================  =====================================

Other methods on these paths go on to the API (404). When the cache is
disabled (see the ``cache`` filter) these routes answer 503 saying why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import webob

from glance_clone.api.middleware.cache import open_cache
from glance_clone.cache import options
from glance_clone.cache.image_cache import ImageCache
from glance_clone.common import config, exception, policy, wsgi

ROUTES: list[tuple[re.Pattern[str], dict[str, str]]] = [
    (re.compile(r"^/v1/cached_images$"), {"GET": "list_cached", "DELETE": "delete_all_cached"}),
    (re.compile(r"^/v1/cached_images/([^/]+)$"), {"DELETE": "delete_cached"}),
    (re.compile(r"^/v1/queued_images$"), {"GET": "list_queued", "DELETE": "delete_all_queued"}),
    (re.compile(r"^/v1/queued_images/([^/]+)$"), {"PUT": "queue", "DELETE": "delete_queued"}),
]


class CacheManageFilter(wsgi.Middleware):
    def __init__(self, application: Callable[..., Any], conf: Any, cache: ImageCache | None,
                 enforcer: policy.Enforcer, disabled_reason: str = "") -> None:
        super().__init__(application)
        self.conf = conf
        self.cache = cache
        self.policy = enforcer
        self.disabled_reason = disabled_reason

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> Callable[..., Any]:
        conf = config.conf_for_factory()
        options.register_opts(conf)
        cache, reason = open_cache(conf, "cache management answers 503")
        enforcer = policy.Enforcer(conf)

        def filter_(app: Callable[..., Any]) -> CacheManageFilter:
            return cls(app, conf, cache, enforcer, reason)
        return filter_

    def process_request(self, req: wsgi.Request) -> webob.Response | None:
        for pattern, actions in ROUTES:
            match = pattern.match(req.path_info)
            if match is not None:
                action = actions.get(req.method)
                if action is None:
                    return None
                return self._dispatch(req, action, match.groups())
        return None

    def _dispatch(self, req: wsgi.Request, action: str, args: tuple[str, ...]) -> webob.Response:
        if req.context is None:
            raise exception.Forbidden()
        self.policy.enforce(req.context, "manage_image_cache", {})
        if self.cache is None:
            raise exception.ServiceUnavailable(
                "The image cache is disabled: %s" % self.disabled_reason)
        result = getattr(self, action)(self.cache, *args)
        response = webob.Response(request=req, content_type="application/json", charset=None)
        response.body = json.dumps(result).encode("utf-8")
        return response

    # -- actions ------------------------------------------------------------------
    @staticmethod
    def list_cached(cache: ImageCache) -> dict[str, Any]:
        return {"cached_images": [entry.as_dict() for entry in cache.list_cached()]}

    @staticmethod
    def delete_all_cached(cache: ImageCache) -> dict[str, Any]:
        return {"num_deleted": cache.delete_all_cached()}

    @staticmethod
    def delete_cached(cache: ImageCache, image_id: str) -> None:
        cache.delete_cached(image_id)

    @staticmethod
    def list_queued(cache: ImageCache) -> dict[str, Any]:
        return {"queued_images": cache.list_queued()}

    @staticmethod
    def queue(cache: ImageCache, image_id: str) -> None:
        cache.queue(image_id)

    @staticmethod
    def delete_all_queued(cache: ImageCache) -> dict[str, Any]:
        return {"num_deleted": cache.delete_all_queued()}

    @staticmethod
    def delete_queued(cache: ImageCache, image_id: str) -> None:
        cache.delete_queued(image_id)
