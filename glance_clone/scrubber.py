"""glance-scrubber's work: remove the data of images deleted with
``delayed_delete`` and reap uploads that died half way.

Everything goes through glance-registry with an admin context, and through
the store drivers for bytes. Unlike Glance 11.0.2, which wrote location rows
straight into the database, the scrubber needs no ``[database]`` section
(one there is ignored).

Scrub pass (cache-scrubber-tools.md section 3)
    Lists ``pending_delete`` images (``deleted=True&is_public=none``, paged
    by marker) and keeps those whose ``deleted_at + scrub_time`` is past.
    Up to ``scrub_pool_size`` images are handled at once. For each image,
    every ``pending_delete`` location's data is deleted from its store and
    the location marked ``deleted`` in the registry; data already gone
    counts as deleted. Only when every location succeeded is the image
    set ``deleted``; otherwise it stays ``pending_delete`` for the next run.
    Every registry write is a compare-and-swap on ``pending_delete``, so two
    scrubbers (or an operator) racing on one image cannot undo each other.

    Data is never deleted while another live image (any non-deleted image
    the admin listing returns) has a location with the same URL: the
    pending location is marked ``deleted`` and the bytes stay. The set of
    live URLs is read once per run, so an image given that URL during the
    run (only possible by writing locations through the registry) is not
    seen until the next one.

Reaper (beyond Glance)
    An api process that dies mid-upload leaves its image in ``saving`` for
    ever, and the file store leaves a hidden partial file
    (``.<image id>.<random>.partial`` in ``filesystem_store_datadir``).
    Images in ``saving`` whose ``updated_at`` is older than
    ``scrub_saving_timeout`` seconds are first set ``killed`` (a
    compare-and-swap on ``saving``, so an upload that finishes meanwhile
    wins), then their partial files and any location data are removed. An
    upload whose partial file was written to within the timeout is taken
    to be alive and left alone, so a very long upload is not reaped while
    it still makes progress. The file store's data file of the image is
    removed too: an api that could not learn whether its activation was
    committed leaves it in place. ``scrub_saving_timeout = 0`` turns the
    reaper off. Run the scrubber where it sees the same store directory as
    glance-api.

Interrupted deletes (beyond Glance)
    glance-api deletes an image with data by setting it ``pending_delete``
    with its row still live, removing the data, and then deleting the row
    with status ``deleted``. An api that dies in between leaves the first
    state; older versions could leave ``deleted`` with a live row. Such
    images, not updated for ``scrub_saving_timeout`` seconds (so that a
    delete still running is never raced), get the rest done: their active
    locations' data removed, then the row deleted with status ``deleted``.

Options (``glance-scrubber.conf``)
    ``scrub_time`` (0), ``scrub_pool_size`` (1), ``wakeup_time`` (300),
    ``daemon`` (``-D``), ``scrub_saving_timeout`` (3600), the registry
    client options (``registry_host``, ``registry_port``,
    ``send_identity_headers``...), ``admin_role``, ``admin_user``,
    ``admin_tenant_name`` and the ``[glance_store]`` options. Towards a
    registry that checks Keystone tokens, the admin credentials:
    ``auth_strategy = keystone``, ``auth_url``, ``admin_user``,
    ``admin_password``, ``admin_tenant_name`` and, for Keystone v3
    domains other than the default one, ``admin_user_domain_name`` and
    ``admin_project_domain_name``.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from collections.abc import Callable
from typing import Any

import eventlet
from oslo_config import cfg

from glance_clone.common import config, exception
from glance_clone.common.context import RequestContext
from glance_clone.common.redaction import redact_url
from glance_clone.common.timeutil import naive_utc
from glance_clone.registry.client.v1.client import RegistryClient
from glance_clone.registry.client.v1.client import register_opts as register_client_opts
from glance_clone.store import backend
from glance_clone.store import file as file_store

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.IntOpt("scrub_time", default=0, min=0,
               help="Seconds an image stays pending_delete before its data "
                    "is removed."),
    cfg.IntOpt("scrub_pool_size", default=1, min=1,
               help="Images scrubbed at the same time."),
    cfg.IntOpt("wakeup_time", default=300, min=1,
               help="Seconds between two runs of the daemon."),
    cfg.IntOpt("scrub_saving_timeout", default=3600, min=0,
               help="Images in 'saving' not updated for this many seconds "
                    "(and whose partial upload file has not grown for as "
                    "long) are taken for dead uploads: marked killed and "
                    "their partial data removed. Deletes left half-done "
                    "for as long are finished. 0 disables both."),
]
CLI_OPTS = [
    cfg.BoolOpt("daemon", short="D", default=False,
                help="Run a pass now and then every wakeup_time seconds "
                     "until stopped."),
]

PENDING_DELETE = "pending_delete"
DELETED = "deleted"
SAVING = "saving"
PAGE_SIZE = 1000    # the registry caps pages at its api_limit_max


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Every option the scrubber reads; safe to call more than once."""
    try:
        conf.register_cli_opts(CLI_OPTS)
    except cfg.ArgsAlreadyParsedError:
        conf.register_opts(CLI_OPTS)
    conf.register_opts(OPTS)
    conf.register_opts(config.CONTEXT_OPTS)
    register_client_opts(conf)
    backend.register_opts(conf)


