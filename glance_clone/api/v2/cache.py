"""The v2 cache API (v2.14/v2.16/v2.18) over the api node's image cache,
as newer Glance serves it when ``image_cache_dir`` is set (404 otherwise):

=============================  ==========================================
GET    /v2/cache               ``{"cached_images": [...], "queued_images":
                               [ids]}``, the entries as /v1/cached_images
                               lists them (policy ``cache_list``)
PUT    /v2/cache/{image_id}    202: queued for glance-cache-prefetcher; the
                               image must exist and be active (404, 400)
                               (policy ``cache_image``)
DELETE /v2/cache/{image_id}    204: the cached copy and the queue entry go
                               (policy ``cache_delete``; the image is not
                               looked up, so a deleted one can be cleared)
DELETE /v2/cache               204: ``x-image-cache-clear-target`` ``cache``
                               or ``queue``, both when absent or empty;
                               anything else 400 (policy ``cache_delete``)
GET    /v2/cache/nodes/{id}    200: a list of the api nodes holding the
                               image in their cache (policy
                               ``list_cached_nodes``), see below
POST   /v2/cache/clean         200: what glance-cache-cleaner does, now:
                               every cached file hashed again, invalid and
                               stalled incomplete files removed; the body
                               counts them (policy ``cache_clean``)
POST   /v2/cache/prune         200: what glance-cache-pruner does, now:
                               ``{"total_files_pruned": n,
                               "total_bytes_pruned": bytes}``; 409 while
                               another prune of the cache runs (policy
                               ``cache_prune``)
=============================  ==========================================

Each api node has its own cache and keeps no record of the others', so
the nodes list is this node's answer only: ``[worker_self_reference_url]``
when the image is cached here, else ``[]`` (a list of node URLs, as newer
Glance answers from its shared cache records). A node without
``worker_self_reference_url`` cannot name itself and answers 409, as newer
Glance does when its cache keeps no node records; an image the caller
cannot see is 404 either way. Clean and prune run in the request: a
clean lasts as long as re-hashing the cache takes.

The policies are admin-only by default. A cache directory that is set but
unusable answers 503 with the reason, as the v1 cache admin routes do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import webob
from oslo_config import cfg

from glance_clone.api.v2.images import json_response, no_content
from glance_clone.cache import cleaner, pruner
from glance_clone.cache.image_cache import ImageCache
from glance_clone.common import exception, wsgi
from glance_clone.domain import image_status
from glance_clone.domain.catalog import ImageCatalog

CLEAR_TARGET = "x-image-cache-clear-target"
CLEAR_TARGETS = ("cache", "queue", "")


class CacheController:
    def __init__(self, conf: cfg.ConfigOpts, cache: ImageCache | None, disabled_reason: str,
                 policy: Any, catalog: ImageCatalog) -> None:
        self.conf = conf
        # Whether image_cache_dir was set when the API was built: without
        # it, no cache API at all.
        self.configured = bool(conf.image_cache_dir)
        self.cache = cache
        self.disabled_reason = disabled_reason
        self.policy = policy
        self.catalog = catalog

    def _cache(self, req: wsgi.Request, rule: str) -> ImageCache:
        """The cache, once the caller passes ``rule``; raises NotFound (no
        cache directory), PolicyNotAuthorized, ServiceUnavailable."""
        if not self.configured:
            raise exception.NotFound("Caching via API is not supported at this site.")
        self.policy.enforce(req.context, rule, {})
        if self.cache is None:
            raise exception.ServiceUnavailable(
                "The image cache is disabled: %s" % self.disabled_reason)
        return self.cache

    def index(self, req: wsgi.Request) -> webob.Response:
        cache = self._cache(req, "cache_list")
        return json_response(req, {
            "cached_images": [entry.as_dict() for entry in cache.list_cached()],
            "queued_images": cache.list_queued()})

    def queue(self, req: wsgi.Request, image_id: str) -> webob.Response:
        cache = self._cache(req, "cache_image")
        image = self.catalog.get(req.context, image_id)
        if image.status != image_status.ACTIVE:
            raise exception.Invalid("Only active images can be queued for caching; "
                                    "image %s is %s." % (image_id, image.status))
        cache.queue(image_id)
        return webob.Response(request=req, status=202, content_type=None)

    def delete(self, req: wsgi.Request, image_id: str) -> webob.Response:
        cache = self._cache(req, "cache_delete")
        cache.delete_cached(image_id)
        cache.delete_queued(image_id)
        return no_content(req)

    def clear(self, req: wsgi.Request) -> webob.Response:
        cache = self._cache(req, "cache_delete")
        target = req.headers.get(CLEAR_TARGET, "").strip().lower()
        if target not in CLEAR_TARGETS:
            raise exception.Invalid("%s must be 'cache', 'queue' or empty (both)."
                                    % CLEAR_TARGET)
        if target in ("cache", ""):
            cache.delete_all_cached()
        if target in ("queue", ""):
            cache.delete_all_queued()
        return no_content(req)

    def nodes(self, req: wsgi.Request, image_id: str) -> webob.Response:
        cache = self._cache(req, "list_cached_nodes")
        # An image the caller cannot see is 404, cached here or not.
        self.catalog.get(req.context, image_id)
        node = self.conf.worker_self_reference_url
        if not node:
            raise exception.Conflict(
                "This api node cannot name itself: worker_self_reference_url is not set.")
        return json_response(req, [node] if cache.is_cached(image_id) else [])

    # clean and prune ignore a body: newer Glance's clients send ``{}``.
    def clean(self, req: wsgi.Request, body: Any = None) -> webob.Response:
        cache = self._cache(req, "cache_clean")
        result = cleaner.clean(cache, self.conf.image_cache_stall_time)
        return json_response(req, dataclasses.asdict(result))

    def prune(self, req: wsgi.Request, body: Any = None) -> webob.Response:
        cache = self._cache(req, "cache_prune")
        result = pruner.prune(cache, self.conf.image_cache_max_size)
        if not result.ran:
            raise exception.Conflict("Another prune of this image cache is running.")
        return json_response(req, {"total_files_pruned": result.removed,
                                   "total_bytes_pruned": result.bytes_removed})
