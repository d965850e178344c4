"""The ``import`` task: an image made from a URL, off the request path.

Input: ``{"import_from": URL, "import_from_format": <disk format>,
"image_properties": {<a v2 image create body>}}``, nothing else. At
create time the URL must pass the source filter (the one locations and
copy_from pass) and the image properties the image schema: such errors are
a 400, not a failed task.

The work runs in a greenthread of the glance-api worker that took the
request: claim the task (pending -> processing, a compare-and-swap, so no
two workers ever run one task), create the image, fetch the URL through
the stores (the HTTP store applies the source filter to every redirect
hop), stream it into the default store (size, checksum, image_size_cap,
quotas as for an upload) and activate the image; the task succeeds with
``{"image_id": ...}``. Any failure fails the task with a message saying
why and deletes the image (no data is kept), as newer Glance's revert does.

With ``[task] work_dir`` set, the URL's bytes are first written to a
file there (named by the image id, under the same ``image_size_cap``),
stored from it, and the file removed. ``[taskflow_executor]
conversion_format`` (needs work_dir) converts that file to qcow2, raw or
vmdk before it is stored, by the ``image_conversion`` import plugin's code
(format inspection, qemu-img info, qemu-img convert); the image then has
that disk_format. Bad values stop glance-api at start with one line
saying what to change.

While it runs, the task's lease (``task_lease``) writes how many bytes
were copied every quarter of ``[task] task_stall_timeout``. A task whose
worker or node died is failed by the reaper of any api node
(``task_reaper``), which calls ``revert``: its image is deleted if it
never got its data (queued or killed); an active one is kept. An image
left ``saving`` by a dead worker is reaped by glance-scrubber, which also
removes the partial data (``scrub_saving_timeout``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.api.v2 import bodies
from glance_clone.api.v2.schemas import Schemas
from glance_clone.api.v2.tasks import check_input_keys
from glance_clone.common import config, exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import (
    image_status,
    import_plugins,
    task_reaper,
    task_runner,
    task_status,
    tasks,
)
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.import_plugins import conversion
from glance_clone.domain.staging import StagingArea
from glance_clone.domain.task_lease import Lease
from glance_clone.domain.tasks import TaskRepository
from glance_clone.domain.upload import Uploader
from glance_clone.store import source_filter

LOG = logging.getLogger(__name__)

INPUT_KEYS = frozenset(("import_from", "import_from_format", "image_properties"))

WORK_OPTS = [
    cfg.StrOpt("work_dir",
               help="Directory where import tasks write the data they fetch "
                    "before storing it (one file per task, removed when it ends); "
                    "unset, the data goes straight into the store. Needed by "
                    "[taskflow_executor] conversion_format; must not be the "
                    "staging directory of node_staging_uri."),
]
CONVERSION_OPTS = [
    cfg.StrOpt("conversion_format",
               help="Disk format (%s) import tasks convert their image to "
                    "before storing it; unset, no conversion. Needs [task] "
                    "work_dir." % ", ".join(conversion.FORMATS)),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, WORK_OPTS, group="task")
    config.register_once(conf, CONVERSION_OPTS, group="taskflow_executor")


def work_area(conf: cfg.ConfigOpts) -> StagingArea | None:
    """Where import tasks write their files, or None; raises ConfigError
    for an unusable ``[task] work_dir`` or ``conversion_format``."""
    register_opts(conf)
    work_dir = conf.task.work_dir
    target = conf.taskflow_executor.conversion_format
    if target is not None and target not in conversion.FORMATS:
        raise exception.ConfigError(
            "[taskflow_executor] conversion_format = %s is no format imports convert "
            "to: use one of %s, or leave it unset" % (target, ", ".join(conversion.FORMATS)))
    if not work_dir:
        if target is not None:
            raise exception.ConfigError(
                "[taskflow_executor] conversion_format needs [task] work_dir: set it "
                "to a directory glance-api may write, or unset conversion_format")
        return None
    if not os.path.isabs(work_dir):
        raise exception.ConfigError("[task] work_dir = %s must be an absolute path"
                                    % work_dir)
    if not os.path.isdir(work_dir) or not os.access(work_dir, os.W_OK | os.X_OK):
        raise exception.ConfigError(
            "[task] work_dir = %s is not a directory glance-api may write: create "
            "it, writable by glance-api, or unset the option" % work_dir)
    staging = StagingArea(conf).directory
    if os.path.realpath(work_dir) == os.path.realpath(staging):
        raise exception.ConfigError(
            "[task] work_dir = %s is the staging directory of node_staging_uri: "
            "give import tasks a directory of their own" % work_dir)
    return StagingArea(conf, directory=work_dir)


class ImportTask:
    """Checks and runs ``import`` tasks."""

    def __init__(self, conf: cfg.ConfigOpts, repository: TaskRepository,
                 catalog: ImageCatalog, schemas: Schemas, stores: Any,
                 uploader: Uploader, spawn: Callable[..., Any] = eventlet.spawn_n,
                 lease_factory: Callable[..., Lease] = Lease,
                 import_conf: cfg.ConfigOpts | None = None) -> None:
        """``import_conf``: glance-image-import.conf's options (the
        conversion's limits); raises ConfigError (see ``work_area``)."""
        task_reaper.register_opts(conf)
        self.work_area = work_area(conf)
        target = conf.taskflow_executor.conversion_format
        self.converter = None
        if target is not None:
            self.converter = conversion.Conversion(
                import_conf or import_plugins.load_import_conf(conf), conf, output=target)
        self.conf = conf
        self.repository = repository
        self.catalog = catalog
        self.schemas = schemas
        self.stores = stores
        self.uploader = uploader
        self.spawn = spawn
        self.lease_factory = lease_factory

    @property
    def heartbeat(self) -> float:
        return task_reaper.lease_interval(self.conf)

    def check(self, context: RequestContext, task_input: dict) -> None:
        """Raises Invalid for input that can never work."""
        check_input_keys(task_input, INPUT_KEYS)
        url = task_input["import_from"]
        if not isinstance(url, str):
            raise exception.Invalid("'import_from' must be a URL")
        if url.partition(":")[0].lower() not in ("http", "https"):
            raise exception.Invalid("'import_from' must be an http or https URL; "
                                    "file based imports are not allowed")
        source_filter.check_source(self.conf, url)
        if task_input["import_from_format"] not in self.conf.image_format.disk_formats:
            raise exception.Invalid("'import_from_format' must be one of %s"
                                    % ", ".join(self.conf.image_format.disk_formats))
        self._image_values(task_input)

    def _image_values(self, task_input: dict) -> dict:
        properties = task_input["image_properties"]
        if not isinstance(properties, dict):
            raise exception.Invalid("'image_properties' must be an object")
        return bodies.create_values(self.schemas, properties)

    def start(self, context: RequestContext, task: dict) -> None:
        self.spawn(self.run, context, task)

    def run(self, context: RequestContext, task: dict) -> None:
        """Claim and run the task; never raises."""
        claimed = task_runner.claim(self.repository, context, task)
        if claimed is None:
            return
        task = claimed
        image_id = None
        try:
            image = self.catalog.create(context, self._image_values(task["input"]))
            image_id = image.id
            task = self.repository.progress(context, task, "Importing into image %s"
                                            % image_id, image_id=image_id)
            lease = self.lease_factory(self.repository, context, task, self.heartbeat)
            with lease:
                if self.work_area is None:
                    self._copy(context, image.record, lease, task["input"]["import_from"])
                else:
                    self._copy_through_work_dir(context, image.record, lease,
                                                task["input"]["import_from"])
            self.repository.move(context, lease.task, task_status.SUCCESS,
                                 result={"image_id": image_id}, message="")
        except Exception as err:
            LOG.warning("Import task %s failed: %s", task["id"], err,
                        exc_info=not isinstance(err, exception.GlanceError))
            self._fail(context, task, image_id, tasks.failure_message(err))

    def _copy(self, context: RequestContext, image: dict, lease: Lease,
              url: str) -> None:
        chunks, size = self.stores.get(url)
        try:
            self.uploader.upload(context, image, lease.count(chunks, size), size or 0)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _copy_through_work_dir(self, context: RequestContext, image: dict, lease: Lease,
                               url: str) -> None:
        """The URL's bytes into a work file, converted when configured,
        then into the store; the file is removed whatever happens."""
        assert self.work_area is not None
        area = self.work_area
        try:
            chunks, size = self.stores.get(url)
            try:
                record, data, length = import_plugins.staged_through(
                    self.converter, area, self.uploader.writes, context, image,
                    lease.count(chunks, size), size, image_status.QUEUED)
            except OSError as err:
                # The directory went away or filled up after the start.
                raise exception.ConfigError(
                    "Could not write the import's work file in [task] work_dir "
                    "(%s): %s" % (area.directory, err.strerror or err)) from err
            try:
                self.uploader.upload(context, record, data, length)
            finally:
                data.close()
        finally:
            area.remove(image["id"])

    def revert(self, context: RequestContext, task: dict, message: str) -> None:
        """The reaper's undo of a task it failed: the image is deleted
        if it never got its data (see the module docstring)."""
        image_id = task.get("image_id")
        if not image_id:
            return
        if self.work_area is not None:
            # A dead worker's work file (one still working is stopped by
            # its lost lease and removes its own).
            self.work_area.remove(image_id)
        try:
            image = self.uploader.writes.read(context, image_id)
        except exception.GlanceError as err:
            LOG.warning("Image %s of task %s not read: %s", image_id, task["id"], err)
            return
        # Only an image that never got its data goes: one left saving is
        # the scrubber's (it removes the partial data too), and one that is
        # active already was finished and verified before the worker died.
        if image is not None and image["status"] in (image_status.QUEUED,
                                                     image_status.KILLED):
            self.catalog.discard(context, image["id"])

    def _fail(self, context: RequestContext, task: dict, image_id: str | None,
              message: str) -> None:
        if image_id is not None:
            # The image was made for this task only: a failed import leaves
            # none behind (an upload that failed has killed it and removed
            # its data already; one that never started left it queued).
            self.catalog.discard(context, image_id)
        try:
            current = self.repository.get(context, task["id"])
            if current["status"] == task_status.PROCESSING:
                self.repository.move(context, current, task_status.FAILURE,
                                     message=message)
        except exception.GlanceError as err:
            LOG.warning("Could not fail task %s: %s", task["id"], err)
