"""The ``export`` task: an active image's data written to a URL that needs
no stored credentials (a Swift TempURL, an S3 presigned URL).

Input: ``{"image_id": <id>, "export_to": <http(s) URL>}``, nothing else.
At create time the URL must pass the source filter (``put_target``), and
the image must exist, be readable and downloadable by the caller
(``download_image``) and be active: such errors are a 4xx, not a failed
task.

The work runs off the request path under the task's lease
(``task_lease``: its message says how many MiB went out): the bytes
stream from the image's store to the target with a Content-Length and
the image's MD5, so the target refuses a short or corrupt body, and what
the target acknowledges is checked. The task succeeds with ``{"image_id",
"export_to": <the URL without its query>, "size", "checksum", "etag",
"verified"}``, or fails with a message saying why.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_config import cfg

from glance_clone.api.v2.tasks import check_input_keys
from glance_clone.common import exception
from glance_clone.common.context import RequestContext
from glance_clone.domain import downloads, image_status
from glance_clone.domain.catalog import ImageCatalog
from glance_clone.domain.task_lease import Lease
from glance_clone.domain.task_runner import TaskRunner
from glance_clone.domain.tasks import TaskRepository
from glance_clone.store import put_target

LOG = logging.getLogger(__name__)

INPUT_KEYS = frozenset(("image_id", "export_to"))


def exportable(catalog: ImageCatalog, context: RequestContext, image_id: Any) -> dict:
    """The record of an active image the caller may download; raises
    Invalid (not an id), ImageNotFound, Forbidden, Conflict (not active)."""
    if not isinstance(image_id, str) or not image_id:
        raise exception.Invalid("'image_id' must be an image id")
    image = catalog.get(context, image_id)
    downloads.check_downloadable(catalog.policy, context, image.record,
                                 require_active=False)
    if image.status != image_status.ACTIVE:
        raise exception.Conflict("Image %s is %s: only an active image's data can "
                                 "be copied" % (image_id, image.status))
    return image.record


class ExportTask:
    """Checks and runs ``export`` tasks."""

    def __init__(self, conf: cfg.ConfigOpts, repository: TaskRepository,
                 catalog: ImageCatalog, stores: Any, **kwargs: Any) -> None:
        self.conf = conf
        self.catalog = catalog
        self.stores = stores
        self.target = put_target.PutTarget(conf)
        self.runner = TaskRunner(conf, repository, self.work, **kwargs)

    def start(self, context: RequestContext, task: dict) -> None:
        self.runner.start(context, task)

    def check(self, context: RequestContext, task_input: dict) -> None:
        check_input_keys(task_input, INPUT_KEYS)
        put_target.check_target(self.conf, task_input["export_to"])
        exportable(self.catalog, context, task_input["image_id"])

    def work(self, context: RequestContext, task: dict, lease: Lease) -> dict:
        image_id, url = task["input"]["image_id"], task["input"]["export_to"]
        record = exportable(self.catalog, context, image_id)
        chunks, size = downloads.open_data(self.stores, record)
        try:
            written = self.target.put(url, lease.count(chunks, size), size,
                                      record.get("checksum"))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return dict(written, image_id=image_id, export_to=put_target.shown(url))
