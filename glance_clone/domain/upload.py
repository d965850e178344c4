"""Putting bytes behind a queued image: upload, copy-from and location.

Every step that changes the status is a compare-and-swap in the registry
(``from_state``), settled by ``RegistryWrites`` when an answer is lost, so
an upload racing a delete or another upload loses cleanly and the image is
never left in ``saving``. Bytes written to a store are removed only once
the registry is known to hold a record that does not point at them: the
image killed by our own swap, or taken by someone else and not holding
them. When the registry cannot tell (it stays unreachable), the bytes stay
and the scrubber's reaper cleans up later.

A transfer checks the image's status every ``status_interval`` seconds and
stops when it is no longer ``saving`` (deleted meanwhile): the store then
removes the partial data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from oslo_config import cfg

from glance_clone.common import config, exception, hashing
from glance_clone.common.context import RequestContext
from glance_clone.common.data_in import Incoming, Limit
from glance_clone.domain import image_status, inspection, quota, unified_limits, usage
from glance_clone.domain.registry_writes import RegistryWrites, holds

LOG = logging.getLogger(__name__)

# Seconds between two looks at the status of the image being uploaded.
STATUS_INTERVAL = 2.0

OPTS = [
    cfg.StrOpt("hashing_algorithm", default="sha512",
               help="hashlib algorithm of the multihash (os_hash_algo, "
                    "os_hash_value) computed beside the md5 checksum of every "
                    "image's data as it comes in."),
]


def register_opts(conf: Any) -> None:
    config.register_once(conf, OPTS)


def check_opts(conf: Any) -> None:
    """Raises ConfigError for a ``hashing_algorithm`` hashlib cannot use."""
    try:
        hashing.check_algorithm(conf.hashing_algorithm)
    except ValueError:
        raise exception.ConfigError(
            "hashing_algorithm = %s is not a hash this Python offers; use one of "
            "hashlib's, e.g. sha512 (the default)" % conf.hashing_algorithm) from None


# What an image's data is known by once stored.
DATA_FIELDS = ("size", "checksum", "os_hash_algo", "os_hash_value")


class Uploader:
    """Streams data into a store and activates the image."""

    def __init__(self, conf: Any, registry: Any, stores: Any,
                 writes: RegistryWrites | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conf = conf
        self.registry = registry
        self.stores = stores
        self.writes = writes or RegistryWrites(registry)
        self.clock = clock
        self.status_interval = STATUS_INTERVAL
        register_opts(conf)
        check_opts(conf)
        inspection.register_opts(conf)

    def upload(self, context: RequestContext, image: dict, chunks: Iterator[bytes],
               size_hint: int, scheme: str | None = None,
               declared_size: int | None = None,
               failed_status: str | None = image_status.KILLED,
               start: str = image_status.QUEUED,
               working: str = image_status.SAVING,
               done: str = image_status.ACTIVE,
               kept: list[dict] | None = None) -> dict:
        """queued -> saving -> active; on any failure the image goes to
        ``failed_status`` (v1: killed; v2: back to queued; None: it stays
        ``working`` for the caller to revert). An import goes
        importing -> active (``start`` and ``working`` importing: the
        importer moved it there already). An import into several stores
        writes them one by one: ``done`` is the status each write leaves
        (importing until the store that activates the image), and each
        keeps the locations ``kept`` (the stores written before) beside
        the new one.

        ``declared_size`` (else the record's non-zero size) and the record's
        checksum must match the data. Raises Duplicate when the image is no
        longer queued (another upload got it first), ImageDeletedDuringUpload,
        and whatever the stream, the store, the limits or the checks raise.
        """
        image_id = image["id"]
        if start == image_status.QUEUED:
            usage.enforce(self.conf, self.registry, context,
                          {unified_limits.IMAGE_SIZE_TOTAL: 0,
                           unified_limits.IMAGE_COUNT_UPLOADING: 1})
        try:
            if start != working:
                self.writes.change(context, image_id, {"status": working},
                                   from_state=start)
        except exception.StatusConflict:
            raise exception.Duplicate("Attempt to upload duplicate image")
        if declared_size is None:
            declared_size = image.get("size") or None
        inspector = inspection.for_image(self.conf, image.get("disk_format"),
                                         image.get("container_format"))
        try:
            location, loc_meta, values = self._store(
                context, image, chunks, size_hint, scheme, declared_size, inspector,
                working)
        except exception.ImageDeletedDuringUpload:
            raise
        except exception.Duplicate as err:
            # The store already holds data under this id, which is not ours
            # to remove; the image must still not stay in saving forever.
            self._fail(context, image_id, working, failed_status)
            raise exception.Duplicate("Attempt to upload duplicate image") from err
        except BaseException:
            self._fail(context, image_id, working, failed_status)
            raise
        if inspector.virtual_size is not None:
            values["virtual_size"] = inspector.virtual_size
        return self._activate_upload(context, image_id, location, loc_meta, working,
                                     failed_status, done, kept or [], **values)

    def _fail(self, context: RequestContext, image_id: str, working: str,
              failed_status: str | None) -> None:
        if failed_status is not None:
            self.kill(context, image_id, working, failed_status)

    def _store(self, context: RequestContext, image: dict, chunks: Iterator[bytes],
               size_hint: int, scheme: str | None, declared_size: int | None,
               inspector: inspection.Inspection,
               working: str = image_status.SAVING) -> tuple[str, dict, dict[str, Any]]:
        """Write the data: (location, its metadata, the image's DATA_FIELDS).

        The store leaves nothing behind when this raises.
        """
        image_id = image["id"]
        limits = self.limits(context, image_id, size_hint)
        # Size, hashes, limits and the disk format are checked as the data
        # streams: a refused upload raises inside the store's write, which
        # removes what it wrote.
        algorithm = self.conf.hashing_algorithm
        data = Incoming(self._while_saving(context, image_id, chunks, working),
                        limits=limits,
                        expected_size=declared_size, expected_checksum=image.get("checksum"),
                        expected_multihash=hashing.recorded_multihash(image),
                        multihash=algorithm, inspector=inspector)
        try:
            location, size, checksum, loc_meta = self.stores.add(
                image_id, data, size_hint, scheme)
        except exception.StoreError as err:
            # The store's own words may name paths; the caller gets Glance's.
            LOG.error("Upload of image %s failed in the store: %s", image_id, err)
            raise exception.StoreError("Failed to upload image %s" % image_id) from err
        return location, loc_meta, {"size": size, "checksum": checksum,
                                    "os_hash_algo": algorithm,
                                    "os_hash_value": data.multihash}

    def limits(self, context: RequestContext, image_id: str,
               size_hint: int) -> list[Limit]:
        """What the data of an image may not pass: ``image_size_cap`` and
        the owner's storage quota. Raises StorageQuotaFull when
        ``size_hint`` is over the quota already."""
        cap = self.conf.image_size_cap
        limits: list[Limit] = [(cap, lambda: exception.ImageSizeLimitExceeded(limit=cap))]
        remaining = quota.remaining_storage(self.conf, self.registry, context, image_id)
        if remaining is not None:
            if size_hint > remaining:
                raise exception.StorageQuotaFull(
                    reason="%d bytes left, %d declared" % (remaining, size_hint))
            limits.append((remaining, lambda: exception.StorageQuotaFull(
                reason="%d bytes left" % remaining)))
        return limits

    def _while_saving(self, context: RequestContext, image_id: str,
                      chunks: Iterator[bytes],
                      working: str = image_status.SAVING) -> Iterator[bytes]:
        """``chunks``, stopped with ImageDeletedDuringUpload once the image
        is no longer ``working`` (a delete took it while the data was coming)."""
        next_look = self.clock() + self.status_interval
        for chunk in chunks:
            if self.clock() >= next_look:
                self._check_saving(context, image_id, working)
                next_look = self.clock() + self.status_interval
            yield chunk

    def _check_saving(self, context: RequestContext, image_id: str,
                      working: str = image_status.SAVING) -> None:
        try:
            image = self.registry.get_image(context, image_id)
        except exception.NotFound:
            image = None
        except exception.GlanceError as err:
            # The activation will find out what the registry holds.
            LOG.info("Could not check the status of image %s during its "
                     "upload: %s", image_id, err)
            return
        if image is None or image.get("deleted") or image["status"] != working:
            LOG.info("Image %s was deleted during its upload; stopping the transfer",
                     image_id)
            raise exception.ImageDeletedDuringUpload(image_id=image_id)

    def _activate_upload(self, context: RequestContext, image_id: str, location: str,
                         loc_meta: dict, working: str, failed_status: str | None,
                         done: str, kept: list[dict], **values: Any) -> dict:
        """saving (``working``) -> active with the new bytes; they are removed only when
        the registry surely does not hold them."""
        try:
            return self._activate(context, image_id, location, loc_meta, working,
                                  done, kept, **values)
        except exception.ImageDeletedDuringUpload:
            self._release(context, image_id, location)
            raise
        except exception.RegistryUnavailable:
            LOG.error("Image %s: the registry did not confirm its activation; "
                      "its data stays at its location", image_id)
            raise
        except exception.GlanceError:
            # The registry refused the activation.
            if failed_status is None:
                self._release(context, image_id, location)
            else:
                self._discard(context, image_id, location, working=working)
            raise

    def _activate(self, context: RequestContext, image_id: str, location: str,
                  loc_meta: dict, from_state: str, done: str = image_status.ACTIVE,
                  kept: list[dict] | None = None, **values: Any) -> dict:
        values.update({
            "status": done,
            "location_data": [dict(loc) for loc in kept or []] + [
                {"url": location, "metadata": loc_meta or {}, "status": "active"}],
        })

        def applied(image: dict) -> bool:
            return image["status"] == done and holds(image, location)

        try:
            return self.writes.change(context, image_id, values, from_state=from_state,
                                      applied=applied)
        except (exception.StatusConflict, exception.NotFound):
            # A delete won the race.
            raise exception.ImageDeletedDuringUpload(image_id=image_id)

    def activate_location(self, context: RequestContext, image: dict, location: str,
                          size: int) -> dict:
        """Attach an external location to a queued image: queued -> active."""
        return self._activate(context, image["id"], location, {},
                              image_status.QUEUED, size=size)

    def kill(self, context: RequestContext, image_id: str, from_state: str,
             to_state: str = image_status.KILLED) -> bool:
        """Move a failed upload's image to ``to_state`` (killed; or queued
        for v2, which also forgets size and checksum) while it has
        ``from_state``; True when it surely no longer has that status."""
        values: dict[str, Any] = {"status": to_state}
        if to_state == image_status.QUEUED:
            values.update(dict.fromkeys(DATA_FIELDS), virtual_size=None)
        try:
            self.writes.change(context, image_id, values, from_state=from_state)
        except (exception.StatusConflict, exception.NotFound):
            LOG.info("Image %s left %s meanwhile; not killed", image_id, from_state)
        except exception.GlanceError as err:
            LOG.warning("Image %s not marked killed: %s", image_id, err)
            return False
        return True

    def _discard(self, context: RequestContext, image_id: str, location: str,
                 failed_status: str | None = image_status.KILLED,
                 working: str = image_status.SAVING) -> None:
        """Kill the saving image, then remove the bytes it does not hold."""
        if self.kill(context, image_id, working, failed_status):
            self._release(context, image_id, location)
        else:
            LOG.error("Image %s: kept its data at its location, the registry "
                      "did not confirm it was killed", image_id)

    def _release(self, context: RequestContext, image_id: str, location: str) -> None:
        """Remove the bytes at ``location`` unless the image's record holds
        them (then they are the record's, e.g. a delete's to remove)."""
        try:
            record = self.writes.read(context, image_id)
        except exception.GlanceError as err:
            LOG.error("Image %s: kept its data, could not read the image back: %s",
                      image_id, err)
            return
        if holds(record, location):
            LOG.info("Image %s holds its new data: left in place", image_id)
            return
        self._delete_quietly(location)

    def _delete_quietly(self, location: str) -> None:
        try:
            self.stores.delete(location)
        except exception.NotFound:
            pass
        except Exception:
            LOG.exception("Could not remove the data at a failed upload's location")

    def copy_from(self, context: RequestContext, image: dict, source: str,
                  scheme: str | None, declared_size: int | None = None) -> None:
        """Background copy of an external URL into a store; failures kill the image."""
        try:
            chunks, size = self.stores.get(source)
        except Exception as err:
            LOG.warning("copy_from for image %s failed: %s", image["id"], err)
            self.kill(context, image["id"], image_status.QUEUED)
            return
        try:
            self.upload(context, image, iter(chunks), size or 0, scheme, declared_size)
        except Exception as err:
            LOG.warning("copy_from for image %s failed: %s", image["id"], err)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
