"""Interoperable image import: stage bytes, then import them into a store.

``stage`` moves a queued image to ``uploading`` and writes its bytes to the
staging area. ``import_image`` checks the request at once (a 4xx for what
can be known then), records the work as an ``api_image_import`` task,
and in one status swap moves the image to ``importing`` holding the import
lock (``os_glance_import_task``) for that task; the task then runs off the
request path (``import_runner``). A task whose node dies is failed by any
node's reaper and its image reverted, so no image stays ``importing``.

Each method is one row of ``METHODS``: the status the image needs, the
request check (which returns what the task needs besides the request
body) and where the bytes come from when the task runs. ``glance-direct``
takes the staged bytes; ``web-download`` a URL that must pass the source
filter (at request time, and the HTTP store applies it again on every
redirect hop), streamed straight into the store with no staged copy.

Both need the caller to own the image (policy ``modify_image``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import (
    image_status,
    import_targets,
    inspection,
    reserved,
    task_status,
    tasks,
    unified_limits,
    usage,
)
from glance_clone.domain.catalog import ImageCatalog, check_writable
from glance_clone.domain.entity import Image
from glance_clone.domain.import_lock import ImportLock
from glance_clone.domain.region_download import GLANCE_DOWNLOAD, restored
from glance_clone.domain.stage_host import Caller, StageHosts
from glance_clone.domain.staging import StagingArea
from glance_clone.domain.store_copy import COPY_IMAGE
from glance_clone.store import source_filter

LOG = logging.getLogger(__name__)

GLANCE_DIRECT = "glance-direct"
WEB_DOWNLOAD = "web-download"

# The bytes of a running import: (chunks, size or None).
Source = tuple[Iterable[bytes], int | None]


@dataclasses.dataclass(frozen=True)
class Method:
    """One import method."""

    # The image status POST /import needs.
    needs: str
    # (importer, context, image, the request's "method" object) -> extra
    # task input; raises the request's 4xx.
    check: Callable[[Importer, RequestContext, Image, dict], dict]
    # (runner, context, task input, image record) -> the bytes to store.
    source: Callable[[Any, RequestContext, dict, dict], Source]


def _check_direct(importer: Importer, context: RequestContext, image: Image,
                  method: dict) -> dict:
    if not importer.staging.holds(image.id):
        raise exception.Conflict("Image %s has no staged data on this node" % image.id)
    return {}


def _direct_source(runner: Any, context: RequestContext, task_input: dict,
                   record: dict) -> Source:
    return runner.staging.read(record["id"]), record.get("size")


def _check_web(importer: Importer, context: RequestContext, image: Image,
               method: dict) -> dict:
    uri = method.get("uri")
    if not isinstance(uri, str) or not uri:
        raise exception.Invalid("A web-download import needs 'method': {'uri': ...}")
    if uri.partition(":")[0].lower() not in ("http", "https"):
        raise exception.Invalid("The web-download uri must be an http or https URL")
    source_filter.check_source(importer.conf, uri)
    return {}


def _web_source(runner: Any, context: RequestContext, task_input: dict,
                record: dict) -> Source:
    chunks, size = runner.stores.get(task_input["import_req"]["method"]["uri"])
    return chunks, size


def _check_download(importer: Importer, context: RequestContext, image: Image,
                    method: dict) -> dict:
    return dict(importer.downloads.check(importer, context, image, method))


def _download_source(runner: Any, context: RequestContext, task_input: dict,
                     record: dict) -> Source:
    chunks, size = runner.downloads.source(runner, context, task_input, record)
    return chunks, size


METHODS: dict[str, Method] = {
    GLANCE_DIRECT: Method(image_status.UPLOADING, _check_direct, _direct_source),
    WEB_DOWNLOAD: Method(image_status.QUEUED, _check_web, _web_source),
    # Filled from an image of another region (region_download.RegionDownload,
    # the importer's and the runner's ``downloads``).
    GLANCE_DOWNLOAD: Method(image_status.QUEUED, _check_download, _download_source),
}

OPTS = [
    cfg.ListOpt("enabled_import_methods", default=[GLANCE_DIRECT, WEB_DOWNLOAD, COPY_IMAGE],
                item_type=cfg.types.String(choices=(*METHODS, COPY_IMAGE)),
                help="Import methods of POST /v2/images/{id}/import."),
    cfg.StrOpt("worker_self_reference_url",
               help="This api node's own URL (http or https, as the other "
                    "api nodes reach it), recorded in the os_glance_stage_host "
                    "property of the images it stages: a glance-direct import "
                    "or a delete of such an image that reaches another node "
                    "is sent on to this one. Needed when the api nodes do not "
                    "share node_staging_uri. Unset: public_endpoint, when set."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS)


def self_url(conf: cfg.ConfigOpts) -> str | None:
    """How the other api nodes reach this one: worker_self_reference_url,
    else public_endpoint (the api's own option, when registered): a node
    behind its own public URL needs no second setting."""
    return conf.worker_self_reference_url or getattr(conf, "public_endpoint", None) or None


def _check_declared_size(conf: cfg.ConfigOpts, declared: int | None, total: int | None,
                         body_length: int | None) -> None:
    """Refuse a declared stage size that cannot be right before anything
    moves: over ``image_size_cap`` (ImageSizeLimitExceeded), or not what
    the piece's Content-Range total or the body's length says (Invalid)."""
    if declared is None:
        return
    if declared > conf.image_size_cap:
        raise exception.ImageSizeLimitExceeded(limit=conf.image_size_cap)
    if total is not None and declared != total:
        raise exception.Invalid("x-openstack-image-size (%d) is not the total of the "
                                "Content-Range (%d)" % (declared, total))
    if total is None and body_length is not None and declared != body_length:
        raise exception.Invalid("x-openstack-image-size (%d) is not the length of the "
                                "request body (%d)" % (declared, body_length))


class Importer:
    def __init__(self, conf: cfg.ConfigOpts, catalog: ImageCatalog, staging: StagingArea,
                 repository: tasks.TaskRepository, lock: ImportLock, runner: Any,
                 copies: Any = None, downloads: Any = None,
                 spawn: Callable[..., Any] = eventlet.spawn_n) -> None:
        register_opts(conf)
        self.conf = conf
        self.catalog = catalog
        self.staging = staging
        self.repository = repository
        self.lock = lock
        self.runner = runner
        # copy-image (copy_import.CopyImport): its own checks and task.
        self.copies = copies
        self.downloads = downloads
        self.spawn = spawn
        self.stage_hosts = StageHosts(self_url(conf))

    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.conf.enabled_import_methods))

    # -- stage -------------------------------------------------------------------
    def check_staging(self) -> None:
        """Raises NotFound when glance-direct is not enabled: the stage
        route is not there, whatever the request."""
        if GLANCE_DIRECT not in self.methods():
            raise exception.NotFound("The glance-direct import method is not enabled")

    def stage(self, context: RequestContext, image_id: str, chunks: Iterator[bytes],
              piece: tuple[int, int] | None = None, caller: Caller | None = None,
              body_length: int | None = None, declared_size: int | None = None) -> int:
        """Stage the image's data, or with ``piece`` = (start, total) the
        part of it from byte ``start`` (resumable staging, ours); the
        number of bytes staged so far. ``body_length`` is the request
        body's, when known; ``declared_size`` the whole data's, when the
        client declared it (x-openstack-image-size).

        The size the data will have (declared, else the piece's total,
        else the body's length) is counted against ``image_stage_total``
        before anything is staged. Declared, it is also held to: data
        that goes past it or ends short of it is refused (Invalid), as a
        client could otherwise declare little to pass the quota and send
        much.

        The first piece moves a queued image to ``uploading`` and records
        this node as its stage host; once all the data is staged its size
        is recorded. A later piece that reaches a node without the staged
        bytes is sent on to their stage host, as ``caller``.

        Raises NotFound (glance-direct disabled, no such image), Forbidden,
        Conflict (not queued, data already staged), StagedLengthMismatch
        (``start`` is not where the staged data ends),
        ImageSizeLimitExceeded, ProjectQuotaExceeded, Invalid (also a
        declared size the body or piece contradicts), and what the stage host answers
        (BadGateway, GatewayTimeout when it cannot). A piece cut short
        keeps what arrived; any other failure removes the staged data and
        queues the image again.
        """
        self.check_staging()
        start, total = piece if piece is not None else (0, None)
        _check_declared_size(self.conf, declared_size, total, body_length)
        image = self.catalog.owned(context, image_id, "modify_image")
        if self.staging.holds(image_id):
            raise exception.Conflict("Image %s already has staged data" % image_id)
        staged = self.staging.staged_length(image_id)
        if piece is not None and staged is None and caller is not None:
            host = self._stage_host(context, image_id, caller, image)
            if host is not None:
                return self.stage_hosts.stage(caller, host, image_id, chunks, piece,
                                              body_length)
        if image.status == image_status.QUEUED:
            if start:
                raise exception.StagedLengthMismatch(staged or 0)
            size = next((n for n in (declared_size, total, body_length) if n is not None), 0)
            usage.enforce(self.conf, self.catalog.images.registry, context,
                          {unified_limits.IMAGE_STAGE_TOTAL: usage.mib_of(size),
                           unified_limits.IMAGE_COUNT_UPLOADING: 1})
            image = self._move(context, image, image_status.UPLOADING,
                               **self._stage_host_record())
        elif image.status != image_status.UPLOADING or piece is None:
            raise exception.Conflict("Image %s is %s; only a queued image can be "
                                     "staged" % (image_id, image.status))
        elif (staged or 0) != start:
            raise exception.StagedLengthMismatch(staged or 0)
        try:
            length, complete = self.staging.write(
                image_id, chunks, start, total, resumable=piece is not None,
                inspector=self._inspector(image.record),
                declared=declared_size if piece is None else None)
        except exception.ClientDisconnected:
            if piece is None:
                self._requeue(context, image_id, image_status.UPLOADING)
            raise
        except (exception.StagedLengthMismatch, exception.Conflict):
            # Another request of the same stage: it is not this one's to undo.
            raise
        except BaseException:
            self.staging.remove(image_id)
            self._requeue(context, image_id, image_status.UPLOADING)
            raise
        if complete:
            self._record_size(context, image_id, length)
        return length

    def _inspector(self, record: dict) -> inspection.Inspection | None:
        """How staged data is inspected: as uploads are, unless it may be
        compressed (image_decompression configured): then it is inspected
        once decompressed, by the conversion plugin and the upload path."""
        plugins = getattr(self.runner, "plugins", None)
        if plugins and plugins.decompresses:
            return None
        return inspection.for_image(self.conf, record.get("disk_format"),
                                    record.get("container_format"))

    def _stage_host_record(self) -> dict[str, Any]:
        """What records this node as the stage host of an image it begins
        staging (nothing when it has no worker_self_reference_url)."""
        url = self_url(self.conf)
        return {"properties": {reserved.STAGE_HOST: url}} if url else {}

    def _record_size(self, context: RequestContext, image_id: str, size: int) -> None:
        values: dict[str, Any] = {"size": size}
        try:
            self.catalog.images.writes.change(context, image_id, values,
                                              from_state=image_status.UPLOADING,
                                              applied=lambda rec: rec["size"] == size)
        except BaseException:
            self.staging.remove(image_id)
            self._requeue(context, image_id, image_status.UPLOADING)
            raise

    def staged_length(self, context: RequestContext, image_id: str,
                      caller: Caller | None = None) -> int:
        """How many bytes of the image are staged (0: none), here or on
        its stage host (asked as ``caller``); raises NotFound, Forbidden,
        and what the stage host answers."""
        image = self.catalog.owned(context, image_id, "modify_image")
        staged = self.staging.staged_length(image_id)
        if staged is None and caller is not None:
            host = self._stage_host(context, image_id, caller, image)
            if host is not None:
                return self.stage_hosts.staged_length(caller, host, image_id)
        return staged or 0

    # -- import ------------------------------------------------------------------
    def import_image(self, context: RequestContext, image_id: str, body: Any,
                     caller: Caller | None = None) -> None:
        """Check an import request and start it (the caller answers 202).

        A glance-direct import of data another node staged is sent on to
        that node as ``caller`` (see ``stage_host``).

        The stores written are chosen by ``import_targets`` (the body's
        ``stores`` / ``all_stores``, the caller's X-Image-Meta-Store).

        Raises Invalid (bad body, unknown method, a web-download uri missing
        or refused by the source filter, stores named two ways), NotFound,
        Forbidden and Conflict (wrong status, formats unset, the lock held,
        an unknown store, a race), and
        what the node holding the staged data answers (BadGateway,
        GatewayTimeout when it cannot).
        """
        name = _method_name(body)
        if name not in self.methods():
            raise exception.Invalid("Unknown import method name '%s'; enabled: %s"
                                    % (name, ", ".join(self.methods())))
        must_succeed = import_targets.flags(body).must_succeed
        check_writable(context)
        usage.enforce(self.conf, self.catalog.images.registry, context,
                      _import_deltas(name))
        header = caller.headers.get(import_targets.STORE_HEADER) if caller else None
        # What the image is decides before who asks (409 before 403), and
        # the lock before the stores and the method's own checks: an
        # import that cannot start says why in that order whatever else
        # is wrong with it.
        image = self.catalog.get(context, image_id)
        _check_importable(image, name)
        if name == COPY_IMAGE:
            self.copies.start(context, image, body, header)
            return
        method = METHODS[name]
        if name == GLANCE_DOWNLOAD:
            self.downloads.named(body["method"])
        self.catalog.check_owner(context, image, "modify_image")
        self.lock.check_free(image.record)
        stores = import_targets.chosen(self.runner.stores, body, header)
        if name == GLANCE_DIRECT and not self.staging.holds(image_id):
            host = self.stage_hosts.elsewhere(image.record, caller)
            if host is not None and caller is not None:
                self.stage_hosts.send(caller, host, "POST", image_id, "/import", body)
                return
        extra = method.check(self, context, image, body["method"])
        image_status.check(image.status, image_status.IMPORTING,
                           image.record.get("disk_format"),
                           image.record.get("container_format"))
        # A caller without a project (the unauthenticated pipeline's single
        # operator) files the task under the image's owner, else the admin.
        owner = context.owner or image.record.get("owner") or self.conf.admin_role
        task = self.repository.create(
            context, tasks.API_IMAGE_IMPORT,
            dict(extra, image_id=image_id, import_req=body, backend=stores,
                 all_stores_must_succeed=must_succeed),
            image_id=image_id, owner=owner)
        # One swap takes the lock and moves to importing: a second import
        # racing this one gets 409 here; its task fails at once.
        try:
            self.lock.take(context, image_id, image.status, image_status.IMPORTING,
                           task["id"], import_targets.listed(self.runner.stores, stores))
        except exception.StatusConflict:
            self._abandon(context, task, "The image changed status meanwhile")
            raise exception.Conflict("Image %s changed status meanwhile" % image_id) \
                from None
        except BaseException as err:
            self._abandon(context, task, "The import did not start: %s" % err)
            self._put_back(context, image_id, extra.get("restore"))
            raise
        self.spawn(self.runner.run, context, task)

    def _put_back(self, context: RequestContext, image_id: str,
                  restore: dict | None) -> None:
        """The metadata a glance-download request gave the still queued
        image, as it was, when its import does not start."""
        values, properties, added = restored(restore)
        if not values:
            return
        try:
            self.catalog.images.writes.change(
                context, image_id, dict(values, properties=properties),
                from_state=image_status.QUEUED, remove_properties=added,
                applied=lambda rec: rec.get("disk_format") == values["disk_format"])
        except exception.GlanceError as err:
            LOG.warning("Image %s keeps the metadata of the region's image: %s",
                        image_id, err)

    def _abandon(self, context: RequestContext, task: dict, message: str) -> None:
        try:
            self.repository.move(context, task, task_status.FAILURE, message=message)
        except exception.GlanceError as err:
            # Pending and untouched: the reaper fails it later.
            LOG.warning("Task %s not failed: %s", task["id"], err)

    def delete(self, context: RequestContext, image_id: str,
               caller: Caller | None = None) -> None:
        """Delete the image as the catalog does, and its staged data. When
        another node holds that data the delete is sent on to it, as
        ``caller``; when it cannot be reached the image is deleted here
        and that node's staging sweep removes the data later."""
        if self.staging.staged_length(image_id) is None and caller is not None:
            host = self._stage_host(context, image_id, caller)
            if host is not None:
                try:
                    self.stage_hosts.send(caller, host, "DELETE", image_id)
                    return
                except (exception.BadGateway, exception.GatewayTimeout) as err:
                    LOG.warning("Deleting image %s here; its staged data on %s "
                                "goes with that node's staging sweep: %s",
                                image_id, host, err)
        self.catalog.delete(context, image_id)
        self.staging.remove(image_id)

    def _stage_host(self, context: RequestContext, image_id: str,
                    caller: Caller, image: Image | None = None) -> str | None:
        """The other node holding the staged data of the caller's image."""
        if image is None:
            try:
                image = self.catalog.get(context, image_id)
            except exception.NotFound:
                return None   # the catalog's delete says so
        if image.status != image_status.UPLOADING:
            return None
        return self.stage_hosts.elsewhere(image.record, caller)

    # -- helpers -----------------------------------------------------------------
    def _move(self, context: RequestContext, image: Any, to_status: str,
              **values: Any) -> Any:
        try:
            return self.catalog.images.move(context, image, to_status, **values)
        except exception.StatusConflict:
            raise exception.Conflict("Image %s changed status meanwhile" % image.id) \
                from None

    def _requeue(self, context: RequestContext, image_id: str, from_state: str) -> None:
        self.catalog.uploader.kill(context, image_id, from_state, image_status.QUEUED)


def _check_importable(image: Image, method: str) -> None:
    """Raises Conflict unless the image's status is the one ``method``
    imports into and both its formats are set."""
    needs = image_status.ACTIVE if method == COPY_IMAGE else METHODS[method].needs
    if image.status != needs:
        if image.status == image_status.ACTIVE:
            raise exception.Conflict("Image %s is active: only copy-image imports into "
                                     "an active image" % image.id)
        hint = " (staged first)" if method == GLANCE_DIRECT else ""
        raise exception.Conflict("Image %s is %s; a %s import needs it %s%s"
                                 % (image.id, image.status, method, needs, hint))
    for attribute in ("container_format", "disk_format"):
        if not image.record.get(attribute):
            raise exception.Conflict("'%s' needs to be set before import" % attribute)


def _import_deltas(method: str) -> dict[str, int]:
    """What an import request adds to the Keystone quotas: no bytes yet
    (the stored size is checked as it stands), and one more image
    receiving data unless its data is already staged."""
    deltas = {unified_limits.IMAGE_SIZE_TOTAL: 0}
    if method != GLANCE_DIRECT:
        deltas.update({unified_limits.IMAGE_STAGE_TOTAL: 0,
                       unified_limits.IMAGE_COUNT_UPLOADING: 1})
    return deltas


def _method_name(body: Any) -> Any:
    method = body.get("method") if isinstance(body, dict) else None
    name = method.get("name") if isinstance(method, dict) else None
    if not isinstance(name, str) or not name:
        raise exception.Invalid("Import request requires a 'method' with a 'name'")
    return name
