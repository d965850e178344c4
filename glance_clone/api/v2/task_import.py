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
why and kills the image (no data is kept).

While bytes flow the task's message says how many were copied, written at
most every ``heartbeat`` seconds; each write also tells ``TaskReaper``
that the worker is alive. A task no worker has touched for
``[task] task_stall_timeout`` seconds (its worker or node died) is failed
by the reaper of any api node, and its image killed if no data was being
written yet: no task stays ``processing`` for longer than that. An image
left ``saving`` by a dead worker is reaped by glance-scrubber, which also
removes the partial data (``scrub_saving_timeout``).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.api.v2 import bodies
from glance_clone.api.v2.schemas import Schemas
from glance_clone.common import config, exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import image_status, task_status
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.tasks import TaskRepository
from glance_clone.domain.upload import Uploader
from glance_clone.store import source_filter

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.IntOpt("task_stall_timeout", default=300, min=2,
               help="Seconds after which a pending or processing task that "
                    "nobody has updated is failed (its glance-api worker "
                    "died) and its unfinished image killed. Running imports "
                    "report progress four times within this time."),
]

INPUT_KEYS = frozenset(("import_from", "import_from_format", "image_properties"))
MIB = 1024 * 1024
INTERNAL_ERROR = "Task failed due to Internal Error"


def register_opts(conf: cfg.ConfigOpts) -> None:
    config.register_once(conf, OPTS, group="task")


def _failure_message(err: BaseException) -> str:
    if isinstance(err, exception.GlanceError):
        return str(err)
    return INTERNAL_ERROR


class ImportTask:
    """Checks and runs ``import`` tasks."""

    def __init__(self, conf: cfg.ConfigOpts, repository: TaskRepository,
                 catalog: ImageCatalog, schemas: Schemas, stores: Any,
                 uploader: Uploader, spawn: Callable[..., Any] = eventlet.spawn_n,
                 clock: Callable[[], float] = time.monotonic) -> None:
        register_opts(conf)
        self.conf = conf
        self.repository = repository
        self.catalog = catalog
        self.schemas = schemas
        self.stores = stores
        self.uploader = uploader
        self.spawn = spawn
        self.clock = clock

    @property
    def heartbeat(self) -> float:
        return self.conf.task.task_stall_timeout / 4

    def check(self, task_input: dict) -> None:
        """Raises Invalid for input that can never work."""
        missing = sorted(INPUT_KEYS - set(task_input))
        if missing:
            raise exception.Invalid("Input does not contain '%s' field" % missing[0])
        extra = sorted(set(task_input) - INPUT_KEYS)
        if extra:
            raise exception.Invalid("Input has unknown fields: %s" % ", ".join(extra))
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
        try:
            task = self.repository.move(context, task, task_status.PROCESSING)
        except exception.GlanceError as err:
            # Another worker claimed it, or the reaper failed it first.
            LOG.info("Task %s not run: %s", task["id"], err)
            return
        image_id = None
        try:
            image = self.catalog.create(context, self._image_values(task["input"]))
            image_id = image.id
            task = self.repository.progress(context, task, "Importing into image %s"
                                            % image_id, image_id=image_id)
            self._copy(context, task, image.record)
            self.repository.move(context, task, task_status.SUCCESS,
                                 result={"image_id": image_id}, message="")
        except Exception as err:
            LOG.warning("Import task %s failed: %s", task["id"], err,
                        exc_info=not isinstance(err, exception.GlanceError))
            self._fail(context, task, image_id, _failure_message(err))

    def _copy(self, context: RequestContext, task: dict, image: dict) -> None:
        chunks, size = self.stores.get(task["input"]["import_from"])
        try:
            self.uploader.upload(context, image, self._reporting(context, task, chunks, size),
                                 size or 0)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _reporting(self, context: RequestContext, task: dict, chunks: Any,
                   size: int | None) -> Iterator[bytes]:
        """``chunks``, writing progress into the task now and then; stops
        (StatusConflict) once the task is no longer processing."""
        copied = 0
        due = self.clock() + self.heartbeat
        total = " of %d" % (size // MIB) if size else ""
        for chunk in chunks:
            copied += len(chunk)
            if self.clock() >= due:
                task = self.repository.progress(
                    context, task, "Copied %d MiB%s" % (copied // MIB, total))
                due = self.clock() + self.heartbeat
            yield chunk

    def _fail(self, context: RequestContext, task: dict, image_id: str | None,
              message: str) -> None:
        if image_id is not None:
            # An upload that failed killed its image already; one that
            # never started leaves it queued.
            self.uploader.kill(context, image_id, image_status.QUEUED)
        try:
            current = self.repository.get(context, task["id"])
            if current["status"] == task_status.PROCESSING:
                self.repository.move(context, current, task_status.FAILURE,
                                     message=message)
        except exception.GlanceError as err:
            LOG.warning("Could not fail task %s: %s", task["id"], err)


class TaskReaper:
    """Fails tasks whose worker died, and kills their unfinished images."""

    def __init__(self, conf: cfg.ConfigOpts, repository: TaskRepository,
                 uploader: Uploader, context: Callable[[], RequestContext]) -> None:
        register_opts(conf)
        self.conf = conf
        self.repository = repository
        self.uploader = uploader
        self.context = context

    def reap(self) -> int:
        """Fail every stalled task (all projects); the number failed."""
        context = self.context()
        timeout = self.conf.task.task_stall_timeout
        cutoff = (datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
                  - datetime.timedelta(seconds=timeout))
        failed = 0
        for status in (task_status.PENDING, task_status.PROCESSING):
            for task in self.repository.list(context, status=status,
                                             updated_before=cutoff.isoformat(),
                                             limit=self.conf.api_limit_max):
                if self._fail(context, task, timeout):
                    failed += 1
        return failed

    def _fail(self, context: RequestContext, task: dict, timeout: int) -> bool:
        message = ("The task was interrupted: no glance-api worker ran it for %d "
                   "seconds (a worker or node stopped)" % timeout)
        try:
            self.repository.move(context, task, task_status.FAILURE, message=message)
        except exception.GlanceError as err:
            LOG.info("Stalled task %s not failed: %s", task["id"], err)
            return False
        LOG.warning("Task %s failed: %s", task["id"], message)
        if task.get("image_id"):
            try:
                image = self.uploader.writes.read(context, task["image_id"])
            except exception.GlanceError as err:
                LOG.warning("Image %s of task %s not read: %s", task["image_id"],
                            task["id"], err)
                return True
            if image is not None and image["status"] == image_status.QUEUED:
                self.uploader.kill(context, image["id"], image_status.QUEUED)
            # A dead upload's image in saving is the scrubber's to reap: it
            # kills the image and also removes the partial data the store
            # may hold (scrub_saving_timeout).
        return True

    def loop(self) -> None:
        """Reap now, then every half stall timeout, for ever."""
        while True:
            try:
                self.reap()
            except exception.GlanceError as err:
                # E.g. the registry down, or Keystone admin credentials
                # missing (admin_user ...): the next round tries again.
                LOG.warning("Looking for stalled tasks failed: %s", err)
            except Exception:
                LOG.exception("Looking for stalled tasks failed")
            eventlet.sleep(self.conf.task.task_stall_timeout / 2)
