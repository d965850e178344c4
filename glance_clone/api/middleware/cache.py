"""The ``cache`` filter: serve image downloads from the api node's local cache.

Enable it with the ``caching`` or ``cachemanagement`` flavor (or the
keystone / trusted-auth variants) and ``image_cache_dir`` in glance-api.conf;
the directory must exist and be writable by glance-api. If it is unset,
missing or not writable, glance-api still starts, logs why at ERROR level
and serves every image from the store. ``image_cache_driver = xattr`` on a
filesystem without user xattrs refuses to start (exit 1, with the reason).

Only ``GET /v1/images/<id>`` and ``GET /v2/images/<id>/file`` are cached,
both in the same cache:

- Hit: the caller's metadata is fetched from the registry with the caller's
  context and the download rules of that API apply (``domain.downloads``:
  ``get_image`` and ``download_image`` policy, visibility, deactivated, not
  active); if any check fails the request goes on to the API, which answers
  exactly as for an uncached image. A v2 download that prefers stores
  (``?prefer=``) is checked as the API checks it (named stores, known
  stores, ``download_from_store`` policy), then served from the cache.
  A v1 hit carries the image's ``x-image-meta-*`` headers (read-protected
  properties left out), a v2 hit its ``Content-MD5``, as the APIs do.
  The file was verified (size, MD5) when it was admitted; a hit checks its
  identity against the record (inode, size, mtime, ctime, before the first
  and the last byte) instead of hashing it again, and a file altered on
  disk is moved to ``invalid/`` and not used. glance-cache-cleaner hashes
  every cached file again.
- Miss: the API answers; a 200 with data is written into the cache while it
  streams, at store speed, and once it has all gone out the file is hashed
  and admitted only when size, checksum and multihash (the registry's, for
  an image that has one) match.
- Concurrent misses for the same image share one store read, however many
  api workers (and glance-cache-prefetcher) receive them
  (``glance_clone.cache.fill``). A worker that finds another process
  writing the image's cache file does not ask the API: it streams that
  file as it grows, after the same checks as a hit and with the same
  headers, and the image's size and checksum from the registry verify it.
  Should the other process stop before the end, each download goes on
  from the store where it stopped.
- Range: a cached image serves the part asked for (the API's rules for
  reading the header and its 206 answer), after the same checks as a hit;
  only files whose identity proves them intact (a recorded ctime: not
  the xattr driver) serve parts. An uncached image's part, an
  unsatisfiable or unreadable range go to the API, and nothing is cached.
- HEAD and other paths are passed on untouched.
- A 2xx ``DELETE /v1/images/<id>`` or ``/v2/images/<id>`` removes the
  cached copy. A cached image
  that the registry reports deleted (or no longer knows) when it is next
  requested is removed too.

The cache grows past ``image_cache_max_size`` until glance-cache-pruner runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import webob
import webob.dec

from glance_clone.api import property_protections
from glance_clone.api.v1 import images as v1_images
from glance_clone.api.v2 import images as v2_images
from glance_clone.cache import layout, options
from glance_clone.cache.fill import CacheFillError, Fill, Role
from glance_clone.cache.image_cache import ImageCache
from glance_clone.common import byte_range, config, exception, policy, wsgi
from glance_clone.common.context import admin_context
from glance_clone.common.hashing import Multihash, recorded_multihash
from glance_clone.domain import downloads, image_status
from glance_clone.domain.entity import Image
from glance_clone.registry.client.v1 import client as registry_client
from glance_clone.store import named

LOG = logging.getLogger(__name__)

# Downloads and deletes of either API; v2 downloads end in /file.
IMAGE_PATH = re.compile(r"^/v1/images/([^/]+)$|^/v2/images/([^/]+)(/file)?$")
GONE_STATUSES = frozenset((image_status.DELETED, image_status.PENDING_DELETE))
# A miss whose claim keeps being released (every claimant refused) or whose
# cached file keeps failing validation ends up served uncached.
MAX_ATTEMPTS = 5


def open_cache(conf: Any, purpose: str) -> tuple[ImageCache | None, str]:
    """The cache, or None and the reason it is disabled (logged).

    Raises ConfigError for settings that must stop glance-api (xattr
    driver on a filesystem without user xattrs).
    """
    try:
        return ImageCache(conf), ""
    except layout.CacheDirUnusable as err:
        LOG.error("Image cache disabled, %s: %s", purpose, err)
        return None, str(err)


class CacheFilter:
    def __init__(self, application: Callable[..., Any], conf: Any, cache: ImageCache | None,
                 registry: Any, enforcer: policy.Enforcer,
                 property_rules: property_protections.PropertyRules) -> None:
        self.application = application
        self.conf = conf
        self.cache = cache
        self.registry = registry
        self.policy = enforcer
        self.property_rules = property_rules
        # The named stores a v2 download may prefer.
        self.store_ids = named.store_ids(conf)

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> Callable[..., Any]:
        conf = config.conf_for_factory()
        options.register_opts(conf)
        registry_client.register_opts(conf)
        cache, _reason = open_cache(conf, "serving images uncached")
        registry = registry_client.RegistryClient(conf)
        enforcer = policy.Enforcer(conf)
        rules = property_protections.PropertyRules(conf, enforcer)

        def filter_(app: Callable[..., Any]) -> CacheFilter:
            return cls(app, conf, cache, registry, enforcer, rules)
        return filter_

    @webob.dec.wsgify(RequestClass=wsgi.Request)  # type: ignore[untyped-decorator]
    def __call__(self, req: wsgi.Request) -> Any:
        image_id = self._image_id(req)
        if image_id is None:
            return self.application
        v2_image = req.path_info.startswith("/v2/") and not req.path_info.endswith("/file")
        if req.method == "GET" and not v2_image:
            try:
                wanted = _wanted_range(req)
            except exception.Invalid:
                return self.application         # the API says why
            if wanted is not None:
                return self._get_part(req, image_id, wanted)
            return self._get(req, image_id)
        if req.method == "DELETE" and not req.path_info.endswith("/file"):
            response = req.get_response(self.application)
            if 200 <= response.status_int < 300:
                assert self.cache is not None
                self.cache.purge(image_id)
            return response
        return self.application

    def _image_id(self, req: wsgi.Request) -> str | None:
        if self.cache is None or req.context is None:
            return None
        match = IMAGE_PATH.match(req.path_info)
        if match is None or match.group(1) == "detail":
            return None
        image_id = match.group(1) or match.group(2)
        return image_id if layout.valid_image_id(image_id) else None

    # -- GET ----------------------------------------------------------------------
    def _get(self, req: wsgi.Request, image_id: str) -> Any:
        cache = self.cache
        assert cache is not None
        # The API rewrites PATH_INFO on the way down; fallbacks need the original.
        environ = dict(req.environ)
        image = None
        for _attempt in range(MAX_ATTEMPTS):
            cached = cache.open_cached(image_id)
            if cached is not None:
                image = image or self._allowed_image(req, image_id)
                if image is None:
                    cached.close()
                    return self.application
                reason = cached.mismatch(image)
                if reason:
                    cached.invalidate(reason)
                    continue
                return self._image_response(req, image, cached.reader(), cached.size)
            fill, ours = cache.claim(image_id)
            if ours:
                # Decided before anything asks the store: another process
                # may be reading it for this image already.
                role = fill.acquire()
                if role is Role.WRITER:
                    return self._lead(req, fill, environ)
                if role is Role.TAILER:
                    return self._follow(req, fill, image, environ)
                if role is Role.NONE:
                    return self.application
                continue                    # cached meanwhile: serve the hit
            image = image or self._allowed_image(req, image_id)
            if image is None:
                return self.application
            reader = fill.join(self._fallback(environ, image_id))
            if reader is not None:
                return self._image_response(req, image, reader, reader.size)
        return self.application

    def _get_part(self, req: wsgi.Request, image_id: str,
                  wanted: byte_range.ByteRange) -> Any:
        """A range of a cached image; anything else is the API's to answer
        (an uncached image is not filled for a part of it)."""
        cache = self.cache
        assert cache is not None
        cached = cache.open_cached(image_id)
        if cached is None:
            return self.application
        try:
            image = self._allowed_image(req, image_id) if cached.serves_parts else None
            reason = cached.mismatch(image) if image is not None else ""
            if reason:
                cached.invalidate(reason)
                return self.application
            part = wanted.resolve(cached.size) if image is not None else None
        except exception.RangeNotSatisfiable:
            part = None                         # the API answers 416
        except BaseException:
            cached.close()
            raise
        if image is None or part is None:
            cached.close()
            return self.application
        return self._image_response(req, image, cached.reader(part), cached.size, part)

    def _lead(self, req: wsgi.Request, fill: Fill, environ: dict[str, Any]) -> webob.Response:
        """Ask the API; tee a 200 with data into the cache."""
        try:
            response = req.get_response(self.application)
        except BaseException:
            fill.release()
            raise
        size = _cacheable_size(response)
        if not size:
            fill.release()
            return response
        checksum = response.headers.get("x-image-meta-checksum") \
            or response.headers.get("Content-MD5")
        reader = fill.start(response.app_iter, size, checksum,
                            self._fallback(environ, fill.image_id),
                            self._multihash(req, fill.image_id))
        if reader is not None:
            response.app_iter = reader
            response.content_length = size  # webob drops it with the old app_iter
        return response

    def _follow(self, req: wsgi.Request, fill: Fill, image: dict[str, Any] | None,
                environ: dict[str, Any]) -> Any:
        """Serve the file another process is writing, as a hit is served."""
        try:
            image = image or self._allowed_image(req, fill.image_id)
        except BaseException:
            fill.release()
            raise
        if image is None:
            fill.release()
            return self.application
        reader = fill.tail(image["size"], image.get("checksum"),
                           self._fallback(environ, fill.image_id),
                           recorded_multihash(image))
        return self._image_response(req, image, reader, reader.size)

    def _multihash(self, req: wsgi.Request, image_id: str) -> Multihash | None:
        """The image's multihash, to verify a fill with: the API's answer
        carries only the md5 (as Glance's does)."""
        try:
            return recorded_multihash(self.registry.get_image(req.context, image_id))
        except exception.GlanceError as err:
            LOG.info("Caching image %s verified by md5 only: %s", image_id, err)
            return None

    def _fallback(self, environ: dict[str, Any], image_id: str) -> Callable[[], Iterator[bytes]]:
        """Re-reads the image through the API, when the cache file fails a download."""
        def reopen() -> Iterator[bytes]:
            response = webob.Request(dict(environ)).get_response(self.application)
            if response.status_int != 200:
                close = getattr(response.app_iter, "close", None)
                if close is not None:
                    close()
                raise CacheFillError("Image %s could not be read again: %s"
                                     % (image_id, response.status))
            return response.app_iter  # type: ignore[no-any-return]
        return reopen

    def _allowed_image(self, req: wsgi.Request, image_id: str) -> dict[str, Any] | None:
        """The image if the caller may download it, else None.

        The download rules of the request's API (``domain.downloads``); on
        None the request goes to the API, which produces the answer.
        """
        context = req.context
        try:
            image: dict[str, Any] = self.registry.get_image(context, image_id)
            self.policy.enforce(context, "get_image", Image(image).policy_target())
        except exception.NotFound:
            self._purge_if_gone(context, image_id)
            return None
        except exception.GlanceError as err:
            LOG.debug("Cache check of image %s: %s", image_id, err)
            return None
        if image.get("status") in GONE_STATUSES:
            assert self.cache is not None
            self.cache.purge(image_id)
            return None
        try:
            v2 = _is_v2(req)
            # A hit comes from no store: the preference is only checked.
            prefer = v2_images.prefer_param(req) if v2 else None
            downloads.preferred_stores(self.store_ids, prefer)
            downloads.check_downloadable(self.policy, context, image,
                                         admin_reads_deactivated=v2,
                                         require_active=not v2,
                                         prefers=prefer is not None)
        except exception.GlanceError:
            return None
        if not image.get("size"):
            return None
        image["properties"] = self.property_rules.filter_readable(
            context, image.get("properties") or {})
        return image

    def _purge_if_gone(self, context: Any, image_id: str) -> None:
        """Remove the cached copy if the image no longer exists for anyone."""
        try:
            image = self.registry.get_image(
                admin_context(request_id=context.request_id), image_id)
        except exception.NotFound:
            gone = True
        except exception.GlanceError:
            return
        else:
            gone = image.get("status") in GONE_STATUSES
        if gone:
            assert self.cache is not None
            self.cache.purge(image_id)

    @staticmethod
    def _image_response(req: wsgi.Request, image: dict[str, Any], app_iter: Any,
                        size: int, part: tuple[int, int] | None = None) -> webob.Response:
        """The API's own download answer (its headers, 200 or 206 for the
        (offset, length) ``part``), with data from the cache."""
        length = part[1] if part is not None else size
        if _is_v2(req):
            return v2_images.download_response(req, image, app_iter, length, part)
        return v1_images.download_response(req, dict(image, size=size), app_iter,
                                           length, part)


def _is_v2(req: wsgi.Request) -> bool:
    return bool(req.path_info.startswith("/v2/"))


def _wanted_range(req: wsgi.Request) -> byte_range.ByteRange | None:
    """The part of the image the request asks for, read by its API's rules;
    None for all of it. Raises Invalid (v2: several ranges)."""
    if _is_v2(req):
        return byte_range.parse_v2(req.headers.get("Range"), req.headers.get("Content-Range"))
    return byte_range.parse(req.headers.get("Range"))


def _cacheable_size(response: webob.Response) -> int:
    """The size of a download answer worth caching, else 0."""
    if response.status_int != 200 or response.app_iter is None:
        return 0
    if response.headers.get("x-image-meta-status", image_status.ACTIVE) != image_status.ACTIVE:
        return 0
    return response.content_length or 0
