"""Interoperable image import: stage bytes, then import them into a store.

``stage`` moves a queued image to ``uploading`` and writes its bytes to the
staging area; ``import_image`` with ``glance-direct`` checks the request at
once (a 4xx for what can be known then), moves the image to
``importing`` and, off the request path, streams the staged bytes into
the default store through the upload path (size, checksum, quotas,
``image_size_cap``) and activates the image. ``web-download`` does the same
from a URL that must pass the source filter (at request time, and the HTTP
store applies it again on every redirect hop), streaming straight from the
URL into the store with no staged copy; a body whose length differs from
its Content-Length fails. A failed stage or import puts the image back to
``queued`` and leaves no staged or stored bytes.

Both need the caller to own the image (policy ``modify_image``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.staging import StagingArea
from glance_clone.store import source_filter

LOG = logging.getLogger(__name__)

GLANCE_DIRECT = "glance-direct"
WEB_DOWNLOAD = "web-download"
METHODS = (GLANCE_DIRECT, WEB_DOWNLOAD)
# The status each method needs at import time.
NEEDED_STATUS = {GLANCE_DIRECT: image_status.UPLOADING, WEB_DOWNLOAD: image_status.QUEUED}

OPTS = [
    cfg.ListOpt("enabled_import_methods", default=list(METHODS),
                item_type=cfg.types.String(choices=METHODS),
                help="Import methods of POST /v2/images/{id}/import."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)


class Importer:
    def __init__(self, conf: cfg.ConfigOpts, catalog: ImageCatalog, staging: StagingArea,
                 spawn: Callable[..., Any] = eventlet.spawn_n) -> None:
        register_opts(conf)
        self.conf = conf
        self.catalog = catalog
        self.staging = staging
        self.spawn = spawn

    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.conf.enabled_import_methods))

    # -- stage -------------------------------------------------------------------
    def stage(self, context: RequestContext, image_id: str,
              chunks: Iterator[bytes]) -> None:
        """queued -> uploading, the bytes staged and the size recorded.

        Raises NotFound (glance-direct disabled, no such image), Forbidden,
        Conflict (not queued, data already staged), ImageSizeLimitExceeded.
        On failure the staged bytes are removed and the image is queued again.
        """
        if GLANCE_DIRECT not in self.methods():
            raise exception.NotFound("The glance-direct import method is not enabled")
        image = self.catalog.owned(context, image_id, "modify_image")
        if image.status != image_status.QUEUED:
            raise exception.Conflict("Image %s is %s; only a queued image can be "
                                     "staged" % (image_id, image.status))
        if self.staging.holds(image_id):
            raise exception.Conflict("Image %s already has staged data" % image_id)
        image = self._move(context, image, image_status.UPLOADING)
        try:
            size = self.staging.write(image_id, chunks)
        except BaseException:
            self._requeue(context, image_id, image_status.UPLOADING)
            raise
        try:
            self.catalog.images.writes.change(context, image_id, {"size": size},
                                              from_state=image_status.UPLOADING,
                                              applied=lambda rec: rec["size"] == size)
        except BaseException:
            self.staging.remove(image_id)
            self._requeue(context, image_id, image_status.UPLOADING)
            raise

    # -- import ------------------------------------------------------------------
    def import_image(self, context: RequestContext, image_id: str, body: Any) -> None:
        """Check an import request and start it (the caller answers 202).

        Raises Invalid (bad body, unknown method, a web-download uri missing
        or refused by the source filter), NotFound, Forbidden and
        Conflict (wrong status, formats unset, a race).
        """
        name = _method_name(body)
        if name not in self.methods():
            raise exception.Invalid("Unknown import method name '%s'; enabled: %s"
                                    % (name, ", ".join(self.methods())))
        uri = self._check_uri(body["method"].get("uri")) if name == WEB_DOWNLOAD else None
        image = self.catalog.owned(context, image_id, "modify_image")
        needed = NEEDED_STATUS[name]
        if image.status != needed:
            hint = " (staged first)" if name == GLANCE_DIRECT else ""
            raise exception.Conflict("Image %s is %s; a %s import needs it %s%s"
                                     % (image_id, image.status, name, needed, hint))
        for attribute in ("container_format", "disk_format"):
            if not image.record.get(attribute):
                raise exception.Conflict("'%s' needs to be set before import"
                                         % attribute)
        if name == GLANCE_DIRECT and not self.staging.holds(image_id):
            raise exception.Conflict("Image %s has no staged data on this node"
                                     % image_id)
        # Moves to importing now (a race loses with 409 here), then streams
        # and activates in the background.
        image_status.check(image.status, image_status.IMPORTING,
                           image.record.get("disk_format"),
                           image.record.get("container_format"))
        try:
            self.catalog.images.writes.change(context, image_id,
                                              {"status": image_status.IMPORTING},
                                              from_state=image.status)
        except exception.StatusConflict:
            raise exception.Conflict("Image %s changed status meanwhile" % image_id) \
                from None
        self.spawn(self._run, context, image.record, uri)

    def _check_uri(self, uri: Any) -> str:
        """Raises Invalid for a web-download URI that is missing or refused."""
        if not isinstance(uri, str) or not uri:
            raise exception.Invalid("A web-download import needs 'method': {'uri': ...}")
        if uri.partition(":")[0].lower() not in ("http", "https"):
            raise exception.Invalid("The web-download uri must be an http or https URL")
        source_filter.check_source(self.conf, uri)
        return uri

    def _run(self, context: RequestContext, record: dict, uri: str | None) -> None:
        """Never raises; a failed import puts the image back to queued."""
        image_id = record["id"]
        chunks: Any = None
        try:
            if uri is None:
                chunks, size = self.staging.read(image_id), record.get("size")
            else:
                chunks, size = self.catalog.uploader.stores.get(uri)
            self.catalog.uploader.upload(context, record, iter(chunks), size or 0,
                                         declared_size=size,
                                         failed_status=image_status.QUEUED,
                                         start=image_status.IMPORTING,
                                         working=image_status.IMPORTING)
        except Exception as err:
            LOG.warning("Import of image %s failed; it is queued again: %s",
                        image_id, err)
            if chunks is None:
                self._requeue(context, image_id, image_status.IMPORTING)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self.staging.remove(image_id)

    def delete(self, context: RequestContext, image_id: str) -> None:
        """Delete the image as the catalog does, and its staged data."""
        self.catalog.delete(context, image_id)
        self.staging.remove(image_id)

    # -- helpers -----------------------------------------------------------------
    def _move(self, context: RequestContext, image: Any, to_status: str) -> Any:
        try:
            return self.catalog.images.move(context, image, to_status)
        except exception.StatusConflict:
            raise exception.Conflict("Image %s changed status meanwhile" % image.id) \
                from None

    def _requeue(self, context: RequestContext, image_id: str, from_state: str) -> None:
        self.catalog.uploader.kill(context, image_id, from_state, image_status.QUEUED)


def _method_name(body: Any) -> Any:
    method = body.get("method") if isinstance(body, dict) else None
    name = method.get("name") if isinstance(method, dict) else None
    if not isinstance(name, str) or not name:
        raise exception.Invalid("Import request requires a 'method' with a 'name'")
    return name