def utcnow() -> datetime.datetime:
    """Now as the registry writes timestamps: naive UTC."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def parse_time(value: Any) -> datetime.datetime | None:
    """A registry timestamp as naive UTC, None when absent or unreadable."""
    if isinstance(value, datetime.datetime):
        return value
    if not value:
        return None
    try:
        return naive_utc(str(value))
    except (ValueError, OverflowError):
        return None


@dataclasses.dataclass
class RunReport:
    """What one pass did, by image id."""

    scrubbed: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    waiting: list[str] = dataclasses.field(default_factory=list)
    reaped: list[str] = dataclasses.field(default_factory=list)
    reap_failed: list[str] = dataclasses.field(default_factory=list)
    finished: list[str] = dataclasses.field(default_factory=list)
    finish_failed: list[str] = dataclasses.field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not (self.failed or self.reap_failed or self.finish_failed)

    def summary(self) -> str:
        return ("%d scrubbed, %d left for a later run after errors, %d not due "
                "yet, %d dead uploads reaped, %d could not be reaped, %d "
                "interrupted deletes finished, %d could not be finished%s"
                % (len(self.scrubbed), len(self.failed), len(self.waiting),
                   len(self.reaped), len(self.reap_failed), len(self.finished),
                   len(self.finish_failed),
                   " (stopped early)" if self.interrupted else ""))


class Scrubber:
    """One scrub-and-reap pass per ``run_once`` call."""

    def __init__(self, conf: cfg.ConfigOpts, registry: Any = None,
                 stores: Any = None,
                 clock: Callable[[], datetime.datetime] = utcnow,
                 page_size: int = PAGE_SIZE) -> None:
        """Raises ConfigError for unusable store options."""
        register_opts(conf)
        self.conf = conf
        self.registry = registry or RegistryClient(conf, as_service=True)
        self.stores = stores or backend.StoreSet(conf)
        self.clock = clock
        self.page_size = page_size

    # -- registry ----------------------------------------------------------
    def context(self) -> RequestContext:
        """The admin identity the registry sees (with send_identity_headers)."""
        return RequestContext(user=self.conf.admin_user,
                              tenant=self.conf.admin_tenant_name,
                              roles=(self.conf.admin_role,), is_admin=True)

    def _list(self, **filters: str) -> list[dict[str, Any]]:
        """Every image matching ``filters``; raises the registry's errors."""
        context = self.context()
        images: list[dict[str, Any]] = []
        marker = None
        while True:
            params = dict(filters, is_public="none", limit=str(self.page_size),
                          sort_key="created_at", sort_dir="asc")
            if marker is not None:
                params["marker"] = marker
            page = self.registry.get_images_detailed(context, **params)
            if not page:
                return images
            images.extend(page)
            marker = page[-1]["id"]

    def live_locations(self) -> dict[str, set[str]]:
        """URL -> ids of the images not deleted that have it as an active
        location."""
        users: dict[str, set[str]] = {}
        for image in self._list():
            for loc in image.get("location_data") or []:
                if loc.get("status") == "active" and loc.get("url"):
                    users.setdefault(loc["url"], set()).add(image["id"])
        return users

    # -- one pass --------------------------------------------------------------
    def run_once(self, stop_requested: Callable[[], bool] = lambda: False) -> RunReport:
        """Scrub due images, then reap dead uploads.

        Raises RegistryUnavailable, NotAuthenticated, Forbidden and the other
        registry errors when the listings fail; errors with single images
        are logged and reported, never raised.
        """
        report = RunReport()
        now = self.clock()
        pending = self._list(deleted="True", status=PENDING_DELETE)
        due = []
        for image in pending:
            if self._is_due(image, now):
                due.append(image)
            else:
                report.waiting.append(image["id"])
        if report.waiting:
            LOG.info("%d pending_delete images are not due yet", len(report.waiting))
        live = self.live_locations() if due else {}
        pool = eventlet.GreenPool(self.conf.scrub_pool_size)

        def scrub(image: dict[str, Any]) -> tuple[str, bool | None]:
            if stop_requested():
                return image["id"], None
            return image["id"], self.scrub_image(image, live)

        for image_id, done in pool.imap(scrub, due):
            if done is None:
                report.interrupted = True
            elif done:
                report.scrubbed.append(image_id)
            else:
                report.failed.append(image_id)
        if not report.interrupted and not stop_requested():
            self._reap(report, pool, now)
        else:
            report.interrupted = True
        LOG.info("Scrubber run: %s", report.summary())
        return report

    def _is_due(self, image: dict[str, Any], now: datetime.datetime) -> bool:
        deleted_at = parse_time(image.get("deleted_at")) or parse_time(image.get("updated_at"))
        if deleted_at is None:
            return True
        return deleted_at + datetime.timedelta(seconds=self.conf.scrub_time) <= now

    # -- scrubbing one image ---------------------------------------------------------
    def scrub_image(self, image: dict[str, Any], live: dict[str, set[str]]) -> bool:
        """Remove the image's pending data and mark it deleted.

        True when the image is done (or another actor already moved it on),
        False when it stays pending_delete for the next run.
        """
        image_id = image["id"]
        locations = [dict(loc) for loc in image.get("location_data") or []
                     if loc.get("status") != "deleted"]
        complete = True
        try:
            for loc in locations:
                if loc.get("status") != PENDING_DELETE:
                    continue
                if not self._remove_data(image_id, loc["url"], live):
                    complete = False
                    continue
                loc["status"] = "deleted"
                # Recorded at once: a crash later does not make us forget
                # which data is gone (and gone data counts as done anyway).
                self._update(image_id, {"location_data": locations})
            if not complete:
                LOG.warning("Image %s keeps status pending_delete: some of its "
                            "data could not be deleted; retrying next run", image_id)
                return False
            self._update(image_id, {"status": "deleted"})
        except exception.Conflict:
            # With from_state a 409 means the status changed under us.
            return self._moved_on(image_id)
        except exception.GlanceError as err:
            LOG.error("Image %s stays pending_delete: registry update failed: %s",
                      image_id, err)
            return False
        except Exception:
            LOG.exception("Image %s stays pending_delete: unexpected error", image_id)
            return False
        LOG.info("Image %s scrubbed", image_id)
        return True

    def _moved_on(self, image_id: str) -> bool:
        """After a conflict: True when another actor took the image out of
        pending_delete, False when it is still ours to retry."""
        try:
            status = self.registry.get_image(self.context(), image_id)["status"]
        except exception.NotFound:
            return True
        except exception.GlanceError as err:
            LOG.error("Image %s: conflict, then could not re-read it: %s", image_id, err)
            return False
        if status == PENDING_DELETE:
            LOG.warning("Image %s was changed concurrently; retrying next run", image_id)
            return False
        LOG.info("Image %s is %s now; another actor handled it", image_id, status)
        return True

    def _update(self, image_id: str, values: dict[str, Any]) -> dict[str, Any]:
        return self.registry.update_image(self.context(), image_id, values,
                                          from_state=PENDING_DELETE)

    def _remove_data(self, image_id: str, url: str, live: dict[str, set[str]]) -> bool:
        """Delete the data at ``url``; True when it is gone or must stay
        because another live image uses it."""
        shown = redact_url(url)
        if live.get(url, set()) - {image_id}:
            LOG.warning("Keeping the data of image %s at %s: another image "
                        "still uses that location", image_id, shown)
            return True
        try:
            self.stores.delete(url)
        except exception.NotFound:
            LOG.info("Data of image %s at %s was already gone", image_id, shown)
            return True
        except exception.GlanceError as err:
            LOG.error("Could not delete the data of image %s at %s: %s",
                      image_id, shown, err)
            return False
        except Exception:
            LOG.exception("Could not delete the data of image %s at %s",
                          image_id, shown)
            return False
        LOG.info("Deleted the data of image %s at %s", image_id, shown)
        return True

    # -- reaping dead uploads ----------------------------------------------------------
    def _reap(self, report: RunReport, pool: eventlet.GreenPool,
              now: datetime.datetime) -> None:
        timeout = self.conf.scrub_saving_timeout
        if timeout <= 0:
            return
        limit = datetime.timedelta(seconds=timeout)
        stale = []
        for image in self._stale(limit, now, SAVING):
            if self._upload_is_alive(image["id"], now, limit):
                LOG.info("Image %s has been saving for long but its upload is "
                         "still writing; leaving it", image["id"])
                continue
            stale.append(image)
        interrupted = self._stale(limit, now, PENDING_DELETE, DELETED)
        if not (stale or interrupted):
            return
        live = self.live_locations()
        for image_id, done in pool.imap(lambda i: (i["id"], self.reap_image(i, live)),
                                        stale):
            (report.reaped if done else report.reap_failed).append(image_id)
        for image_id, done in pool.imap(
                lambda i: (i["id"], self.finish_delete(i, live)), interrupted):
            (report.finished if done else report.finish_failed).append(image_id)

    def _stale(self, limit: datetime.timedelta, now: datetime.datetime,
               *statuses: str) -> list[dict[str, Any]]:
        """Images with a live row in one of ``statuses``, not updated for ``limit``."""
        found = []
        for status in statuses:
            for image in self._list(status=status):
                updated = (parse_time(image.get("updated_at"))
                           or parse_time(image.get("created_at")))
                if updated is None or updated + limit <= now:
                    found.append(image)
        return found

    def finish_delete(self, image: dict[str, Any], live: dict[str, set[str]]) -> bool:
        """Finish a delete glance-api left half-done: remove the data of the
        image's active locations, then delete its row with status deleted.

        True when the image is deleted now (by us or someone else).
        """
        image_id = image["id"]
        complete = True
        for loc in image.get("location_data") or []:
            if loc.get("status") == "active" and \
                    not self._remove_data(image_id, loc["url"], live):
                complete = False
        if not complete:
            LOG.warning("Image %s: its interrupted delete could not remove all "
                        "its data; retrying next run", image_id)
            return False
        try:
            self.registry.delete_image(self.context(), image_id,
                                       from_state=image["status"])
        except exception.Conflict:
            return self._moved_on(image_id)
        except exception.GlanceError as err:
            LOG.error("Image %s: could not finish its interrupted delete: %s",
                      image_id, err)
            return False
        LOG.warning("Image %s was left half-deleted; its delete is finished", image_id)
        return True

    def reap_image(self, image: dict[str, Any], live: dict[str, set[str]]) -> bool:
        """Kill a dead upload's image and remove its partial data.

        True when the image is killed (by us or meanwhile by someone else)
        and no partial data of it is left.
        """
        image_id = image["id"]
        try:
            self.registry.update_image(self.context(), image_id,
                                       {"status": "killed"}, from_state=SAVING)
        except exception.Conflict:
            LOG.info("Image %s left 'saving' meanwhile; not reaped", image_id)
            return True
        except exception.GlanceError as err:
            LOG.error("Could not mark dead upload %s killed: %s", image_id, err)
            return False
        LOG.warning("Image %s was stuck in 'saving' (its upload died); marked "
                    "killed", image_id)
        complete = self._remove_partial_files(image_id)
        data_file = self._data_file(image_id)
        if data_file is not None and os.path.lexists(data_file) and \
                not self._remove_data(image_id, "file://" + data_file, live):
            complete = False
        locations = [dict(loc) for loc in image.get("location_data") or []
                     if loc.get("status") != "deleted"]
        removed = False
        for loc in locations:
            if self._remove_data(image_id, loc["url"], live):
                loc["status"] = "deleted"
                removed = True
            else:
                complete = False
        if removed:
            try:
                self.registry.update_image(self.context(), image_id,
                                           {"location_data": locations})
            except exception.GlanceError as err:
                LOG.error("Could not record the removed data of image %s: %s",
                          image_id, err)
                complete = False
        return complete

    # -- file store partial files ------------------------------------------------------
    def _datadir(self) -> str | None:
        """The file store's directory when the file store is enabled."""
        group = self.conf[backend.GROUP]
        if "file" not in [s.strip().lower() for s in group.stores]:
            return None
        return group.filesystem_store_datadir or None

    def _data_file(self, image_id: str) -> str | None:
        """Where the file store puts the data of ``image_id``, if enabled."""
        datadir = self._datadir()
        if not datadir or not image_id or "/" in image_id or image_id.startswith("."):
            return None
        return os.path.join(os.path.abspath(datadir), image_id)

    def _partial_files(self, image_id: str) -> list[str]:
        """Partial upload files of ``image_id`` (see the file store)."""
        datadir = self._datadir()
        return file_store.partial_files(datadir, image_id) if datadir else []

    def _upload_is_alive(self, image_id: str, now: datetime.datetime,
                         limit: datetime.timedelta) -> bool:
        for path in self._partial_files(image_id):
            try:
                modified = datetime.datetime.fromtimestamp(
                    os.stat(path).st_mtime, datetime.UTC).replace(tzinfo=None)
            except FileNotFoundError:
                continue
            if modified + limit > now:
                return True
        return False

    def _remove_partial_files(self, image_id: str) -> bool:
        complete = True
        for path in self._partial_files(image_id):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                LOG.error("Could not remove partial upload file %s: %s", path, err)
                complete = False
            else:
                LOG.info("Removed partial upload file %s of image %s",
                         os.path.basename(path), image_id)
        return complete
